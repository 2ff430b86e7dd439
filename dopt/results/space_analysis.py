"""Search-space analysis (docs/analysis.md): which design choices matter, from subnets drawn uniformly.

For every dimension of the space (the kernel, expansion, width and skip genes of each layer, the
same genes pooled over layers, and the depth), the subnets are grouped by their choice and the
empirical distribution function (EDF) of the error is computed for each group, as in the design
space analyses of Radosavovic et al. ("On Network Design Spaces for Visual Recognition", 2019).
An effect is the difference of mean error between the worst and the best choice; its spread is
the standard deviation of that difference over bootstrap resamples of the subnets, so that pooled
dimensions, where one subnet contributes several layers, are not over-counted. An effect is clear
when it exceeds its spread by a Bonferroni-corrected normal quantile for the number of dimensions
compared.

Everything here is plain numpy on evaluated records; evaluating them is the caller's.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

from dopt.costs import CostModel
from dopt.space import GENES_PER_LAYER, SearchSpace

__all__ = ["Record", "draw", "dimensions", "errors", "analyze", "Effect", "BOOTSTRAPS", "MIN_GROUP"]

# Bootstrap resamples for the spread of an effect, and the fewest subnets a choice needs for its
# mean to be compared.
BOOTSTRAPS = 200
MIN_GROUP = 3

_GENES = ("kernel", "expand", "width", "skip")


@dataclass(frozen=True)
class Record:
    """One evaluated subnet: its canonical encoding, metric and cost of the analysed kind."""

    encoding: tuple[int, ...]
    metric: float
    cost: float


def draw(
    space: SearchSpace,
    costs: CostModel,
    n: int,
    seed: int,
    kind: str,
    cost_range: tuple[float, float] | None = None,
) -> list[tuple[int, ...]]:
    """Up to ``n`` distinct canonical encodings drawn uniformly (each gene uniform, as the
    search's first population), keeping those whose cost of ``kind`` lies in ``cost_range``.
    Costs are analytic, so out-of-range subnets are rejected before anything is evaluated.
    Fewer come back when the space (or the range) holds fewer, or 100 draws per wanted subnet
    found none."""
    rng = np.random.default_rng([seed, 3])
    found: dict[tuple[int, ...], None] = {}
    for _ in range(100 * n):
        if len(found) == n:
            break
        encoding = space.canonical(space.sample(rng))
        if encoding in found:
            continue
        if cost_range is not None:
            cost = costs.cost(kind, space.decode(encoding))
            if not cost_range[0] <= cost <= cost_range[1]:
                continue
        found[encoding] = None
    return list(found)


def dimensions(space: SearchSpace, encoding: Sequence[int]) -> dict[str, list[Any]]:
    """The choices of one subnet per dimension: ``kernel@2`` (layer 2's kernel), ``kernel`` (the
    kernels of every kept layer, pooled), ``skip@1``, ``depth`` (kept layers), ... A dimension a
    layer does not have (the kernel of a skipped layer, the width of a full-width layer, the skip
    of a layer that cannot be skipped) is left out."""
    out: dict[str, list[Any]] = {}
    kept = 0
    for spec in space.layers:
        genes = encoding[GENES_PER_LAYER * spec.index : GENES_PER_LAYER * (spec.index + 1)]
        skipped = bool(genes[3])
        if spec.skippable:
            _add(out, f"skip@{spec.index}", "skipped" if skipped else "kept")
            _add(out, "skip", "skipped" if skipped else "kept")
        if skipped:
            continue
        kept += 1
        values: dict[str, float] = {"kernel": space.kernel_sizes[genes[0]], "expand": space.expand_ratios[genes[1]]}
        if not spec.fixed_width:
            values["width"] = space.width_ratios[genes[2]]
        for gene, value in values.items():
            _add(out, f"{gene}@{spec.index}", value)
            _add(out, gene, value)
    out["depth"] = [kept]
    return out


def _add(out: dict[str, list[Any]], key: str, value: Any) -> None:
    out.setdefault(key, []).append(value)


def errors(metrics: Sequence[float]) -> tuple[np.ndarray, str]:
    """The error of each subnet and what it is: ``1 - metric`` when every metric lies in [0, 1]
    (an accuracy, mIoU, mAP), else the gap to the best metric seen."""
    m = np.asarray(metrics, dtype=float)
    if m.size and np.all((m >= 0) & (m <= 1)):
        return 1.0 - m, "1 - metric"
    return (np.max(m) - m if m.size else m), "best metric - metric"


@dataclass(frozen=True, kw_only=True)
class Effect:
    """How much one dimension's choice moves the error."""

    dimension: str
    best: Any  # the choice of lowest mean error
    worst: Any
    difference: float  # mean error of the worst choice minus that of the best
    spread: float  # bootstrap standard deviation of ``difference``
    counts: dict[str, int]  # subnets (pooled: layers) per choice
    z: float = 2.0  # how many spreads ``difference`` must exceed to be clear

    @property
    def clear(self) -> bool:
        """The difference exceeds ``z`` spreads: more than the luck of the draw."""
        return self.difference > self.z * self.spread

    def sentence(self) -> str:
        verdict = "matters" if self.clear else "within noise"
        return (
            f"{self.dimension}: {self.best} beats {self.worst} by {self.difference:.4f} mean error "
            f"(± {self.spread:.4f}, {verdict})"
        )


def analyze(space: SearchSpace, records: Sequence[Record], seed: int, split_by: str | None = None) -> dict[str, Any]:
    """EDFs per dimension and choice, effects ranked by size, and the same per group of
    ``split_by`` (a dimension with one value per subnet, e.g. ``depth`` or ``kernel@0``).

    Returns:
        JSON-ready: ``error`` (its definition), ``samples``, ``edf`` ({dimension: {choice: sorted
        errors}}), ``effects`` (largest first), ``summary`` (sentences), and ``split`` when asked.
    """
    err, meaning = errors([r.metric for r in records])
    dims = [dimensions(space, r.encoding) for r in records]
    result: dict[str, Any] = {
        "error": meaning,
        "samples": len(records),
        "edf": _edfs(dims, err),
        **_effects_and_summary(dims, err, seed),
    }
    if split_by is not None:
        result["split"] = {"by": split_by, "groups": {}}
        for value in sorted({tuple(d[split_by]) for d in dims if split_by in d}):
            rows = [i for i, d in enumerate(dims) if tuple(d.get(split_by, ())) == value]
            label = str(value[0]) if len(value) == 1 else str(list(value))
            result["split"]["groups"][label] = {
                "samples": len(rows),
                **_effects_and_summary([dims[i] for i in rows], err[rows], seed),
            }
    return result


def _edfs(dims: Sequence[dict[str, list[Any]]], err: np.ndarray) -> dict[str, dict[str, list[float]]]:
    out: dict[str, dict[str, list[float]]] = {}
    for name in _names(dims):
        groups: dict[str, list[float]] = {}
        for d, e in zip(dims, err):
            for value in d.get(name, ()):
                groups.setdefault(_label(value), []).append(float(e))
        if len(groups) > 1:
            out[name] = {k: sorted(v) for k, v in sorted(groups.items(), key=lambda kv: _order(kv[0]))}
    return out


def _effects_and_summary(dims: Sequence[dict[str, list[Any]]], err: np.ndarray, seed: int) -> dict[str, Any]:
    found = [e for name in _names(dims) if (e := _effect(name, dims, err, seed)) is not None]
    # Many dimensions are compared at once, so a fixed 2-spread rule calls some noise "clear"
    # (benchmarks/space_analysis_check.py found one on the digits demo). Bonferroni: each of the
    # m comparisons is held to a two-sided level of 5 % / m, about 3 spreads for m = 20.
    z = NormalDist().inv_cdf(1 - 0.05 / (2 * max(len(found), 1)))
    effects = [dataclasses.replace(e, z=z) for e in found]
    effects.sort(key=lambda e: -e.difference)
    return {
        "effects": [
            {
                "dimension": e.dimension,
                "best": e.best,
                "worst": e.worst,
                "difference": e.difference,
                "spread": e.spread,
                "clear": e.clear,
                "z": e.z,
                "counts": e.counts,
            }
            for e in effects
        ],
        "summary": [e.sentence() for e in effects[:8]],
    }


def _effect(name: str, dims: Sequence[dict[str, list[Any]]], err: np.ndarray, seed: int) -> Effect | None:
    """The worst-minus-best difference of mean error of one dimension, with its bootstrap spread."""
    rows = [(i, v) for i, d in enumerate(dims) for v in d.get(name, ())]
    choices = sorted({v for _, v in rows}, key=_order)
    counts = {_label(c): sum(1 for _, v in rows if v == c) for c in choices}
    usable = [c for c in choices if counts[_label(c)] >= MIN_GROUP]
    if len(usable) < 2:
        return None
    subnet = np.array([i for i, _ in rows])
    value = np.array([usable.index(v) if v in usable else -1 for _, v in rows])

    def means(weights: np.ndarray) -> np.ndarray:
        w = weights[subnet]  # how often each (subnet, layer) row was drawn
        return np.array(
            [np.sum(w * err[subnet] * (value == k)) / max(np.sum(w * (value == k)), 1e-12) for k in range(len(usable))]
        )

    observed = means(np.ones(len(dims)))
    best, worst = int(np.argmin(observed)), int(np.argmax(observed))
    rng = np.random.default_rng([seed, 4])
    diffs = []
    for _ in range(BOOTSTRAPS):
        weights = np.bincount(rng.integers(0, len(dims), len(dims)), minlength=len(dims)).astype(float)
        m = means(weights)
        if np.all(np.isfinite(m)):
            diffs.append(m[worst] - m[best])
    spread = float(np.std(diffs)) if diffs else math.nan
    return Effect(
        dimension=name,
        best=_plain(usable[best]),
        worst=_plain(usable[worst]),
        difference=float(observed[worst] - observed[best]),
        spread=spread,
        counts=counts,
    )


def _names(dims: Sequence[dict[str, list[Any]]]) -> list[str]:
    """Pooled dimensions first, then per layer in layer order."""
    names = {n for d in dims for n in d}
    pooled = [g for g in (*_GENES, "depth") if g in names]
    layered = sorted(
        (n for n in names if "@" in n), key=lambda n: (int(n.split("@")[1]), _GENES.index(n.split("@")[0]))
    )
    return pooled + layered


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


def _label(value: Any) -> str:
    return str(_plain(value)).lower() if isinstance(value, bool) else str(_plain(value))


def _order(label: Any) -> tuple[int, float | str]:
    """Numbers in numeric order, then text (``false`` before ``true``)."""
    try:
        return (0, float(label))
    except (TypeError, ValueError):
        return (1, str(label))
