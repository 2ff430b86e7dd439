"""dopt demo: handwritten digits with tf.keras (scikit-learn's load_digits, 8x8 grey images, 10 classes).

data/train.npz and data/val.npz hold a stratified 80/20 split of the 1,797 digits
(`images`: uint8 0..16, `labels`: int64), so the demo runs offline with TensorFlow alone.
The interface is NASEA's TensorFlow one: build_dataset_search, lr_scheduler, metrics_op, loss_op,
and PreNet/PostNet as Keras layers whose call takes `training`.
"""

import math

import numpy as np
import tensorflow as tf


class UserModule:
    def __init__(self, epoch, batch_size):
        self.epoch = epoch
        self.batch_size = batch_size

    def build_dataset_search(self, dataset_dir, is_training):
        data = np.load(dataset_dir)
        images = (data["images"].astype(np.float32) / 16.0 - 0.3) / 0.4  # N, 8, 8 in about [-1, 2]
        images = images[..., None]  # N, 8, 8, 1: channels_last
        dataset = tf.data.Dataset.from_tensor_slices((images, data["labels"]))
        if is_training:
            self.steps_per_epoch = len(images) // self.batch_size  # for lr_scheduler
            dataset = dataset.shuffle(len(images), seed=0, reshuffle_each_iteration=True)
        return dataset.batch(self.batch_size, drop_remainder=is_training), len(images)

    def lr_scheduler(self, lr_init, global_step):
        # One cycle: linear warm-up over the first 30% of the steps, cosine decay after.
        total = self.epoch * self.steps_per_epoch
        warm = 0.3 * total
        if global_step < warm:
            return lr_init * (0.04 + 0.96 * global_step / warm)
        return lr_init * 0.5 * (1 + math.cos(math.pi * min(1.0, (global_step - warm) / (total - warm))))

    def metrics_op(self, inputs, outputs):
        # inputs: the labels of the whole validation set, outputs: the logits for it.
        predictions = tf.argmax(outputs, axis=1, output_type=tf.int64)
        return float(tf.reduce_mean(tf.cast(tf.equal(predictions, tf.cast(inputs, tf.int64)), tf.float32)))

    def loss_op(self, labels, logits):
        return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


class PreNet(tf.keras.layers.Layer):
    def __init__(self):
        super().__init__()
        self.conv = tf.keras.layers.Conv2D(16, 3, padding="same", use_bias=False)
        self.bn = tf.keras.layers.BatchNormalization()

    def call(self, inputs, training=True):
        return tf.nn.relu(self.bn(self.conv(inputs), training=training))


class PostNet(tf.keras.layers.Layer):
    def __init__(self):
        super().__init__()
        self.pool = tf.keras.layers.GlobalAveragePooling2D()
        self.classifier = tf.keras.layers.Dense(10)

    def call(self, inputs, training=True):
        return self.classifier(self.pool(inputs))
