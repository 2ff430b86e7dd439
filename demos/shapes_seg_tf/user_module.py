"""dopt demo: semantic segmentation of synthetic shapes with tf.keras.

Scenes of squares, disks and triangles (32x32 RGB, 4 classes with the background) are drawn by
``dopt.datasets.shapes`` from the size and seed in ``data/{train,val}/scenes.json``, so the demo runs
offline. ``data/pretrain`` holds one folder of images per shape class, on which dopt pre-trains
PreNet and the skeleton. The interface is NASEA's TensorFlow one for segmentation:
build_dataset_search(dataset_dir, is_training, is_shuffle), lr_scheduler, metrics_op over the labels
and outputs of the whole validation set (mean IoU over the 4 classes, exact), loss_op.
"""

import json
import math
import os

import numpy as np
import tensorflow as tf

from dopt.datasets import shapes

N_CLASSES = len(shapes.CLASSES)  # background, square, disk, triangle


class UserModule:
    metric_name = "mIoU"

    def __init__(self, epoch, batch_size):
        self.epoch = epoch
        self.batch_size = batch_size

    def build_dataset_search(self, dataset_dir, is_training, is_shuffle):
        with open(os.path.join(dataset_dir, "scenes.json")) as f:
            spec = json.load(f)
        s = shapes.scenes(spec["n"], size=32, seed=spec["seed"])  # images N, 32, 32, 3 (channels_last)
        dataset = tf.data.Dataset.from_tensor_slices((s.images, s.masks.astype(np.int32)))
        if is_training:
            self.steps_per_epoch = len(s.images) // self.batch_size  # for lr_scheduler
        if is_shuffle:
            dataset = dataset.shuffle(len(s.images), seed=0, reshuffle_each_iteration=True)
        return dataset.batch(self.batch_size, drop_remainder=is_training), len(s.images)

    def lr_scheduler(self, lr_init, global_step):
        # Cosine decay over the whole supernet training.
        total = self.epoch * self.steps_per_epoch
        return lr_init * 0.5 * (1 + math.cos(math.pi * min(1.0, global_step / total)))

    def metrics_op(self, inputs, outputs):
        # inputs: the masks of the whole validation set, outputs: the class scores for it.
        predicted = np.argmax(np.asarray(outputs), axis=-1)
        return shapes.mean_iou(predicted, np.asarray(inputs), N_CLASSES)

    def loss_op(self, labels, logits):
        return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def conv_bn(filters, stride=1):
    return [
        tf.keras.layers.Conv2D(filters, 3, stride, padding="same", use_bias=False),
        tf.keras.layers.BatchNormalization(),
    ]


class PreNet(tf.keras.layers.Layer):
    """32x32 -> 16x16, 16 channels."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = conv_bn(16, stride=2)

    def call(self, inputs, training=True):
        return tf.nn.relu(self.bn(self.conv(inputs), training=training))


class PostNet(tf.keras.layers.Layer):
    """A small FPN: layers 0 (16 ch, 16x16), 2 (32 ch, 8x8) and the last (48 ch, 4x4), merged top-down
    at 16x16, then per-pixel class scores upsampled to 32x32."""

    def __init__(self):
        super().__init__()
        self.lateral = [tf.keras.layers.Conv2D(32, 1) for _ in range(3)]
        self.conv, self.bn = conv_bn(32)
        self.classes = tf.keras.layers.Conv2D(N_CLASSES, 1)

    def call(self, inputs, training=True):
        c1, c2, c3 = inputs
        p = self.lateral[2](c3)
        p = self.lateral[1](c2) + tf.image.resize(p, tf.shape(c2)[1:3], method="nearest")
        p = self.lateral[0](c1) + tf.image.resize(p, tf.shape(c1)[1:3], method="nearest")
        p = tf.nn.relu(self.bn(self.conv(p), training=training))
        scores = self.classes(p)
        return tf.image.resize(scores, 2 * tf.shape(scores)[1:3], method="bilinear")
