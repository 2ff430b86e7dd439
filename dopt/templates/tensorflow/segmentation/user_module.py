"""user_module.py for dopt, TensorFlow (tf.keras) semantic segmentation (the NASEA TensorFlow interface).

dopt imports this file from the working directory and drives it:

    um = UserModule(epoch=<epochs>, batch_size=<batch_size>)
    dataset, data_num = um.build_dataset_search(<train_dir>, True, True)   # a tf.data.Dataset of (images, masks)
    dataset, data_num = um.build_dataset_search(<val_dir>, False, False)
    lr = um.lr_scheduler(lr_init, global_step)    # called before every optimizer step, plain Python
    loss = um.loss_op(masks, logits)              # scalar tensor
    metric = um.metrics_op(masks, outputs)        # masks and outputs of the whole validation set: mean IoU

The searched network is PreNet -> searched layers -> PostNet. PreNet and PostNet are yours and
fixed; dopt searches the layers in between (kernel 3/5/7, expansion 3/6, width, depth). With
`feature_choose: [0, 2]` in scen.yaml PostNet receives a list: the outputs of searched layers 0
and 2, then the last layer's. Those layers always run at full width (`filters[i]` channels), so
PostNet sees the same shapes whatever subnet is active; here a small feature pyramid (FPN) merges
them into per-pixel class scores (docs/tasks.md). Both are Keras layers whose call takes
`training`; dopt always passes it.

Before the search, dopt pre-trains PreNet and the searched layers as a classifier on
`pre_train_dir` (one folder of images per class), read as RGB in [0, 1] at `input_shape`: the
images below are scaled the same way. Normalise differently and define `build_dataset_pretrain`
too (docs/tasks.md#the-pre-training-dataset).

The data is read with Pillow (which dopt already installs), decoded once into memory, from this
layout:

    data/train/images/0000.png   an image (any size: resized to IMAGE_SIZE)
    data/train/masks/0000.png    its mask, same name: an 8-bit grey PNG whose pixels are class ids
                                 (0 = background; IGNORE for pixels nobody labelled)
    data/val/...                 the same
    data/pretrain/<class>/*.png  the pre-training class folders

`dopt init` writes synthetic scenes (squares, disks and triangles, 32x32) in that layout, so
`dopt -c scen.yaml` runs at once. For your own data: put it in this layout (or change
`read_pairs`), set the constants below, and `input_shape` (and perhaps `filters`) in scen.yaml.
For a dataset too large for memory, map a tf.io.read_file + tf.io.decode_png function over the
file names instead.
"""

import math
import os

import numpy as np
import tensorflow as tf
from PIL import Image

IMAGE_SIZE = (32, 32)  # (H, W): keep equal to input_shape in scen.yaml, which is (H, W, C)
CLASSES = ("background", "square", "disk", "triangle")  # class id = index; masks hold the ids
IGNORE = 255  # mask value of unlabelled pixels: no loss, not scored (PASCAL VOC's "void")


def read_pairs(dataset_dir):
    """Images (N, H, W, 3) float32 in [0, 1] and masks (N, H, W) int32 from dataset_dir/images/<name>
    and dataset_dir/masks/<name>.png."""
    size = IMAGE_SIZE[::-1]  # Pillow wants (W, H)
    images, masks = [], []
    for name in sorted(os.listdir(os.path.join(dataset_dir, "images"))):
        with Image.open(os.path.join(dataset_dir, "images", name)) as image:
            images.append(np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR), np.float32) / 255.0)
        mask_path = os.path.join(dataset_dir, "masks", os.path.splitext(name)[0] + ".png")
        if not os.path.exists(mask_path):
            raise FileNotFoundError(f"no mask for {name}: {mask_path}")
        with Image.open(mask_path) as mask:
            # Nearest neighbour: a resized mask must keep class ids, not blend them.
            masks.append(np.asarray(mask.resize(size, Image.Resampling.NEAREST), np.int32))
    return np.stack(images), np.stack(masks)


