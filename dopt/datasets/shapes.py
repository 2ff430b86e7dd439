"""Synthetic scenes of shapes, for demos and tests of object detection and semantic segmentation.

Each image shows 1 to ``max_objects`` shapes of three classes (1 = square, 2 = disk, 3 = triangle;
0 is the background), each in a random colour, on a noisy background of a random colour. Everything
is drawn from ``numpy.random.default_rng(seed)``: the same seed gives identical arrays.

Why: detection and segmentation demos and tests need data that is offline, small and quick to learn,
as scikit-learn's ``load_digits`` is for classification. This module draws it with numpy and PIL only
(no framework), and brings the few helpers such demos need: the metrics (mean IoU, AP at IoU 0.5) and
CenterNet-style targets and decoding. Arrays are channels-first where a model reads or writes them
(PyTorch's layout); TensorFlow users transpose (``np.transpose(a, (0, 2, 3, 1))``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = [
    "CLASSES",
    "Scenes",
    "scenes",
    "class_folders",
    "mean_iou",
    "average_precision_50",
    "centernet_decode",
    "centernet_targets",
]

CLASSES = ("background", "square", "disk", "triangle")
_NOISE = 0.06  # standard deviation of the gaussian pixel noise, on the [0, 1] scale


@dataclass(frozen=True, eq=False)
class Scenes:
    """A batch of scenes.

    Attributes:
        images: float32 (n, size, size, 3) in [0, 1], height-width-channels.
        masks: int64 (n, size, size), the class id of each pixel (0 = background).
        boxes: float32 (n, max_objects, 5), rows ``[class_id, x0, y0, x1, y1]`` in pixels (x1, y1
            exclusive), the tight box of what is visible of each object; padding rows are all -1.
    """

    images: np.ndarray
    masks: np.ndarray
    boxes: np.ndarray

    def __len__(self) -> int:
        """The number of images."""
        return len(self.images)


def _shape(cls: int, x0: int, y0: int, s: int, size: int) -> np.ndarray:
    """The boolean (size, size) mask of a shape of class ``cls`` in the square [x0, x0+s) x [y0, y0+s)."""
    py, px = np.mgrid[0:size, 0:size] + 0.5  # pixel centres
    if cls == 1:
        return (px >= x0) & (px < x0 + s) & (py >= y0) & (py < y0 + s)
    if cls == 2:
        return (px - x0 - s / 2) ** 2 + (py - y0 - s / 2) ** 2 <= (s / 2) ** 2
    # An upright isosceles triangle: apex at the top middle, base along the bottom edge.
    return (py <= y0 + s) & (np.abs(px - x0 - s / 2) <= (py - y0) / 2)


def _colour(rng: np.random.Generator, background: np.ndarray) -> np.ndarray:
    """A random colour far enough from the background to be seen."""
    while True:
        colour = rng.uniform(0.0, 1.0, 3)
        if np.linalg.norm(colour - background) > 0.5:
            return colour


def _canvas(rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A random background colour, and a (size, size, 3) image of it."""
    background = rng.uniform(0.0, 1.0, 3)
    return background, np.broadcast_to(background, (size, size, 3)).copy()


def _noisy(rng: np.random.Generator, image: np.ndarray) -> np.ndarray:
    return np.clip(image + rng.normal(0.0, _NOISE, image.shape), 0.0, 1.0).astype(np.float32)


