"""A tiny dopt working directory: the digits demo's user module and data, a scenario of seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

DEMO = Path(__file__).resolve().parents[1] / "demos" / "digits_torch"

SCENARIO = """\
scenario:
  strategy:
    name: NASEA
    framework: PyTorch
    batch_size: 64
    epochs: 1
    constraint:
      application_type: image_classification
      constraint_type: {kind}
      constraint_value: {value}
    supernet:
      input_shape: (1, 8, 8)
      filters: [16, 24, 48]
      strides: [1, 2, 2]
    optimizer:
      weights_optimizer:
        type: Adam
        learning_rate: 0.005
    dataset:
      train_dir: data/train.npz
      val_dir: data/val.npz
    searcher:
      generation_num: 2
      pop_size: 6
      seed: 7
      bn_calib_batches: 2
      eval_batches: 2
  resource:
    name: pytorch_standalone
    gpu_id: cpu
"""


# Training images a test working directory keeps: 8 batches of 64 per epoch instead of the demo's
# 22. The whole runs of the suite test what dopt does, not how well it learns; a third of the data
# takes a third of the training time (docs/contributing.md#running-the-tests).
TRAIN_IMAGES = 512


def copy_data(demo: Path, target: Path, train_images: int | None = TRAIN_IMAGES) -> None:
    """The demo's ``data/`` in ``target/data``, its training set cut to its first ``train_images``
    images (None: all of them)."""
    shutil.copytree(demo / "data", target / "data", dirs_exist_ok=True)
    if train_images is not None:
        with np.load(demo / "data" / "train.npz", allow_pickle=False) as full:
            np.savez(target / "data" / "train.npz", **{k: full[k][:train_images] for k in full.files})


def make_workdir(path: Path, kind: str = "size", value: float = 20000, train_images: int | None = TRAIN_IMAGES) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO / "user_module.py", path / "user_module.py")
    copy_data(DEMO, path, train_images)
    (path / "scen.yaml").write_text(SCENARIO.format(kind=kind, value=value))
    return path