class UserModule:
    metric_name = "mIoU"  # the name of the metric in the results (docs/user-module.md#naming-the-metric)

    def __init__(self, epoch, batch_size):
        self.epoch = epoch
        self.batch_size = batch_size
        self.steps_per_epoch = 1

    def build_dataset_search(self, dataset_dir, is_training, is_shuffle):
        # dataset_dir is train_dir when is_training is True, else val_dir (absolute paths); is_shuffle
        # is True only for the training data, not for the images BatchNorm is recalibrated on.
        images, masks = read_pairs(dataset_dir)
        dataset = tf.data.Dataset.from_tensor_slices((images, masks))
        if is_shuffle:
            # A fixed seed keeps runs reproducible, and a resumed run replays the order; it still
            # changes every epoch. Augment here with dataset.map (the image and its mask alike).
            dataset = dataset.shuffle(len(images), seed=0, reshuffle_each_iteration=True)
        if is_training:
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
        # inputs: the masks of the whole validation set (N, H, W); outputs: PostNet's class scores for
        # it (N, H, W, classes), joined, so the mIoU is exact. dopt keeps them in memory: for a large
        # validation set, return the argmax from PostNet or lower searcher.eval_batches (docs/tasks.md).
        n = len(CLASSES)
        predicted = np.argmax(np.asarray(outputs), axis=-1).ravel()
        truth = np.asarray(inputs).ravel().astype(np.int64)
        scored = truth != IGNORE
        confusion = np.bincount(n * truth[scored] + predicted[scored], minlength=n * n).reshape(n, n)
        intersection = np.diag(confusion)
        union = confusion.sum(0) + confusion.sum(1) - intersection
        present = union > 0  # classes in neither the masks nor the predictions do not count
        return float(np.mean(intersection[present] / union[present]))

    def loss_op(self, labels, logits):
        # labels: the masks (N, H, W); logits: what PostNet returns, (N, H, W, classes).
        scored = tf.cast(tf.not_equal(labels, IGNORE), tf.float32)
        labels = tf.where(tf.equal(labels, IGNORE), tf.zeros_like(labels), labels)
        losses = tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True)
        return tf.reduce_sum(losses * scored) / tf.maximum(tf.reduce_sum(scored), 1.0)


def small_init():
    # PyTorch's default initialisation (kaiming_uniform, a = sqrt(5)). Keras' Glorot default draws
    # weights about twice as large in these layers, and the head then learns about three times
    # slower (dopt's TensorFlow detection demo, mAP after 5 epochs: 0.18 with Glorot, 0.55 with this).
    return tf.keras.initializers.VarianceScaling(1 / 3, "fan_in", "uniform")


def conv(filters, kernel_size, stride=1, **kwargs):
    return tf.keras.layers.Conv2D(
        filters, kernel_size, stride, padding="same", kernel_initializer=small_init(), **kwargs
    )


def conv_bn(filters, stride=1):
    return [conv(filters, 3, stride, use_bias=False), tf.keras.layers.BatchNormalization()]


class PreNet(tf.keras.layers.Layer):
    """The fixed stem: 32x32 -> 16x16, 16 channels (dopt finds both by a dry run)."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = conv_bn(16, stride=2)

    def call(self, inputs, training=True):
        return tf.nn.relu(self.bn(self.conv(inputs), training=training))


class PostNet(tf.keras.layers.Layer):
    """The fixed head, a small FPN: the chosen feature maps (16x16, 8x8, 4x4 here) are projected to 32
    channels, merged top-down at the finest one, and turned into per-pixel class scores resized to
    the input size: (N, H, W, classes) logits.

    dopt builds new PostNet() instances when it extracts a candidate and copies the weights in, so
    __init__ must create the same layers every time."""

    def __init__(self):
        super().__init__()
        self.lateral = [conv(32, 1) for _ in range(3)]  # one per feature map
        self.conv, self.bn = conv_bn(32)
        self.classes = conv(len(CLASSES), 1)

    def call(self, inputs, training=True):
        *features, top = inputs  # finest first, as feature_choose lists them, then the last layer
        p = self.lateral[-1](top)
        for lateral, feature in zip(reversed(self.lateral[:-1]), reversed(features)):
            p = lateral(feature) + tf.image.resize(p, tf.shape(feature)[1:3], method="nearest")
        p = tf.nn.relu(self.bn(self.conv(p), training=training))
        return tf.image.resize(self.classes(p), IMAGE_SIZE, method="bilinear")