def scenes(n: int, size: int = 32, max_objects: int = 3, seed: int = 0) -> Scenes:
    """Draw ``n`` scenes of ``size`` x ``size`` pixels, each with 1 to ``max_objects`` shapes.

    Shapes have sides between ``size / 5`` and ``size / 2.2`` and lie fully inside the image; later
    shapes hide earlier ones where they overlap. An object hidden entirely is dropped from ``boxes``.

    Args:
        n: number of images.
        size: image height and width in pixels.
        max_objects: the most objects per image (and the second dimension of ``boxes``).
        seed: seed of ``numpy.random.default_rng``.
    """
    low, high = math.ceil(size / 5), math.floor(size / 2.2)
    if low > high or max_objects < 1 or n < 0:
        raise ValueError(f"no scenes of size={size}, max_objects={max_objects}, n={n}")
    rng = np.random.default_rng(seed)
    images = np.empty((n, size, size, 3), np.float32)
    masks = np.zeros((n, size, size), np.int64)
    boxes = np.full((n, max_objects, 5), -1.0, np.float32)
    for i in range(n):
        background, image = _canvas(rng, size)
        owner = np.full((size, size), -1)  # which object each pixel shows
        classes = rng.integers(1, len(CLASSES), rng.integers(1, max_objects + 1))
        for j, cls in enumerate(classes):
            s = int(rng.integers(low, high + 1))
            x0, y0 = (int(v) for v in rng.integers(0, size - s + 1, 2))
            region = _shape(int(cls), x0, y0, s, size)
            image[region] = _colour(rng, background)
            masks[i][region] = cls
            owner[region] = j
        images[i] = _noisy(rng, image)
        row = 0
        for j, cls in enumerate(classes):
            ys, xs = np.nonzero(owner == j)
            if len(xs):  # else hidden by later shapes
                boxes[i, row] = (cls, xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
                row += 1
    return Scenes(images, masks, boxes)


def class_folders(root: str | Path, per_class: int = 40, size: int = 32, seed: int = 0) -> Path:
    """Write ``root/<class>/000.png, ...``: one shape of that class per image, for classification pre-training.

    Each 8-bit RGB PNG shows one shape of random size (``size / 3`` to ``0.7 * size``) and colour near
    the middle of a noisy background. There is no background folder.

    Args:
        root: the folder to write into (created if missing).
        per_class: images per class.
        size: image height and width in pixels.
        seed: seed of ``numpy.random.default_rng``.

    Returns:
        ``root`` as a Path.
    """
    root = Path(root)
    rng = np.random.default_rng(seed)
    digits = max(3, len(str(per_class - 1)))
    for cls, name in enumerate(CLASSES[1:], start=1):
        folder = root / name
        folder.mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            background, image = _canvas(rng, size)
            s = int(rng.integers(max(1, size // 3), max(2, round(0.7 * size)) + 1))
            jitter = rng.integers(-(size // 8), size // 8 + 1, 2)
            x0, y0 = (int(np.clip((size - s) // 2 + d, 0, size - s)) for d in jitter)
            image[_shape(cls, x0, y0, s, size)] = _colour(rng, background)
            pixels = np.round(_noisy(rng, image) * 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(folder / f"{k:0{digits}d}.png")
    return root


def mean_iou(pred: np.ndarray, target: np.ndarray, n_classes: int) -> float:
    """Mean over the classes present in ``target`` or ``pred`` of intersection over union.

    Args:
        pred: integer class ids, any shape.
        target: integer class ids, the same shape.
        n_classes: number of classes (ids are 0 .. n_classes - 1).
    """
    pred, target = np.asarray(pred).ravel(), np.asarray(target).ravel()
    if pred.shape != target.shape or not len(pred):
        raise ValueError(f"pred and target must be non-empty and of equal shape, not {pred.shape}, {target.shape}")
    confusion = np.bincount(n_classes * target.astype(np.int64) + pred, minlength=n_classes**2).reshape(n_classes, -1)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    present = union > 0
    return float(np.mean(intersection[present] / union[present]))


def _iou(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """IoU of one box ``[x0, y0, x1, y1]`` with each row of ``others`` (k, 4)."""
    w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    area = (box[2] - box[0]) * (box[3] - box[1])
    areas = (others[:, 2] - others[:, 0]) * (others[:, 3] - others[:, 1])
    return w * h / np.maximum(area + areas - w * h, 1e-12)


def average_precision_50(detections: list[np.ndarray], boxes: np.ndarray) -> float:
    """Mean over the object classes of the average precision at IoU 0.5 (VOC 2010+, all points).

    Hand-written: pycocotools would need COCO-format files and a compiled extension, for a metric
    that only demos use.

    Args:
        detections: one array (k, 6) per image, rows ``[class_id, score, x0, y0, x1, y1]``.
        boxes: the ground truth, (n, max_objects, 5) as in :class:`Scenes` (class -1 rows are padding).

    Returns:
        The mAP over the classes that have ground truth (NaN if none has).
    """
    if len(detections) != len(boxes):
        raise ValueError(f"{len(detections)} detection arrays for {len(boxes)} images")
    dets = [np.asarray(d, np.float64).reshape(-1, 6) for d in detections]
    aps = []
    for cls in range(1, len(CLASSES)):
        truth = [b[b[:, 0] == cls, 1:].astype(np.float64) for b in boxes]
        n_truth = sum(len(t) for t in truth)
        if not n_truth:
            continue
        found = [(d[r, 1], i, d[r, 2:]) for i, d in enumerate(dets) for r in np.nonzero(d[:, 0] == cls)[0]]
        found.sort(key=lambda f: -f[0])  # stable: ties keep their order
        matched = [np.zeros(len(t), bool) for t in truth]
        hits = np.zeros(len(found))
        for rank, (_, i, box) in enumerate(found):
            if len(truth[i]):
                ious = np.where(matched[i], -1.0, _iou(box, truth[i]))
                best = int(np.argmax(ious))
                if ious[best] >= 0.5:
                    matched[i][best] = True
                    hits[rank] = 1.0
        tp = np.cumsum(hits)
        recall = np.concatenate([[0.0], tp / n_truth, [1.0]])
        precision = np.concatenate([[0.0], tp / np.arange(1, len(found) + 1), [0.0]])
        precision = np.maximum.accumulate(precision[::-1])[::-1]  # monotone decreasing envelope
        steps = np.nonzero(recall[1:] != recall[:-1])[0]
        aps.append(float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1])))
    return float(np.mean(aps)) if aps else math.nan


def centernet_decode(
    heatmap: np.ndarray, sizes: np.ndarray, k: int = 10, threshold: float = 0.1, stride: int = 1
) -> list[np.ndarray]:
    """Detections from CenterNet-style outputs: the peaks of the class heatmaps, with their box sizes.

    Args:
        heatmap: (n, 3, h, w) scores in [0, 1], one channel per object class (class id = channel + 1).
        sizes: (n, 2, h, w) box width and height, in pixels of the input image.
        k: the most detections per image (the highest scores).
        threshold: peaks scoring at most this are dropped.
        stride: input image size / h; a cell (x, y) is centred at ((x + 0.5) * stride, (y + 0.5) * stride).

    Returns:
        One float32 array (k', 6) per image, rows ``[class_id, score, x0, y0, x1, y1]``.
    """
    heatmap, sizes = np.asarray(heatmap, np.float32), np.asarray(sizes, np.float32)
    n, _, h, w = heatmap.shape
    padded = np.pad(heatmap, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
    pooled = np.max([padded[:, :, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)], axis=0)
    peaks = (heatmap == pooled) & (heatmap > threshold)
    out = []
    for i in range(n):
        c, y, x = np.nonzero(peaks[i])
        scores = heatmap[i, c, y, x]
        top = np.argsort(-scores, kind="stable")[:k]
        c, y, x, scores = c[top], y[top], x[top], scores[top]
        cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
        bw, bh = sizes[i, 0, y, x], sizes[i, 1, y, x]
        rows = np.stack([c + 1, scores, cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1)
        out.append(rows.astype(np.float32).reshape(-1, 6))
    return out


def centernet_targets(boxes: np.ndarray, size: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CenterNet-style training targets from ground-truth boxes, the inverse of :func:`centernet_decode`.

    Channels-first (PyTorch's layout); TensorFlow users transpose to (n, h, w, c).

    Args:
        boxes: (n, max_objects, 5) as in :class:`Scenes`.
        size: input image height and width in pixels.
        stride: output stride; the maps are ``size // stride`` square.

    Returns:
        ``(heatmap, sizes, mask)``: float32 (n, 3, h, w) gaussians of peak 1 at each object's centre cell
        (sigma ``max(0.5, min(w, h) / stride / 6)``, the maximum where they overlap); float32 (n, 2, h, w)
        box width and height in input pixels at the centre cells; float32 (n, 1, h, w), 1 at centre cells.
    """
    n, cells = len(boxes), size // stride
    heatmap = np.zeros((n, len(CLASSES) - 1, cells, cells), np.float32)
    sizes = np.zeros((n, 2, cells, cells), np.float32)
    mask = np.zeros((n, 1, cells, cells), np.float32)
    gy, gx = np.mgrid[0:cells, 0:cells]
    for i, image_boxes in enumerate(np.asarray(boxes)):
        for cls, x0, y0, x1, y1 in image_boxes[image_boxes[:, 0] > 0]:
            bw, bh = x1 - x0, y1 - y0
            cx = min(max(int((x0 + x1) / 2 / stride), 0), cells - 1)
            cy = min(max(int((y0 + y1) / 2 / stride), 0), cells - 1)
            sigma = max(0.5, min(bw, bh) / stride / 6)
            blob = np.exp(-((gx - cx) ** 2 + (gy - cy) ** 2) / (2 * sigma**2))
            np.maximum(heatmap[i, int(cls) - 1], blob, out=heatmap[i, int(cls) - 1])
            sizes[i, :, cy, cx] = bw, bh
            mask[i, 0, cy, cx] = 1.0
    return heatmap, sizes, mask
