"""user_module.py for dopt, TensorFlow (tf.keras) object detection (NASEA's TensorFlow detection interface).

dopt imports this file from the working directory and drives it:

    um = UserModule(epoch=<epochs>, batch_size=<batch_size>)
    train_generator, train_size = um.build_dataset_search(<train_dir>, True, True)   # (images, boxes) batches
    val_generator, val_dataset, val_size = um.build_dataset_search(<val_dir>, False, False)
    lr = um.lr_scheduler(lr_init, global_step)    # called before every optimizer step, plain Python
    loss = um.loss_op(boxes, outputs)             # scalar tensor
    metric = um.metrics_op([valid_dir, model], [val_generator, proxy_val_image_ids, data_size])
                                                  # runs model(images) itself: mAP at IoU 0.5

Detection differs from classification and segmentation in TensorFlow (NASEA's contract,
docs/user-module.md#tensorflow-object-detection): the data comes from generators of batches (here
a keras.utils.PyDataset), since boxes rarely fit a tf.data.Dataset; and metrics_op receives the
candidate network as a function model(images) -> outputs, with the validation generator and the
indices of the images to score, since the metric needs your ground truth and your decoding.

The searched network is PreNet -> searched layers -> PostNet. PreNet and PostNet are yours and
fixed; dopt searches the layers in between (kernel 3/5/7, expansion 3/6, width, depth). With
`feature_choose: [0, 2]` in scen.yaml PostNet receives a list: the outputs of searched layers 0
and 2, then the last layer's. Those layers always run at full width (`filters[i]` channels), so
PostNet sees the same shapes whatever subnet is active (docs/tasks.md). Both are Keras layers whose
call takes `training`; dopt always passes it.

The detector is CenterNet-style ("Objects as Points", Zhou et al. 2019), chosen because it needs
no anchors and no non-maximum suppression: PostNet merges the feature maps in a small feature
pyramid and predicts, on a grid STRIDE times coarser than the image, one heatmap of object centres
per class and each object's width and height. Training targets are drawn from the boxes in
`loss_op`; `decode` turns outputs back into boxes for the metric.

Before the search, dopt pre-trains PreNet and the searched layers as a classifier on
`pre_train_dir` (one folder of images per class), read as RGB in [0, 1] at `input_shape`: the
images below are scaled the same way. Normalise differently and define `build_dataset_pretrain`
too (docs/tasks.md#the-pre-training-dataset).

The data is read with Pillow (which dopt already installs), decoded once into memory, from this
layout:

    data/train/images/0000.png   an image (any size: resized to IMAGE_SIZE, its boxes scaled alike)
    data/train/boxes.json        {"classes": ["square", ...],
                                  "0000.png": [[class_id, x0, y0, x1, y1], ...], ...}
                                 class ids index "classes" from 0; corners in pixels of the file,
                                 x1, y1 exclusive; an image without objects has [] (or no entry)
    data/val/...                 the same
    data/pretrain/<class>/*.png  the pre-training class folders

`dopt init` writes synthetic scenes (squares, disks and triangles, 32x32) in that layout, so
`dopt -c scen.yaml` runs at once. For your own data: convert your annotations to boxes.json (or
change `read_boxes`), set the constants below, and `input_shape` (and perhaps `filters`) in
scen.yaml.
"""

import json
import math
import os

import keras
import numpy as np
import tensorflow as tf
from PIL import Image

IMAGE_SIZE = (32, 32)  # (H, W): keep equal to input_shape in scen.yaml, which is (H, W, C)
CLASSES = ("square", "disk", "triangle")  # as "classes" in boxes.json
MAX_BOXES = 10  # the most objects in one image: boxes are padded to this many rows so that they batch
STRIDE = 2  # image size / heatmap size: PreNet halves 32x32 and PostNet predicts at the finest map


