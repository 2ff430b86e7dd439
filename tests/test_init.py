"""`dopt init`: the written user module, scenario and data run through `dopt -c` as they are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.frameworks import require

SHORT = [
    "--set",
    "scenario.strategy.epochs=1",
    "--set",
    "scenario.strategy.searcher.generation_num=2",
    "--set",
    "scenario.strategy.searcher.pop_size=4",
    "--set",
    "scenario.strategy.searcher.eval_batches=2",
    "--set",
    "scenario.strategy.searcher.bn_calib_batches=2",
]


def dopt(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "dopt", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
        timeout=900,
    )


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_init_output_runs_as_is(tmp_path, framework):
    require("torch" if framework == "pytorch" else "tensorflow")
    proc = dopt(tmp_path, "init", "--framework", framework)
    assert proc.returncode == 0, proc.stderr
    assert "dopt -c scen.yaml" in proc.stdout
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == ["data", "scen.yaml", "user_module.py"]
    classes = sorted(p.name for p in (tmp_path / "data" / "train").iterdir())
    assert classes == [str(d) for d in range(10)]
    assert sum(1 for _ in (tmp_path / "data" / "val").rglob("*.png")) == 360
    assert "#" in (tmp_path / "scen.yaml").read_text() and '"""' in (tmp_path / "user_module.py").read_text()

    check = dopt(tmp_path, "validate", "-c", "scen.yaml")
    assert check.returncode == 0, check.stderr
    shape = "16x8x8 (CHW)" if framework == "pytorch" else "8x8x16 (HWC)"  # in the order input_shape is written
    assert f"PreNet output {shape}" in check.stdout, check.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == written

    run = dopt(tmp_path, "-c", "scen.yaml", *SHORT)
    assert run.returncode == 0, run.stderr
    doc = json.loads((tmp_path / "results" / "pareto.json").read_text())
    assert doc["front"] and doc["framework"] == framework


def test_init_refuses_to_overwrite_and_writes_nothing(tmp_path):
    (tmp_path / "scen.yaml").write_text("# mine\n")
    proc = dopt(tmp_path, "init")
    assert proc.returncode == 2 and "scen.yaml" in proc.stderr and "never overwrites" in proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scen.yaml"]
    assert (tmp_path / "scen.yaml").read_text() == "# mine\n"


def test_init_into_a_directory_and_unknown_task(tmp_path):
    proc = dopt(tmp_path, "init", "--dir", "new")
    assert proc.returncode == 0, proc.stderr
    assert "cd new" in proc.stdout and (tmp_path / "new" / "user_module.py").exists()
    proc = dopt(tmp_path, "init", "--task", "detection", "--dir", "det")
    assert proc.returncode == 2 and "classification" in proc.stderr and not (tmp_path / "det").exists()
    proc = dopt(tmp_path, "init", "--framework", "jax")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
