"""Atomic file writes: a reader sees the old file or the new one, never a half-written one."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

__all__ = ["atomic_write_bytes", "atomic_write_text", "naming"]


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically, creating parent folders as needed.

    The bytes go to a temporary file in the same folder (so ``os.replace`` stays on one file
    system), are flushed and fsynced, then the file is renamed over ``path``.

    Args:
        path: destination file.
        data: the whole new content.

    Raises:
        OSError: the folder cannot be created or written; ``path`` is then left untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    # os.open with 0o666 lets the umask decide the permissions, as a plain open() would;
    # tempfile would leave the result readable by its owner only.
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    except OSError as exc:
        raise naming(exc, path) from exc
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise naming(exc, path) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def naming(exc: OSError, path: Path) -> OSError:
    """``exc`` with the file it was about: a full disk fails ``write`` with no file name, and the
    user must learn which folder to free or fix (docs/resume.md#atomic-writes)."""
    named = type(exc)(exc.errno, exc.strerror or str(exc), str(path))
    named.dopt_write = True  # type: ignore[attr-defined]  # a write of dopt's, for the one-line report (cli.py)
    return named


def atomic_write_text(path: str | os.PathLike[str], text: str, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_write_bytes`).

    Newlines are written as given (no platform translation), so output is byte-identical
    across systems.

    Args:
        path: destination file.
        text: the whole new content.
        encoding: text encoding.
    """
    atomic_write_bytes(path, text.encode(encoding))


def _fsync_dir(folder: Path) -> None:
    # Makes the rename itself durable on POSIX; Windows cannot open a folder, and the
    # write is already complete there.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
