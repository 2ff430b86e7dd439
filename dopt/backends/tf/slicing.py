"""Slice ops for Keras: convolutions and BatchNorm whose active part is a slice of one shared variable.

Smaller kernels are centre crops of the largest and fewer channels are the first channels, so
every subnet shares one set of weights and the supernet is the size of its largest subnet
(docs/search-space.md#weight-sharing). Mirrors ``dopt/backends/torch/slicing.py``. The active kernel size and widths may be
Python ints or scalar tensors: the supernet traces each block once for all of them (see
supernet.SuperBlock), so the ops are raw ``tf`` calls that accept dynamic shapes, called through
``forward`` rather than Keras' ``__call__``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

__all__ = ["SliceConv2D", "SliceDepthwiseConv2D", "SliceBatchNorm", "tf_format", "channel_axis"]

# He initialisation on fan-out, as the torch supernet (kaiming_normal_, mode="fan_out").
_INIT = {"scale": 2.0, "mode": "fan_out", "distribution": "untruncated_normal"}


def tf_format(data_format: str) -> str:
    return "NHWC" if data_format == "channels_last" else "NCHW"


def channel_axis(data_format: str) -> int:
    return -1 if data_format == "channels_last" else 1


def _channels(x: Any, data_format: str) -> Any:
    """Channels of ``x``: an int when known statically (eager), else a scalar tensor."""
    axis = channel_axis(data_format)
    static = x.shape[axis]
    return int(static) if static is not None else tf.shape(x)[axis]


def _equals(value: Any, n: int) -> bool:
    """``value == n`` for an int; False for a tensor (whose value a trace does not know)."""
    return isinstance(value, int) and value == n


def _active(kernel: Any, size: Any, cin: Any, cout: Any) -> Any:
    """The centre ``size`` x ``size`` window of a (K, K, in, out) kernel, first ``cin``/``cout`` channels."""
    full = tuple(int(d) for d in kernel.shape)
    if all(
        _equals(a, b) for a, b in zip((size, size, cin, cout), full)
    ):  # no slice at full size: no copy forward, no scatter backward
        return kernel
    start = (full[0] - size) // 2
    return tf.slice(kernel, tf.stack([start, start, 0, 0]), tf.stack([size, size, cin, cout]))


def _convolve(op: Callable[..., Any], x: Any, weight: Any, stride: int, data_format: str) -> Any:
    """``op`` (a raw convolution) of ``x`` with ``weight``: "SAME" padding, ``stride`` in both dimensions."""
    strides = [1, stride, stride, 1] if data_format == "channels_last" else [1, 1, stride, stride]
    return op(input=x, filter=weight, strides=strides, padding="SAME", data_format=tf_format(data_format))


class SliceConv2D(keras.layers.Layer):
    """A bias-free convolution over the first ``in``/``out`` channels of its widest kernel."""

    def __init__(
        self,
        max_in: int,
        max_out: int,
        max_kernel: int = 1,
        stride: int = 1,
        data_format: str = "channels_last",
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.stride = stride
        self.data_format = data_format
        self.kernel = self.add_weight(
            shape=(max_kernel, max_kernel, max_in, max_out),
            name="kernel",
            initializer=keras.initializers.VarianceScaling(**_INIT),
        )

    def active_kernel(self, cin: Any, cout: Any, kernel: Any) -> Any:
        return _active(self.kernel.value, kernel, cin, cout)

    def forward(self, x: Any, cout: Any, kernel: Any = 1) -> Any:
        weight = self.active_kernel(_channels(x, self.data_format), cout, kernel)
        return _convolve(tf.raw_ops.Conv2D, x, weight, self.stride, self.data_format)


class SliceDepthwiseConv2D(keras.layers.Layer):
    """A bias-free depthwise convolution over the first channels, kernel centre-cropped."""

    def __init__(
        self, max_channels: int, max_kernel: int, stride: int, data_format: str = "channels_last", **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        self.stride = stride
        self.data_format = data_format
        # torch's kaiming_normal_(mode="fan_out") on a (C, 1, k, k) depthwise weight counts
        # fan-out as C * k * k; Keras counts k * k for a (k, k, C, 1) kernel. Scaled by 1 / C, the
        # two supernets start alike: with C times the variance, Adam's steps moved the depthwise
        # kernels relatively C^-1/2 as far, and subnets trained ~3x slower (the convergence benchmark).
        init = {**_INIT, "scale": 2.0 / max_channels}
        self.kernel = self.add_weight(
            shape=(max_kernel, max_kernel, max_channels, 1),
            name="kernel",
            initializer=keras.initializers.VarianceScaling(**init),
        )

    def active_kernel(self, channels: Any, kernel: Any) -> Any:
        return _active(self.kernel.value, kernel, channels, 1)

    def forward(self, x: Any, kernel: Any) -> Any:
        weight = self.active_kernel(_channels(x, self.data_format), kernel)
        return _convolve(tf.raw_ops.DepthwiseConv2dNative, x, weight, self.stride, self.data_format)


class SliceBatchNorm(keras.layers.Layer):
    """BatchNorm over the first channels of its input, with Keras' variable names and semantics
    (biased batch variance; ``moving = moving * momentum + batch * (1 - momentum)``).

    Only the first ``c`` entries of the moving statistics change when ``c`` channels are active.
    Evaluation never reads these statistics: candidates are recalibrated on their extracted model.
    """

    def __init__(
        self,
        max_channels: int,
        data_format: str = "channels_last",
        momentum: float = 0.9,
        epsilon: float = 1e-5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.data_format = data_format
        self.momentum = momentum
        self.epsilon = epsilon
        n = (max_channels,)
        self.gamma = self.add_weight(shape=n, name="gamma", initializer="ones")
        self.beta = self.add_weight(shape=n, name="beta", initializer="zeros")
        self.moving_mean = self.add_weight(shape=n, name="moving_mean", initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(shape=n, name="moving_variance", initializer="ones", trainable=False)

    def _first(self, variable: Any, c: Any) -> Any:
        value = variable.value
        return value if _equals(c, int(value.shape[0])) else value[:c]

    def forward(self, x: Any, training: bool) -> Any:
        axis = channel_axis(self.data_format)
        c = _channels(x, self.data_format)
        if training:
            mean, variance = tf.nn.moments(x, [0, 1, 2] if axis == -1 else [0, 2, 3])
            self._update(self.moving_mean, tf.stop_gradient(mean), c)
            self._update(self.moving_variance, tf.stop_gradient(variance), c)
        else:
            mean, variance = self._first(self.moving_mean, c), self._first(self.moving_variance, c)
        gamma, beta = self._first(self.gamma, c), self._first(self.beta, c)
        if axis == 1:  # broadcast per channel over N, H, W
            shape = tf.stack([1, c, 1, 1])
            mean, variance, gamma, beta = (tf.reshape(t, shape) for t in (mean, variance, gamma, beta))
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)

    def _update(self, variable: Any, batch: Any, c: Any) -> None:
        full = variable.value
        new = full[:c] * self.momentum + batch * (1.0 - self.momentum)
        variable.assign(new if _equals(c, int(full.shape[0])) else tf.concat([new, full[c:]], 0))
