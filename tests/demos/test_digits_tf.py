"""The TensorFlow digits demo as shipped, shortened with --set: its scen.yaml and user module stay runnable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.frameworks import require

require("tensorflow")

DEMO = Path(__file__).resolve().parents[2] / "demos" / "digits_tf"


pytestmark = pytest.mark.slow  # whole runs in real processes (docs/contributing.md#running-the-tests)


def test_demo_runs_shortened(tmp_path):
    work = tmp_path / "digits_tf"
    shutil.copytree(DEMO, work, ignore=shutil.ignore_patterns("results", "checkpoints", "log_*"))
    short = [
        "scenario.strategy.epochs=1",
        "scenario.strategy.searcher.generation_num=1",
        "scenario.strategy.searcher.pop_size=12",
        "scenario.strategy.training.sampling=uniform",
        "scenario.strategy.training.distill=false",
    ]
    args = [arg for kv in short for arg in ("--set", kv)]
    proc = subprocess.run(
        [sys.executable, "-m", "dopt", "-c", "scen.yaml", *args], cwd=work, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    doc = json.loads((work / "results" / "pareto.json").read_text())
    assert doc["front"] and doc["constraint"] == {"type": "size", "value": 30000}
    assert (work / "results" / "model_arch_result_1.weights.h5").is_file()