def read_boxes(dataset_dir):
    """Images (N, H, W, 3) float32 in [0, 1] and boxes (N, MAX_BOXES, 5) float32 from dataset_dir/images/
    and dataset_dir/boxes.json. Box rows are [class_id, x0, y0, x1, y1] in pixels of the resized
    image; padding rows are -1."""
    with open(os.path.join(dataset_dir, "boxes.json")) as f:
        annotations = json.load(f)
    if tuple(annotations.pop("classes", CLASSES)) != CLASSES:
        raise ValueError(f"{dataset_dir}/boxes.json names other classes than CLASSES in user_module.py")
    names = sorted(os.listdir(os.path.join(dataset_dir, "images")))
    images = np.zeros((len(names), *IMAGE_SIZE, 3), np.float32)
    boxes = np.full((len(names), MAX_BOXES, 5), -1.0, np.float32)
    for i, name in enumerate(names):
        with Image.open(os.path.join(dataset_dir, "images", name)) as image:
            width, height = image.size
            images[i] = np.asarray(image.convert("RGB").resize(IMAGE_SIZE[::-1], Image.Resampling.BILINEAR)) / 255.0
        rows = np.asarray(annotations.get(name, []), np.float32).reshape(-1, 5)
        if len(rows) > MAX_BOXES:
            raise ValueError(f"{name} of {dataset_dir} has {len(rows)} boxes; raise MAX_BOXES in user_module.py")
        sx, sy = IMAGE_SIZE[1] / width, IMAGE_SIZE[0] / height
        boxes[i, : len(rows)] = rows * np.array([1, sx, sy, sx, sy], np.float32)
    return images, boxes


class BoxBatches(keras.utils.PyDataset):
    """(images (B, H, W, 3), boxes (B, MAX_BOXES, 5)) batches, float32, in a new order every epoch when
    shuffled. dopt reads batches 0 .. len - 1 per epoch and calls on_epoch_begin/on_epoch_end around
    them, as Keras' fit does; workers and multiprocessing are not used."""

    def __init__(self, images, boxes, batch_size, is_training, is_shuffle):
        super().__init__()
        self.images, self.boxes, self.batch_size, self.is_shuffle = images, boxes, batch_size, is_shuffle
        # Full training batches only: BatchNorm never sees a batch of one. Validation keeps every image.
        count = len(images) // batch_size if is_training else math.ceil(len(images) / batch_size)
        self.count = max(1, count)
        self.order = np.arange(len(images))

    def __len__(self):
        return self.count

    def __getitem__(self, i):
        rows = self.order[i * self.batch_size : (i + 1) * self.batch_size]
        return self.images[rows], self.boxes[rows]

    def on_epoch_begin(self):
        # dopt reseeds NumPy's global RNG from the run's seed and the epoch number at the start of
        # every epoch, just before this call: a run resumed at epoch k therefore draws epoch k's
        # order, as an uninterrupted run does. (Shuffling in on_epoch_end, or from an RNG seeded once
        # in __init__, would restart a resumed run from the first epoch's order.) Augment in
        # __getitem__ with np.random likewise, the images and their boxes alike.
        if self.is_shuffle:
            self.order = np.random.RandomState(np.random.randint(2**31 - 1)).permutation(len(self.images))


