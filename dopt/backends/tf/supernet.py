"""The Keras supernet: PreNet -> slice-op skeleton -> PostNet, one active subnet at a time."""

from __future__ import annotations

import functools
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from dopt.backends.blocks import conv_bn_slices
from dopt.backends.tf.slicing import SliceBatchNorm, SliceConv2D, SliceDepthwiseConv2D
from dopt.backends.tf.static import InvertedResidual, Net
from dopt.space import Arch, LayerPlan, SearchSpace

__all__ = ["SuperBlock", "Supernet"]


class SuperBlock(keras.layers.Layer):
    """An inverted-residual block whose kernel, expansion and widths are chosen per subnet."""

    def __init__(
        self,
        max_in: int,
        max_out: int,
        stride: int,
        max_kernel: int,
        max_expand: int,
        data_format: str = "channels_last",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        max_hidden = max_in * max_expand
        f = data_format
        self.expand_conv = SliceConv2D(max_in, max_hidden, data_format=f)
        self.expand_bn = SliceBatchNorm(max_hidden, f)
        self.depthwise_conv = SliceDepthwiseConv2D(max_hidden, max_kernel, stride, f)
        self.depthwise_bn = SliceBatchNorm(max_hidden, f)
        self.project_conv = SliceConv2D(max_hidden, max_out, data_format=f)
        self.project_bn = SliceBatchNorm(max_out, f)
        self.plan: LayerPlan | None = None
        self._traced: dict[tuple[bool, bool, bool], Any] = {}

    def forward(self, x: Any, training: bool) -> Any:
        """The active block on ``x`` through a ``tf.function`` traced once per (expansion or not,
        residual or not, training): kernel size and widths go in as scalar tensors.

        Eager ops cost ~50 µs each in Python, and a block is ~40 ops forward and backward; a
        traced block is one call. Keying traces on the exact shapes instead would trace ~170
        times on the demo's 5 layers, ~1 s each with the backward function: most of a short run.
        """
        plan = self.plan
        assert plan is not None, "set_active() first"
        key = (plan.choice.expand != 1, plan.residual, bool(training))
        fn = self._traced.get(key)
        if fn is None:
            spec = [tf.TensorSpec([None, None, None, None], tf.float32)] + [tf.TensorSpec([], tf.int32)] * 3
            fn = tf.function(
                functools.partial(self._forward, expand=key[0], residual=key[1], training=key[2]),
                input_signature=spec,
                autograph=False,
            )
            self._traced[key] = fn
        return fn(x, tf.constant(plan.choice.kernel), tf.constant(plan.hidden), tf.constant(plan.choice.out_channels))

    def _forward(
        self, x: Any, kernel: Any, hidden: Any, cout: Any, *, expand: bool, residual: bool, training: bool
    ) -> Any:
        out = x
        if expand:
            out = keras.ops.relu6(self.expand_bn.forward(self.expand_conv.forward(out, hidden), training))
        out = keras.ops.relu6(self.depthwise_bn.forward(self.depthwise_conv.forward(out, kernel), training))
        out = self.project_bn.forward(self.project_conv.forward(out, cout), training)
        return x + out if residual else out

    def copy_into(self, block: InvertedResidual) -> None:
        """Copy the active slices into a built static ``block`` (same outputs in inference mode)."""
        plan = self.plan
        assert plan is not None
        for part, args, channels in conv_bn_slices(plan):
            conv, bn = getattr(self, f"{part}_conv"), getattr(self, f"{part}_bn")
            _copy_conv_bn(getattr(block, part), conv.active_kernel(*args), bn, channels)


def _copy_conv_bn(dst: list[Any], kernel: Any, src_bn: SliceBatchNorm, c: int) -> None:
    """Copy a conv's active kernel and the first ``c`` channels of a BatchNorm into ``dst[0:2]``."""
    conv, bn = dst[0], dst[1]
    conv.kernel.assign(kernel)
    for name in ("gamma", "beta", "moving_mean", "moving_variance"):
        getattr(bn, name).assign(getattr(src_bn, name).value[:c])


class Supernet(keras.layers.Layer):
    """PreNet, one SuperBlock per skeleton layer, PostNet.

    Args:
        pre: the user's PreNet (built: the backend dry-ran it).
        post: the user's PostNet (built).
        space: the search space (layer shapes, choices, feature_choose via fixed layers).
        feature_choose: skeleton layers whose outputs PostNet also receives (docs/user-module.md#tensorflow).
        input_shape: one sample's shape as the scenario writes it (HWC or CHW).
        data_format: the scenario's data_format.
    """

    def __init__(
        self,
        pre: Any,
        post: Any,
        space: SearchSpace,
        feature_choose: tuple[int, ...],
        input_shape: tuple[int, int, int],
        data_format: str = "channels_last",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.pre = pre
        self.blocks = [
            SuperBlock(s.max_in, s.max_out, s.stride, max(space.kernel_sizes), max(space.expand_ratios), data_format)
            for s in space.layers
        ]
        self.post = post
        self.space = space
        self.feature_choose = tuple(feature_choose)
        self.sample_shape = tuple(input_shape)
        self.data_format = data_format
        self.active: Arch | None = None
        self._kept: tuple[bool, ...] = ()

    def build(self, input_shape: Any) -> None:
        """Nothing to build: slice ops create their variables at full size, the user's layers on
        their first call (the backend's dry run)."""

    def set_active(self, arch: Arch) -> None:
        """Select the subnet that ``call`` runs."""
        plans = {p.spec.index: p for p in self.space.plan(arch)}
        for i, block in enumerate(self.blocks):
            block.plan = plans.get(i)
        self._kept = tuple(i in plans for i in range(len(self.blocks)))
        self.active = arch

    def backbone(self, inputs: Any, training: bool = False) -> Any:
        """PreNet and the active subnet's layers, without PostNet: what pre-training classifies."""
        self._require_active()
        x = self.pre(inputs, training=training)
        for block, kept in zip(self.blocks, self._kept):
            if kept:
                x = block.forward(x, training)
        return x

    def call(self, inputs: Any, training: bool = False) -> Any:
        assert self.active is not None, "set_active() first"
        x = self.pre(inputs, training=training)
        features = []
        for i, block in enumerate(self.blocks):
            if self._kept[i]:
                x = block.forward(x, training)
            if i in self.feature_choose:
                features.append(x)
        if self.feature_choose:
            return self.post(features + [x], training=training)
        return self.post(x, training=training)

    def extract(self) -> Net:
        """The active subnet as a plain static model sharing no variable with the supernet.

        PreNet and PostNet are new instances of the user's classes (Keras layers cannot be
        deep-copied reliably) with the supernet's values copied in, variable by variable.
        """
        arch = self._require_active()
        net = Net(
            type(self.pre)(), type(self.post)(), self.layer_rows(arch), self.static_features(arch), self.data_format
        )
        net(np.zeros((1, *self.sample_shape), np.float32), training=False)  # build every variable
        _copy_variables(self.pre, net.pre)
        _copy_variables(self.post, net.post)
        kept = [b for b, k in zip(self.blocks, self._kept) if k]
        for src, dst in zip(kept, net.blocks):
            src.copy_into(dst)
        return net

    def static_features(self, arch: Arch | None = None) -> tuple[int, ...]:
        """feature_choose as positions among the kept layers of ``arch`` (default: the active one)."""
        return self.space.kept_positions(arch if arch is not None else self._require_active(), self.feature_choose)

    def layer_rows(self, arch: Arch) -> list[tuple[int, int, int, int, int]]:
        return self.space.layer_rows(arch)

    def _require_active(self) -> Arch:
        assert self.active is not None, "set_active() first"
        return self.active


def _copy_variables(src: Any, dst: Any) -> None:
    """Values of every weight of ``src`` into the same-structured ``dst`` (trainable and statistics)."""
    a, b = src.weights, dst.weights
    if len(a) != len(b) or any(tuple(x.shape) != tuple(y.shape) for x, y in zip(a, b)):
        raise RuntimeError(
            f"a new {type(src).__name__}() does not have the same weights as the one in the supernet; "
            "its __init__ must build the same layers every time"
        )
    for x, y in zip(a, b):
        y.assign(x.value)
