"""The detection and segmentation demos as shipped, shortened with --set (fewer epochs and a smaller
search, sandwich sampling kept, so a PostNet taking a list of features trains under it) and with a
fifth of their scenes (data/*/scenes.json): their scen.yaml, user module and pre-training folders
stay runnable, and the results carry the demo's metric (docs/tasks.md#demos)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.frameworks import require

DEMOS = Path(__file__).resolve().parents[2] / "demos"

SHORT = [
    "scenario.strategy.epochs=1",
    "scenario.strategy.dataset.pre_train_epochs=1",
    "scenario.strategy.searcher.generation_num=1",
    "scenario.strategy.searcher.pop_size=6",
    "scenario.strategy.searcher.eval_batches=2",
]


pytestmark = pytest.mark.slow  # whole runs in real processes (docs/contributing.md#running-the-tests)


@pytest.mark.parametrize(
    ("demo", "metric"),
    [
        ("shapes_seg_torch", "mIoU"),
        ("shapes_det_torch", "mAP50"),
        ("shapes_seg_tf", "mIoU"),
        ("shapes_det_tf", "mAP50"),
    ],
)
def test_demo_runs_shortened(tmp_path, demo, metric):
    require("torch" if demo.endswith("torch") else "tensorflow")
    work = tmp_path / demo
    shutil.copytree(DEMOS / demo, work, ignore=shutil.ignore_patterns("results*", "checkpoints", "log_*", "pretrained"))
    for split, n in (("train", 160), ("val", 64)):  # a fifth of the shipped scenes, drawn from the same seeds
        scenes = work / "data" / split / "scenes.json"
        scenes.write_text(json.dumps({**json.loads(scenes.read_text()), "n": n}))
    args = [arg for kv in SHORT for arg in ("--set", kv)]
    proc = subprocess.run(
        [sys.executable, "-m", "dopt", "-c", "scen.yaml", *args], cwd=work, capture_output=True, text=True, timeout=900
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (work / "pretrained" / "pretrain.json").is_file(), "the demo did not pre-train"
    doc = json.loads((work / "results" / "pareto.json").read_text())
    assert doc["front"], doc
    header = (work / "results" / "model_arch_result_1.py").read_text().splitlines()[0]
    assert header.startswith(f"# {metric}: "), header
