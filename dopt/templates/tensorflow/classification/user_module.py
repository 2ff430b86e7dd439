"""user_module.py for dopt, TensorFlow (tf.keras) image classification (the NASEA TensorFlow interface).

dopt imports this file from the working directory and drives it:

    um = UserModule(epoch=<epochs>, batch_size=<batch_size>)
    dataset, data_num = um.build_dataset_search(<train_dir>, True)   # a tf.data.Dataset of (images, labels)
    dataset, data_num = um.build_dataset_search(<val_dir>, False)
    lr = um.lr_scheduler(lr_init, global_step)    # called before every optimizer step, plain Python
    loss = um.loss_op(labels, logits)             # scalar tensor
    metric = um.metrics_op(labels, outputs)       # labels and outputs of the whole validation set; higher is better

The searched network is PreNet -> searched layers -> PostNet. PreNet and PostNet are yours and
fixed; dopt searches the layers in between (kernel 3/5/7, expansion 3/6, width, depth) and
finds PreNet's output channels by a dry run. PostNet receives the last searched layer's output,
which always has `filters[-1]` channels (scen.yaml). Both are Keras layers whose call takes
`training`; dopt always passes it.

Images are read from one sub-folder per class (data/train/<class>/*.png) with Pillow, which dopt
already installs, decoded once into memory, and served as a batched tf.data.Dataset. For a
dataset too large for memory, map a tf.io.read_file + tf.io.decode_png function over the file
names instead.
"""

import math
import os

import numpy as np
import tensorflow as tf
from PIL import Image

IMAGE_SIZE = (8, 8)  # (H, W): keep equal to input_shape in scen.yaml, which is (H, W, C)
CHANNELS = 1  # 1 for grey images, 3 for RGB
NUM_CLASSES = 10


def read_image_folders(dataset_dir):
    """Images (N, H, W, C) float32 in [0, 1] and class indices (N,) from dataset_dir/<class>/*."""
    classes = sorted(d for d in os.listdir(dataset_dir) if os.path.isdir(os.path.join(dataset_dir, d)))
    images, labels = [], []
    for index, name in enumerate(classes):
        folder = os.path.join(dataset_dir, name)
        for file in sorted(os.listdir(folder)):
            with Image.open(os.path.join(folder, file)) as image:
                image = image.convert("L" if CHANNELS == 1 else "RGB").resize(IMAGE_SIZE[::-1])
                images.append(np.asarray(image, np.float32).reshape(*IMAGE_SIZE, CHANNELS) / 255.0)
            labels.append(index)
    return np.stack(images), np.array(labels, np.int64)


class UserModule:
    def __init__(self, epoch, batch_size):
        self.epoch = epoch
        self.batch_size = batch_size
        self.steps_per_epoch = 1

    def build_dataset_search(self, dataset_dir, is_training):
        images, labels = read_image_folders(dataset_dir)
        images = (images - 0.5) / 0.5  # about [-1, 1]
        dataset = tf.data.Dataset.from_tensor_slices((images, labels))
        if is_training:
            # A fixed seed keeps runs reproducible; the order still changes every epoch.
            dataset = dataset.shuffle(len(images), seed=0, reshuffle_each_iteration=True)
            self.steps_per_epoch = len(images) // self.batch_size
        # Full training batches only: BatchNorm needs more than one image per batch.
        return dataset.batch(self.batch_size, drop_remainder=is_training), len(images)

    def lr_scheduler(self, lr_init, global_step):
        # Cosine decay from lr_init over the whole training, after a short linear warm-up.
        total = max(1, self.epoch * self.steps_per_epoch)
        warmup = max(1, total // 20)
        if global_step < warmup:
            return lr_init * (global_step + 1) / warmup
        return lr_init * 0.5 * (1 + math.cos(math.pi * min(1.0, (global_step - warmup) / max(1, total - warmup))))

    def metrics_op(self, inputs, outputs):
        # inputs: the true labels, outputs: the logits; here the accuracy.
        predictions = tf.argmax(outputs, axis=1, output_type=tf.int64)
        return float(tf.reduce_mean(tf.cast(tf.equal(predictions, tf.cast(inputs, tf.int64)), tf.float32)))

    def loss_op(self, labels, logits):
        return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


class PreNet(tf.keras.layers.Layer):
    """The fixed stem: 3x3 convolution, BatchNorm, ReLU."""

    def __init__(self):
        super().__init__()
        self.conv = tf.keras.layers.Conv2D(16, 3, padding="same", use_bias=False)
        self.bn = tf.keras.layers.BatchNormalization()

    def call(self, inputs, training=True):
        return tf.nn.relu(self.bn(self.conv(inputs), training=training))


class PostNet(tf.keras.layers.Layer):
    """The fixed head: global average pooling and a linear classifier."""

    def __init__(self):
        super().__init__()
        self.pool = tf.keras.layers.GlobalAveragePooling2D()
        self.classifier = tf.keras.layers.Dense(NUM_CLASSES)

    def call(self, inputs, training=True):
        return self.classifier(self.pool(inputs))
