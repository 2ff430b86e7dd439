"""Analytic params and MACs of skeleton layers, and the cheapest/dearest subnet of a space.

The truth for a candidate is the backend's count on the extracted model (SPEC 6); these formulas
mirror the blocks the backends build (inverted residual: optional 1x1 expand, kxk depthwise,
1x1 project, each conv without bias and followed by BatchNorm) so that the space's min/max cost can
be known before anything is built. tests/costs checks them against the backend's counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from dopt.space import Arch, LayerChoice, SearchSpace

__all__ = ["Costs", "CostModel", "layer_costs", "out_hw"]


@dataclass(frozen=True)
class Costs:
    """Trainable parameters and multiply-accumulates of a whole model at batch 1."""

    size: int
    flops: int

    def __add__(self, other: Costs) -> Costs:
        return Costs(self.size + other.size, self.flops + other.flops)

    def get(self, kind: str) -> int:
        if kind == "size":
            return self.size
        if kind == "flops":
            return self.flops
        raise ValueError(f"no analytic cost for {kind!r}")


def out_hw(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    # Odd kernels padded by k // 2: output = floor((n - 1) / s) + 1 for every kernel size.
    return ((hw[0] - 1) // stride + 1, (hw[1] - 1) // stride + 1)


def layer_costs(choice: LayerChoice, cin: int, stride: int, hw: tuple[int, int]) -> Costs:
    """Params and MACs of one kept layer with ``cin`` input channels at spatial size ``hw``."""
    if choice.skip:
        return Costs(0, 0)
    k, cout = choice.kernel, choice.out_channels
    hidden = cin * choice.expand
    ho, wo = out_hw(hw, stride)
    size = hidden * k * k + 2 * hidden + hidden * cout + 2 * cout  # depthwise + BN, project + BN
    flops = hidden * k * k * ho * wo + hidden * cout * ho * wo
    if choice.expand != 1:
        size += cin * hidden + 2 * hidden
        flops += cin * hidden * hw[0] * hw[1]
    return Costs(size, flops)


class CostModel:
    """Costs of whole models: ``fixed`` (PreNet + PostNet, measured once) plus the skeleton.

    Args:
        space: the search space.
        in_hw: spatial size of PreNet's output.
        fixed: params and MACs of PreNet and PostNet together.
    """

    def __init__(self, space: SearchSpace, in_hw: tuple[int, int], fixed: Costs) -> None:
        self.space = space
        self.in_hw = in_hw
        self.fixed = fixed

    def costs(self, arch: Arch) -> Costs:
        total = self.fixed
        cin, hw = self.space.in_channels, self.in_hw
        for spec, choice in zip(self.space.layers, arch):
            total = total + layer_costs(choice, cin, spec.stride, hw)
            if not choice.skip:
                cin = choice.out_channels
            hw = out_hw(hw, spec.stride)
        return total

    def cost_range(self, kind: str) -> tuple[int, int]:
        """Exact (min, max) of a cost over every subnet of the space.

        Layers interact only through the width one passes to the next, so a dynamic programme
        over that width is exact where per-layer minima would not be.
        """
        best: dict[int, tuple[int, int]] = {self.space.in_channels: (0, 0)}
        hw = self.in_hw
        for spec in self.space.layers:
            nxt: dict[int, tuple[int, int]] = {}
            for cin, (lo, hi) in best.items():
                for choice in self.space.layer_options(spec):
                    c = layer_costs(choice, cin, spec.stride, hw).get(kind)
                    cout = cin if choice.skip else choice.out_channels
                    old = nxt.get(cout)
                    nxt[cout] = (lo + c, hi + c) if old is None else (min(old[0], lo + c), max(old[1], hi + c))
            best = nxt
            hw = out_hw(hw, spec.stride)
        fixed = self.fixed.get(kind)
        return (fixed + min(v[0] for v in best.values()), fixed + max(v[1] for v in best.values()))


