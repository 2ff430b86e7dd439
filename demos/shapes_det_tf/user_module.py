"""dopt demo: object detection of synthetic shapes with tf.keras, with a CenterNet-style head.

Scenes of squares, disks and triangles (32x32 RGB, up to 3 objects) are drawn by
``dopt.datasets.shapes`` from the size and seed in ``data/{train,val}/scenes.json``, so the demo runs
offline. ``data/pretrain`` holds one folder of images per shape class, on which dopt pre-trains
PreNet and the skeleton. PostNet predicts, on a 16x16 grid, a heatmap of object centres per class
and each object's width and height; the metric is mAP at IoU 0.5 over the validation images dopt
picks.

The interface is NASEA's TensorFlow detection one (docs/user-module.md#tensorflow-object-detection):
build_dataset_search(dataset_dir, is_training, is_shuffle) returns a generator of (images, boxes)
batches, and metrics_op([valid_dir, model], [data_generator, proxy_val_image_ids, data_size]) runs
the model itself over the validation batches.
"""

import json
import math
import os

import keras
import numpy as np
import tensorflow as tf

from dopt.datasets import shapes

SIZE, STRIDE = 32, 2
N_OBJECT_CLASSES = len(shapes.CLASSES) - 1  # square, disk, triangle


class SceneBatches(keras.utils.PyDataset):
    """(images float32 (B, 32, 32, 3) in [0, 1], boxes float32 (B, 3, 5)) batches; box rows are
    [class_id, x0, y0, x1, y1] in pixels, padding rows -1."""

    def __init__(self, scenes, batch_size, is_training, is_shuffle):
        super().__init__()
        self.scenes, self.batch_size, self.is_shuffle = scenes, batch_size, is_shuffle
        # Full training batches only: BatchNorm never sees a batch of one.
        count = len(scenes) // batch_size if is_training else math.ceil(len(scenes) / batch_size)
        self.count = max(1, count)
        self.order = np.arange(len(scenes))

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        rows = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        return self.scenes.images[rows], self.scenes.boxes[rows]

    def on_epoch_begin(self):
        # dopt reseeds NumPy's global RNG from (seed, epoch) at the start of every epoch, just before
        # this call: a run resumed at epoch k therefore draws epoch k's order, as an uninterrupted one
        # does. Shuffling in on_epoch_end, or from an RNG seeded once here, would start a resumed run
        # from the first epoch's order (docs/user-module.md#batchnorm-calibration-resuming-several-processes).
        if self.is_shuffle:
            self.order = np.random.RandomState(np.random.randint(2**31 - 1)).permutation(len(self.scenes))


