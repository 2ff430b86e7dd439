"""Slice ops: convolutions and BatchNorm whose active part is a slice of one shared tensor.

Smaller kernels are centre crops of the largest and fewer channels are the first channels, so
every subnet shares one set of weights and the supernet is the size of its largest subnet
(docs/search-space.md#weight-sharing; once-for-all's dynamic ops, GML's Conv2dSlice/BN slice).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["SliceConv2d", "SliceDepthwiseConv2d", "SliceBatchNorm2d"]


def _centre_crop(weight: torch.Tensor, kernel: int) -> torch.Tensor:
    full = weight.shape[-1]
    if kernel == full:
        return weight
    start = (full - kernel) // 2
    return weight[..., start : start + kernel, start : start + kernel]


class SliceConv2d(nn.Module):
    """A bias-free convolution over the first ``in``/``out`` channels of its widest weight."""

    def __init__(self, max_in: int, max_out: int, max_kernel: int = 1, stride: int = 1) -> None:
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(max_out, max_in, max_kernel, max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def active_weight(self, cin: int, cout: int, kernel: int) -> torch.Tensor:
        out_full, in_full = self.weight.shape[:2]
        if cout == out_full and cin == in_full:  # no slice: no copy forward, no scatter backward
            return _centre_crop(self.weight, kernel)
        return _centre_crop(self.weight[:cout, :cin], kernel)

    def forward(self, x: torch.Tensor, cout: int, kernel: int = 1) -> torch.Tensor:
        weight = self.active_weight(x.shape[1], cout, kernel)
        return F.conv2d(x, weight, None, self.stride, kernel // 2)


class SliceDepthwiseConv2d(nn.Module):
    """A bias-free depthwise convolution over the first channels, kernel centre-cropped."""

    def __init__(self, max_channels: int, max_kernel: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        self.weight = nn.Parameter(torch.empty(max_channels, 1, max_kernel, max_kernel))
        nn.init.kaiming_normal_(self.weight, mode="fan_out")

    def active_weight(self, channels: int, kernel: int) -> torch.Tensor:
        if channels == self.weight.shape[0]:
            return _centre_crop(self.weight, kernel)
        return _centre_crop(self.weight[:channels], kernel)

    def forward(self, x: torch.Tensor, kernel: int) -> torch.Tensor:
        channels = x.shape[1]
        return F.conv2d(x, self.active_weight(channels, kernel), None, self.stride, kernel // 2, 1, channels)


class SliceBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm over the first channels of its input.

    It subclasses ``nn.BatchNorm2d`` so that BN recalibration treats it like any BatchNorm of the
    user's PreNet/PostNet (``momentum=None`` gives the exact cumulative average, docs/search-space.md#evaluating-a-candidate).
    Running statistics are updated in place through views of the first channels.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = x.shape[1]
        if c == self.num_features:
            return super().forward(x)
        factor = 0.0
        mean, var, count = self.running_mean, self.running_var, self.num_batches_tracked
        if self.training and count is not None:
            count.add_(1)
            factor = 1.0 / float(count) if self.momentum is None else self.momentum
        use_batch_stats = self.training or mean is None
        return F.batch_norm(
            x,
            mean[:c] if mean is not None else None,
            var[:c] if var is not None else None,
            self.weight[:c],
            self.bias[:c],
            use_batch_stats,
            factor,
            self.eps,
        )
