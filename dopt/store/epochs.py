"""Epoch checkpoints of a training stage: supernet training, pre-training and `dopt train` keep one
file per finished epoch (the last two), resume from the newest one that loads and fall back to the
one before when it does not (docs/resume.md#resuming-a-run)."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EpochCheckpoints"]

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
                step = load(path)
            except errors as exc:
                log.warning("%s is unreadable (%s); falling back to the previous checkpoint", path.name, exc)
                continue
            return done, step
        return None

    def save(self, epoch: int, save: Callable[[Path], None]) -> None:
        """After ``epoch`` (0-based) ended: write its checkpoint, and drop the one two epochs back."""
        save(self.path(epoch + 1))
        stale = self.path(epoch - 1)  # keep the last two epochs
        if stale.exists():
            stale.unlink()
