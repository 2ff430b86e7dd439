"""Epoch checkpoints of a training stage: supernet training, pre-training and `dopt train` keep one
file per finished epoch (the last two), resume from the newest one that loads and fall back to the
one before when it does not (docs/resume.md#resuming-a-run).

Each checkpoint gets a SHA-256 beside it (``<name>.sha256``) once written; a file whose bytes no
longer match it is treated as unreadable (docs/resume.md#corrupt-checkpoints): a flipped bit in a
weight would otherwise load without a word and change every later result."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dopt.errors import CorruptCheckpoint
from dopt.store.atomic import atomic_write_text

__all__ = ["EpochCheckpoints", "write_digest", "check_digest", "sha256"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EpochCheckpoints:
    """``<folder>/<prefix>epoch_N<suffix>`` (N epochs done), and ``<prefix>final<suffix>``."""

    folder: Path
    prefix: str  # "supernet_", "pretrain_", or "" in a result's own folder
    suffix: str  # the backend's file ending

    def path(self, epochs_done: int) -> Path:
        return self.folder / f"{self.prefix}epoch_{epochs_done}{self.suffix}"

    @property
    def final(self) -> Path:
        return self.folder / f"{self.prefix}final{self.suffix}"

    def found(self) -> list[tuple[int, Path]]:
        """``(epochs done, path)`` of every epoch checkpoint, newest first."""
        if not self.folder.is_dir():
            return []
        pattern = re.compile(re.escape(self.prefix) + r"epoch_(\d+)" + re.escape(self.suffix) + "$")
        found = [(int(m.group(1)), p) for p in self.folder.iterdir() if (m := pattern.match(p.name))]
        return sorted(found, reverse=True)

    def newest(self, load: Callable[[Path], int], errors: tuple[type[BaseException], ...]) -> tuple[int, int] | None:
        """Load the newest epoch checkpoint that loads: ``(epochs done, step)``; None when none does.

        ``load`` reads a checkpoint and returns its step; a checkpoint it rejects with one of
        ``errors`` is reported and the one before is tried.
        """
        for done, path in self.found():
            try:
                check_digest(path)
                step = load(path)
            except errors as exc:
                log.warning("%s is unreadable (%s); falling back to the previous checkpoint", path.name, exc)
                continue
            return done, step
        return None

    def save(self, epoch: int, save: Callable[[Path], None]) -> None:
        """After ``epoch`` (0-based) ended: write its checkpoint, and drop the one two epochs back."""
        path = self.path(epoch + 1)
        save(path)
        write_digest(path)
        stale = self.path(epoch - 1)  # keep the last two epochs
        stale.unlink(missing_ok=True)
        _digest_of(stale).unlink(missing_ok=True)

    def save_final(self, save: Callable[[Path], None]) -> None:
        """Write the final checkpoint (after the last epoch) and its digest."""
        save(self.final)
        write_digest(self.final)

    def load_final(self, load: Callable[[Path], int]) -> int:
        """Load the final checkpoint after checking its digest; its step.

        Raises:
            CorruptCheckpoint: it differs from its digest, or ``load`` rejects it.
        """
        check_digest(self.final)
        return load(self.final)


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes, hex."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _digest_of(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def write_digest(path: Path) -> None:
    """Record the SHA-256 of the checkpoint just written to ``path``, beside it."""
    atomic_write_text(_digest_of(path), sha256(path) + "\n")


def check_digest(path: Path) -> None:
    """Check ``path`` against its recorded SHA-256. A checkpoint without one (written by an older
    dopt, or a crash between writing the file and its digest) is left to the loader's own checks.

    Raises:
        CorruptCheckpoint: the bytes differ from those recorded.
    """
    try:
        recorded = _digest_of(path).read_text().strip()
    except FileNotFoundError:
        return
    except OSError as exc:
        raise CorruptCheckpoint.of(_digest_of(path), exc) from exc
    if path.is_file() and sha256(path) != recorded:
        raise CorruptCheckpoint(f"{path.name}: its bytes differ from the SHA-256 recorded when it was written")
