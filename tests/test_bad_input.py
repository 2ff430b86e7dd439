"""Every category of bad input (issue: reliability, docs/resume.md#resuming-a-run): exit 2, one line naming the file, the
key path (with line and column for YAML) or function, and the fix; no traceback; nothing written.

Runs the CLI in-process (``dopt.cli.main``) so that the whole table takes seconds; test_cli.py runs
the same command as a subprocess for a few of these.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from dopt.cli import main
from tests.digits_workdir import make_workdir
from tests.frameworks import require

require("torch")

Edit = Callable[[Path], None]


def scen(old: str, new: str) -> Edit:
    def edit(work: Path) -> None:
        text = (work / "scen.yaml").read_text()
        assert old in text, old
        (work / "scen.yaml").write_text(text.replace(old, new, 1))

    return edit


def whole(text: str) -> Edit:
    return lambda work: (work / "scen.yaml").write_text(text)


def module(old: str, new: str) -> Edit:
    def edit(work: Path) -> None:
        text = (work / "user_module.py").read_text()
        assert old in text, old
        (work / "user_module.py").write_text(text.replace(old, new, 1))

    return edit


# category: (edit, --set overrides, words the message must contain)
CASES: dict[str, tuple[Edit, list[str], list[str]]] = {
    "malformed-yaml": (scen("    epochs: 1\n", "    epochs: [1\n"), [], ["scen.yaml:7:", "invalid YAML"]),
    "empty-file": (whole(""), [], ["scen.yaml", "empty", "Fix:"]),
    "top-level-not-mapping": (whole("- scenario\n"), [], ["scen.yaml:1", "mapping"]),
    "unknown-key": (
        scen("    epochs: 1\n", "    epochs: 1\n    colour: red\n"),
        [],
        ["scen.yaml:7:5", "colour", "Fix:"],
    ),
    "misspelled-key": (scen("pop_size", "pop_sise"), [], ["scen.yaml:", "pop_sise", "did you mean 'pop_size'?"]),
    "wrong-type": (scen("epochs: 1", "epochs: one"), [], ["scen.yaml:6:", "scenario.strategy.epochs", "'one'"]),
    "out-of-range": (scen("batch_size: 64", "batch_size: 0"), [], ["scen.yaml:5:", "batch_size", "> 0", "got 0"]),
    "lengths-differ": (
        scen("strides: [1, 2, 2]", "strides: [1, 2]"),
        [],
        ["scen.yaml:", "strides", "filters", "3", "2"],
    ),
    "stride-not-1-or-2": (
        scen("strides: [1, 2, 2]", "strides: [1, 3, 2]"),
        [],
        ["scen.yaml:", "strides", "1 or 2", "3"],
    ),
    "detection-without-pre-train-dir": (
        lambda w: (
            scen("image_classification", "object_detection")(w),
            scen("strides: [1, 2, 2]", "strides: [1, 2, 2]\n      feature_choose: [1]")(w),
        ),
        [],
        [
            "scen.yaml:",
            "scenario.strategy.dataset.pre_train_dir: required for object_detection",
            "Fix: add it under scenario.strategy.dataset",
        ],
    ),
    "data-format-of-framework": (
        scen("input_shape: (1, 8, 8)", "input_shape: (8, 8, 1)\n      data_format: channels_last"),
        [],
        ["scen.yaml:", "data_format", "channels_last", "PyTorch"],
    ),
    "optimizer-of-framework": (scen("type: Adam", "type: Momentum"), [], ["scen.yaml:", "Momentum", "SGD"]),
    "feature-choose-out-of-range": (
        lambda w: (
            scen("image_classification", "semantic_segmentation")(w),
            scen("strides: [1, 2, 2]", "strides: [1, 2, 2]\n      feature_choose: [1, 3]")(w),
        ),
        [],
        ["scen.yaml:", "feature_choose", "layer 3 does not exist", "numbered 0 to 2"],
    ),
    "feature-choose-not-ascending": (
        lambda w: (
            scen("image_classification", "semantic_segmentation")(w),
            scen("strides: [1, 2, 2]", "strides: [1, 2, 2]\n      feature_choose: [1, 0]")(w),
        ),
        [],
        ["scen.yaml:", "feature_choose", "unique and ascending"],
    ),
    "latency-processor-without-latency-func": (
        scen("constraint_type: size", "constraint_type: latency\n      processor_version: npu_v1"),
        [],
        ["scen.yaml:", "processor_version 'npu_v1'", "no latency_func", "Fix: define UserModule.latency_func"],
    ),
    "dataset-dir-missing": (
        scen("val_dir: data/val.npz", "val_dir: data/nope"),
        [],
        ["scen.yaml:", "dataset.val_dir", "does not exist"],
    ),
    "constraint-unmeetable": (
        scen("constraint_value: 20000", "constraint_value: 100"),
        [],
        ["scen.yaml:10:", "constraint_value", "smallest subnet", "6650 parameters", "Fix: set constraint_value ≥ 6650"],
    ),
    "constraint-unmeetable-set": (
        lambda w: None,
        ["--set", "scenario.strategy.constraint.constraint_value=100"],
        ["--set scenario.strategy.constraint.constraint_value=100", "≥ 6650"],
    ),
    "user-module-missing": (lambda w: (w / "user_module.py").unlink(), [], ["no user_module.py", "dopt init"]),
    "user-module-import-fails": (
        module("import numpy as np", "import numpy as np\nimport no_such_package"),
        [],
        ["user_module.py:", "no_such_package", "Fix:"],
    ),
    "user-module-syntax-error": (
        module("class PreNet(nn.Module):", "class PreNet(nn.Module)"),
        [],
        ["user_module.py:", "syntax error"],
    ),
    "user-module-lacks-class": (
        module("class PostNet(nn.Module):", "class PostNetwork(nn.Module):"),
        [],
        ["user_module.py", "PostNet"],
    ),
    "user-module-lacks-method": (
        module("def scheduler_define(", "def schedule_define("),
        [],
        ["user_module.py", "UserModule.scheduler_define"],
    ),
    "user-module-bad-signature": (
        module("def loss_func(self, labels, logits)", "def loss_func(self, labels)"),
        [],
        ["user_module.py", "loss_func", "def loss_func(self, labels, logits)"],
    ),
    "dataset-wrong-structure": (
        module(
            'return torch.utils.data.TensorDataset(images, torch.from_numpy(data["labels"]))',
            "return torch.utils.data.TensorDataset(images)",
        ),
        [],
        ["dataset_define", "(inputs, labels)"],
    ),
    "bad-command-line": (lambda w: None, ["--stage", "train"], ["--stage", "invalid choice", "--help"]),
}


@pytest.mark.parametrize(("edit", "overrides", "words"), list(CASES.values()), ids=list(CASES))
def test_bad_input_exits_2_with_one_clear_line_and_writes_nothing(
    tmp_path, monkeypatch, capsys, edit, overrides, words
):
    work = make_workdir(tmp_path / "work")
    edit(work)
    before = sorted(str(p.relative_to(work)) for p in work.rglob("*"))
    monkeypatch.chdir(work)
    code = main(["-c", "scen.yaml", *overrides])
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if line.startswith("dopt: error:")]
    assert len(message) == 1, err
    for word in words:
        assert word in message[0], message[0]
    if re.search(r"scen\.yaml:\d", message[0]):
        assert re.search(r"scen\.yaml:\d+:\d+: ", message[0]), "a place in the YAML has a line and a column"

    assert sorted(str(p.relative_to(work)) for p in work.rglob("*")) == before


@pytest.mark.parametrize(
    ("old", "new"),
    [("image_classification", "object_detection")],
)
def test_validate_refuses_a_detection_scenario_without_pre_training_with_the_same_line(
    tmp_path, monkeypatch, capsys, old, new
):
    work = make_workdir(tmp_path / "work")
    scen(old, new)(work)
    monkeypatch.chdir(work)
    lines = []
    for args in (["-c", "scen.yaml"], ["validate", "-c", "scen.yaml"]):
        assert main(args) == 2
        lines.append([line for line in capsys.readouterr().err.splitlines() if line.startswith("dopt: error:")])
    assert lines[0] == lines[1] and len(lines[0]) == 1 and "pre_train_dir: required" in lines[0][0], lines
