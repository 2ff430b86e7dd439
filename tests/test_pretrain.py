"""Pre-training for detection and segmentation: a run from class folders, a run from its output,
kill -9 and --resume, and the mistakes refused before anything is written (docs/tasks.md#pre-training)."""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from dopt.datasets.class_folders import ClassFolders
from dopt.errors import UserError
from tests import helpers
from tests.helpers import archive, assert_same_archive, kill_when
from tests.shapes_workdir import SHORT_ARGS, SUFFIX, make_workdir
from tests.shared_runs import shared_run

dopt = functools.partial(helpers.dopt, threads=1)


pytestmark = pytest.mark.slow  # whole runs in real processes (docs/contributing.md#running-the-tests)


@pytest.fixture
def pretrained_run(tmp_path_factory, framework):
    """The session's pre-training run of ``framework``, shared by the xdist workers; copied, never
    changed, by the tests that run in a working directory of their own."""
    made = shared_run(tmp_path_factory, f"pretrain_{framework}", lambda p: make_workdir(p, framework), SHORT_ARGS)
    return made.work, made.stderr


def test_a_run_pretrains_saves_and_says_where(pretrained_run, framework):
    work, console = pretrained_run
    manifest = json.loads((work / "pretrained" / "pretrain.json").read_text())
    assert manifest["classes"] == 3 and manifest["epochs"] == 3, manifest
    assert (work / "pretrained" / manifest["weights"]).is_file()
    assert manifest["weights"].endswith(SUFFIX[framework])
    assert "set pre_train_dir: pretrained" in console, console[-2000:]
    log = next(work.glob("log_*/dopt.log")).read_text()
    assert "pre-training PreNet + the largest skeleton" in log and "3 classes, 3 epochs" in log, log[:3000]
    assert archive(work)["front"], "the run found no front"


def test_a_run_from_the_pretraining_output_skips_pretraining(pretrained_run, tmp_path, framework):
    first, _ = pretrained_run
    work = make_workdir(tmp_path / "work", framework)
    target = str(first / "pretrained")
    proc = dopt(work, "-c", "scen.yaml", *SHORT_ARGS, "--set", f"scenario.strategy.dataset.pre_train_dir={target}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = next(work.glob("log_*/dopt.log")).read_text()
    assert "start from the pre-trained weights" in log and "pre-training PreNet" not in log, log[:3000]
    assert "loading the pre-trained weights" in log and "INFO dopt: pre-training\n" not in log, log[:3000]
    # SHORT_ARGS set pre_train_epochs, which a loaded pre-training output leaves unused: said once.
    assert proc.stderr.count("pre_train_epochs is ignored") == 1, proc.stderr[-3000:]
    assert not (work / "pretrained").exists(), "pre-training ran again"


def test_a_pretraining_output_of_another_skeleton_is_refused_before_anything_is_written(
    pretrained_run, tmp_path, framework
):
    first, _ = pretrained_run
    work = make_workdir(tmp_path / "work", framework)
    other = ["--set", "scenario.strategy.supernet.strides=[1, 2, 1, 1]"]
    target = ["--set", f"scenario.strategy.dataset.pre_train_dir={first / 'pretrained'}"]
    proc = dopt(work, "-c", "scen.yaml", *SHORT_ARGS, *other, *target)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dopt: error:")]
    assert len(errors) == 1 and "pre-trained for another skeleton" in errors[0], proc.stderr[-3000:]
    assert "strides [1, 2, 1, 2] there, [1, 2, 1, 1] here" in errors[0], errors
    assert _written(work) == [], _written(work)


def test_kill_during_pretraining_then_resume_gives_the_same_archive(pretrained_run, tmp_path, framework):
    uninterrupted, _ = pretrained_run
    work = make_workdir(tmp_path / "work", framework)
    suffix = SUFFIX[framework]
    kill_when(
        work, lambda w: (w / "checkpoints" / f"pretrain_epoch_1{suffix}").exists(), "-c", "scen.yaml", *SHORT_ARGS
    )
    assert not (work / "pretrained").exists(), "killed too late: pre-training had finished"
    proc = dopt(work, "-c", "scen.yaml", "--resume")
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = "".join(p.read_text() for p in sorted(work.glob("log_*/dopt.log")))
    assert "resuming pre-training after epoch" in log, log[-3000:]
    assert_same_archive(archive(work), archive(uninterrupted))


def _written(work: Path) -> list[str]:
    """What a run wrote into ``work`` beyond the copied demo."""
    return sorted(p.name for p in work.iterdir() if p.name not in {"data", "scen.yaml", "user_module.py"})


def _one_error(work: Path, *words: str) -> None:
    proc = dopt(work, "-c", "scen.yaml", *SHORT_ARGS)
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("dopt: error:")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for word in words:
        assert word in errors[0], errors[0]
    assert _written(work) == [], _written(work)


@pytest.mark.parametrize(
    ("spoil", "words"),
    [
        (
            lambda d: [shutil.rmtree(p) for p in d.iterdir()],
            ["scen.yaml:", "pre_train_dir", "is empty", "pretrain.json"],
        ),
        (
            lambda d: [shutil.rmtree(d / c) for c in ("disk", "square")],
            ["scen.yaml:", "holds 1 class (triangle)", "at least 2"],
        ),
        (
            lambda d: (d / "disk" / "007.png").write_bytes(b"not a png"),
            ["scen.yaml:", "007.png is not a readable image"],
        ),
        (
            lambda d: (d / "pretrain.json").write_text("{}"),
            ["scen.yaml:", "pretrain.json is not a dopt pre-training record", "KeyError"],
        ),
    ],
    ids=["empty", "one-class", "unreadable-image", "torn-manifest"],
)
def test_unusable_pretraining_folders_are_one_line_and_nothing_written(tmp_path, spoil, words):
    work = make_workdir(tmp_path / "work", "pytorch")
    spoil(work / "data" / "pretrain")
    _one_error(work, *words)


def test_a_postnet_that_rejects_the_list_is_one_line_and_nothing_written(tmp_path):
    work = make_workdir(tmp_path / "work", "pytorch")
    module = work / "user_module.py"
    module.write_text(module.read_text().replace("c1, c2, c3 = inputs", "c1, c2, c3 = inputs.unbind(0)"))
    _one_error(work, "PostNet")


def test_class_folders_read_every_image_resized_to_the_input(tmp_path):
    from dopt.datasets import shapes

    root = shapes.class_folders(tmp_path / "pretrain", per_class=3, size=20)
    grey = ClassFolders(root, (1, 8, 8))
    assert grey.classes == ["disk", "square", "triangle"] and grey.labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    image = grey.image(4)
    assert image.shape == (8, 8, 1) and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1
    with pytest.raises(UserError, match="1 or 3 channels"):
        ClassFolders(root, (4, 8, 8))