class UserModule:
    metric_name = "mAP50"  # the name of the metric in the results (docs/user-module.md#naming-the-metric)

    def __init__(self, epoch, batch_size):
        self.epoch = epoch
        self.batch_size = batch_size
        self.steps_per_epoch = 1
        # dataset_dir -> (images, boxes): the validation generator is built again for every
        # candidate, so the files are read once.
        self._read = {}

    def build_dataset_search(self, dataset_dir, is_training, is_shuffle):
        # dataset_dir is train_dir when is_training is True, else val_dir (absolute paths); is_shuffle
        # is True only for the training data, not for the images BatchNorm is recalibrated on.
        if dataset_dir not in self._read:
            self._read[dataset_dir] = read_boxes(dataset_dir)
        images, boxes = self._read[dataset_dir]
        batches = BoxBatches(images, boxes, self.batch_size, is_training, is_shuffle)
        if is_training:
            self.steps_per_epoch = len(batches)  # for lr_scheduler
            return batches, len(images)
        return batches, boxes, len(images)  # val_dataset (the middle) is yours: dopt never reads it

    def lr_scheduler(self, lr_init, global_step):
        # A linear warm-up over the first 10% of the steps, then cosine decay to 0.
        total = max(1, self.epoch * self.steps_per_epoch)
        warmup = max(1, total // 10)
        if global_step < warmup:
            return lr_init * (global_step + 1) / warmup
        return lr_init * 0.5 * (1 + math.cos(math.pi * min(1.0, (global_step - warmup) / max(1, total - warmup))))

    def metrics_op(self, inputs, outputs):
        # model: the candidate in inference mode, images -> PostNet's outputs. ids: the indices, in the
        # generator's order, of the validation images to score (all of them, or the first few during
        # training); read only the batches that hold them.
        valid_dir, model = inputs
        data_generator, ids, data_size = outputs
        wanted, start, detections, truth = set(ids.tolist()), 0, [], []
        for i in range(len(data_generator)):
            images, boxes = data_generator[i]
            rows = [r for r in range(len(images)) if start + r in wanted]
            if rows:
                detections += decode(np.asarray(model(images[rows])))
                truth += [b[b[:, 0] >= 0] for b in boxes[rows]]
            start += len(images)
            if start > ids[-1]:
                break
        return average_precision(detections, truth, iou_threshold=0.5)

    def loss_op(self, labels, logits):
        # labels: the padded boxes (N, MAX_BOXES, 5); logits: what PostNet returns, (N, h, w, classes + 2).
        # dopt runs loss_op eagerly during training, so the targets can be drawn with NumPy.
        heat, sizes, centres = (tf.constant(t) for t in centernet_targets(np.asarray(labels), logits.shape[1:3]))
        n = len(CLASSES)
        return focal_loss(logits[..., :n], heat) + 0.1 * size_loss(logits[..., n:], sizes, centres)


def centernet_targets(boxes, grid):
    """Training targets from padded boxes (N, MAX_BOXES, 5) on a grid (h, w) of cells STRIDE pixels wide.

    Returns float32 (N, h, w, classes) gaussians of peak 1 at each object's centre cell; (N, h, w, 2)
    box width and height in pixels at the centre cells; (N, h, w, 1), 1 at the centre cells.
    """
    h, w = grid
    heat = np.zeros((len(boxes), h, w, len(CLASSES)), np.float32)
    sizes = np.zeros((len(boxes), h, w, 2), np.float32)
    centres = np.zeros((len(boxes), h, w, 1), np.float32)
    gy, gx = np.mgrid[0:h, 0:w]
    for i, rows in enumerate(boxes):
        for cls, x0, y0, x1, y1 in rows[rows[:, 0] >= 0]:
            cx = min(max(int((x0 + x1) / 2 / STRIDE), 0), w - 1)
            cy = min(max(int((y0 + y1) / 2 / STRIDE), 0), h - 1)
            # A small object's peak is sharp, a large one's wide: near misses cost less there.
            sigma = max(0.5, min(x1 - x0, y1 - y0) / STRIDE / 6)
            blob = np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * sigma**2))
            np.maximum(heat[i, :, :, int(cls)], blob, out=heat[i, :, :, int(cls)])
            sizes[i, cy, cx] = x1 - x0, y1 - y0
            centres[i, cy, cx] = 1.0
    return heat, sizes, centres


def focal_loss(logits, target, alpha=2.0, beta=4.0):
    """CenterNet's penalty-reduced focal loss, averaged over the objects."""
    p = tf.clip_by_value(tf.sigmoid(logits), 1e-4, 1 - 1e-4)
    centre = tf.cast(tf.equal(target, 1.0), tf.float32)
    positive = -tf.math.log(p) * (1 - p) ** alpha * centre
    negative = -tf.math.log(1 - p) * p**alpha * (1 - target) ** beta * (1 - centre)
    return (tf.reduce_sum(positive) + tf.reduce_sum(negative)) / tf.maximum(tf.reduce_sum(centre), 1.0)


def size_loss(predicted, target, centres):
    """L1 on the width and height, at the centre cells only."""
    return tf.reduce_sum(tf.abs(predicted - target) * centres) / tf.maximum(tf.reduce_sum(centres), 1.0)


