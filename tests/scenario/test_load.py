"""scenario.load: a valid file gives a complete Scenario; each mistake one precise UserError."""

from __future__ import annotations

import dataclasses
import logging
import shutil
from pathlib import Path

import pytest

from dopt.errors import UserError
from dopt.scenario import Scenario, load

ROOT = Path(__file__).resolve().parents[2]

MINIMAL = """\
scenario:
  strategy:
    name: NASEA
    framework: PyTorch
    batch_size: 32
    epochs: 4
    constraint:
      application_type: image_classification
      constraint_type: size
      constraint_value: 100000
    dataset:
      train_dir: data/train
      val_dir: data/val
"""
# Line numbers in MINIMAL: strategy 2, framework 4, epochs 6, constraint 7, dataset 11;
# a block appended with add() starts on line 14.


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "val").mkdir()
    return tmp_path


def _edit(text: str, edits: list[tuple[str, str]]) -> str:
    for old, new in edits:
        if old == "":
            text += new
        elif old == "*":
            text = new
        else:
            assert old in text, old
            text = text.replace(old, new, 1)
    return text


def _load(workdir: Path, text: str, **kwargs: object) -> Scenario:
    path = workdir / "scen.yaml"
    path.write_text(text, encoding="utf-8")
    return load(path, workdir=workdir, **kwargs)  # type: ignore[arg-type]


def sub(old: str, new: str) -> tuple[str, str]:
    return (old, new)


def add(block: str) -> tuple[str, str]:
    """Append lines under scenario.strategy (4-space indent) or, with 2 spaces, under scenario."""
    return ("", block)


def whole(text: str) -> tuple[str, str]:
    return ("*", text)


S = "scenario.strategy."
DETECTION = [
    sub("image_classification", "object_detection"),
    sub("      val_dir: data/val\n", "      val_dir: data/val\n      pre_train_dir: data/train\n"),
]
TF = sub("framework: PyTorch", "framework: TensorFlow")

