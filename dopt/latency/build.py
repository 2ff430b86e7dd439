"""Building, caching and loading the latency table (docs/latency.md#the-table).

The backend's :class:`LatencyMeter` turns :class:`Job` descriptions into timed callables of its
framework; everything else (which blocks, which calibration subnets, the fit, the cache) is here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from dopt.latency.table import Block, LatencyTable, accuracy, arch_blocks, fit, space_blocks
from dopt.space import Arch, SearchSpace
from dopt.store.atomic import atomic_write_text

__all__ = ["Job", "LatencyMeter", "table_key", "obtain", "build", "cache_dir", "cache_file", "Obtained"]

log = logging.getLogger(__name__)

CALIBRATION_SUBNETS = 20  # whole subnets the fit uses, the smallest and largest among them
HELD_OUT_SUBNETS = 20  # whole subnets the accuracy is reported on, never used for the fit
POOR_WITHIN_10 = 0.9  # below this share of held-out subnets within ±10 %, a warning


@dataclass(frozen=True, kw_only=True)
class Job:
    """Something to time, described without a framework.

    ``kind`` is ``"empty"`` (the runtime's call of an identity function: subtracted from every
    entry), ``"prenet"``, ``"postnet"``, ``"block"`` (``block``), ``"subnet"`` (a static model of
    ``rows`` with PostNet on ``features``, freshly initialised) or ``"model"`` (``model``, a
    model object of the framework, e.g. a rebuilt result).
    """

    kind: str
    block: Block | None = None
    rows: tuple[tuple[int, ...], ...] = ()
    features: tuple[int, ...] = ()
    model: Any = None


class LatencyMeter(Protocol):
    """A backend's timing of jobs in its runtime (docs/latency.md#how-latency-is-measured)."""

    def key(self) -> dict[str, Any]:
        """Device, framework and version, runtime, threads and a hash of PreNet/PostNet."""
        ...

    def measure(self, jobs: Sequence[Job], on_round: Callable[[int], None] | None = None) -> list[float]:
        """Milliseconds of each job at batch 1, all timed interleaved (dopt/latency/timing.py)."""
        ...


def table_key(
    meter: dict[str, Any], space: SearchSpace, in_hw: tuple[int, int], input_shape: Sequence[int]
) -> dict[str, Any]:
    """Everything a table's entries depend on; a table whose key differs is rebuilt."""
    layers = [(s.max_in, s.max_out, s.stride, s.fixed_width, s.skippable) for s in space.layers]
    choices = (space.kernel_sizes, space.expand_ratios, space.width_ratios)
    shape = json.dumps([space.in_channels, list(in_hw), layers, [list(c) for c in choices]])
    return {
        **meter,
        "input_shape": list(input_shape),
        "space": hashlib.sha256(shape.encode()).hexdigest()[:16],
        "method": "interleaved-min-v1",
    }


def cache_dir() -> Path:
    """``$DOPT_CACHE_DIR``, else ``$XDG_CACHE_HOME/dopt``, else ``~/.cache/dopt``; tables go in ``latency/``."""
    base = os.environ.get("DOPT_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "dopt"
    )
    return Path(base) / "latency"


def cache_file(key: dict[str, Any]) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]
    return cache_dir() / f"table_{digest}.json"


@dataclass(frozen=True, kw_only=True)
class Obtained:
    table: LatencyTable
    source: str  # "run" (the run's own copy), "cache" or "built"
    path: Path  # where it was read from or written to
    seconds: float  # to obtain it now


def _read(path: Path, key: dict[str, Any], blocks: list[Block]) -> LatencyTable | None:
    """The table at ``path`` if it is whole, of ``key`` and covers ``blocks``; None when absent."""
    if not path.exists():
        return None
    try:
        table = LatencyTable.from_json(path.read_text())
    except (OSError, ValueError) as exc:
        log.warning("latency table %s is unreadable (%s): measuring a new one", path, exc)
        return None
    if dict(table.key) != key or not table.covers(blocks):
        log.info("latency table %s was measured for another device, runtime, thread count or space", path)
        return None
    return table


def obtain(
    meter: LatencyMeter,
    space: SearchSpace,
    in_hw: tuple[int, int],
    input_shape: Sequence[int],
    feature_choose: Sequence[int] = (),
    run_copy: Path | None = None,
) -> Obtained:
    """The run's own table (``run_copy``, so that a resumed run predicts exactly as before), else
    the cached one, else a new one measured now and cached."""
    t0 = time.perf_counter()
    key = table_key(meter.key(), space, in_hw, input_shape)
    blocks = space_blocks(space, in_hw)
    for source, path in (("run", run_copy), ("cache", cache_file(key))):
        if path is not None:
            table = _read(path, key, blocks)
            if table is not None:
                return Obtained(table=table, source=source, path=path, seconds=time.perf_counter() - t0)
    table = build(meter, space, in_hw, key, feature_choose)
    path = cache_file(key)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, table.to_json())
    except OSError as exc:  # a read-only home is no reason to fail the run
        log.warning("could not cache the latency table in %s (%s); it will be measured again next time", path, exc)
    return Obtained(table=table, source="built", path=path, seconds=time.perf_counter() - t0)


