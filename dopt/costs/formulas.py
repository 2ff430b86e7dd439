"""The analytic cost of one searched layer: parameters and MACs of an inverted-residual block
at a given input (docs/costs.md#analytic-formulas)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from dopt.costs.values import Costs

if TYPE_CHECKING:
    from dopt.space import LayerChoice

__all__ = ["out_hw", "layer_costs"]


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
