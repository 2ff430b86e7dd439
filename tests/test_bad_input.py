"""What the PyTorch backend refuses in a user module: exit 2, one line naming the function and the
fix; no traceback; nothing written. Every other category of bad input (scenario, command line,
the core's checks of a user module) is tested on the fake backend, in tests/pipeline/test_user_mistakes.py.

Runs the CLI in-process (``dopt.cli.main``) so that the whole table takes seconds.
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


def module(old: str, new: str) -> Edit:
    def edit(work: Path) -> None:
        text = (work / "user_module.py").read_text()
        assert old in text, old
        (work / "user_module.py").write_text(text.replace(old, new, 1))

    return edit


# category: (edit, --set overrides, words the message must contain)
CASES: dict[str, tuple[Edit, list[str], list[str]]] = {
    # What the PyTorch backend checks of a user module; the scenario's and the core's own checks
    # are tested on the fake backend in tests/pipeline/test_user_mistakes.py.
    "dataset-wrong-structure": (
        module(
            'return torch.utils.data.TensorDataset(images, torch.from_numpy(data["labels"]))',
            "return torch.utils.data.TensorDataset(images)",
        ),
        [],
        ["dataset_define", "(inputs, labels)"],
    ),
    "dataset-three-items": (
        module(
            'return torch.utils.data.TensorDataset(images, torch.from_numpy(data["labels"]))',
            'return torch.utils.data.TensorDataset(images, images, torch.from_numpy(data["labels"]))',
        ),
        [],
        ["dataset_define", "(inputs, labels)"],
    ),
    "postnet-of-other-channels": (
        module("nn.Linear(48, 10)", "nn.Linear(32, 10)"),
        [],
        ["PostNet.forward failed", "filters[-1] = 48"],
    ),
    "loss-not-scalar": (
        module("cross_entropy(logits, labels)", "cross_entropy(logits, labels, reduction='none')"),
        [],
        ["loss_func returned a tensor of shape (64,)", "scalar"],
    ),
    "schedule-needs-arguments": (
        module(
            """return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optimizer.param_groups[0]["lr"], total_steps=self.epoch * steps_per_epoch
        )""",
            "return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)",
        ),
        [],
        ["ReduceLROnPlateau", "step() needs arguments"],
    ),
    "float64-inputs": (module(".float().div(16.0)", ".double().div(16.0)"), [], ["torch.float64 inputs", ".float()"]),
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
