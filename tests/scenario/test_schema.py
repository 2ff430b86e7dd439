"""The key table: every key documented and self-consistent; checks and "did you mean" hints."""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from ruamel.yaml import YAML

from dopt.scenario import Searcher, SearchSpaceChoices, Training
from dopt.scenario.schema import (
    SCHEMA,
    Depends,
    Invalid,
    Key,
    Section,
    choice,
    defaults,
    integer,
    number,
    unknown_key,
)

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = (ROOT / "scen.yaml.example").read_text(encoding="utf-8")
# What users read: the example, the templates dopt init writes, the demos, the README and docs/.
USER_FACING = sorted(
    [ROOT / "scen.yaml.example", *ROOT.glob("dopt/templates/*/*/*.py"), *ROOT.glob("dopt/templates/*/*/*.yaml")]
    + [*ROOT.glob("demos/*/*.yaml"), *ROOT.glob("demos/*/*.py"), *ROOT.glob("demos/*/*.md")]
    + [ROOT / "README.md", *ROOT.glob("docs/*.md")]
)


def _items(section: Section, path: str = "") -> Iterator[tuple[str, Key | Section]]:
    for k in section.keys:
        sub = f"{path}.{k.name}" if path else k.name
        yield sub, k
        if isinstance(k, Section):
            yield from _items(k, sub)


ITEMS = dict(_items(SCHEMA))
KEYS = {p: k for p, k in ITEMS.items() if isinstance(k, Key)}


def _section(path: str) -> Section:
    found = ITEMS[path]
    assert isinstance(found, Section)
    return found


@pytest.mark.parametrize("path", list(KEYS))
def test_every_key_has_doc_and_a_valid_example(path: str) -> None:
    key = KEYS[path]
    assert key.doc and key.check.expected
    name, _, value = key.example.partition(": ")
    assert name == key.name
    key.check(YAML(typ="safe").load(value))  # the fix we print must itself be accepted


@pytest.mark.parametrize("path", list(KEYS))
def test_fixed_defaults_pass_their_own_check(path: str) -> None:
    key = KEYS[path]
    if key.required or isinstance(key.default, Depends) or key.default is None:
        return
    assert key.check(key.default) == key.default


@pytest.mark.parametrize("name", sorted({k.name for k in ITEMS.values()}))
def test_example_file_documents_every_key(name: str) -> None:
    assert re.search(rf"^\s*#?\s*{name}:", EXAMPLE, re.MULTILINE), f"{name} is not in scen.yaml.example"