# (edits, line or None, words the message must contain besides the file name)
BAD = {
    # file and YAML level
    "empty": ([whole("")], None, ["empty", "Fix:"]),
    "only-comments": ([whole("# nothing\n")], None, ["empty"]),
    "top-level-list": ([whole("- scenario\n")], 1, ["top level", "mapping", "a list"]),
    "no-scenario": ([whole("{}\n")], None, ["scenario", "required key is missing"]),
    "no-strategy": ([whole("scenario:\n  resource: {gpu_id: 0}\n")], 1, ["scenario.strategy", "missing"]),
    "strategy-not-mapping": ([whole("scenario:\n  strategy: 5\n")], 2, ["scenario.strategy", "mapping", "5"]),
    "strategy-at-top": ([whole("strategy: {}\n")], 1, ["strategy belongs under scenario"]),
    "tab": ([sub("    epochs: 4", "\tepochs: 4")], 6, ["invalid YAML", "tabs"]),
    "duplicate": ([sub("    epochs: 4\n", "    epochs: 4\n    epochs: 5\n")], 7, ["duplicate key", "epochs"]),
    "unclosed-list": ([add("    supernet: {filters: [16, 16}\n")], 14, ["invalid YAML", "Fix:"]),
    "fullwidth-colon": (
        [sub("val_dir: data/val", "val_dir： data/val")],
        13,
        [":13:14:", S + "dataset.val_dir", "full-width colon", "replace '：' with ':'"],
    ),
    "non-string-key": ([add("    1: x\n")], 14, ["keys must be names", "keys allowed here"]),
    # unknown and misplaced keys
    "did-you-mean": ([sub("epochs: 4", "epoch: 4")], 6, [S + "epoch", "did you mean 'epochs'?", "rename it to epochs"]),
    "did-you-mean-case": ([sub("epochs: 4", "Epochs: 4")], 6, ["did you mean 'epochs'?"]),
    "misplaced": (
        [add("    pop_size: 8\n")],
        14,
        [S + "pop_size", "pop_size belongs under scenario.strategy.searcher"],
    ),
    "misplaced-type": (
        [add("    optimizer: {type: SGD}\n")],
        14,
        ["type belongs under scenario.strategy.optimizer.weights_optimizer"],
    ),
    "far-match": ([add("    generatoin_num: 2\n")], 14, ["did you mean scenario.strategy.searcher.generation_num?"]),
    "unknown": (
        [add("    colour: red\n")],
        14,
        [S + "colour", "unknown key 'colour'", "remove it", "keys allowed here"],
    ),
    "unknown-nested": ([add("    resource: {gpu_ids: 0}\n")], 14, [S + "resource.gpu_ids", "did you mean 'gpu_id'?"]),
    # required keys
    "no-epochs": ([sub("    epochs: 4\n", "")], 2, [S + "epochs", "required key is missing", "e.g. epochs: 60"]),
    "empty-epochs": ([sub("epochs: 4", "epochs:")], 6, [S + "epochs", "has no value"]),
    "no-name": ([sub("    name: NASEA\n", "")], 2, [S + "name", "missing", "name: NASEA"]),
    "no-framework": ([sub("    framework: PyTorch\n", "")], 2, [S + "framework", "missing"]),
    "no-constraint": ([sub("    constraint:\n", "    constraint_:\n")], 7, ["unknown key"]),
    "no-application": (
        [sub("      application_type: image_classification\n", "")],
        7,
        [S + "constraint.application_type", "missing", "application_type: image_classification"],
    ),
    "no-constraint-value": ([sub("      constraint_value: 100000\n", "")], 7, [S + "constraint.constraint_value"]),
    "no-train-dir": ([sub("      train_dir: data/train\n", "")], 11, [S + "dataset.train_dir", "missing"]),
    "no-dataset": (
        [sub("    dataset:\n      train_dir: data/train\n      val_dir: data/val\n", "")],
        2,
        [S + "dataset", "missing"],
    ),
    # types, ranges, choices
    "epochs-text": (
        [sub("epochs: 4", "epochs: abc")],
        6,
        [":6:13:", S + "epochs", "expected an integer from 1 to 100,000, got 'abc'", "Fix: e.g. epochs: 60"],
    ),
    "epochs-bool": ([sub("epochs: 4", "epochs: true")], 6, ["expected an integer from 1 to 100,000, got True"]),
    "epochs-float": ([sub("epochs: 4", "epochs: 2.5")], 6, ["got 2.5"]),
    "epochs-quoted": ([sub("epochs: 4", 'epochs: "4"')], 6, ["got '4'"]),
    "batch-zero": ([sub("batch_size: 32", "batch_size: 0")], 5, [S + "batch_size", "from 1 to 65,536", "got 0"]),
    "batch-negative": ([sub("batch_size: 32", "batch_size: -8")], 5, ["got -8"]),
    "name": ([sub("name: NASEA", "name: DARTS")], 3, [S + "name", "one of NASEA", "'DARTS'"]),
    "framework": ([sub("framework: PyTorch", "framework: Keras")], 4, ["one of TensorFlow, PyTorch", "'Keras'"]),
    "framework-typo": ([sub("framework: PyTorch", "framework: Pytorh")], 4, ["did you mean 'PyTorch'?"]),
    "application": (
        [sub("application_type: image_classification", "application_type: classification")],
        8,
        ["one of image_classification, object_detection, semantic_segmentation"],
    ),
    "constraint-type": ([sub("constraint_type: size", "constraint_type: params")], 9, ["one of size, flops, latency"]),
    # detection and segmentation need pre-training data
    "detection-needs-pre-train-dir": (
        [sub("image_classification", "object_detection")],
        11,
        [S + "dataset.pre_train_dir", "required for object_detection", "docs/tasks.md"],
    ),
    "segmentation-pre-train-dir-missing": (
        [
            sub("image_classification", "semantic_segmentation"),
            add("    supernet: {feature_choose: [2, 4]}\n"),
            sub("val_dir: data/val", "val_dir: data/val\n      pre_train_dir: nowhere"),
        ],
        None,
        [S + "dataset.pre_train_dir", "'nowhere'", "does not exist"],
    ),
    "latency-threads-zero": (
        [sub("constraint_value: 100000", "constraint_value: 1\n      latency_threads: 0")],
        11,
        [S + "constraint.latency_threads", "got 0"],
    ),
    "constraint-value-zero": ([sub("constraint_value: 100000", "constraint_value: 0")], 10, ["a number > 0", "got 0"]),
    "constraint-value-text": ([sub("constraint_value: 100000", "constraint_value: 1M")], 10, ["got '1M'"]),
    "constraint-value-inf": ([sub("constraint_value: 100000", "constraint_value: .inf")], 10, ["got inf"]),
    "processor-empty": (
        [sub("constraint_value: 100000", "constraint_value: 1\n      processor_version: ''")],
        11,
        ["processor_version", "a non-empty string"],
    ),
    "constraint-not-mapping": (
        [
            sub(
                "    constraint:\n      application_type: image_classification\n"
                "      constraint_type: size\n      constraint_value: 100000\n",
                "    constraint: size\n",
            )
        ],
        7,
        [S + "constraint", "mapping"],
    ),
    # supernet
    "shape-two": (
        [add("    supernet: {input_shape: '(16, 16)'}\n")],
        14,
        [S + "supernet.input_shape", "three integers"],
    ),
    "shape-zero": ([add("    supernet: {input_shape: [1, 0, 8]}\n")], 14, ["item 1 is 0"]),
    "shape-text": ([add("    supernet: {input_shape: 'a, b, c'}\n")], 14, ["'a, b, c'"]),
    "shape-in-flow": ([add("    supernet: {input_shape: (1, 8, 8)}\n")], 14, ["got '(1'", "quote it"]),
    "shape-hwc": (
        [add("    supernet:\n      input_shape: (16, 16, 1)\n")],
        15,
        ["input_shape (16, 16, 1) looks like HWC; PyTorch takes CHW", "input_shape: (1, 16, 16)"],
    ),
    "shape-chw-tf": (
        [TF, add("    supernet:\n      input_shape: (3, 32, 32)\n")],
        15,
        ["looks like CHW; channels_last takes HWC", "input_shape: (32, 32, 3)"],
    ),
    "torch-channels-last": (
        [add("    supernet: {data_format: channels_last}\n")],
        14,
        [S + "supernet.data_format", "PyTorch supports channels_first only"],
    ),
    "data-format": ([add("    supernet: {data_format: NCHW}\n")], 14, ["one of channels_first, channels_last"]),
    "filters-zero": (
        [add("    supernet:\n      filters: [16, 0]\n      strides: [1, 2]\n")],
        15,
        [":15:21:", S + "supernet.filters", "item 1 is 0", "integers from 1 to 16,384"],
    ),
    "filters-empty": ([add("    supernet: {filters: [], strides: []}\n")], 14, ["non-empty list"]),
    "filters-scalar": ([add("    supernet: {filters: 16}\n")], 14, ["list", "got 16"]),
    "strides-three": ([add("    supernet: {strides: [1, 3, 2, 1, 2, 1]}\n")], 14, ["strides (1 or 2)", "item 1 is 3"]),
    "only-filters": (
        [add("    supernet:\n      filters: [16, 16]\n")],
        15,
        [S + "supernet.filters", "filters has 2 layers but strides has 6 (the default)", "e.g. strides: [1, 1]"],
    ),
    "only-strides": (
        [add("    supernet:\n      strides: [1, 2]\n")],
        15,
        [S + "supernet.strides", "filters has 6 layers (the default) but strides has 2"],
    ),
    "both-lengths": (
        [add("    supernet:\n      filters: [8, 8, 8]\n      strides: [1, 2]\n")],
        16,
        [S + "supernet.strides", "filters has 3 layers but strides has 2", "strides: [1, 1, 1]"],
    ),
    "feature-order": (DETECTION + [add("    supernet: {feature_choose: [5, 4]}\n")], 15, ["unique and ascending"]),
    "feature-duplicate": (DETECTION + [add("    supernet: {feature_choose: [4, 4]}\n")], 15, ["unique and ascending"]),
    "kernel-even": (
        [add("    supernet:\n      search_space: {kernel_sizes: [3, 4]}\n")],
        15,
        [S + "supernet.search_space.kernel_sizes", "odd integers", "item 1 is 4"],
    ),
    "expand-empty": ([add("    supernet:\n      search_space: {expand_ratios: []}\n")], 15, ["non-empty"]),
    "width-zero": ([add("    supernet:\n      search_space: {width_ratios: [0, 1]}\n")], 15, ["(0, 1]", "item 0 is 0"]),
    "width-big": ([add("    supernet:\n      search_space: {width_ratios: [1.5]}\n")], 15, ["item 0 is 1.5"]),
    "skip-yes": ([add("    supernet:\n      search_space: {skip: yes}\n")], 15, ["true or false", "got 'yes'"]),
    # optimizer
    "torch-momentum": (
        [add("    optimizer:\n      weights_optimizer: {type: Momentum}\n")],
        15,
        [S + "optimizer.weights_optimizer.type", "PyTorch has no Momentum", "type: SGD", "momentum: 0.9"],
    ),
    "optimizer-type": (
        [add("    optimizer:\n      weights_optimizer: {type: RMSprop}\n")],
        15,
        ["one of SGD, Momentum, Adam"],
    ),
    "momentum-adam": (
        [add("    optimizer:\n      weights_optimizer: {momentum: 0.9}\n")],
        15,
        [S + "optimizer.weights_optimizer.momentum", "ignored", "type: SGD"],
    ),
    "betas-sgd": (
        [add("    optimizer:\n      weights_optimizer: {type: SGD, betas: [0.9, 0.99]}\n")],
        15,
        [S + "optimizer.weights_optimizer.betas", "betas are for Adam", "type: Adam"],
    ),
    "betas-one": (
        [add("    optimizer:\n      weights_optimizer: {betas: [0.9]}\n")],
        15,
        ["a list of 2 numbers in (0, 1)"],
    ),
    "betas-one-is-one": ([add("    optimizer:\n      weights_optimizer: {betas: [0.9, 1]}\n")], 15, ["item 1 is 1"]),
    "lr-big": (
        [add("    optimizer:\n      weights_optimizer: {learning_rate: 1.5}\n")],
        15,
        ["learning_rate", "a number in (0, 1)", "got 1.5", "learning_rate: 0.0001"],
    ),
    "lr-zero": ([add("    optimizer:\n      weights_optimizer: {learning_rate: 0}\n")], 15, ["got 0"]),
    "momentum-one": ([add("    optimizer:\n      weights_optimizer: {type: SGD, momentum: 1.0}\n")], 15, ["(0, 1)"]),
    "optimizer-not-mapping": ([add("    optimizer: Adam\n")], 14, [S + "optimizer", "mapping"]),
    # dataset
    "val-missing-dir": (
        [sub("val_dir: data/val", "val_dir: data/nope")],
        13,
        [S + "dataset.val_dir", "'data/nope'", "does not exist", "nope", "Fix:"],
    ),
    "train-number": ([sub("train_dir: data/train", "train_dir: 5")], 12, [S + "dataset.train_dir", "got 5"]),
    # searcher
    "generations-float": (
        [add("    searcher: {generation_num: 1.5}\n")],
        14,
        [S + "searcher.generation_num", "integer from 1 to 100,000", "generation_num: 20"],
    ),
    "pop-one": ([add("    searcher: {pop_size: 1}\n")], 14, [S + "searcher.pop_size", "integer from 2 to 100,000"]),
    "seed-negative": (
        [add("    searcher: {seed: -1}\n")],
        14,
        [S + "searcher.seed", "integer from 0 to 4,294,967,295"],
    ),
    "algorithm": ([add("    searcher: {algorithm: ga}\n")], 14, ["one of nsga2, random"]),
    "crossover": ([add("    searcher: {crossover_prob: 1.5}\n")], 14, ["a number in [0, 1]"]),
    "mutation": ([add("    searcher: {mutation_prob: -0.1}\n")], 14, [S + "searcher.mutation_prob"]),
    "max-evaluations": ([add("    searcher: {max_evaluations: 0}\n")], 14, ["integer from 1 to 100,000"]),
    "seed-huge": ([add("    searcher: {seed: 1000000000000000000000000000000}\n")], 14, ["to 4,294,967,295"]),
    "pop-huge": ([add("    searcher: {pop_size: 1000000000000000000000000000000}\n")], 14, ["to 100,000"]),
    "epochs-huge": ([sub("epochs: 4", "epochs: 1000000000000000000000000000000")], 6, ["to 100,000"]),
    "kernel-huge": (
        [add("    supernet: {search_space: {kernel_sizes: [3, 20001]}}\n")],
        14,
        ["odd integers from 1 to 15"],
    ),
    "expand-huge": ([add("    supernet: {search_space: {expand_ratios: [3, 10000000]}}\n")], 14, ["from 1 to 16"]),
    "filter-huge": (
        [add("    supernet:\n      filters: [16, 1000000000]\n      strides: [1, 2]\n")],
        15,
        ["item 1 is 1000000000", "from 1 to 16,384"],
    ),
    "max-duration": ([add("    searcher: {max_duration_s: 0}\n")], 14, ["a number > 0"]),
    "calib-batches": ([add("    searcher: {bn_calib_batches: 0}\n")], 14, [S + "searcher.bn_calib_batches"]),
    "eval-batches": ([add("    searcher: {eval_batches: all}\n")], 14, [S + "searcher.eval_batches", "'all'"]),
    # training
    "sampling": ([add("    training: {sampling: random}\n")], 14, ["one of uniform, sandwich"]),
    "distill-uniform": (
        [add("    training: {sampling: uniform, distill: true}\n")],
        14,
        [S + "training.distill", "needs sampling: sandwich", "sampling: sandwich"],
    ),
    "distill-int": ([add("    training: {distill: 1}\n")], 14, ["true or false", "got 1"]),
    "warmup-too-long": (
        [add("    training: {warmup_epochs: 4}\n")],
        14,
        [S + "training.warmup_epochs", "fewer warmup epochs than epochs (4)"],
    ),
    "warmup-negative": ([add("    training: {warmup_epochs: -1}\n")], 14, ["integer >= 0"]),
    # resource
    "resource-twice": (
        [add("    resource: {gpu_id: 0}\n  resource: {gpu_id: 1}\n")],
        14,
        [S + "resource", "twice", "keep one"],
    ),
    "resource-mismatch": (
        [add("  resource: {name: Tensorflow_standalone}\n")],
        14,
        ["scenario.resource.name", "does not match framework 'pytorch'", "name: pytorch_standalone"],
    ),
    "resource-mismatch-tf": (
        [TF, add("    resource: {name: pytorch_standalone}\n")],
        14,
        [S + "resource.name", "name: Tensorflow_standalone"],
    ),
    "resource-name": ([add("  resource: {name: local}\n")], 14, ["one of Tensorflow_standalone, pytorch_standalone"]),
    "gpu-letters": ([add("  resource: {gpu_id: 'a,b'}\n")], 14, ["scenario.resource.gpu_id", "'a,b'"]),
    "gpu-negative": ([add("  resource: {gpu_id: -1}\n")], 14, ["got -1"]),
    "gpu-twice": ([add("  resource: {gpu_id: [0, 0]}\n")], 14, ["listed twice"]),
    "gpu-bool": ([add("  resource: {gpu_id: true}\n")], 14, ["got True"]),
}


