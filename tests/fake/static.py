"""Plain numpy blocks of a subnet extracted from the fake supernet.

This file's source (below the imports) is copied verbatim into every result script the fake
backend writes, as dopt/backends/torch/static.py is into PyTorch's: numpy only, no dopt import.

The fake lives in a "1x1 world": every feature map is constant over space, so a block maps one
vector per sample to another. Its parameters have exactly the shapes of the real inverted-residual
block (1x1 expand, kxk depthwise, 1x1 project, each followed by BatchNorm), so parameter counts
are real, and a constant map through a depthwise kernel is scaled by the sum of its taps.
"""

from __future__ import annotations

import numpy as np

EPS = 1e-5


class BatchNorm:
    """Per-channel affine normalisation with running statistics (set by :meth:`calibrate`)."""

    def __init__(self, channels: int):
        self.gamma, self.beta = np.ones(channels), np.zeros(channels)
        self.mean, self.var = np.zeros(channels), np.ones(channels)

    def __call__(self, x, calibrate=False):
        if calibrate:  # the exact statistics of this input, as BN recalibration sets them
            self.mean, self.var = x.mean(axis=0), x.var(axis=0)
        return self.gamma * (x - self.mean) / np.sqrt(self.var + EPS) + self.beta


class InvertedResidual:
    """Inverted residual block: 1x1 expand (unless expand_ratio is 1), kxk depthwise, 1x1 project."""

    def __init__(self, in_channels, out_channels, kernel_size, stride, expand_ratio):
        hidden = in_channels * expand_ratio
        self.row = (in_channels, out_channels, kernel_size, stride, expand_ratio)
        self.use_residual = stride == 1 and in_channels == out_channels
        # expand
        self.expand = np.zeros((in_channels, hidden)) if expand_ratio != 1 else None
        self.expand_bn = BatchNorm(hidden) if expand_ratio != 1 else None
        # depthwise
        self.depthwise = np.zeros((hidden, kernel_size, kernel_size))
        self.depthwise_bn = BatchNorm(hidden)
        # project
        self.project = np.zeros((hidden, out_channels))
        self.project_bn = BatchNorm(out_channels)

    def forward(self, x, calibrate=False):
        h = x
        if self.expand is not None:
            h = np.maximum(self.expand_bn(h @ self.expand, calibrate), 0.0)
        h = np.maximum(self.depthwise_bn(h * self.depthwise.sum(axis=(1, 2)), calibrate), 0.0)
        out = self.project_bn(h @ self.project, calibrate)
        return x + out if self.use_residual else out

    def arrays(self):
        """Every parameter and BatchNorm statistic by name, as the weights file holds them."""
        named = {"depthwise": self.depthwise, "project": self.project}
        if self.expand is not None:
            named["expand"] = self.expand
        bns = {"depthwise_bn": self.depthwise_bn, "project_bn": self.project_bn}
        if self.expand_bn is not None:
            bns["expand_bn"] = self.expand_bn
        for name, bn in bns.items():
            named.update({f"{name}.{k}": getattr(bn, k) for k in ("gamma", "beta", "mean", "var")})
        return named

    def parameters(self):
        """The trainable arrays (BatchNorm statistics are not parameters)."""
        return [a for name, a in self.arrays().items() if not name.endswith((".mean", ".var"))]

    def load(self, named):
        for name, value in named.items():
            owner, _, attr = name.rpartition(".")
            target = getattr(self, owner) if owner else self
            if np.shape(getattr(target, attr)) != np.shape(value):
                raise ValueError(f"{name}: shape {np.shape(value)}, expected {np.shape(getattr(target, attr))}")
            setattr(target, attr, np.array(value, dtype=float))


class Net:
    """PreNet -> searched layers -> PostNet, on one vector per sample between PreNet and PostNet.

    Args:
        pre: the user's PreNet instance.
        post: the user's PostNet instance.
        layers: one (in_channels, out_channels, kernel_size, stride, expand_ratio) row per layer.
        feature_layers: unused by the fake (classification only); kept for the scripts' layout.
    """

    def __init__(self, pre, post, layers, feature_layers=()):
        self.pre, self.post = pre, post
        self.layers = [InvertedResidual(*row) for row in layers]
        self.feature_layers = list(feature_layers)

    def forward(self, inputs, calibrate=False):
        x = self.pre.forward(inputs)
        h, w = x.shape[2:]
        v = x.mean(axis=(2, 3))
        for layer in self.layers:
            v = layer.forward(v, calibrate)
            stride = layer.row[3]
            h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
        return self.post.forward(np.broadcast_to(v[:, :, None, None], v.shape + (h, w)))

    def __call__(self, inputs):
        return self.forward(inputs)

    def arrays(self):
        return {f"layers.{i}.{k}": v for i, layer in enumerate(self.layers) for k, v in layer.arrays().items()}

    def load(self, named):
        """Load what :meth:`arrays` gave (a dict, or an open .npz file)."""
        names = set(named)
        if names != set(self.arrays()):
            raise ValueError(f"weights of another model: {sorted(names ^ set(self.arrays()))[:3]} differ")
        for i, layer in enumerate(self.layers):
            prefix = f"layers.{i}."
            layer.load({k[len(prefix) :]: named[k] for k in names if k.startswith(prefix)})