@pytest.mark.parametrize("path", USER_FACING, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_facing_files_cite_only_the_docs(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    assert not re.search(r"\bSPEC\b", text), f"{path} cites a document users do not have; cite docs/*.md"
    for page in re.findall(r"docs/([\w-]+\.md)", text):
        assert (ROOT / "docs" / page).is_file(), f"{path} cites docs/{page}, which does not exist"


@pytest.mark.parametrize("name", ["application_type", "feature_choose", "pre_train_dir"])
def test_example_points_detection_keys_at_the_tasks_page(name: str) -> None:
    """The comment block above each of these keys sends the reader to docs/tasks.md, and no longer
    says that detection and segmentation are unavailable."""
    lines = EXAMPLE.splitlines()
    at = next(i for i, line in enumerate(lines) if re.match(rf"\s*#?\s*{name}:", line))
    start = at
    while start > 0 and lines[start - 1].lstrip().startswith("#"):
        start -= 1
    comment = " ".join(line.strip().lstrip("# ") for line in lines[start:at])
    assert "docs/tasks.md" in comment and "not available yet" not in comment, (name, comment)


def test_example_says_several_gpu_ids_run_one_process_per_gpu() -> None:
    assert "one data-parallel process\n    # per GPU" in EXAMPLE and "docs/distributed.md" in EXAMPLE


def test_table_defaults_are_the_model_defaults() -> None:
    d = defaults()

    def of(prefix: str) -> dict[str, Any]:
        return {k.name: d[f"{prefix}.{k.name}"] for k in _section(prefix).keys}

    assert Searcher(**of("scenario.strategy.searcher")) == Searcher()
    # distill's default depends on sampling (rules.py): with the default sampling it is the model's.
    assert Training(**{**of("scenario.strategy.training"), "distill": True}) == Training()
    assert d["scenario.strategy.training.distill"] is None
    assert SearchSpaceChoices(**of("scenario.strategy.supernet.search_space")) == SearchSpaceChoices()
    assert d["scenario.resource.gpu_id"] == d["scenario.strategy.resource.gpu_id"] == (0,)


def test_required_keys_are_those_of_the_seed() -> None:
    required = {p for p, k in ITEMS.items() if k.required}
    s = "scenario.strategy"
    assert required == {
        "scenario",
        s,
        f"{s}.name",
        f"{s}.framework",
        f"{s}.batch_size",
        f"{s}.epochs",
        f"{s}.constraint",
        f"{s}.constraint.application_type",
        f"{s}.constraint.constraint_type",
        f"{s}.constraint.constraint_value",
        f"{s}.dataset",
        f"{s}.dataset.train_dir",
        f"{s}.dataset.val_dir",
    }


@pytest.mark.parametrize(
    "check, value, result",
    [
        (integer(1), 3, 3),
        (integer(1), 0, Invalid),
        (integer(1), True, Invalid),
        (integer(1), 3.0, Invalid),
        (integer(0), 0, 0),
        (number(0), 5, 5.0),
        (number(0), math.inf, Invalid),
        (number(0), math.nan, Invalid),
        (number(0), False, Invalid),
        (number(0, 1), 1.0, Invalid),
        (number(0, 1, closed="high"), 1, 1.0),
        (number(0, 1, closed="low high"), 0, 0.0),
        (number(0, as_float=False), 11000000, 11000000),
        (choice("TensorFlow", "PyTorch", lower=True), "PYTORCH", "pytorch"),
        (choice("SGD", "Momentum", "Adam"), " adam ", "Adam"),
        (choice("SGD", "Momentum", "Adam"), 1, Invalid),
        (KEYS["scenario.strategy.supernet.input_shape"].check, "(224, 224, 3)", (224, 224, 3)),
        (KEYS["scenario.strategy.supernet.input_shape"].check, [3, 32, 32], (3, 32, 32)),
        (KEYS["scenario.strategy.supernet.input_shape"].check, "(224, 224)", Invalid),
        (KEYS["scenario.strategy.supernet.input_shape"].check, [3, 32, 32.5], Invalid),
        (KEYS["scenario.resource.gpu_id"].check, "0,1,2,3,4,5,6,7", tuple(range(8))),
        (KEYS["scenario.resource.gpu_id"].check, " cpu ", ()),
        (KEYS["scenario.resource.gpu_id"].check, "0;1", Invalid),
        (KEYS["scenario.strategy.supernet.feature_choose"].check, [], ()),
        (KEYS["scenario.strategy.supernet.search_space.width_ratios"].check, [1, 0.5, 0.5], (0.5, 1.0)),
    ],
)
def test_checks(check: Any, value: Any, result: Any) -> None:
    if result is Invalid:
        with pytest.raises(Invalid):
            check(value)
    else:
        got = check(value)
        assert got == result and type(got) is type(result)


def test_choice_suggests_the_closest_option() -> None:
    with pytest.raises(Invalid, match="did you mean 'Momentum'"):
        choice("SGD", "Momentum", "Adam")("momentun")


@pytest.mark.parametrize(
    "name, section, words",
    [
        ("epoch", "scenario.strategy", ["did you mean 'epochs'?", "rename it to epochs"]),
        ("POP_SIZE", "scenario.strategy.searcher", ["did you mean 'pop_size'?"]),
        ("pop_size", "scenario.strategy", ["pop_size belongs under scenario.strategy.searcher", "move it"]),
        ("momentum", "scenario.strategy.optimizer", ["belongs under scenario.strategy.optimizer.weights_optimizer"]),
        ("gpu_id", "scenario.strategy", ["belongs under scenario.resource or scenario.strategy.resource"]),
        ("strategy", "", ["strategy belongs under scenario"]),
        (
            "kernel_size",
            "scenario.strategy.supernet",
            ["did you mean scenario.strategy.supernet.search_space.kernel_sizes?"],
        ),
        ("colour", "scenario.strategy", ["unknown key 'colour'", "keys allowed here: name, framework"]),
        (3, "scenario.strategy", ["keys must be names, got 3"]),
    ],
)
def test_unknown_key_hints(name: Any, section: str, words: list[str]) -> None:
    here = SCHEMA if section == "" else _section(section)
    what, fix = unknown_key(name, here, section)
    for word in words:
        assert word in f"{what} Fix: {fix}"
