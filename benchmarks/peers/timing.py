"""Interleaved timing, medians, a worker's JSON result and the final table: framework-free.

Every worker imports this module (it sits beside them, so Python finds it on the script's own
path) and reports through :func:`emit`; ``run.py`` reads the line back with :func:`parse`.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field

__all__ = ["Row", "interleave", "median", "emit", "parse", "table", "MARK"]

MARK = "DOPT-PEER-RESULT "  # the prefix of the one stdout line that carries a worker's rows


@dataclass
class Row:
    """One line of the table: a contender measured in one process.

    ``train``/``eval`` are the medians over subnets of (supernet with the subnet active) / (the same
    subnet as a plain static network); ``exact`` is the largest |supernet - extracted| output
    difference over the exactness subnets. ``error`` set means a measured run failed (the exit
    status says so); ``unavailable`` means the contender could not be installed or built here.
    """

    name: str
    process: str
    train: float | None = None
    eval: float | None = None
    exact: float | None = None
    subnets: int = 0
    own: bool = False  # dopt's own row: its failure fails the benchmark
    notes: str = ""
    error: str | None = None
    unavailable: str | None = None
    detail: dict[str, float] = field(default_factory=dict)


def interleave(timers: dict[str, Callable[[], None]], rounds: int) -> dict[str, float]:
    """Median seconds of each timer over ``rounds`` rounds that run every timer once in turn.

    One untimed call of each first (warm-up: lazy allocations, traces). Interleaving makes a burst
    of load from the other processes on the machine hit every side alike.
    """
    for fn in timers.values():
        fn()
    samples: dict[str, list[float]] = {key: [] for key in timers}
    for _ in range(rounds):
        for key, fn in timers.items():
            t0 = time.perf_counter()
            fn()
            samples[key].append(time.perf_counter() - t0)
    return {key: statistics.median(v) for key, v in samples.items()}


def median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def emit(rows: Sequence[Row]) -> None:
    print(MARK + json.dumps([asdict(r) for r in rows]), flush=True)


def parse(stdout: str) -> list[Row] | None:
    """The rows a worker emitted, or None if it printed none (it crashed first)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARK):
            return [Row(**r) for r in json.loads(line[len(MARK) :])]
    return None


def _fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def table(rows: Sequence[Row]) -> str:
    """A Markdown table of the rows, errors in the notes column."""
    lines = [
        "| contender | process | (a) train super/static | (b) eval super/static | (c) max abs diff | subnets | notes |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        notes = f"FAILED: {r.error}" if r.error else f"not run: {r.unavailable}" if r.unavailable else r.notes
        lines.append(
            f"| {r.name} | {r.process} | {_fmt(r.train, '.2f')} | {_fmt(r.eval, '.2f')} | {_fmt(r.exact, '.1e')} "
            f"| {r.subnets or '-'} | {notes.replace('|', '/')} |"
        )
    return "\n".join(lines)
