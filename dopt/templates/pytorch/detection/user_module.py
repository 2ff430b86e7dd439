"""user_module.py for dopt, PyTorch object detection (the NASEA PyTorch interface).

dopt imports this file from the working directory and drives it:

    um = UserModule(epoch=<epochs>, batch_size=<batch_size>)
    train = um.dataset_define(<train_dir>, True)     # a torch Dataset of (image, boxes) pairs
    val = um.dataset_define(<val_dir>, False)
    scheduler = um.scheduler_define(optimizer, steps_per_epoch)   # stepped after every optimizer step
    loss = um.loss_func(boxes, outputs)              # scalar tensor
    metric = um.metrics_func(val_loader, eval_function)  # mAP at IoU 0.5, higher is better

The searched network is PreNet -> searched layers -> PostNet. PreNet and PostNet are yours and
fixed; dopt searches the layers in between (kernel 3/5/7, expansion 3/6, width, depth). With
`feature_choose: [0, 2]` in scen.yaml PostNet receives a list: the outputs of searched layers 0
and 2, then the last layer's. Those layers always run at full width (`filters[i]` channels), so
PostNet sees the same shapes whatever subnet is active (docs/tasks.md).

The detector is CenterNet-style ("Objects as Points", Zhou et al. 2019), chosen because it needs
no anchors and no non-maximum suppression: PostNet merges the feature maps in a small feature
pyramid and predicts, on a grid STRIDE times coarser than the image, one heatmap of object centres
per class and each object's width and height. Training targets are drawn from the boxes in
`loss_func`; `decode` turns outputs back into boxes for the metric.

Before the search, dopt pre-trains PreNet and the searched layers as a classifier on
`pre_train_dir` (one folder of images per class), read as RGB in [0, 1] at `input_shape`: the
images below are scaled the same way. Normalise differently and define `pretrain_dataset_define`
too (docs/tasks.md#the-pre-training-dataset).

The data is read with Pillow (which dopt already installs) from this layout:

    data/train/images/0000.png   an image (any size: resized to IMAGE_SIZE, its boxes scaled alike)
    data/train/boxes.json        {"classes": ["square", ...],
                                  "0000.png": [[class_id, x0, y0, x1, y1], ...], ...}
                                 class ids index "classes" from 0; corners in pixels of the file,
                                 x1, y1 exclusive; an image without objects has [] (or no entry)
    data/val/...                 the same
    data/pretrain/<class>/*.png  the pre-training class folders

`dopt init` writes synthetic scenes (squares, disks and triangles, 32x32) in that layout, so
`dopt -c scen.yaml` runs at once. For your own data: convert your annotations to boxes.json (or
change `BoxFolder`), set the constants below, and `input_shape` (and perhaps `filters`) in
scen.yaml.
"""

import json
import os

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

IMAGE_SIZE = (32, 32)  # (H, W): keep equal to input_shape in scen.yaml, which is (C, H, W)
CLASSES = ("square", "disk", "triangle")  # as "classes" in boxes.json
MAX_BOXES = 10  # the most objects in one image: boxes are padded to this many rows so that they batch
STRIDE = 2  # image size / heatmap size: PreNet halves 32x32 and PostNet predicts at the finest map
FEATURE_CHANNELS = (16, 32, 48)  # scen.yaml's filters[i] for feature_choose [0, 2], then filters[-1]