class UserModule:
    metric_name = "mAP50"

    def __init__(self, epoch, batch_size):
        self.epoch = epoch
        self.batch_size = batch_size
        self.steps_per_epoch = 1
        self._scenes = {}  # dataset_dir -> shapes.Scenes: the validation set is built again per evaluation

    def build_dataset_search(self, dataset_dir, is_training, is_shuffle):
        scenes = self._read(dataset_dir)
        batches = SceneBatches(scenes, self.batch_size, is_training, is_shuffle)
        if is_training:
            self.steps_per_epoch = len(batches)  # for lr_scheduler
            return batches, len(scenes)
        return batches, scenes.boxes, len(scenes)

    def _read(self, dataset_dir):
        if dataset_dir not in self._scenes:
            with open(os.path.join(dataset_dir, "scenes.json")) as f:
                spec = json.load(f)
            self._scenes[dataset_dir] = shapes.scenes(spec["n"], size=SIZE, seed=spec["seed"])
        return self._scenes[dataset_dir]

    def lr_scheduler(self, lr_init, global_step):
        # One cycle: a linear warm-up over the first 10% of the steps, then cosine decay to 0.
        total = max(1, self.epoch * self.steps_per_epoch)
        warmup = max(1, total // 10)
        if global_step < warmup:
            return lr_init * (global_step + 1) / warmup
        return lr_init * 0.5 * (1 + math.cos(math.pi * min(1.0, (global_step - warmup) / max(1, total - warmup))))

    def metrics_op(self, inputs, outputs):
        valid_dir, model = inputs
        data_generator, ids, data_size = outputs
        wanted, start, detections, truth = set(ids.tolist()), 0, [], []
        for i in range(len(data_generator)):
            images, boxes = data_generator[i]
            rows = [r for r in range(len(images)) if start + r in wanted]
            if rows:
                out = np.transpose(np.asarray(model(images[rows])), (0, 3, 1, 2))  # NHWC -> NCHW for decode
                heat = 1 / (1 + np.exp(-out[:, :N_OBJECT_CLASSES]))
                detections += shapes.centernet_decode(heat, out[:, N_OBJECT_CLASSES:], stride=STRIDE)
                truth.append(boxes[rows])
            start += len(images)
            if start > ids[-1]:
                break
        return shapes.average_precision_50(detections, np.concatenate(truth))

    def loss_op(self, labels, logits):
        # dopt runs loss_op eagerly, so the targets can be drawn with NumPy from this batch's boxes.
        heat, sizes, mask = (
            tf.constant(np.transpose(t, (0, 2, 3, 1)))
            for t in shapes.centernet_targets(np.asarray(labels), SIZE, STRIDE)
        )
        return focal_loss(logits[..., :N_OBJECT_CLASSES], heat) + 0.1 * size_loss(
            logits[..., N_OBJECT_CLASSES:], sizes, mask
        )


def focal_loss(logits, target, alpha=2.0, beta=4.0):
    """CenterNet's penalty-reduced focal loss, averaged over the objects."""
    p = tf.clip_by_value(tf.sigmoid(logits), 1e-4, 1 - 1e-4)
    centre = tf.cast(tf.equal(target, 1.0), tf.float32)
    positive = -tf.math.log(p) * (1 - p) ** alpha * centre
    negative = -tf.math.log(1 - p) * p**alpha * (1 - target) ** beta * (1 - centre)
    return (tf.reduce_sum(positive) + tf.reduce_sum(negative)) / tf.maximum(tf.reduce_sum(centre), 1.0)


def size_loss(predicted, target, mask):
    return tf.reduce_sum(tf.abs(predicted - target) * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def small_init():
    # PyTorch's default initialisation (kaiming_uniform, a = sqrt(5)). Keras' Glorot default draws
    # weights about twice as large in these layers, and the head then learns about three times
    # slower (mAP of the detection demo after 5 epochs: 0.18 with Glorot, 0.55 with this).
    return tf.keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")


def conv(filters, kernel_size, stride=1, **kwargs):
    return tf.keras.layers.Conv2D(
        filters, kernel_size, stride, padding="same", kernel_initializer=small_init(), **kwargs
    )


def conv_bn(filters, stride=1):
    return [conv(filters, 3, stride, use_bias=False), tf.keras.layers.BatchNormalization()]


class PreNet(tf.keras.layers.Layer):
    """32x32 -> 16x16, 16 channels."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = conv_bn(16, stride=2)

    def call(self, inputs, training=True):
        return tf.nn.relu(self.bn(self.conv(inputs), training=training))


class PostNet(tf.keras.layers.Layer):
    """An FPN on layers 0 (16 ch, 16x16), 2 (32 ch, 8x8) and the last (48 ch, 4x4), then CenterNet heads
    at 16x16: 3 centre-heatmap logits and 2 box sizes (pixels) per cell, as one (N, 16, 16, 5) tensor."""

    def __init__(self):
        super().__init__()
        self.lateral = [conv(32, 1) for _ in range(3)]
        self.heat_conv, self.heat_bn = conv_bn(32)
        # CenterNet's prior: sigmoid(-2.19) = 0.1, so the first steps are not swamped by the background.
        self.heat = conv(N_OBJECT_CLASSES, 1, bias_initializer=tf.keras.initializers.Constant(-2.19))
        self.size_conv, self.size_bn = conv_bn(32)
        self.size = conv(2, 1)

    def call(self, inputs, training=True):
        c1, c2, c3 = inputs
        p = self.lateral[2](c3)
        p = self.lateral[1](c2) + tf.image.resize(p, tf.shape(c2)[1:3], method="nearest")
        p = self.lateral[0](c1) + tf.image.resize(p, tf.shape(c1)[1:3], method="nearest")
        heat = self.heat(tf.nn.relu(self.heat_bn(self.heat_conv(p), training=training)))
        size = tf.nn.relu(self.size(tf.nn.relu(self.size_bn(self.size_conv(p), training=training)))) * 4.0
        return tf.concat([heat, size], axis=-1)
