"""Every evaluated candidate of a search, its Pareto front and hypervolume (docs/search.md#nsga-ii)."""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from dopt.costs import Costs, kinds, names
from dopt.scenario.model import Constraint
from dopt.space import Arch, arch_to_json

__all__ = ["Candidate", "Archive"]


@dataclass(kw_only=True)
class Candidate:
    """One evaluated sub-network.

    ``metric`` is None for an infeasible candidate (rejected by cost, never evaluated). A NaN
    metric returned by user code is kept as ``float('nan')`` and ranks below every number.
    Fields are normalised to plain Python types so that records are JSON-ready.
    """

    encoding: tuple[int, ...]
    arch: Arch
    metric: float | None
    costs: Costs  # by kind name; a kind not measured for this candidate is absent
    feasible: bool
    generation: int  # 1-based: the initial population is generation 1
    eval_seconds: float = 0.0

    def __post_init__(self) -> None:
        # Accept numpy scalars and lists from the search; store what json writes exactly.
        self.encoding = tuple(int(g) for g in self.encoding)
        self.arch = tuple(self.arch)
        self.metric = None if self.metric is None else float(self.metric)
        self.costs = Costs({k: _plain_number(v) for k, v in self.costs.items()})
        self.feasible = bool(self.feasible)
        self.generation = int(self.generation)
        self.eval_seconds = float(self.eval_seconds)

    def cost(self, kind: str) -> float:
        """The candidate's cost of one registered kind (``"size"``, ``"flops"``, ...).

        Raises:
            ValueError: a kind that is not registered, or that this candidate was not measured for.
        """
        value = self.costs.get(kind)
        if value is None:
            if kind not in names():
                raise ValueError(f"unknown cost kind {kind!r}; expected one of {', '.join(names())}")
            raise ValueError(f"{kind} of candidate {list(self.encoding)} was not measured")
        return float(value)

    @property
    def has_metric(self) -> bool:
        """True when the metric is a finite number (the candidate can rank on the front)."""
        return self.metric is not None and math.isfinite(self.metric)


class Archive:
    """Evaluated candidates in evaluation order, keyed by canonical encoding.

    Args:
        constraint: the scenario's constraint; its kind is the cost objective, its value the
            feasibility bound and the hypervolume reference.
    """

    def __init__(self, constraint: Constraint) -> None:
        self.constraint = constraint
        self._candidates: list[Candidate] = []
        self._by_encoding: dict[tuple[int, ...], int] = {}

    def add(self, c: Candidate) -> None:
        """Append a candidate.

        Raises:
            ValueError: a candidate with the same encoding is already in the archive.
        """
        if c.encoding in self._by_encoding:
            raise ValueError(
                f"encoding {list(c.encoding)} is already in the archive "
                f"(index {self._by_encoding[c.encoding]}); look it up with get() before evaluating"
            )
        self._by_encoding[c.encoding] = len(self._candidates)
        self._candidates.append(c)

    def get(self, encoding: Sequence[int]) -> Candidate | None:
        """The candidate with this canonical encoding, or None."""
        i = self._by_encoding.get(tuple(int(g) for g in encoding))
        return None if i is None else self._candidates[i]

    def __len__(self) -> int:
        return len(self._candidates)

    def __iter__(self) -> Iterator[Candidate]:
        return iter(self._candidates)

    def __getitem__(self, i: int) -> Candidate:
        return self._candidates[i]

    def front(self) -> list[int]:
        """The Pareto front over feasible candidates with a finite metric.

        Maximises the metric and minimises ``cost(constraint.kind)``. Candidates equal in both
        keep only the earliest one.

        Returns:
            Archive indices sorted by ascending cost (then higher metric, then archive order);
            position ``k`` is the result numbered ``N = k + 1``.
        """
        kind = self.constraint.kind
        ranked = sorted(
            (cost, -metric, i)
            for i, c in enumerate(self._candidates)
            if c.feasible
            and (metric := c.metric) is not None
            and math.isfinite(metric)
            and math.isfinite(cost := c.cost(kind))
        )
        # Sorted by cost, an entry is dominated (or an exact duplicate) exactly when an
        # earlier one has a metric at least as high; one sweep keeps the rest.
        front: list[int] = []
        best = -math.inf
        for _, neg_metric, i in ranked:
            if -neg_metric > best:
                front.append(i)
                best = -neg_metric
        return front

    def hypervolume(self) -> float:
        """Hypervolume of the feasible candidates against the run's fixed reference point.

        Points are ``(-metric, cost / constraint.value)`` and the reference is ``(0, 1)``
        (metric 0, cost at the constraint), so values of different generations compare.

        Returns:
            The dominated area, 0.0 when no candidate dominates the reference point.
        """
        kind, value = self.constraint.kind, float(self.constraint.value)
        # The front holds only finite metrics; a point dominates the reference only if its
        # metric is above 0 and its cost below the constraint.
        points = []
        for i in self.front():
            metric, cost = self._candidates[i].metric or 0.0, self._candidates[i].cost(kind)
            if metric > 0 and cost < value:
                points.append((-metric, cost / value))
        if not points:
            return 0.0
        # Imported here: pymoo's indicator loads moocore (~0.15 s), which reading or writing
        # results does not need.
        from pymoo.indicators.hv import HV

        return float(HV(ref_point=np.array([0.0, 1.0]))(np.array(points, dtype=float)))

    def best_metric(self) -> float | None:
        """Highest metric among feasible candidates; None when there is none (NaN ranks last)."""
        metrics = [c.metric for c in self._candidates if c.feasible and c.metric is not None]
        if not metrics:
            return None
        numbers = [m for m in metrics if not math.isnan(m)]
        return max(numbers) if numbers else math.nan

    def to_records(self) -> list[dict[str, Any]]:
        """JSON-ready records of every candidate, in archive order.

        Each record has the ``pareto.json`` archive fields plus ``eval_seconds``. A NaN metric
        becomes None (JSON has no NaN): a feasible candidate always has a metric, so a reader
        tells the two apart.
        """
        return [_record(c) for c in self._candidates]


def _record(c: Candidate) -> dict[str, Any]:
    return {
        "encoding": list(c.encoding),
        "arch": arch_to_json(c.arch),
        "metric": None if c.metric is None or math.isnan(c.metric) else c.metric,
        **{k.column: c.costs.get(k.name) for k in kinds()},
        "feasible": c.feasible,
        "generation": c.generation,
        "eval_seconds": c.eval_seconds,
    }


def _plain_number(v: float) -> float:
    """numpy scalars as Python numbers; integral counts stay ints, so JSON writes them exactly."""
    if isinstance(v, bool):
        raise TypeError("a cost is a number, not a bool")
    if isinstance(v, int) or (hasattr(v, "dtype") and getattr(v.dtype, "kind", "") in "iu"):
        return int(v)
    return float(v)
