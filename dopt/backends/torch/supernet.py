"""The PyTorch supernet: PreNet -> slice-op skeleton -> PostNet, one active subnet at a time."""

from __future__ import annotations

import copy
from typing import cast

import torch
from torch import nn

from dopt.backends.blocks import conv_bn_slices
from dopt.backends.torch.slicing import SliceBatchNorm2d, SliceConv2d, SliceDepthwiseConv2d
from dopt.backends.torch.static import InvertedResidual, Net
from dopt.space import Arch, LayerPlan, SearchSpace

__all__ = ["SuperBlock", "Supernet"]


class SuperBlock(nn.Module):
    """An inverted-residual block whose kernel, expansion and widths are chosen per subnet."""

    def __init__(self, max_in: int, max_out: int, stride: int, max_kernel: int, max_expand: int) -> None:
        super().__init__()
        max_hidden = max_in * max_expand
        self.expand_conv = SliceConv2d(max_in, max_hidden)
        self.expand_bn = SliceBatchNorm2d(max_hidden)
        self.depthwise_conv = SliceDepthwiseConv2d(max_hidden, max_kernel, stride)
        self.depthwise_bn = SliceBatchNorm2d(max_hidden)
        self.project_conv = SliceConv2d(max_hidden, max_out)
        self.project_bn = SliceBatchNorm2d(max_out)
        self.act = nn.ReLU6(inplace=True)
        self.plan: LayerPlan | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        plan = self.plan
        assert plan is not None, "set_active() first"
        out = x
        if plan.choice.expand != 1:
            out = self.act(self.expand_bn(self.expand_conv(out, plan.hidden)))
        out = self.act(self.depthwise_bn(self.depthwise_conv(out, plan.choice.kernel)))
        out = self.project_bn(self.project_conv(out, plan.choice.out_channels))
        return x + out if plan.residual else out

    def extract(self) -> InvertedResidual:
        """A static block with copies of the active slices (same outputs in eval mode)."""
        plan = self.plan
        assert plan is not None
        c = plan.choice
        # Built on the meta device and then allocated uninitialised on the supernet's: every tensor
        # is overwritten below, so random initialisation would only cost time per candidate.
        with torch.device("meta"):
            block = InvertedResidual(plan.in_channels, c.out_channels, c.kernel, plan.spec.stride, c.expand)
        block = block.to_empty(device=self.project_conv.weight.device)
        with torch.no_grad():
            for part, args, channels in conv_bn_slices(plan):
                conv, bn = getattr(self, f"{part}_conv"), getattr(self, f"{part}_bn")
                _copy_conv_bn(getattr(block, part), conv.active_weight(*args), bn, channels)
        return block


def _copy_conv_bn(dst: nn.Sequential, weight: torch.Tensor, src_bn: nn.BatchNorm2d, c: int) -> None:
    """Copy a conv's active weight and the first ``c`` channels of a BatchNorm into ``dst[0:2]``."""
    conv, bn = cast(nn.Conv2d, dst[0]), cast(nn.BatchNorm2d, dst[1])
    conv.weight.copy_(weight)
    bn.weight.copy_(src_bn.weight[:c])
    bn.bias.copy_(src_bn.bias[:c])
    for name in ("running_mean", "running_var"):
        getattr(bn, name).copy_(getattr(src_bn, name)[:c])
    cast(torch.Tensor, bn.num_batches_tracked).copy_(cast(torch.Tensor, src_bn.num_batches_tracked))
    bn.eps, bn.momentum = src_bn.eps, src_bn.momentum


class Supernet(nn.Module):
    """PreNet, one SuperBlock per skeleton layer, PostNet.

    Args:
        pre: the user's PreNet.
        post: the user's PostNet.
        space: the search space (layer shapes, choices, feature_choose via fixed layers).
        feature_choose: skeleton layers whose outputs PostNet also receives (docs/user-module.md#pytorch).
    """

    def __init__(self, pre: nn.Module, post: nn.Module, space: SearchSpace, feature_choose: tuple[int, ...]) -> None:
        super().__init__()
        self.pre = pre
        self.blocks = nn.ModuleList(
            SuperBlock(s.max_in, s.max_out, s.stride, max(space.kernel_sizes), max(space.expand_ratios))
            for s in space.layers
        )
        self.post = post
        self.space = space
        self.feature_choose = tuple(feature_choose)
        self.active: Arch | None = None
        self._kept: list[bool] = []

    def set_active(self, arch: Arch) -> None:
        """Select the subnet that ``forward`` runs."""
        plans = {p.spec.index: p for p in self.space.plan(arch)}
        for i, block in enumerate(self._super_blocks()):
            block.plan = plans.get(i)
        self._kept = [i in plans for i in range(len(self.blocks))]
        self.active = arch

    def backbone(self, x: torch.Tensor) -> torch.Tensor:
        """PreNet and the active subnet's layers, without PostNet: what pre-training classifies."""
        self._require_active()
        x = self.pre(x)
        for i, block in enumerate(self.blocks):
            if self._kept[i]:
                x = block(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        assert self.active is not None, "set_active() first"
        x = self.pre(x)
        features = []
        for i, block in enumerate(self.blocks):
            if self._kept[i]:
                x = block(x)
            if i in self.feature_choose:
                features.append(x)
        if self.feature_choose:
            return self.post(features + [x])
        return self.post(x)

    def extract(self) -> Net:
        """The active subnet as a plain static model sharing nothing with the supernet."""
        self._require_active()
        kept = [i for i, k in enumerate(self._kept) if k]
        net = Net(copy.deepcopy(self.pre), copy.deepcopy(self.post), [], self.static_features())
        blocks = self._super_blocks()
        net.layers = nn.ModuleList(blocks[i].extract() for i in kept)
        return net

    def static_features(self, arch: Arch | None = None) -> tuple[int, ...]:
        """feature_choose as positions among the kept layers of ``arch`` (default: the active one)."""
        return self.space.kept_positions(arch if arch is not None else self._require_active(), self.feature_choose)

    def layer_rows(self, arch: Arch) -> list[tuple[int, int, int, int, int]]:
        return self.space.layer_rows(arch)

    def _super_blocks(self) -> list[SuperBlock]:
        return [cast(SuperBlock, b) for b in self.blocks]

    def _require_active(self) -> Arch:
        assert self.active is not None, "set_active() first"
        return self.active