# Rules that only detection and segmentation reach.
BAD_DETECTION = {
    "feature-range": (
        DETECTION + [add("    supernet: {feature_choose: [4, 6]}\n")],
        15,
        [S + "supernet.feature_choose", "layer 6 does not exist", "numbered 0 to 5", "feature_choose: [4]"],
    ),
    "pre-train-needed": (
        [sub("image_classification", "semantic_segmentation")],
        11,
        [S + "dataset.pre_train_dir", "required for semantic_segmentation", "pre_train_dir:"],
    ),
    "pre-train-missing-dir": (
        [
            sub("image_classification", "object_detection"),
            sub("val_dir: data/val", "val_dir: data/val\n      pre_train_dir: pre"),
        ],
        14,
        [S + "dataset.pre_train_dir", "does not exist"],
    ),
}


@pytest.mark.parametrize("edits, line, words", list(BAD.values()), ids=list(BAD))
def test_bad_scenario(workdir: Path, edits: list[tuple[str, str]], line: int | None, words: list[str]) -> None:
    with pytest.raises(UserError) as caught:
        _load(workdir, _edit(MINIMAL, edits))
    message = str(caught.value)
    assert message.startswith(str(workdir / "scen.yaml")), message
    if line is not None:
        assert caught.value.line == line, message
        assert f"scen.yaml:{line}:" in message
    assert "Fix: " in message
    for word in words:
        assert word in message, message
    assert caught.value.__cause__ is None  # library errors are translated `from None`


