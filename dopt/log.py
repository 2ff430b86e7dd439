"""Logging set-up from -v/-q, the plain-text run log, the current stage, and progress display.

Progress is redrawn with tqdm on a terminal and written as periodic log lines otherwise, so
log files and CI output stay readable.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["configure", "add_file", "remove_file", "stage", "current_stage", "console_level", "Progress"]

_ROOT = "dopt"
_stage = "starting"


def configure(verbosity: int = 0, rank: int = 0) -> None:
    """-q → warnings only, default → info, -v → debug. A process of rank > 0 of a distributed run
    prints only errors, tagged with its rank: its warnings reach rank 0's log and console
    (``dopt.parallel.comm.Relayed``)."""
    level = logging.INFO if verbosity == 0 else (logging.DEBUG if verbosity > 0 else logging.WARNING)
    if rank:
        level = logging.ERROR
    root = logging.getLogger(_ROOT)
    root.setLevel(logging.DEBUG)
    for h in list(root.handlers):
        if getattr(h, "_dopt_console", False):
            root.removeHandler(h)
    handler = _ConsoleHandler(sys.stderr)
    handler.setLevel(level)
    handler.setFormatter(logging.Formatter(f"dopt [rank {rank}]: %(message)s" if rank else "dopt: %(message)s"))
    handler._dopt_console = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.propagate = False


class _ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Writes above a live progress bar instead of through it."""

    def emit(self, record: logging.LogRecord) -> None:
        if Progress.active == 0:
            super().emit(record)
            return
        from tqdm import tqdm

        try:
            tqdm.write(self.format(record), file=self.stream)
        except Exception:  # logging must never raise
            self.handleError(record)


def add_file(path: Path) -> logging.Handler:
    """Also write every message (debug included) with timestamps to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setLevel(logging.DEBUG)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.getLogger(_ROOT).addHandler(handler)
    return handler


def remove_file(handler: logging.Handler) -> None:
    logging.getLogger(_ROOT).removeHandler(handler)
    handler.close()


@contextlib.contextmanager
def stage(name: str) -> Iterator[None]:
    """Name the stage that errors are reported against (docs/cli.md#error-messages: exit 1 names the stage)."""
    global _stage
    previous, _stage = _stage, name
    # Said at info level: a stage that takes seconds must not look like a hang (docs/cli.md#progress-and-verbosity).
    logging.getLogger(_ROOT).info("%s", name)
    yield
    _stage = previous


def current_stage() -> str:
    return _stage


def console_level() -> int:
    for h in logging.getLogger(_ROOT).handlers:
        if getattr(h, "_dopt_console", False):
            return h.level
    return logging.INFO


class Progress:
    """Counts units of work with an ETA: a tqdm bar on a TTY, a log line every ~10% otherwise."""

    active = 0  # bars on screen; the console handler writes around them

    def __init__(self, total: int, desc: str, unit: str) -> None:
        self.total, self.desc, self.unit = max(total, 1), desc, unit
        self.done = 0
        self.start = time.monotonic()
        self._next_report = 0.1
        self._bar: Any = None
        self._log = logging.getLogger(f"{_ROOT}.progress")
        if sys.stderr.isatty() and console_level() <= logging.INFO:
            from tqdm import tqdm

            self._bar = tqdm(total=total, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
            Progress.active += 1

    def update(self, n: int = 1, **info: Any) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            if info:
                self._bar.set_postfix({k: _fmt(v) for k, v in info.items()}, refresh=False)
            return
        if self.done / self.total >= self._next_report or self.done == self.total:
            self._next_report = (int(self.done / self.total * 10) + 1) / 10
            elapsed = time.monotonic() - self.start
            eta = elapsed / self.done * (self.total - self.done)
            extra = "".join(f", {k} {_fmt(v)}" for k, v in info.items())
            self._log.info(
                "%s: %d/%d %s (%.0f%%), elapsed %s, ETA %s%s",
                self.desc,
                self.done,
                self.total,
                self.unit,
                100 * self.done / self.total,
                _hms(elapsed),
                _hms(eta),
                extra,
            )

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
            Progress.active -= 1

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _hms(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"
