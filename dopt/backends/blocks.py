"""The searched block both backends build, framework-free: an inverted residual whose convolutions
are each followed by BatchNorm (optional 1x1 expand, kxk depthwise, 1x1 project; docs/costs.md#analytic-formulas),
and which slice of the supernet's shared tensors each of them takes for one candidate."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dopt.space import LayerPlan

__all__ = ["conv_bn_slices"]


def conv_bn_slices(plan: LayerPlan) -> list[tuple[str, tuple[int, ...], int]]:
    """``(part, slice, channels)`` of every conv + BatchNorm of ``plan``'s block, in order: the part's
    name (``expand``, ``depthwise``, ``project``), the arguments of its convolution's active slice
    (input channels, output channels or kernel size, kernel size), and the BatchNorm channels kept."""
    c = plan.choice
    parts = [
        ("depthwise", (plan.hidden, c.kernel), plan.hidden),
        ("project", (plan.hidden, c.out_channels, 1), c.out_channels),
    ]
    if c.expand != 1:
        parts.insert(0, ("expand", (plan.in_channels, plan.hidden, 1), plan.hidden))
    return parts
