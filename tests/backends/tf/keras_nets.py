"""Tiny Keras PreNet/PostNet pairs for backend tests (the same networks as tests/backends/torch/nets.py)."""

from __future__ import annotations

import keras
import tensorflow as tf


class PreNet(keras.layers.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.conv = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)
        self.bn = keras.layers.BatchNormalization()

    def call(self, inputs, training=True):
        return keras.ops.relu(self.bn(self.conv(inputs), training=training))


class PostNet(keras.layers.Layer):
    def __init__(self) -> None:
        super().__init__()
        self.pool = keras.layers.GlobalAveragePooling2D()
        self.fc = keras.layers.Dense(10)

    def call(self, inputs, training=True):
        return self.fc(self.pool(inputs))


class ListPostNet(keras.layers.Layer):
    """Takes feature_choose outputs: [layer-1 output (16 ch, 8x8), last output (32 ch, 4x4)]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = keras.layers.Dense(10)

    def call(self, inputs, training=True):
        return self.fc(tf.concat([tf.reduce_mean(t, axis=[1, 2]) for t in inputs], axis=1))


class DropoutPostNet(PostNet):
    """A raw tf.matmul after dropout: counted by graph MACs, silenced in BN recalibration."""

    def __init__(self) -> None:
        super().__init__()
        self.drop = keras.layers.Dropout(0.5)

    def call(self, inputs, training=True):
        return self.fc(self.drop(self.pool(inputs), training=training))
