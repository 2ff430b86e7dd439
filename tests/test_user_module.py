from __future__ import annotations

import sys

import pytest

from dopt.errors import UserError
from dopt.user_module import load_user_module

GOOD = """
class UserModule:
    def __init__(self, epoch, batch_size): pass
    def dataset_define(self, dataset_dir, is_training): pass
    def scheduler_define(self, optimizer, steps_per_epoch): pass
    def metrics_func(self, eval_dataloader, eval_function): pass
    def loss_func(self, labels, logits): pass
class PreNet:
    def __init__(self): pass
    def forward(self, inputs): pass
class PostNet:
    def forward(self, inputs): pass
"""


@pytest.fixture(autouse=True)
def _forget_module():
    yield
    sys.modules.pop("user_module", None)


def test_good_module_loads_without_writing_bytecode(tmp_path):
    (tmp_path / "user_module.py").write_text(GOOD)
    module = load_user_module(tmp_path, "pytorch")
    assert module.UserModule and not (tmp_path / "__pycache__").exists()


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (
            lambda s: s.replace("def dataset_define", "def dataset_defin"),
            ["UserModule.dataset_define", "dataset_defin", "misspelled"],
        ),
        (lambda s: s.replace("class PostNet", "class PostNett"), ["no class PostNet", "PostNett"]),
        (
            lambda s: s.replace("def loss_func(self, labels, logits)", "def loss_func(self, labels)"),
            ["UserModule.loss_func", "def loss_func(self, labels, logits)"],
        ),
        (
            lambda s: s.replace("def __init__(self, epoch, batch_size)", "def __init__(self, epochs, batch_size)"),
            ["UserModule.__init__", "epoch"],
        ),
        (
            lambda s: s + "\nimport not_a_package_xyz\n",
            ["importing user_module.py failed", "not_a_package_xyz", "pip install"],
        ),
        (lambda s: s + "\ndef broken(:\n", ["syntax error", "user_module.py:"]),
        (lambda s: s + "\nraise RuntimeError('boom at import')\n", ["boom at import", "user_module.py:"]),
    ],
)
def test_contract_errors_name_the_function_and_the_fix(tmp_path, edit, words):
    (tmp_path / "user_module.py").write_text(edit(GOOD))
    with pytest.raises(UserError) as info:
        load_user_module(tmp_path, "pytorch")
    message = str(info.value)
    for word in words:
        assert word in message, message
    assert "Fix:" in message


def test_missing_user_module(tmp_path):
    with pytest.raises(UserError, match="no user_module.py"):
        load_user_module(tmp_path, "pytorch")
