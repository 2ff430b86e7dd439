"""The run context: which process this is, and the one door every write of a run goes through
(docs/architecture.md#the-run-context).

A run writes its identity record, plain-text log, TensorBoard events, checkpoints, journal and
results. With several processes only the main one (rank 0) writes them; the others compute and
read (docs/distributed.md#who-writes). ``RunContext()`` is the single-process context.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dopt.parallel.comm import Comm, SingleProcess

__all__ = ["RunContext"]

T = TypeVar("T")


@dataclass(frozen=True)
class RunContext:
    comm: Comm = field(default_factory=SingleProcess)

    @property
    def rank(self) -> int:
        return self.comm.rank

    @property
    def world_size(self) -> int:
        return self.comm.world_size

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def write(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T | None:
        """Call ``fn`` (a function that writes files) on the main process only; its result there."""
        return fn(*args, **kwargs) if self.is_main else None

    def summary_writer(self, log_dir: Path) -> Any:
        """A TensorBoard writer for ``log_dir`` on the main process; one that drops everything elsewhere."""
        if not self.is_main:
            return _NullWriter()
        from tensorboardX import SummaryWriter

        return SummaryWriter(str(log_dir))

    def file_log(self, path: Path) -> logging.Handler | None:
        """The run's plain-text log file handler (main process only)."""
        from dopt.log import add_file

        return add_file(path) if self.is_main else None


class _NullWriter:
    """Stands in for a SummaryWriter on processes that write nothing."""

    def __getattr__(self, name: str) -> Callable[..., None]:
        return lambda *args, **kwargs: None
