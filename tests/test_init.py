"""`dopt init`: the written user module, scenario and data run through `dopt -c` as they are."""

from __future__ import annotations

import functools
import json

import numpy as np
import pytest

from tests import helpers
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


dopt = functools.partial(helpers.dopt, timeout=900)


pytestmark = pytest.mark.slow  # whole runs in real processes (docs/contributing.md#running-the-tests)


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
    assert all(c["size"] <= doc["constraint"]["value"] for c in doc["archive"] if c["feasible"])
    weights = {"pytorch": ".weights.pth", "tensorflow": ".weights.h5"}[framework]
    assert (tmp_path / "results" / f"model_arch_result_1{weights}").is_file()


SHAPES_SHORT = [
    *SHORT,
    "--set",
    "scenario.strategy.dataset.pre_train_epochs=1",
    "--set",
    "scenario.strategy.training.sampling=uniform",
    "--set",
    "scenario.strategy.searcher.generation_num=1",
]


@pytest.mark.parametrize("task", ["detection", "segmentation"])
@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_init_detection_and_segmentation_write_files_that_run(tmp_path, framework, task):
    require("torch" if framework == "pytorch" else "tensorflow")
    from PIL import Image

    proc = dopt(tmp_path, "init", "--framework", framework, "--task", task)
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data", "scen.yaml", "user_module.py"]
    data = tmp_path / "data"
    assert sorted(p.name for p in (data / "pretrain").iterdir()) == ["disk", "square", "triangle"]
    for split, n in (("train", 400), ("val", 100)):
        images = sorted(p.name for p in (data / split / "images").iterdir())
        assert len(images) == n and images[0] == "0000.png"
        with Image.open(data / split / "images" / images[0]) as image:
            assert (image.mode, image.size) == ("RGB", (32, 32))
        if task == "segmentation":
            assert sorted(p.name for p in (data / split / "masks").iterdir()) == images
            with Image.open(data / split / "masks" / images[0]) as mask:
                assert mask.mode == "L" and set(np.unique(np.asarray(mask))) <= {0, 1, 2, 3}
        else:
            boxes = json.loads((data / split / "boxes.json").read_text())
            assert boxes.pop("classes") == ["square", "disk", "triangle"]
            assert sorted(boxes) == images and all(boxes.values())
            assert all(
                0 <= c < 3 and 0 <= x0 < x1 <= 32 and 0 <= y0 < y1 <= 32 for c, x0, y0, x1, y1 in boxes[images[0]]
            )
    scen, module = (tmp_path / "scen.yaml").read_text(), (tmp_path / "user_module.py").read_text()
    assert "pre_train_dir: data/pretrain" in scen and "feature_choose" in scen and "#" in scen and '"""' in module

    metric = "mAP50" if task == "detection" else "mIoU"
    run = dopt(tmp_path, "-c", "scen.yaml", *SHAPES_SHORT)
    assert run.returncode == 0, run.stderr[-3000:]
    doc = json.loads((tmp_path / "results" / "pareto.json").read_text())
    assert doc["front"] and doc["framework"] == framework and doc["metric_name"] == metric
    assert (tmp_path / "pretrained" / "pretrain.json").is_file()


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
    proc = dopt(tmp_path, "init", "--task", "pose", "--dir", "pose")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr and not (tmp_path / "pose").exists()
    proc = dopt(tmp_path, "init", "--framework", "jax")
    assert proc.returncode == 2 and "invalid choice" in proc.stderr
