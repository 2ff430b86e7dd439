"""Slice ops for Keras: convolutions and BatchNorm whose active part is a slice of one shared variable.

Smaller kernels are centre crops of the largest and fewer channels are the first channels, so
every subnet shares one set of weights and the supernet is the size of its largest subnet
(SPEC 5.2). Mirrors ``dopt/backends/torch/slicing.py``; the ops run as raw ``tf.nn`` calls on the
sliced variables, called through ``forward`` rather than Keras' ``__call__`` (the active widths are
Python ints, and eager ``__call__`` machinery per op would cost more than the op on small nets).
"""

from __future__ import annotations

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


def _centre_crop(kernel: Any, size: int) -> Any:
    """The centre ``size`` x ``size`` window of a (K, K, ...) kernel."""
    full = int(kernel.shape[0])
    if size == full:
        return kernel
    start = (full - size) // 2
    return kernel[start : start + size, start : start + size]


def _strides(stride: int, data_format: str) -> list[int]:
    return [1, stride, stride, 1] if data_format == "channels_last" else [1, 1, stride, stride]


class SliceConv2D(keras.layers.Layer):
    """A bias-free convolution over the first ``in``/``out`` channels of its widest kernel."""

    def __init__(self, max_in: int, max_out: int, max_kernel: int = 1, stride: int = 1,
                 data_format: str = "channels_last", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stride = stride
        self.data_format = data_format
        self.kernel = self.add_weight(shape=(max_kernel, max_kernel, max_in, max_out), name="kernel",
                                      initializer=keras.initializers.VarianceScaling(**_INIT))

    def active_kernel(self, cin: int, cout: int, kernel: int) -> Any:
        full = self.kernel.value
        if cin != full.shape[2] or cout != full.shape[3]:  # no slice at full width: no copy, no scatter
            full = full[:, :, :cin, :cout]
        return _centre_crop(full, kernel)

    def forward(self, x: Any, cout: int, kernel: int = 1) -> Any:
        cin = int(x.shape[channel_axis(self.data_format)])
        return tf.nn.conv2d(x, self.active_kernel(cin, cout, kernel), _strides(self.stride, self.data_format),
                            "SAME", data_format=tf_format(self.data_format))


class SliceDepthwiseConv2D(keras.layers.Layer):
    """A bias-free depthwise convolution over the first channels, kernel centre-cropped."""

    def __init__(self, max_channels: int, max_kernel: int, stride: int, data_format: str = "channels_last",
                 **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.stride = stride
        self.data_format = data_format
        self.kernel = self.add_weight(shape=(max_kernel, max_kernel, max_channels, 1), name="kernel",
                                      initializer=keras.initializers.VarianceScaling(**_INIT))

    def active_kernel(self, channels: int, kernel: int) -> Any:
        full = self.kernel.value
        if channels != full.shape[2]:
            full = full[:, :, :channels, :]
        return _centre_crop(full, kernel)

    def forward(self, x: Any, kernel: int) -> Any:
        channels = int(x.shape[channel_axis(self.data_format)])
        return tf.nn.depthwise_conv2d(x, self.active_kernel(channels, kernel), _strides(self.stride, self.data_format),
                                      "SAME", data_format=tf_format(self.data_format))


class SliceBatchNorm(keras.layers.Layer):
    """BatchNorm over the first channels of its input, with Keras' variable names and semantics
    (biased batch variance; ``moving = moving * momentum + batch * (1 - momentum)``).

    Only the first ``c`` entries of the moving statistics change when ``c`` channels are active.
    Evaluation never reads these statistics: candidates are recalibrated on their extracted model.
    """

    def __init__(self, max_channels: int, data_format: str = "channels_last", momentum: float = 0.9,
                 epsilon: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.data_format = data_format
        self.momentum = momentum
        self.epsilon = epsilon
        n = (max_channels,)
        self.gamma = self.add_weight(shape=n, name="gamma", initializer="ones")
        self.beta = self.add_weight(shape=n, name="beta", initializer="zeros")
        self.moving_mean = self.add_weight(shape=n, name="moving_mean", initializer="zeros", trainable=False)
        self.moving_variance = self.add_weight(shape=n, name="moving_variance", initializer="ones", trainable=False)

    def _first(self, variable: Any, c: int) -> Any:
        value = variable.value
        return value if c == value.shape[0] else value[:c]

    def forward(self, x: Any, training: bool) -> Any:
        axis = channel_axis(self.data_format)
        c = int(x.shape[axis])
        if training:
            reduce = [0, 1, 2] if axis == -1 else [0, 2, 3]
            mean, variance = tf.nn.moments(x, reduce)
            self._update(self.moving_mean, tf.stop_gradient(mean), c)
            self._update(self.moving_variance, tf.stop_gradient(variance), c)
        else:
            mean, variance = self._first(self.moving_mean, c), self._first(self.moving_variance, c)
        gamma, beta = self._first(self.gamma, c), self._first(self.beta, c)
        if axis == 1:  # broadcast per channel over N, H, W
            mean, variance, gamma, beta = (tf.reshape(t, (1, c, 1, 1)) for t in (mean, variance, gamma, beta))
        return tf.nn.batch_normalization(x, mean, variance, beta, gamma, self.epsilon)

    def _update(self, variable: Any, batch: Any, c: int) -> None:
        full = variable.value
        new = full[:c] * self.momentum + batch * (1.0 - self.momentum)
        variable.assign(new if c == full.shape[0] else tf.concat([new, full[c:]], 0))