def _calibration_subnets(space: SearchSpace, n: int, seed: int) -> list[Arch]:
    """``n`` distinct subnets drawn as NSGA-II's first population is, the smallest and largest first."""
    rng = np.random.default_rng([seed, 7])
    seen = {space.smallest(), space.largest()}
    picked = list(seen)
    for _ in range(50 * n):
        if len(picked) >= min(n, space.size()):
            break
        enc = space.canonical(space.sample(rng))
        if enc not in seen:
            seen.add(enc)
            picked.append(enc)
    return [space.decode(e) for e in picked]


@dataclass(frozen=True)
class Subnets:
    """The whole subnets a table is calibrated on (``fit``) and checked against (``held_out``),
    drawn with ``seed``."""

    fit: int = CALIBRATION_SUBNETS
    held_out: int = HELD_OUT_SUBNETS
    seed: int = 0


def build(
    meter: LatencyMeter,
    space: SearchSpace,
    in_hw: tuple[int, int],
    key: dict[str, Any],
    feature_choose: Sequence[int] = (),
    drawn: Subnets = Subnets(),  # noqa: B008  (immutable)
) -> LatencyTable:
    """Measure every block, PreNet, PostNet and the calibration subnets in one interleaved run,
    fit, and report the accuracy on the held-out subnets."""
    fit_subnets, held_out, seed = drawn.fit, drawn.held_out, drawn.seed
    from dopt.latency.timing import ROUNDS
    from dopt.log import Progress

    blocks = space_blocks(space, in_hw)
    subnets = _calibration_subnets(space, fit_subnets + held_out, seed)
    n_fit = min(fit_subnets, max(2, len(subnets) // 2))
    jobs = [Job(kind="empty"), Job(kind="prenet"), Job(kind="postnet")] + [Job(kind="block", block=b) for b in blocks]
    jobs += [
        Job(kind="subnet", rows=tuple(space.layer_rows(a)), features=space.kept_positions(a, feature_choose))
        for a in subnets
    ]
    log.info(
        "measuring the latency table: %d blocks, PreNet, PostNet and %d whole subnets (%s)",
        len(blocks),
        len(subnets),
        ", ".join(f"{k} {v}" for k, v in key.items() if k in ("device", "runtime", "threads")),
    )
    t0 = time.perf_counter()
    with Progress(ROUNDS, "measuring latency table", "passes") as progress:
        ms = meter.measure(jobs, on_round=lambda _: progress.update(1))
    empty = ms[0]
    fixed = max(0.0, ms[1] - empty) + max(0.0, ms[2] - empty)
    entries = {b.key: max(0.0, t - empty) for b, t in zip(blocks, ms[3 : 3 + len(blocks)])}
    measured = ms[3 + len(blocks) :]
    sums = [fixed + sum(entries[b.key] for b in arch_blocks(space, in_hw, a)) for a in subnets]
    counts = [len(arch_blocks(space, in_hw, a)) for a in subnets]
    calibration = fit(sums[:n_fit], counts[:n_fit], measured[:n_fit])
    c = calibration
    held = [c.scale * s + c.per_block * n + c.intercept for s, n in zip(sums[n_fit:], counts[n_fit:])]
    return LatencyTable(
        key=key,
        entries=entries,
        fixed_ms=fixed,
        fit=calibration,
        accuracy=accuracy(held, measured[n_fit:]),
        build_s=time.perf_counter() - t0,
        calibration_ms={" ".join(map(str, space.encode(a))): m for a, m in zip(subnets, measured)},
    )


def poor_fit_warning(table: LatencyTable) -> str | None:
    """A warning with what to do when too few held-out subnets are predicted within ±10 %."""
    acc = table.accuracy
    if acc.within_10 >= POOR_WITHIN_10:
        return None
    return (
        f"the latency table predicts only {acc.within_10:.0%} of {acc.subnets} held-out subnets within ±10 % "
        f"(median error {acc.median_ape:.1f} %): the search may rank subnets by noise. Either the machine was busy "
        "while it measured, or the models are so small that the runtime's per-call overhead outweighs their "
        "arithmetic (docs/latency.md#calibration). Fix: measure on a quiet machine with latency_threads: 1 and "
        f"delete the table ({cache_file(dict(table.key))}) so that the next run measures it again; or constrain "
        "flops, which tracks latency where the arithmetic dominates"
    )
