"""Datasets of the TF contract (docs/user-module.md#tensorflow): structures checked before training, batched or not,
is_shuffle where the signature has it, data_format on the CPU."""

from __future__ import annotations

import numpy as np
import pytest

from tests.frameworks import require

tf = require("tensorflow")

from dopt.backends import get_backend  # noqa: E402
from dopt.backends.tf.backend import TFBackend  # noqa: E402
from dopt.errors import UserError  # noqa: E402
from dopt.scenario import load  # noqa: E402
from dopt.space import SearchSpace  # noqa: E402
from dopt.user_module import load_user_module  # noqa: E402
from tests.backends.tf.tf_workdir import make_workdir  # noqa: E402
from tests.digits_workdir import TRAIN_IMAGES  # noqa: E402

RETURN = "        return dataset.batch(self.batch_size, drop_remainder=is_training), len(images)\n"


def setup(workdir, overrides=()):
    scenario = load(workdir / "scen.yaml", workdir=workdir, overrides=overrides)
    module = load_user_module(workdir, "tensorflow")
    backend = get_backend("tensorflow")
    backend.check_user_module(module)
    return backend, backend.setup(scenario, module, 0), scenario


def edited(tmp_path, old, new):
    workdir = make_workdir(tmp_path / "w")
    path = workdir / "user_module.py"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))
    return workdir


@pytest.mark.parametrize(
    ("new", "words"),
    [
        ("        return dataset.batch(self.batch_size)\n", ["(dataset, data_num)"]),
        ("        return list(dataset), len(images)\n", ["not a tf.data.Dataset"]),
        ("        return dataset.batch(self.batch_size), 0\n", ["data_num 0"]),
        (
            "        return dataset.map(lambda x, y: x).batch(self.batch_size), len(images)\n",
            ["(inputs, labels) pairs"],
        ),
        (
            "        return dataset.map(lambda x, y: (tf.cast(x, tf.uint8), y)).batch(64), len(images)\n",
            ["uint8", "float32"],
        ),
        (
            "        return dataset.map(lambda x, y: (x[..., 0], y)).batch(64), len(images)\n",
            ["rank 3", "rank 3 per sample"],
        ),
        (
            "        return dataset.map(lambda x, y: (tf.image.resize(x, (6, 6)), y)).batch(64), len(images)\n",
            ["(6, 6, 1)", "input_shape is (8, 8, 1)"],
        ),
    ],
)
def test_bad_dataset_structures_are_user_errors_before_training(tmp_path, new, words):
    workdir = edited(tmp_path, RETURN, new)
    with pytest.raises(UserError) as info:
        setup(workdir)
    message = str(info.value)
    assert "build_dataset_search" in message and "Fix:" in message
    for word in words:
        assert word in message, message


def test_an_unbatched_dataset_is_batched_by_dopt(tmp_path):
    workdir = edited(tmp_path, RETURN, "        return dataset, len(images)\n")
    _, tf_setup, _ = setup(workdir)
    assert tf_setup.probe.steps_per_epoch == TRAIN_IMAGES // 64  # training batches drop the remainder
    assert tf_setup.data.val.dataset.element_spec[0].shape.as_list() == [None, 8, 8, 1]


def test_is_shuffle_is_passed_where_the_signature_has_it_and_false_for_bn_calibration(tmp_path):
    workdir = edited(
        tmp_path,
        "    def build_dataset_search(self, dataset_dir, is_training):\n",
        "    def build_dataset_search(self, dataset_dir, is_training, is_shuffle):\n"
        "        self.calls = getattr(self, 'calls', []) + [(is_training, is_shuffle)]\n",
    )
    _, tf_setup, scenario = setup(workdir)
    calibration = tf_setup.build_supernet(SearchSpace(scenario.supernet, 16)).calibration_set(np.random.default_rng(0))
    assert tf_setup.user.calls == [(True, True), (False, False), (True, False)]
    assert len(calibration) == 2 and calibration[0].shape[0] == 64


def test_channels_first_on_the_cpu_is_a_user_error_naming_data_format(tmp_path):
    workdir = make_workdir(tmp_path / "w")
    with pytest.raises(UserError, match="scenario.strategy.supernet.data_format.*channels_last"):
        setup(
            workdir,
            [
                "scenario.strategy.supernet.data_format=channels_first",
                "scenario.strategy.supernet.input_shape=[1, 8, 8]",
            ],
        )


def test_get_backend_gives_the_tf_backend():
    backend = get_backend("tensorflow")
    assert isinstance(backend, TFBackend) and backend.framework == "tensorflow"