class BoxFolder(torch.utils.data.Dataset):
    """(image float32 3×H×W in [0, 1], boxes float32 MAX_BOXES×5) for every image in dataset_dir/images/.

    Box rows are [class_id, x0, y0, x1, y1] in pixels of the resized image; padding rows are -1.
    """

    def __init__(self, dataset_dir, augment):
        self.dataset_dir, self.augment = dataset_dir, augment
        with open(os.path.join(dataset_dir, "boxes.json")) as f:
            annotations = json.load(f)
        if tuple(annotations.pop("classes", CLASSES)) != CLASSES:
            raise ValueError(f"{dataset_dir}/boxes.json names other classes than CLASSES in user_module.py")
        self.names = sorted(os.listdir(os.path.join(dataset_dir, "images")))
        self.boxes = [np.asarray(annotations.get(n, []), np.float32).reshape(-1, 5) for n in self.names]
        crowded = max(len(b) for b in self.boxes)
        if crowded > MAX_BOXES:
            raise ValueError(f"an image of {dataset_dir} has {crowded} boxes; raise MAX_BOXES in user_module.py")

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        with Image.open(os.path.join(self.dataset_dir, "images", self.names[index])) as image:
            width, height = image.size
            image = np.asarray(image.convert("RGB").resize(IMAGE_SIZE[::-1], Image.Resampling.BILINEAR), np.float32)
        boxes = np.full((MAX_BOXES, 5), -1.0, np.float32)
        rows = self.boxes[index]
        sx, sy = IMAGE_SIZE[1] / width, IMAGE_SIZE[0] / height
        boxes[: len(rows)] = rows * np.array([1, sx, sy, sx, sy], np.float32)
        image = torch.from_numpy(image / 255.0).permute(2, 0, 1).contiguous()
        if self.augment and torch.rand(()) < 0.5:
            # Augment here, the image and its boxes alike (training only). dopt reseeds torch every
            # epoch, so a resumed run replays these draws.
            image = image.flip(-1)
            boxes[: len(rows), [1, 3]] = IMAGE_SIZE[1] - boxes[: len(rows), [3, 1]]  # x0, x1 = W - x1, W - x0
        return image, torch.from_numpy(boxes)


class UserModule:
    metric_name = "mAP50"  # the name of the metric in the results (docs/user-module.md#naming-the-metric)

    def __init__(self, epoch, batch_size):
        self.epoch = epoch
        self.batch_size = batch_size

    def dataset_define(self, dataset_dir, is_training):
        # dataset_dir is train_dir when is_training is True, else val_dir (absolute paths).
        return BoxFolder(dataset_dir, augment=is_training)

    def scheduler_define(self, optimizer, steps_per_epoch):
        # Stepped after every optimizer step: total steps = epochs * steps_per_epoch. One cycle: warm
        # up to the scenario's learning rate, then anneal, which suits the short runs of a search.
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optimizer.param_groups[0]["lr"], total_steps=self.epoch * steps_per_epoch
        )

    def metrics_func(self, eval_dataloader, eval_function):
        # eval_function runs the candidate network in eval mode without gradients.
        detections, truth = [], []
        for inputs, boxes in eval_dataloader:
            detections += decode(eval_function(inputs))
            truth += [b[b[:, 0] >= 0].numpy() for b in boxes]
        return average_precision(detections, truth, iou_threshold=0.5)

    def loss_func(self, labels, logits):
        # labels: the padded boxes (N, MAX_BOXES, 5); logits: what PostNet returns, (N, classes + 2, h, w).
        heat, sizes, centres = (
            torch.from_numpy(t).to(logits.device) for t in centernet_targets(labels.cpu().numpy(), logits.shape[-2:])
        )
        n = len(CLASSES)
        return focal_loss(logits[:, :n], heat) + 0.1 * size_loss(logits[:, n:], sizes, centres)


def centernet_targets(boxes, grid):
    """Training targets from padded boxes (N, MAX_BOXES, 5) on a grid (h, w) of cells STRIDE pixels wide.

    Returns float32 (N, classes, h, w) gaussians of peak 1 at each object's centre cell; (N, 2, h, w)
    box width and height in pixels at the centre cells; (N, 1, h, w), 1 at the centre cells.
    """
    h, w = grid
    heat = np.zeros((len(boxes), len(CLASSES), h, w), np.float32)
    sizes = np.zeros((len(boxes), 2, h, w), np.float32)
    centres = np.zeros((len(boxes), 1, h, w), np.float32)
    gy, gx = np.mgrid[0:h, 0:w]
    for i, rows in enumerate(boxes):
        for cls, x0, y0, x1, y1 in rows[rows[:, 0] >= 0]:
            cx = min(max(int((x0 + x1) / 2 / STRIDE), 0), w - 1)
            cy = min(max(int((y0 + y1) / 2 / STRIDE), 0), h - 1)
            # A small object's peak is sharp, a large one's wide: near misses cost less there.
            sigma = max(0.5, min(x1 - x0, y1 - y0) / STRIDE / 6)
            blob = np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * sigma**2))
            np.maximum(heat[i, int(cls)], blob, out=heat[i, int(cls)])
            sizes[i, :, cy, cx] = x1 - x0, y1 - y0
            centres[i, 0, cy, cx] = 1.0
    return heat, sizes, centres


