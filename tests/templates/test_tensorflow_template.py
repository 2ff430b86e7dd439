"""The TensorFlow classification template (`dopt init --framework tensorflow`) runs as written on
PNG class folders like the ones `dopt init` writes (data/train/<class>/<n>.png, 8x8 grey)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.frameworks import require

require("tensorflow")

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "dopt" / "templates" / "tensorflow" / "classification"
DIGITS = ROOT / "demos" / "digits_tf" / "data"


pytestmark = pytest.mark.slow  # whole runs in real processes (docs/contributing.md#running-the-tests)


def write_png_folders(workdir: Path) -> None:
    for split in ("train", "val"):
        data = np.load(DIGITS / f"{split}.npz")
        for n, (image, label) in enumerate(zip(data["images"], data["labels"])):
            folder = workdir / "data" / split / str(int(label))
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((image.astype(np.float32) * 255 / 16).astype(np.uint8), mode="L").save(folder / f"{n}.png")


def test_template_runs_shortened_on_png_class_folders(tmp_path):
    work = tmp_path / "w"
    shutil.copytree(TEMPLATE, work)
    write_png_folders(work)
    short = [
        "scenario.strategy.epochs=2",
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
    assert doc["front"] and all(c["size"] <= 30000 for c in doc["archive"] if c["feasible"])
    assert (work / "results" / "model_arch_result_1.weights.h5").is_file()
