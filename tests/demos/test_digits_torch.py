"""The digits demo as shipped, shortened with --set: its scen.yaml and user module stay runnable."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.digits_workdir import DEMO
from tests.frameworks import require

require("torch")


pytestmark = pytest.mark.slow  # whole runs in real processes (docs/contributing.md#running-the-tests)


def test_demo_runs_shortened(tmp_path):
    work = tmp_path / "digits_torch"
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
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((work / "results" / "pareto.json").read_text())
    assert doc["front"] and doc["constraint"] == {"type": "size", "value": 30000}
