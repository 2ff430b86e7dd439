"""Batching of the user's datasets: a dataset's own collate_fn reaches every loader dopt builds."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.utils.data import Dataset

from dopt.backends.torch import data
from dopt.errors import UserError

CPU = torch.device("cpu")


class Boxes(Dataset):
    """Sample i: a 1×4×4 image and i % 3 + 1 boxes, so default batching cannot stack the labels."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, i: int):
        return torch.full((1, 4, 4), float(i)), torch.full((i % 3 + 1, 5), float(i))


class CollatedBoxes(Boxes):
    def collate_fn(self, samples):
        return torch.stack([x for x, _ in samples]), [y for _, y in samples]


def test_labels_of_different_sizes_without_collate_fn_are_a_user_error_naming_the_fix():
    with pytest.raises(UserError) as e:
        data.first_batch(Boxes(), 4, "dataset_define(train_dir, True)")
    text = str(e.value)
    assert "dataset_define(train_dir, True)" in text and "collate_fn" in text, text


def test_a_datasets_collate_fn_batches_every_loader():
    ds = CollatedBoxes()
    inputs, labels = data.first_batch(ds, 4, "training")
    assert inputs.shape == (4, 1, 4, 4) and [len(y) for y in labels] == [1, 2, 3, 1]
    train = data.train_loader(ds, 4, seed=0, device=CPU)
    assert all(isinstance(y, list) and len(y) == 4 for _, y in train)
    evaluated = data.eval_loader(ds, 4, CPU, max_batches=None)
    assert [len(y) for _, y in evaluated] == [4, 4, 2]
    calib = data.calibration_batches(ds, 4, 2, np.random.default_rng(0), CPU)
    assert [x.shape[0] for x in calib] == [4, 4]
    # A subset of the dataset (as dopt makes for eval_batches) keeps its batching.
    assert [len(y) for _, y in data.eval_loader(ds, 4, CPU, max_batches=1)] == [4]
