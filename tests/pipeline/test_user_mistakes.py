"""Mistakes the core catches (scenario, user-module contract, command line), through the fake
backend: exit 2, one line naming the file, key (with line and column in YAML) or function and the
fix; no traceback; nothing written (docs/cli.md#error-messages)."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.fake.outputs import listing

Edit = Callable[[Path], None]


def scen(old: str, new: str) -> Edit:
    def edit(work: Path) -> None:
        text = (work / "scen.yaml").read_text()
        assert old in text, old
        (work / "scen.yaml").write_text(text.replace(old, new, 1))

    return edit


def module(old: str, new: str) -> Edit:
    def edit(work: Path) -> None:
        text = (work / "user_module.py").read_text()
        assert old in text, old
        (work / "user_module.py").write_text(text.replace(old, new, 1))

    return edit


def whole(text: str) -> Edit:
    return lambda work: (work / "scen.yaml").write_text(text)


def both(*edits: Edit) -> Edit:
    def edit(work: Path) -> None:
        for one in edits:
            one(work)

    return edit


def nothing(work: Path) -> None:
    pass


STRIDES = "strides: [1, 1, 2]"


# category: (edit, arguments after -c scen.yaml, words the message must contain)
CASES: dict[str, tuple[Edit, list[str], list[str]]] = {
    "empty-file": (whole(""), [], ["scen.yaml", "empty", "Fix:"]),
    "top-level-not-mapping": (whole("- scenario\n"), [], ["scen.yaml:1", "mapping"]),
    "malformed-yaml": (scen("    epochs: 2\n", "    epochs: [2\n"), [], ["scen.yaml:7:", "invalid YAML"]),
    "supernet-too-large-for-memory": (
        scen("filters: [16, 16, 24]", "filters: [16384, 16384, 24]\n      search_space: {expand_ratios: [16]}"),
        [],
        ["scenario.strategy.supernet", "parameters: training it needs at least", "GiB", "filters"],
    ),
    "unknown-key": (scen("    epochs: 2\n", "    epochs: 2\n    colour: red\n"), [], ["scen.yaml:7:5", "colour"]),
    "misspelled-key": (scen("pop_size", "pop_sise"), [], ["scen.yaml:", "pop_sise", "did you mean 'pop_size'?"]),
    "wrong-type": (scen("epochs: 2", "epochs: two"), [], ["scen.yaml:6:", "scenario.strategy.epochs", "'two'"]),
    "out-of-range": (scen("batch_size: 32", "batch_size: 0"), [], ["scen.yaml:5:", "batch_size", "from 1 to", "got 0"]),
    "lengths-differ": (scen(STRIDES, "strides: [1, 2]"), [], ["scen.yaml:", "strides", "filters"]),
    "stride-not-1-or-2": (scen(STRIDES, "strides: [1, 3, 2]"), [], ["strides", "1 or 2", "3"]),
    "detection-without-pre-train-dir": (
        both(scen("image_classification", "object_detection"), scen(STRIDES, STRIDES + "\n      feature_choose: [1]")),
        [],
        ["scen.yaml:", "dataset.pre_train_dir: required for object_detection", "Fix: add it under"],
    ),
    "data-format-of-framework": (
        scen("input_shape: (1, 4, 4)", "input_shape: (4, 4, 1)\n      data_format: channels_last"),
        [],
        ["scen.yaml:", "data_format", "channels_last", "PyTorch"],
    ),
    "feature-choose-out-of-range": (
        both(
            scen("image_classification", "semantic_segmentation"),
            scen(STRIDES, STRIDES + "\n      feature_choose: [1, 3]"),
        ),
        [],
        ["scen.yaml:", "feature_choose", "layer 3 does not exist", "numbered 0 to 2"],
    ),
    "feature-choose-not-ascending": (
        both(
            scen("image_classification", "semantic_segmentation"),
            scen(STRIDES, STRIDES + "\n      feature_choose: [1, 0]"),
        ),
        [],
        ["scen.yaml:", "feature_choose", "unique and ascending"],
    ),
    "optimizer-of-framework": (scen("type: Adam", "type: Momentum"), [], ["scen.yaml:", "Momentum", "SGD"]),
    "dataset-dir-missing": (scen("val_dir: data/val.npz", "val_dir: data/nope"), [], ["dataset.val_dir", "not exist"]),
    "latency-processor-without-latency-func": (
        scen("constraint_type: size", "constraint_type: latency\n      processor_version: npu_v1"),
        [],
        ["scen.yaml:", "processor_version 'npu_v1'", "no latency_func", "Fix: define UserModule.latency_func"],
    ),
    "set-unknown-key": (nothing, ["--set", "scenario.strategy.epoch=3"], ["--set scenario.strategy.epoch=3", "epochs"]),
    "user-module-missing": (lambda w: (w / "user_module.py").unlink(), [], ["no user_module.py", "dopt init"]),
    "user-module-import-fails": (
        module("import numpy as np", "import numpy as np\nimport no_such_package"),
        [],
        ["user_module.py:", "no_such_package", "Fix:"],
    ),
    "user-module-syntax-error": (module("class PreNet:", "class PreNet"), [], ["user_module.py:", "syntax error"]),
    "user-module-lacks-class": (module("class PostNet:", "class PostNetwork:"), [], ["user_module.py", "PostNet"]),
    "user-module-lacks-method": (
        module("def scheduler_define(", "def schedule_define("),
        [],
        ["user_module.py", "UserModule.scheduler_define", "'schedule_define': misspelled?"],
    ),
    "user-module-bad-signature": (
        module("def loss_func(self, labels, logits)", "def loss_func(self, labels)"),
        [],
        ["user_module.py", "loss_func", "def loss_func(self, labels, logits)"],
    ),
    "loss-not-a-scalar": (
        module("return -log_probs[np.arange(len(labels)), labels].mean()", "return -log_probs[:, 0]"),
        [],
        ["loss_func returned an array of shape (32,)", "UserModule.loss_func"],
    ),
    "metric-not-a-number": (
        module("return correct / total", "return {'accuracy': correct / total}"),
        [],
        ["metrics_func returned dict", "return a float"],
    ),
    "unknown-argument": (nothing, ["--bogus"], ["unrecognized arguments", "--help"]),
    "unknown-stage": (nothing, ["--stage", "train"], ["--stage", "invalid choice", "--help"]),
    "resume-and-overwrite": (nothing, ["--resume", "--overwrite"], ["contradict each other"]),
    "results-without-stage-search": (nothing, ["--results", "x"], ["--results is for --stage search"]),
    "workdir-too-long": (nothing, ["--workdir", "w" * 5000], ["--workdir 'www", "not a path", "over 1,024"]),
    "workdir-a-name-too-long": (nothing, ["--workdir", "w" * 300], ["--workdir www", "no such directory"]),
    "config-empty": (nothing, ["-c", ""], ["-c '': not a path (it is empty)"]),
    "dataset-empty": (scen("train_dir: data/train.npz", 'train_dir: ""'), [], ["train_dir", "got ''"]),
}


@pytest.mark.parametrize(("edit", "args", "words"), list(CASES.values()), ids=list(CASES))
def test_a_mistake_exits_2_with_one_clear_line_and_writes_nothing(workdir, dopt, edit, args, words):
    work = workdir()
    edit(work)
    before = listing(work)
    ran = dopt(work, "-c", "scen.yaml", *args)
    assert ran.code == 2, ran.err
    assert "Traceback" not in ran.err
    [message] = [line for line in ran.err.splitlines() if line.startswith("dopt: error:")]
    for word in words:
        assert word in message, message
    if re.search(r"scen\.yaml:\d", message):
        assert re.search(r"scen\.yaml:\d+:\d+: ", message), "a place in the YAML has a line and a column"
    assert listing(work) == before


def test_validate_refuses_what_a_run_refuses_with_the_same_line(workdir, dopt):
    work = workdir()
    scen("image_classification", "object_detection")(work)
    lines = []
    for args in (["-c", "scen.yaml"], ["validate", "-c", "scen.yaml"]):
        ran = dopt(work, *args)
        assert ran.code == 2, ran.err
        lines.append([line for line in ran.err.splitlines() if line.startswith("dopt: error:")])
    assert lines[0] == lines[1] and len(lines[0]) == 1 and "pre_train_dir: required" in lines[0][0], lines


def test_validate_reports_what_a_run_would_and_writes_nothing(workdir, dopt):
    work = workdir()
    before = listing(work)
    ran = dopt(work, "validate", "-c", "scen.yaml")
    assert ran.code == 0, ran.err
    assert "936 distinct subnets" in ran.out and "smallest subnet: size 2,068" in ran.out
    assert "largest subnet: size 21,124" in ran.out and "scen.yaml: OK" in ran.out
    assert listing(work) == before
    quiet = dopt(work, "-q", "validate", "-c", "scen.yaml")  # verbosity flags may come before a command
    assert quiet.code == 0 and "scen.yaml: OK" in quiet.out and "checking the user module" not in quiet.err


def test_an_exception_in_user_code_names_the_stage_and_the_users_frame(workdir, dopt):
    work = workdir()
    module("z = logits - logits.max(axis=1, keepdims=True)", "raise ValueError('bad loss in my code')")(work)
    ran = dopt(work, "-c", "scen.yaml")
    assert ran.code == 1, ran.err
    lines = ran.err.strip().splitlines()
    at = next(i for i, text in enumerate(lines) if "error in user code" in text)
    assert "rehearsing" in lines[at] and "bad loss in my code" in lines[at]  # caught before training
    assert "user_module.py" in lines[at + 2] and "loss_func" in lines[at + 2]
    assert not (work / "checkpoints").exists()  # nothing trained or written
    check = dopt(work, "validate", "-c", "scen.yaml")  # validate: the user's mistake, exit 2
    assert check.code == 2 and "error in user code" in check.err


def test_run_from_elsewhere_points_at_the_working_directory(workdir, dopt):
    work = workdir()
    ran = dopt(work.parent, "-c", f"{work.name}/scen.yaml")
    assert ran.code == 2 and "--workdir" in ran.err and str(work) in ran.err
