"""A small segmentation working directory with pre-training: the shapes demo of a framework, fewer scenes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

DEMOS = Path(__file__).resolve().parents[1] / "demos"
SUFFIX = {"pytorch": ".pt", "tensorflow": ".weights.npz"}

# Seconds, not minutes: few steps of everything, pre-training included.
SHORT = [
    "scenario.strategy.batch_size=16",
    "scenario.strategy.epochs=2",
    "scenario.strategy.dataset.pre_train_epochs=3",
    "scenario.strategy.training.sampling=uniform",
    "scenario.strategy.searcher.generation_num=2",
    "scenario.strategy.searcher.pop_size=6",
    "scenario.strategy.searcher.bn_calib_batches=1",
    "scenario.strategy.searcher.eval_batches=1",
]
SHORT_ARGS = [arg for kv in SHORT for arg in ("--set", kv)]


def make_workdir(path: Path, framework: str) -> Path:
    """``demos/shapes_seg_<torch|tf>`` copied to ``path`` with 96 training and 32 validation scenes."""
    demo = DEMOS / ("shapes_seg_torch" if framework == "pytorch" else "shapes_seg_tf")
    shutil.copytree(demo, path, ignore=shutil.ignore_patterns("results*", "checkpoints", "log_*", "pretrained"))
    (path / "data" / "train" / "scenes.json").write_text(json.dumps({"n": 96, "seed": 1}))
    (path / "data" / "val" / "scenes.json").write_text(json.dumps({"n": 32, "seed": 2}))
    return path
