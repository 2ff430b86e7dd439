"""Plain static Keras blocks of an extracted subnet.

This file's source (below the imports) is copied verbatim into every result script, so it must
stay standalone: keras only, no dopt import. The block layout follows torchvision's MobileNetV2,
as the PyTorch result scripts do, so both frameworks build the same network.
"""

from __future__ import annotations

import keras


def _bn(data_format: str) -> keras.layers.BatchNormalization:
    # Momentum and epsilon of torch's BatchNorm2d defaults (0.1 there is 1 - 0.9 here).
    return keras.layers.BatchNormalization(axis=-1 if data_format == "channels_last" else 1, momentum=0.9, epsilon=1e-5)


def _run(layers, x, training):
    for layer in layers:
        x = layer(x, training=training)
    return x


class InvertedResidual(keras.layers.Layer):
    """Inverted residual block: 1x1 expand (unless expand_ratio is 1), kxk depthwise, 1x1 project."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        data_format: str = "channels_last",
        **kwargs,
    ):
        super().__init__(**kwargs)
        hidden = in_channels * expand_ratio
        self.use_residual = stride == 1 and in_channels == out_channels
        conv = dict(use_bias=False, padding="same", data_format=data_format)
        # expand
        self.expand = []
        if expand_ratio != 1:
            self.expand = [keras.layers.Conv2D(hidden, 1, **conv), _bn(data_format), keras.layers.ReLU(6.0)]
        # depthwise
        self.depthwise = [
            keras.layers.DepthwiseConv2D(kernel_size, stride, **conv),
            _bn(data_format),
            keras.layers.ReLU(6.0),
        ]
        # project
        self.project = [keras.layers.Conv2D(out_channels, 1, **conv), _bn(data_format)]

    def build(self, input_shape):
        pass  # each inner layer builds itself on its first call

    def call(self, inputs, training=False):
        out = _run(self.expand + self.depthwise + self.project, inputs, training)
        return inputs + out if self.use_residual else out


class Net(keras.Model):
    """PreNet -> searched layers -> PostNet.

    Args:
        pre: the user's PreNet instance.
        post: the user's PostNet instance.
        layers: one (in_channels, out_channels, kernel_size, stride, expand_ratio) row per layer.
        feature_layers: positions in ``layers`` whose outputs PostNet also receives, in order,
            followed by the last layer's output (the scenario's feature_choose); empty: PostNet
            receives the last layer's output alone.
        data_format: "channels_last" (NHWC) or "channels_first" (NCHW, GPU only in TensorFlow).
    """

    def __init__(self, pre, post, layers, feature_layers=(), data_format="channels_last", **kwargs):
        super().__init__(**kwargs)
        self.pre = pre
        self.blocks = [InvertedResidual(*row, data_format=data_format) for row in layers]
        self.post = post
        self.feature_layers = tuple(feature_layers)

    def build(self, input_shape):
        pass  # every layer builds itself on its first call

    def call(self, inputs, training=False):
        x = self.pre(inputs, training=training)
        if not self.feature_layers:
            for block in self.blocks:
                x = block(x, training=training)
            return self.post(x, training=training)
        features = []
        for i, block in enumerate(self.blocks):
            x = block(x, training=training)
            if i in self.feature_layers:
                features.append(x)
        features.append(x)
        return self.post(features, training=training)