def focal_loss(logits, target, alpha=2.0, beta=4.0):
    """CenterNet's penalty-reduced focal loss, averaged over the objects."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    centre = target.eq(1).float()
    positive = -torch.log(p) * (1 - p) ** alpha * centre
    negative = -torch.log(1 - p) * p**alpha * (1 - target) ** beta * (1 - centre)
    return (positive.sum() + negative.sum()) / centre.sum().clamp(min=1)


def size_loss(predicted, target, centres):
    """L1 on the width and height, at the centre cells only."""
    return (F.l1_loss(predicted, target, reduction="none") * centres).sum() / centres.sum().clamp(min=1)


def decode(outputs, k=20, threshold=0.1):
    """Boxes from PostNet's outputs: one float32 array (k', 6) per image, rows [class_id, score, x0, y0,
    x1, y1] in pixels. A detection is a heatmap cell scoring above threshold and at least its 8
    neighbours (CenterNet's replacement for non-maximum suppression), the k best per image."""
    n = len(CLASSES)
    heat = torch.sigmoid(outputs[:, :n])
    peaks = (heat == F.max_pool2d(heat, 3, stride=1, padding=1)) & (heat > threshold)
    result = []
    for i in range(len(outputs)):
        c, y, x = torch.nonzero(peaks[i], as_tuple=True)
        scores = heat[i, c, y, x]
        top = torch.argsort(scores, descending=True)[:k]
        c, y, x, scores = c[top], y[top], x[top], scores[top]
        cx, cy = (x + 0.5) * STRIDE, (y + 0.5) * STRIDE
        bw, bh = outputs[i, n, y, x], outputs[i, n + 1, y, x]
        rows = torch.stack([c.float(), scores, cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], dim=1)
        result.append(rows.cpu().numpy().reshape(-1, 6))
    return result


def average_precision(detections, truth, iou_threshold=0.5):
    """Mean over the classes with ground truth of the average precision (PASCAL VOC 2010+, all points).

    detections: per image, (k, 6) rows [class_id, score, x0, y0, x1, y1]; truth: per image, (m, 5)
    rows [class_id, x0, y0, x1, y1]. Written out rather than taken from pycocotools or torchmetrics
    so that this file needs nothing more than torch, numpy and Pillow.
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


def conv_bn(c_in, c_out, k=3, stride=1):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class PreNet(nn.Module):
    """The fixed stem: 32x32 -> 16x16, 16 channels (dopt finds both by a dry run)."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 16, stride=2)

    def forward(self, inputs):
        return self.stem(inputs)


class PostNet(nn.Module):
    """The fixed head: a small FPN merges the chosen feature maps (16x16, 8x8, 4x4 here) top-down at the
    finest, then two heads predict per cell the class heatmap logits and the box width and height
    in pixels, returned as one (N, classes + 2, h, w) tensor."""

    def __init__(self):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, 32, 1) for c in FEATURE_CHANNELS)
        self.heat = nn.Sequential(conv_bn(32, 32), nn.Conv2d(32, len(CLASSES), 1))
        self.size = nn.Sequential(conv_bn(32, 32), nn.Conv2d(32, 2, 1))
        # CenterNet's prior: sigmoid(-2.19) = 0.1 everywhere, so the background does not swamp the first steps.
        nn.init.constant_(self.heat[-1].bias, -2.19)

    def forward(self, inputs):
        *features, top = inputs  # finest first, as feature_choose lists them, then the last layer
        p = self.lateral[-1](top)
        for lateral, feature in zip(reversed(self.lateral[:-1]), reversed(features)):
            p = lateral(feature) + F.interpolate(p, size=feature.shape[-2:], mode="nearest")
        # Sizes are a few pixels to the image's width: ReLU keeps them positive, the factor spares the
        # last layer from learning large weights.
        return torch.cat([self.heat(p), F.relu(self.size(p)) * 4.0], dim=1)
