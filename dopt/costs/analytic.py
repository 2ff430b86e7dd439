"""Costs of whole models, and the analytic per-layer formulas of the built-in kinds (docs/costs.md).

The truth for a candidate is what the backend counts on the extracted model; these formulas mirror
the blocks the backends build (inverted residual: optional 1x1 expand, kxk depthwise, 1x1
project, each conv without bias and followed by BatchNorm) so that the space's min/max cost can be
known before anything is built. tests/costs checks them against the backends' counts.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Protocol

import numpy as np

from dopt.costs.kinds import CostKind, get, kinds, register
from dopt.space import Arch, LayerChoice, SearchSpace

__all__ = ["Costs", "CostModel", "LayerTable", "layer_costs", "out_hw"]


class Costs(Mapping[str, float]):
    """Costs of one model by kind name, e.g. ``Costs(size=1200, flops=56000)``; immutable.

    A kind this model was not measured for is absent (``costs.get("latency")`` is None).
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, float | None] | None = None, /, **kw: float | None) -> None:
        merged = {**(values or {}), **kw}
        self._values: dict[str, float] = {k: v for k, v in merged.items() if v is not None}

    def __getitem__(self, kind: str) -> float:
        return self._values[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._values) == dict(other)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        return "Costs(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"


def out_hw(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    # Odd kernels padded by k // 2: output = floor((n - 1) / s) + 1 for every kernel size.
    return ((hw[0] - 1) // stride + 1, (hw[1] - 1) // stride + 1)


def layer_costs(choice: LayerChoice, cin: int, stride: int, hw: tuple[int, int]) -> Costs:
    """Params and MACs of one kept layer with ``cin`` input channels at spatial size ``hw``."""
    if choice.skip:
        return Costs(size=0, flops=0)
    k, cout = choice.kernel, choice.out_channels
    hidden = cin * choice.expand
    ho, wo = out_hw(hw, stride)
    size = hidden * k * k + 2 * hidden + hidden * cout + 2 * cout  # depthwise + BN, project + BN
    flops = hidden * k * k * ho * wo + hidden * cout * ho * wo
    if choice.expand != 1:
        size += cin * hidden + 2 * hidden
        flops += cin * hidden * hw[0] * hw[1]
    return Costs(size=size, flops=flops)


class Size(CostKind):
    """Trainable parameters of the whole model, PreNet and PostNet included."""

    name, unit, column, header, measured = "size", "parameters", "size", "model_param_size", True

    def layer(self, choice: LayerChoice, cin: int, stride: int, hw: tuple[int, int]) -> float:
        return layer_costs(choice, cin, stride, hw)["size"]


class Flops(CostKind):
    """Multiply-accumulates of the whole model at batch 1."""

    name, unit, column, header, measured = "flops", "MACs", "flops", "flops", True

    def layer(self, choice: LayerChoice, cin: int, stride: int, hw: tuple[int, int]) -> float:
        return layer_costs(choice, cin, stride, hw)["flops"]


class Latency(CostKind):
    """Milliseconds at batch 1 on the target device. No formula: the run's latency table predicts
    each layer (dopt/latency, docs/latency.md), or the user's ``latency_func`` measures the whole
    candidate; a run that does not constrain latency does not compute it."""

    name, unit, column, header, measured, formula = "latency", "ms", "latency_ms", "latency_ms", False, False


for _kind in (Size(), Flops(), Latency()):
    register(_kind)


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
        return tuple(
            k for k in kinds() if k.available and (k.formula or k.name in self.tables or k.name in self.counted)
        )

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