def decode(outputs, k=20, threshold=0.1):
    """Boxes from PostNet's outputs (N, h, w, classes + 2): one float32 array (k', 6) per image, rows
    [class_id, score, x0, y0, x1, y1] in pixels. A detection is a heatmap cell scoring above
    threshold and at least its 8 neighbours (CenterNet's replacement for non-maximum suppression),
    the k best per image."""
    n = len(CLASSES)
    heat = 1 / (1 + np.exp(-outputs[..., :n]))
    h, w = heat.shape[1:3]
    padded = np.pad(heat, ((0, 0), (1, 1), (1, 1), (0, 0)), constant_values=-np.inf)
    pooled = np.max([padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=0)
    peaks = (heat == pooled) & (heat > threshold)
    result = []
    for i in range(len(outputs)):
        y, x, c = np.nonzero(peaks[i])
        scores = heat[i, y, x, c]
        top = np.argsort(-scores, kind="stable")[:k]
        y, x, c, scores = y[top], x[top], c[top], scores[top]
        cx, cy = (x + 0.5) * STRIDE, (y + 0.5) * STRIDE
        bw, bh = outputs[i, y, x, n], outputs[i, y, x, n + 1]
        rows = np.stack([c, scores, cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        result.append(rows.astype(np.float32).reshape(-1, 6))
    return result


def average_precision(detections, truth, iou_threshold=0.5):
    """Mean over the classes with ground truth of the average precision (PASCAL VOC 2010+, all points).

    detections: per image, (k, 6) rows [class_id, score, x0, y0, x1, y1]; truth: per image, (m, 5)
    rows [class_id, x0, y0, x1, y1]. Written out rather than taken from pycocotools so that this
    file needs nothing more than TensorFlow, numpy and Pillow.
    """
    aps = []
    for cls in range(len(CLASSES)):
        gt = [t[t[:, 0] == cls, 1:] for t in truth]
        n_gt = sum(len(g) for g in gt)
        if not n_gt:
            continue
        found = [(d[1], i, d[2:]) for i, ds in enumerate(detections) for d in ds if d[0] == cls]
        found.sort(key=lambda f: -f[0])  # the most confident first
        matched = [np.zeros(len(g), bool) for g in gt]
        hits = np.zeros(len(found))
        for rank, (_, i, box) in enumerate(found):
            if len(gt[i]):
                ious = np.where(matched[i], -1.0, iou(box, gt[i]))
                best = int(np.argmax(ious))
                if ious[best] >= iou_threshold:
                    matched[i][best], hits[rank] = True, 1.0
        tp = np.cumsum(hits)
        recall = np.concatenate([[0.0], tp / n_gt, [1.0]])
        precision = np.concatenate([[0.0], tp / np.arange(1, len(found) + 1), [0.0]])
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # the monotone envelope
        steps = np.nonzero(recall[1:] != recall[:-1])[0]
        aps.append(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))
    return float(np.mean(aps)) if aps else 0.0


def iou(box, others):
    """Intersection over union of one box [x0, y0, x1, y1] with each row of others (m, 4)."""
    w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return w * h / np.maximum(union - w * h, 1e-12)


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
    """The fixed head: a small FPN merges the chosen feature maps (16x16, 8x8, 4x4 here) top-down at the
    finest, then two heads predict per cell the class heatmap logits and the box width and height
    in pixels, returned as one (N, h, w, classes + 2) tensor.

    dopt builds new PostNet() instances when it extracts a candidate and copies the weights in, so
    __init__ must create the same layers every time."""

    def __init__(self):
        super().__init__()
        self.lateral = [conv(32, 1) for _ in range(3)]  # one per feature map
        self.heat_conv, self.heat_bn = conv_bn(32)
        # CenterNet's prior: sigmoid(-2.19) = 0.1 everywhere, so the background does not swamp the first steps.
        self.heat = conv(len(CLASSES), 1, bias_initializer=tf.keras.initializers.Constant(-2.19))
        self.size_conv, self.size_bn = conv_bn(32)
        self.size = conv(2, 1)

    def call(self, inputs, training=True):
        *features, top = inputs  # finest first, as feature_choose lists them, then the last layer
        p = self.lateral[-1](top)
        for lateral, feature in zip(reversed(self.lateral[:-1]), reversed(features)):
            p = lateral(feature) + tf.image.resize(p, tf.shape(feature)[1:3], method="nearest")
        heat = self.heat(tf.nn.relu(self.heat_bn(self.heat_conv(p), training=training)))
        size = tf.nn.relu(self.size_bn(self.size_conv(p), training=training))
        # Sizes are a few pixels to the image's width: ReLU keeps them positive, the factor spares the
        # last layer from learning large weights.
        return tf.concat([heat, tf.nn.relu(self.size(size)) * 4.0], axis=-1)
