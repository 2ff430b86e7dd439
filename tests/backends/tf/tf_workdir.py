"""A tiny TensorFlow dopt working directory: the digits_tf demo's user module and data, a scenario of seconds."""

from __future__ import annotations

import shutil
from pathlib import Path

from tests.digits_workdir import TRAIN_IMAGES, copy_data

DEMO = Path(__file__).resolve().parents[3] / "demos" / "digits_tf"

SCENARIO = """\
scenario:
  strategy:
    name: NASEA
    framework: TensorFlow
    batch_size: 64
    epochs: {epochs}
    constraint:
      application_type: image_classification
      constraint_type: {kind}
      constraint_value: {value}
    supernet:
      input_shape: (8, 8, 1)
      filters: [16, 24, 48]
      strides: [1, 2, 2]
      search_space:
        kernel_sizes: [3, 5]
        expand_ratios: [1, 3]
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
    name: Tensorflow_standalone
    gpu_id: cpu
"""


def make_workdir(
    path: Path, kind: str = "size", value: float = 20000, epochs: int = 1, train_images: int | None = TRAIN_IMAGES
) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    shutil.copy(DEMO / "user_module.py", path / "user_module.py")
    copy_data(DEMO, path, train_images)
    (path / "scen.yaml").write_text(SCENARIO.format(kind=kind, value=value, epochs=epochs))
    return path
