"""One dopt command writing into a working directory at a time (docs/cli.md#one-run-per-working-directory).

Two runs in one folder would interleave one journal, one log and one results folder, and both
would end "successfully". ``hold(workdir, command)`` takes an exclusive ``flock`` on
``<workdir>/.dopt.lock`` for the command's lifetime and refuses a second command with the first
one's pid and command line. The kernel drops the lock when its process ends in any way (``kill -9``
included), so a crash never leaves the folder locked.

The file is removed on release so that a command that stops on a mistake leaves nothing behind; a
process that opened the file just before its removal would lock an unlinked file, so after locking
we check that the path is still our file and start again if not (the usual pattern for lock files
that are removed).
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from dopt.errors import UserError

__all__ = ["LOCK_NAME", "hold"]

LOCK_NAME = ".dopt.lock"

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not guarded
    fcntl = None  # type: ignore[assignment]

# A flock belongs to the open file description, which a fork without exec shares (DataLoader
# workers, multiprocessing in a user's dataset code): orphans of a killed run would keep the folder
# locked. Forked children close their copy; the parent's keeps the lock. (os.open's descriptors are
# not inherited across exec.)
_held: set[int] = set()


def _close_in_child() -> None:
    for fd in _held:
        with contextlib.suppress(OSError):
            os.close(fd)
    _held.clear()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_close_in_child)


@contextlib.contextmanager
def hold(workdir: Path, command: str) -> Iterator[None]:
    """Hold the working directory's lock while the body runs; UserError if another dopt holds it."""
    if fcntl is None:
        yield
        return
    path = workdir / LOCK_NAME
    fd = _acquire(path)
    _held.add(fd)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n{time.strftime('%Y-%m-%d %H:%M:%S')}\n{command}\n".encode())
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)  # while still locked: nobody can be holding this file
        _held.discard(fd)
        os.close(fd)


def _acquire(path: Path) -> int:
    while True:
        fd = _open(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _holder(fd)
            os.close(fd)
            raise UserError(
                f"another dopt command is writing into {path.parent}{holder}; two at once would interleave "
                "their journal, log and results",
                fix="wait for it to finish or stop it, or run in another folder (copy user_module.py and scen.yaml)",
            ) from None
        except BaseException:
            os.close(fd)
            raise
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(path))
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # the holder removed the file between our open and our lock: take the new one


def _open(path: Path) -> int:
    """The lock file, opened for writing only if it is a plain file of its own: a symbolic link,
    a hard link to another file, a FIFO or a device there would have the lock record written into
    whatever it leads to."""
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags, 0o644)
    except OSError as exc:
        if path.is_symlink():
            raise _not_a_lock(path, "a symbolic link") from None
        raise UserError(
            f"cannot write into the working directory {path.parent} ({exc.strerror})",
            fix="run where you may write, or pass --workdir DIR",
        ) from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode) or info.st_nlink > 1:
        os.close(fd)
        raise _not_a_lock(path, "not a plain file" if not stat.S_ISREG(info.st_mode) else "a hard link to another file")
    return fd


def _not_a_lock(path: Path, what: str) -> UserError:
    return UserError(
        f"{path} is {what}, not dopt's lock file; dopt writes nothing through it",
        fix=f"remove it (rm {path}) and run again",
    )


def _holder(fd: int) -> str:
    """`` (pid 123, started …: dopt -c scen.yaml)`` from what the holder wrote, or ``""``."""
    try:
        text = os.pread(fd, 4096, 0).decode(errors="replace").splitlines()
    except OSError:
        return ""
    if len(text) < 3:
        return ""
    return f" (pid {text[0]}, started {text[1]}: {text[2]})"
