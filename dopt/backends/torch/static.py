"""Plain static blocks of an extracted subnet.

This file's source (below the imports) is copied verbatim into every result script, so it must
stay standalone: torch only, no dopt import. The block layout follows torchvision's MobileNetV2.
"""

from __future__ import annotations

from typing import Final, List

import torch
from torch import nn


class InvertedResidual(nn.Module):
    """Inverted residual block: 1x1 expand (unless expand_ratio is 1), kxk depthwise, 1x1 project."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int, expand_ratio: int):
        super().__init__()
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        # expand
        self.expand = nn.Sequential()
        if expand_ratio != 1:
            self.expand = nn.Sequential(
                nn.Conv2d(in_channels, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(inplace=True)
            )
        # depthwise
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, kernel_size, stride, kernel_size // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(inplace=True),
        )
        # project
        self.project = nn.Sequential(nn.Conv2d(hidden, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.use_residual else out


class Net(nn.Module):
    """PreNet -> searched layers -> PostNet.

    Args:
        pre: the user's PreNet instance.
        post: the user's PostNet instance.
        layers: one (in_channels, out_channels, kernel_size, stride, expand_ratio) row per layer.
        feature_layers: positions in ``layers`` whose outputs PostNet also receives, in order,
            followed by the last layer's output (the scenario's feature_choose); empty: PostNet
            receives the last layer's output alone.
    """

    feature_layers: List[int]  # annotated for TorchScript
    # A constant to TorchScript, which then compiles only the branch taken: a PostNet written for
    # one tensor never meets the list branch, and a list-taking PostNet never the tensor one.
    takes_list: Final[bool]

    def __init__(self, pre: nn.Module, post: nn.Module, layers: list, feature_layers: tuple = ()):
        super().__init__()
        self.pre = pre
        self.layers = nn.ModuleList(InvertedResidual(*row) for row in layers)
        self.post = post
        self.feature_layers = list(feature_layers)
        self.takes_list = len(self.feature_layers) > 0

    def forward(self, x: torch.Tensor):
        x = self.pre(x)
        if not self.takes_list:
            for layer in self.layers:
                x = layer(x)
            return self.post(x)
        features: List[torch.Tensor] = []
        for i, layer in enumerate(self.layers):
            x = layer(x)
            if i in self.feature_layers:
                features.append(x)
        features.append(x)
        return self.post(features)
