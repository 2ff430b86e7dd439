"""The synthetic shapes scenes: deterministic, consistent masks and boxes, and metrics that score truth as perfect."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dopt.datasets.shapes import (
    CLASSES,
    average_precision_50,
    centernet_decode,
    centernet_targets,
    class_folders,
    mean_iou,
    scenes,
)


@pytest.fixture(scope="module")
def data():
    return scenes(64, size=32, max_objects=3, seed=1)


def _truth_as_detections(boxes: np.ndarray, shift: float = 0.0) -> list[np.ndarray]:
    out = []
    for image_boxes in boxes:
        b = image_boxes[image_boxes[:, 0] > 0].copy()
        b[:, [1, 3]] += shift * (b[:, 3] - b[:, 1])[:, None]
        out.append(np.concatenate([b[:, :1], np.ones((len(b), 1), np.float32), b[:, 1:]], axis=1))
    return out


def test_same_seed_same_arrays_and_other_seed_differs():
    a, b, c = scenes(8, seed=3), scenes(8, seed=3), scenes(8, seed=4)
    for name in ("images", "masks", "boxes"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    assert not np.array_equal(a.images, c.images)


def test_shapes_dtypes_and_ranges(data):
    assert CLASSES == ("background", "square", "disk", "triangle")
    assert len(data) == 64
    assert data.images.shape == (64, 32, 32, 3) and data.images.dtype == np.float32
    assert data.masks.shape == (64, 32, 32) and data.masks.dtype == np.int64
    assert data.boxes.shape == (64, 3, 5) and data.boxes.dtype == np.float32
    assert data.images.min() >= 0.0 and data.images.max() <= 1.0
    assert set(np.unique(data.masks)) <= {0, 1, 2, 3}
    assert set(np.unique(data.masks)) == {0, 1, 2, 3}  # 64 images show every class


def test_boxes_are_valid_padded_and_inside(data):
    for image_boxes in data.boxes:
        real = image_boxes[:, 0] > 0
        assert 1 <= real.sum() <= 3
        assert (np.diff(real.astype(int)) <= 0).all()  # padding rows come last
        assert (image_boxes[~real] == -1).all()
        b = image_boxes[real]
        assert (b[:, 1] >= 0).all() and (b[:, 2] >= 0).all() and (b[:, 3] <= 32).all() and (b[:, 4] <= 32).all()
        assert (b[:, 3] > b[:, 1]).all() and (b[:, 4] > b[:, 2]).all()
        assert ((b[:, 3] - b[:, 1]) <= 32 / 2.2).all() and ((b[:, 4] - b[:, 2]) <= 32 / 2.2).all()


def test_boxes_match_masks(data):
    for mask, image_boxes in zip(data.masks, data.boxes):
        covered = np.zeros((4, *mask.shape), bool)
        for cls, x0, y0, x1, y1 in image_boxes[image_boxes[:, 0] > 0].astype(int):
            region = mask[y0:y1, x0:x1] == cls
            assert region.any()
            # Tight: the box's edge rows and columns each touch its class.
            assert region[0].any() and region[-1].any() and region[:, 0].any() and region[:, -1].any()
            covered[cls, y0:y1, x0:x1] = True
        for cls in (1, 2, 3):
            assert covered[cls][mask == cls].all()


def test_class_folders(tmp_path):
    root = class_folders(tmp_path / "shapes", per_class=4, size=24, seed=0)
    assert root == tmp_path / "shapes"
    assert sorted(p.name for p in root.iterdir()) == ["disk", "square", "triangle"]
    for folder in root.iterdir():
        files = sorted(folder.glob("*.png"))
        assert [f.name for f in files] == ["000.png", "001.png", "002.png", "003.png"]
        for f in files:
            with Image.open(f) as image:
                assert image.mode == "RGB" and image.size == (24, 24)
    again = class_folders(tmp_path / "again", per_class=4, size=24, seed=0)
    assert (again / "disk" / "002.png").read_bytes() == (root / "disk" / "002.png").read_bytes()


def test_mean_iou(data):
    assert mean_iou(data.masks, data.masks, 4) == 1.0
    assert mean_iou(np.zeros_like(data.masks), data.masks, 4) < 0.5
    assert mean_iou(np.array([0, 1, 1, 2]), np.array([0, 1, 2, 2]), 3) == pytest.approx((1 + 0.5 + 0.5) / 3)


def test_average_precision_50(data):
    assert average_precision_50(_truth_as_detections(data.boxes), data.boxes) == 1.0
    assert average_precision_50([np.zeros((0, 6))] * len(data.boxes), data.boxes) == 0.0
    assert average_precision_50(_truth_as_detections(data.boxes, shift=0.5), data.boxes) < 0.5


def test_average_precision_50_ranks_by_score():
    truth = np.array([[[1, 0, 0, 10, 10], [-1, -1, -1, -1, -1]]], np.float32)
    wrong_first = [np.array([[1, 0.9, 20, 20, 30, 30], [1, 0.5, 0, 0, 10, 10]], np.float32)]
    right_first = [np.array([[1, 0.5, 20, 20, 30, 30], [1, 0.9, 0, 0, 10, 10]], np.float32)]
    assert average_precision_50(wrong_first, truth) == pytest.approx(0.5)
    assert average_precision_50(right_first, truth) == 1.0


@pytest.mark.parametrize("stride", [1, 2])
def test_centernet_round_trip(data, stride):
    heatmap, sizes, mask = centernet_targets(data.boxes, 32, stride=stride)
    cells = 32 // stride
    assert heatmap.shape == (64, 3, cells, cells) and sizes.shape == (64, 2, cells, cells)
    assert mask.shape == (64, 1, cells, cells)
    assert heatmap.dtype == sizes.dtype == mask.dtype == np.float32
    assert heatmap.max() == 1.0 and heatmap.min() >= 0.0
    detections = centernet_decode(heatmap, sizes, k=10, threshold=0.1, stride=stride)
    assert len(detections) == 64 and all(d.shape[1] == 6 for d in detections)
    assert average_precision_50(detections, data.boxes) >= 0.9
