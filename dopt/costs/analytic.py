"""Costs of whole models and of the search space, from the kinds' per-layer formulas (docs/costs.md).

The truth for a candidate is what the backend counts on the extracted model; these formulas mirror
the blocks the backends build (inverted residual: optional 1x1 expand, kxk depthwise, 1x1
project, each conv without bias and followed by BatchNorm) so that the space's min/max cost can be
known before anything is built. tests/costs checks them against the backends' counts.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np

from dopt.costs.formulas import layer_costs, out_hw
from dopt.costs.kinds import CostKind, get, kinds
from dopt.costs.values import Costs
from dopt.space import Arch, LayerChoice, SearchSpace

__all__ = ["Costs", "CostModel", "LayerTable", "layer_costs", "out_hw"]


class LayerTable(Protocol):
    """Per-layer costs measured for a run, in place of a kind's formula (a latency table)."""

    def layer(self, choice: LayerChoice, cin: int, stride: int, hw: tuple[int, int]) -> float: ...

    def fixed(self, fixed: Costs) -> float: ...


class CostModel:
    """Analytic costs of whole models: ``fixed`` (PreNet + PostNet, counted once) plus the skeleton.

    Args:
        space: the search space.
        in_hw: spatial size of PreNet's output.
        fixed: what the backend counted on PreNet and PostNet together.
        tables: per-layer costs measured for this run, by kind name (the latency table).
        counted: kinds without a formula or table whose value :meth:`measure` is always given
            (latency measured by the user's ``latency_func``).
    """

    def __init__(
        self,
        space: SearchSpace,
        in_hw: tuple[int, int],
        fixed: Costs,
        tables: Mapping[str, LayerTable] | None = None,
        counted: tuple[str, ...] = (),
    ) -> None:
        self.space = space
        self.in_hw = in_hw
        self.fixed = fixed
        self.tables = dict(tables or {})
        self.counted = counted

    def kinds(self) -> tuple[CostKind, ...]:
        """The kinds this run computes: those with a formula, a table or a measurement."""
        return tuple(k for k in kinds() if (k.formula or k.name in self.tables or k.name in self.counted))

    def _source(self, k: CostKind) -> CostKind | LayerTable:
        return self.tables.get(k.name, k)

    def cost(self, kind: str | CostKind, arch: Arch) -> float:
        """The analytic (or tabled) cost of ``arch`` of one kind."""
        k = self._source(get(kind) if isinstance(kind, str) else kind)
        total = k.fixed(self.fixed)
        cin, hw = self.space.in_channels, self.in_hw
        for spec, choice in zip(self.space.layers, arch):
            if not choice.skip:
                total += k.layer(choice, cin, spec.stride, hw)
                cin = choice.out_channels
            hw = out_hw(hw, spec.stride)
        return total

    def costs(self, arch: Arch) -> Costs:
        """Analytic costs of ``arch`` of every kind this run computes without measuring."""
        return Costs({k.name: self.cost(k, arch) for k in self.kinds() if k.name not in self.counted})

    def measure(self, arch: Arch, counted: Mapping[str, float]) -> Costs:
        """Every kind's cost of a candidate: the backend's count on its extracted model
        (``counted``) for measured kinds and ``counted`` ones, the formula or table for the others."""
        return Costs(
            {
                k.name: counted.get(k.name) if k.measured or k.name in self.counted else self.cost(k, arch)
                for k in self.kinds()
            }
        )

    def sampled(self, kind: str, samples: int = 2000) -> np.ndarray:
        """Costs of ``kind`` of ``samples`` subnets drawn uniformly, as NSGA-II's first population
        is, from a fixed seed (docs/search.md#a-tiny-feasible-region)."""
        rng = np.random.default_rng(0)
        k = get(kind)
        return np.array([self.cost(k, self.space.decode(self.space.sample(rng))) for _ in range(samples)])

    def cost_range(self, kind: str) -> tuple[float, float]:
        """Exact (min, max) of a cost over every subnet of the space.

        Layers interact only through the width one passes to the next, so a dynamic programme
        over that width is exact where per-layer minima would not be.
        """
        k = self._source(get(kind))
        best: dict[int, tuple[float, float]] = {self.space.in_channels: (0, 0)}
        hw = self.in_hw
        for spec in self.space.layers:
            nxt: dict[int, tuple[float, float]] = {}
            for cin, (lo, hi) in best.items():
                for choice in self.space.layer_options(spec):
                    c = 0 if choice.skip else k.layer(choice, cin, spec.stride, hw)
                    cout = cin if choice.skip else choice.out_channels
                    old = nxt.get(cout)
                    nxt[cout] = (lo + c, hi + c) if old is None else (min(old[0], lo + c), max(old[1], hi + c))
            best = nxt
            hw = out_hw(hw, spec.stride)
        fixed = k.fixed(self.fixed)
        return (fixed + min(v[0] for v in best.values()), fixed + max(v[1] for v in best.values()))