@pytest.mark.parametrize("edits, line, words", list(BAD_DETECTION.values()), ids=list(BAD_DETECTION))
def test_bad_detection_scenario(workdir: Path, edits: list[tuple[str, str]], line: int, words: list[str]) -> None:
    with pytest.raises(UserError) as caught:
        _load(workdir, _edit(MINIMAL, edits))
    assert caught.value.line == line and "Fix: " in str(caught.value)
    for word in words:
        assert word in str(caught.value), str(caught.value)


def test_latency_keys_are_ignored_with_a_warning_unless_latency_is_constrained(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = "constraint_value: 100000\n      processor_version: {}"
    with caplog.at_level(logging.WARNING, logger="dopt.scenario"):
        s = _load(workdir, _edit(MINIMAL, [sub("constraint_value: 100000", written.format("host"))]))
    assert s.constraint.processor == "host" and not caplog.records
    with caplog.at_level(logging.WARNING, logger="dopt.scenario"):
        s = _load(workdir, _edit(MINIMAL, [sub("constraint_value: 100000", written.format("npu_v1"))]))
    assert s.constraint.processor == "npu_v1"
    [record] = caplog.records
    message = record.getMessage()
    assert "scen.yaml:11:26:" in message and S + "constraint.processor_version" in message
    assert "processor_version is ignored" in message and "constrains size" in message and "Fix: remove it" in message
    with caplog.at_level(logging.WARNING, logger="dopt.scenario"):
        caplog.clear()
        latency = written.format("npu_v1").replace("100000", "1") + "\n      latency_threads: 2"
        s = _load(
            workdir,
            _edit(
                MINIMAL,
                [sub("constraint_type: size", "constraint_type: latency"), sub("constraint_value: 100000", latency)],
            ),
        )
    assert (s.constraint.kind, s.constraint.processor, s.constraint.threads) == ("latency", "npu_v1", 2)
    assert not caplog.records, "with constraint_type latency both keys are used"


def test_minimal_gets_every_default(workdir: Path) -> None:
    s = _load(workdir, MINIMAL)
    assert s.path == workdir / "scen.yaml" and s.path.is_absolute()
    assert s.workdir == workdir and (s.framework, s.batch_size, s.epochs) == ("pytorch", 32, 4)
    assert (s.constraint.application, s.constraint.kind, s.constraint.value) == ("image_classification", "size", 100000)
    assert s.constraint.processor == "host"
    assert (s.supernet.input_shape, s.supernet.data_format) == ((3, 224, 224), "channels_first")
    assert s.supernet.filters == (64, 64, 128, 128, 256, 256) and s.supernet.strides == (1, 1, 2, 1, 2, 1)
    assert s.supernet.feature_choose == () and s.supernet.search_space.kernel_sizes == (3, 5, 7)
    assert (s.optimizer.type, s.optimizer.learning_rate, s.optimizer.betas, s.optimizer.momentum) == (
        "Adam",
        1e-4,
        (0.9, 0.999),
        None,
    )
    assert s.dataset.train_dir == str(workdir / "data" / "train") and s.dataset.pre_train_dir is None
    assert (s.searcher.generation_num, s.searcher.pop_size, s.searcher.seed) == (20, 40, None)
    assert (s.searcher.algorithm, s.searcher.crossover_prob, s.searcher.mutation_prob) == ("nsga2", 0.9, None)
    assert (s.training.sampling, s.training.distill, s.training.warmup_epochs) == ("sandwich", True, 0)
    assert s.supernet.search_space.expand_ratios == (3, 6)
    assert (s.resource.name, s.resource.gpu_ids) == ("pytorch_standalone", (0,))


def test_distill_defaults_to_on_with_sandwich_and_off_with_uniform(workdir: Path) -> None:
    uniform = _load(workdir, _edit(MINIMAL, [add("    training: {sampling: uniform}\n")]))
    assert (uniform.training.sampling, uniform.training.distill) == ("uniform", False)
    plain = _load(workdir, _edit(MINIMAL, [add("    training: {distill: false}\n")]))
    assert (plain.training.sampling, plain.training.distill) == ("sandwich", False)


def test_result_is_frozen_with_tuples(workdir: Path) -> None:
    s = _load(workdir, _edit(MINIMAL, [add("    supernet: {filters: [8, 8], strides: [1, 2]}\n")]))
    assert isinstance(s.supernet.filters, tuple) and isinstance(s.resource.gpu_ids, tuple)
    with pytest.raises(dataclasses.FrozenInstanceError):
        s.epochs = 1  # type: ignore[misc]


def test_tensorflow_segmentation_defaults(workdir: Path) -> None:
    text = _edit(
        MINIMAL,
        [
            TF,
            sub("image_classification", "semantic_segmentation"),
            sub("val_dir: data/val", "val_dir: data/val\n      pre_train_dir: data/train"),
        ],
    )
    s = _load(workdir, text)
    assert (s.supernet.data_format, s.supernet.input_shape) == ("channels_last", (224, 224, 3))
    assert (s.optimizer.type, s.optimizer.learning_rate) == ("Momentum", 1e-5)
    assert s.resource.name == "tensorflow_standalone"
    assert s.dataset.pre_train_dir == str(workdir / "data" / "train")


def test_pytorch_segmentation_defaults_to_adam(workdir: Path) -> None:
    text = _edit(
        MINIMAL,
        [
            sub("image_classification", "semantic_segmentation"),
            sub("val_dir: data/val", "val_dir: data/val\n      pre_train_dir: data/train"),
        ],
    )
    s = _load(workdir, text)
    assert (s.optimizer.type, s.optimizer.learning_rate) == ("Adam", 1e-5)


@pytest.mark.parametrize(
    "written, shape",
    [
        ("(1, 8, 8)", (1, 8, 8)),
        ("'(1,8,8)'", (1, 8, 8)),
        ("[1, 8, 8]", (1, 8, 8)),
        ("'1, 8, 8'", (1, 8, 8)),
    ],
)
def test_input_shape_forms(workdir: Path, written: str, shape: tuple[int, int, int]) -> None:
    s = _load(workdir, _edit(MINIMAL, [add(f"    supernet:\n      input_shape: {written}\n")]))
    assert s.supernet.input_shape == shape


@pytest.mark.parametrize(
    "written, ids",
    [
        ("0", (0,)),
        ("3", (3,)),
        ("0,1,2,3", (0, 1, 2, 3)),
        ("'0, 1'", (0, 1)),
        ("[1, 2]", (1, 2)),
        ('""', ()),
        ("cpu", ()),
        ("CPU", ()),
        ("[]", ()),
        ("", (0,)),
    ],
)
def test_gpu_id_forms(workdir: Path, written: str, ids: tuple[int, ...]) -> None:
    s = _load(workdir, _edit(MINIMAL, [add(f"  resource:\n    gpu_id: {written}\n")]))
    assert s.resource.gpu_ids == ids


def test_resource_under_strategy_as_in_the_seed(workdir: Path) -> None:
    text = _edit(MINIMAL, [add("    resource:\n      name: PyTorch_Standalone\n      gpu_id: 0,1\n")])
    resource = _load(workdir, text).resource
    assert (resource.name, resource.gpu_ids) == ("pytorch_standalone", (0, 1))


def test_choices_are_case_insensitive_and_normalized(workdir: Path) -> None:
    text = _edit(
        MINIMAL,
        [
            sub("NASEA", "nasea"),
            sub("PyTorch", "pytorch"),
            sub("constraint_type: size", "constraint_type: FLOPS"),
            add(
                "    optimizer:\n      weights_optimizer: {type: sgd, momentum: 0.8}\n"
                "    searcher: {algorithm: Random}\n"
                "    training: {sampling: Sandwich, distill: true}\n"
            ),
        ],
    )
    s = _load(workdir, text)
    assert (s.framework, s.constraint.kind, s.optimizer.type, s.optimizer.momentum) == ("pytorch", "flops", "SGD", 0.8)
    assert (s.searcher.algorithm, s.training.sampling, s.training.distill) == ("random", "sandwich", True)
    assert _load(workdir, _edit(MINIMAL, [sub("PyTorch", "Tensorflow")])).framework == "tensorflow"


def test_search_space_is_deduplicated_and_sorted(workdir: Path) -> None:
    text = _edit(
        MINIMAL,
        [
            add(
                "    supernet:\n      search_space:\n        kernel_sizes: [7, 3, 3]\n"
                "        width_ratios: [1, 0.25]\n        skip: false\n"
            )
        ],
    )
    space = _load(workdir, text).supernet.search_space
    assert (space.kernel_sizes, space.expand_ratios, space.width_ratios, space.skip) == (
        (3, 7),
        (3, 6),
        (0.25, 1.0),
        False,
    )


def test_dataset_paths(workdir: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("other") / "train.npz"
    elsewhere.write_bytes(b"")
    text = _edit(
        MINIMAL,
        [sub("train_dir: data/train", f"train_dir: {elsewhere}"), sub("val_dir: data/val", "val_dir: gs://bucket/val")],
    )
    d = _load(workdir, text).dataset
    assert (d.train_dir, d.val_dir) == (str(elsewhere), "gs://bucket/val")
    same = _load(workdir, _edit(MINIMAL, [sub("val_dir: data/val", "val_dir: data/train")])).dataset
    assert same.train_dir == same.val_dir
    for url in ("s3://b/k", "hdfs://nn:8020/x", "https://example.org/d.zip"):
        assert _load(workdir, _edit(MINIMAL, [sub("data/train", url)])).dataset.train_dir == url


def test_classification_ignores_detection_keys_with_one_warning_each(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = _edit(
        MINIMAL,
        [
            sub("val_dir: data/val", "val_dir: data/val\n      pre_train_dir: nowhere"),
            add("    supernet: {feature_choose: [4, 5]}\n"),
        ],
    )
    with caplog.at_level(logging.WARNING, logger="dopt.scenario"):
        s = _load(workdir, text)
    assert (s.supernet.feature_choose, s.dataset.pre_train_dir) == ((), None)
    assert len(caplog.records) == 2
    assert "feature_choose" in caplog.records[0].getMessage() and "scen.yaml:15:" in caplog.records[0].getMessage()
    assert "pre_train_dir" in caplog.records[1].getMessage() and "ignored" in caplog.records[1].getMessage()


def test_detection_keeps_feature_choose(workdir: Path) -> None:
    s = _load(workdir, _edit(MINIMAL, DETECTION + [add("    supernet: {feature_choose: [3, 5]}\n")]))
    assert s.supernet.feature_choose == (3, 5) and s.dataset.pre_train_dir == str(workdir / "data" / "train")


def test_overrides_apply_before_validation(workdir: Path) -> None:
    s = _load(
        workdir,
        MINIMAL,
        overrides=[
            "scenario.strategy.epochs=1",
            "scenario.strategy.searcher.seed=3",
            "scenario.strategy.supernet.filters=[16,16]",
            "scenario.strategy.supernet.strides=[1, 2]",
            "scenario.resource.gpu_id=cpu",
            "scenario.strategy.optimizer.weights_optimizer.learning_rate=1e-3",
        ],
    )
    assert (s.epochs, s.searcher.seed, s.supernet.filters, s.supernet.strides) == (1, 3, (16, 16), (1, 2))
    assert (s.resource.gpu_ids, s.optimizer.learning_rate) == ((), 1e-3)


@pytest.mark.parametrize(
    "override, words",
    [
        (
            "scenario.strategy.epochs=abc",
            ["--set scenario.strategy.epochs=abc: scenario.strategy.epochs:", "got 'abc'"],
        ),
        ("scenario.strategy.epochs=", ["--set scenario.strategy.epochs=:", "got ''"]),
        (
            "scenario.strategy.supernet.filters=[16,16]",
            ["--set scenario.strategy.supernet.filters=[16,16]:", "strides has 6 (the default)"],
        ),
        ("scenario.strategy.searcher.pop_sise=3", ["--set", "did you mean 'pop_size'?"]),
        (
            "scenario.strategy.training={sampling: uniform, distill: true}",
            ["--set scenario.strategy.training=", "sandwich"],
        ),
        ("scenario.strategy.epochs.x=1", ["--set scenario.strategy.epochs.x=1:", "not a mapping"]),
        ("scenario.strategy.epochs=[1", ["--set scenario.strategy.epochs=[1:", "invalid YAML"]),
    ],
)
def test_override_errors_name_the_set(workdir: Path, override: str, words: list[str]) -> None:
    with pytest.raises(UserError) as caught:
        _load(workdir, MINIMAL, overrides=[override])
    message = str(caught.value)
    assert caught.value.line is None and caught.value.file.startswith("--set ")  # type: ignore[union-attr]
    for word in words:
        assert word in message, message


@pytest.mark.parametrize("override", ["epochs", "=1", "scenario..epochs=1", " =3", "scenario.strategy.=1"])
def test_malformed_override(workdir: Path, override: str) -> None:
    with pytest.raises(UserError) as caught:
        _load(workdir, MINIMAL, overrides=[override])
    assert caught.value.file == "--set"
    assert "KEY=VALUE" in str(caught.value) and repr(override) in str(caught.value)


def test_fullwidth_colon_reports_line_column_and_key(workdir: Path) -> None:
    text = _edit(
        MINIMAL,
        [sub("      val_dir: data/val\n", '      pre_train_dir：   "/tmp/tfrecords"\n      val_dir：data/val\n')],
    )
    with pytest.raises(UserError) as caught:
        _load(workdir, text)
    err = caught.value
    assert (err.line, err.column, err.key) == (13, 20, "scenario.strategy.dataset.pre_train_dir")
    assert "1 more" in str(err) and "Fix: replace '：' with ':'" in str(err)


def test_fullwidth_colon_in_comments_and_quotes_is_fine(workdir: Path) -> None:
    text = _edit(MINIMAL, [sub("epochs: 4", "epochs: 4  # note：fine"), add("    # comment：too\n")])
    assert _load(workdir, text).epochs == 4
    quoted = _edit(MINIMAL, [add("  resource: {name: 'pytorch_standalone', gpu_id: \"0\"}  # a：b\n")])
    assert _load(workdir, quoted).resource.gpu_ids == (0,)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="no such file"):
        load(tmp_path / "nope.yaml")
    with pytest.raises(UserError, match="directory"):
        load(tmp_path)


def _bomb(levels: int = 9) -> str:
    """A YAML alias bomb: nine aliases of the level below per level, 9**levels values expanded."""
    lines = ["a0: &a0 [1, 1, 1, 1, 1, 1, 1, 1, 1]"]
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]")
    return "{" + ", ".join(lines) + f", b: *a{levels - 1}" + "}"


HOSTILE = {
    "bomb-at-epochs": (sub("epochs: 4", "epochs: " + _bomb()), "expands to over 100,000 values"),
    "bomb-as-a-section": (add("    supernet: " + _bomb() + "\n"), "expands to over 100,000 values"),
    "bomb-at-the-top": (add("x: " + _bomb() + "\n"), "expands to over 100,000 values"),
    "deep-filters": (add("    supernet:\n      filters: " + "[" * 1000 + "]" * 1000 + "\n"), "levels deep"),
    "huge-name": (sub("name: NASEA", "name: " + "N" * 500_000), "more characters"),
    "duplicate-section": (add("  strategy:\n    name: " + "x" * 100_000 + "\n"), "duplicate key"),
    "nul-in-a-path": (sub("train_dir: data/train", 'train_dir: "data/tr\\0ain"'), "is not a path"),
    "path-of-5000-characters": (sub("train_dir: data/train", "train_dir: " + "d/" * 2500), "is not a path"),
    "name-too-long": (sub("train_dir: data/train", "train_dir: " + "d" * 1000), "cannot be looked up"),
    "huge-integer": (sub("epochs: 4", "epochs: " + "1" * 100_000), "invalid value"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_yaml_is_one_short_line(workdir: Path, case: str) -> None:
    edit, words = HOSTILE[case]
    with pytest.raises(UserError, match=words) as err:
        _load(workdir, _edit(MINIMAL, [edit]))
    assert len(str(err.value)) < 2500 and "\n" not in str(err.value)


def test_a_bomb_through_set_is_refused(workdir: Path) -> None:
    (workdir / "scen.yaml").write_text(MINIMAL)
    with pytest.raises(UserError, match="expands to over 100,000 values"):
        load(workdir / "scen.yaml", workdir=workdir, overrides=("scenario.strategy.epochs=" + _bomb(),))


def test_a_scenario_is_read_only_from_a_regular_file_of_kilobytes(tmp_path: Path) -> None:
    """A FIFO would block for ever, /dev/zero never end: both are refused at once (exit 2)."""
    import os

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(UserError, match="not a regular file"):
        load(fifo)
    with pytest.raises(UserError, match="not a regular file"):
        load(Path("/dev/zero"))
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 << 20) + "\n" + MINIMAL)
    with pytest.raises(UserError, match="is over 1024 KiB"):
        load(big)


def test_workdir_defaults_to_cwd(workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (workdir / "scen.yaml").write_text(MINIMAL, encoding="utf-8")
    monkeypatch.chdir(workdir)
    s = load("scen.yaml")
    assert s.workdir == Path.cwd() and s.path == workdir.resolve() / "scen.yaml"
    assert s.dataset.val_dir == str(workdir.resolve() / "data" / "val")


def test_repository_example_loads(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "data" / "train").mkdir(parents=True)
    (tmp_path / "data" / "val").mkdir()
    shutil.copy(ROOT / "scen.yaml.example", tmp_path / "scen.yaml")
    with caplog.at_level(logging.WARNING):
        s = load(tmp_path / "scen.yaml", workdir=tmp_path)
    assert not caplog.records  # the example is clean: nothing ignored
    assert (s.framework, s.constraint.application) == ("pytorch", "image_classification")
    assert s.supernet.input_shape == (1, 8, 8)
    assert len(s.supernet.filters) == len(s.supernet.strides)


def test_distillation_is_off_for_detection_and_a_written_distill_is_ignored_with_a_warning(
    workdir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    detection = [
        sub("image_classification", "object_detection"),
        sub("val_dir: data/val", "val_dir: data/val\n      pre_train_dir: data/train"),
    ]
    with caplog.at_level(logging.WARNING, logger="dopt.scenario"):
        s = _load(workdir, _edit(MINIMAL, detection))
    assert s.training.sampling == "sandwich" and not s.training.distill and not caplog.records
    with caplog.at_level(logging.WARNING, logger="dopt.scenario"):
        s = _load(workdir, _edit(MINIMAL, [*detection, add("    training: {sampling: sandwich, distill: true}\n")]))
    [record] = caplog.records
    assert not s.training.distill and "distillation is for image_classification" in record.getMessage()
    assert s.dataset.pre_train_epochs == 10
