"""The TensorFlow object-detection contract (docs/user-module.md#tensorflow-object-detection): NASEA's generators for
training and BN calibration, ``metrics_op([valid_dir, model], [data_generator, proxy_val_image_ids, data_size])``,
streams and Sequences across epochs, resume and processes, and the mistakes that are exit 2."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from tests.frameworks import require

tf = require("tensorflow")

from dopt.backends import get_backend  # noqa: E402
from dopt.backends.scripts import load_script  # noqa: E402
from dopt.backends.tf import detection  # noqa: E402
from dopt.errors import UserError  # noqa: E402
from dopt.evaluation import calibration_indices  # noqa: E402
from dopt.scenario import load  # noqa: E402
from dopt.space import SearchSpace  # noqa: E402
from dopt.training import TrainHooks, TrainState, train  # noqa: E402
from dopt.user_module import load_user_module  # noqa: E402

USER_MODULE = '''\
import math

import keras
import numpy as np
import tensorflow as tf

CALLS = []  # (is_training, is_shuffle) of every build_dataset_search call
METRIC_CALLS = []  # (valid_dir, proxy_val_image_ids, data_size) of every metrics_op call


class Boxes(keras.utils.PyDataset):
    """Random 16x16 images, each with 1 to 3 boxes (class, cx, cy, w, h), padded with -1 rows to 3."""

    def __init__(self, n, batch_size, seed):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.images = rng.random((n, 16, 16, 3), dtype=np.float32)
        self.labels = np.full((n, 3, 5), -1.0, np.float32)
        for i, k in enumerate(rng.integers(1, 4, n)):
            self.labels[i, :k] = np.concatenate([rng.integers(0, 3, (k, 1)), rng.random((k, 4))], axis=1)
        self.batch_size = batch_size
        self.epochs_ended = 0

    def __len__(self):
        return math.ceil(len(self.images) / self.batch_size)

    def __getitem__(self, i):
        part = slice(i * self.batch_size, (i + 1) * self.batch_size)
        return self.images[part], self.labels[part]

    def on_epoch_end(self):
        self.epochs_ended += 1


class UserModule:
    def __init__(self, epoch, batch_size):
        self.batch_size = batch_size

    def build_dataset_search(self, dataset_dir, is_training, is_shuffle):
        CALLS.append((is_training, is_shuffle))
        if is_training:
            self.train = Boxes(40, self.batch_size, 0)
            return self.train, 40
        val = Boxes(24, self.batch_size, 1)
        return val, val.labels, 24

    def lr_scheduler(self, lr_init, global_step):
        return lr_init

    def loss_op(self, labels, logits):
        # Regress the first box's centre and size.
        return tf.reduce_mean(tf.square(logits - labels[:, 0, 1:]))

    def metrics_op(self, inputs, outputs):
        valid_dir, model = inputs
        data_generator, proxy_val_image_ids, data_size = outputs
        METRIC_CALLS.append((valid_dir, np.array(proxy_val_image_ids), data_size))
        wanted = set(int(i) for i in proxy_val_image_ids)
        errors, start = [], 0
        for images, labels in data_generator:
            rows = [j for j in range(len(images)) if start + j in wanted]
            start += len(images)
            if rows:
                boxes = np.asarray(model(images[rows]))
                errors.append(np.abs(boxes - labels[rows, 0, 1:]).mean(axis=1))
            if start >= max(wanted) + 1:
                break
        return 1.0 - float(np.concatenate(errors).mean())


class PreNet(keras.layers.Layer):
    def __init__(self):
        super().__init__()
        self.conv = keras.layers.Conv2D(8, 3, strides=2, padding="same")

    def call(self, inputs, training=True):
        return tf.nn.relu(self.conv(inputs))


class PostNet(keras.layers.Layer):
    """Boxes from the feature_choose layer's output and the last one (a list)."""

    def __init__(self):
        super().__init__()
        self.head = keras.layers.Dense(4, activation="sigmoid")

    def call(self, inputs, training=True):
        pooled = [tf.reduce_mean(x, axis=[1, 2]) for x in inputs]
        return self.head(tf.concat(pooled, axis=-1))
'''

SCENARIO = """\
scenario:
  strategy:
    name: NASEA
    framework: TensorFlow
    batch_size: 8
    epochs: 1
    constraint:
      application_type: object_detection
      constraint_type: size
      constraint_value: 100000
    supernet:
      input_shape: (16, 16, 3)
      filters: [8, 16]
      strides: [1, 2]
      feature_choose: [0]
      search_space:
        kernel_sizes: [3]
        expand_ratios: [1, 2]
    optimizer:
      weights_optimizer:
        type: Adam
        learning_rate: 0.01
    dataset:
      train_dir: data/train
      val_dir: data/val
      pre_train_dir: data/pretrain
    searcher:
      seed: 3
      bn_calib_batches: 2
      eval_batches: 2
    training:
      sampling: uniform
  resource:
    name: Tensorflow_standalone
    gpu_id: cpu
"""


def workdir(tmp_path, old="", new=""):
    path = tmp_path / "w"
    for folder in ("train", "val", "pretrain"):
        (path / "data" / folder).mkdir(parents=True)
    assert old in USER_MODULE
    (path / "user_module.py").write_text(USER_MODULE.replace(old, new))
    (path / "scen.yaml").write_text(SCENARIO)
    return path


def session(path):
    """Pre-training aside (dopt.run does it): the backend's setup, the supernet session, the rehearsal."""
    scenario = load(path / "scen.yaml", workdir=path)
    module = load_user_module(path, "tensorflow")
    backend = get_backend("tensorflow")
    backend.check_user_module(module)
    setup = backend.setup(scenario, module, 0)
    space = SearchSpace(scenario.supernet, setup.probe.in_channels)
    ops = setup.build_supernet(space)
    return module, scenario, space, ops


@pytest.fixture(autouse=True)
def forget_user_module():
    yield
    sys.modules.pop("user_module", None)


def test_training_calibration_and_metric_follow_the_detection_contract(tmp_path):
    path = workdir(tmp_path)
    module, scenario, space, ops = session(path)
    assert ops.setup.probe.steps_per_epoch == 5  # len(Boxes(40, 8))
    largest = space.decode(space.largest())
    assert "metric on one validation batch" in ops.rehearse([space.decode(space.smallest()), largest])[0]
    rehearsal = module.METRIC_CALLS.pop()
    assert rehearsal[0] == scenario.dataset.val_dir and rehearsal[2] == 8
    np.testing.assert_array_equal(rehearsal[1], np.arange(8))

    losses = []
    state = TrainState()
    train(ops, lambda epoch: [largest], range(1), state, TrainHooks(lambda s: losses.append(s.loss)), False)
    assert state.step == 5 and all(np.isfinite(losses))
    assert ops.setup.user.train.epochs_ended == 1  # the PyDataset's on_epoch_end, after the epoch

    calibration = ops.calibration_set(np.random.default_rng(5))
    assert module.CALLS[-1] == (True, False)  # unshuffled, for the calibration subset
    chosen = calibration_indices(40, 8, 2, np.random.default_rng(5))
    assert [tuple(b.shape) for b in calibration] == [(8, 16, 16, 3)] * 2
    np.testing.assert_array_equal(np.concatenate(calibration), ops.setup.user.train.images[chosen])

    model = ops.extract(largest)
    ops.recalibrate(model, calibration)
    value = float(ops.metric(model))
    assert 0 < value <= 1
    valid_dir, ids, size = module.METRIC_CALLS.pop()
    assert valid_dir == scenario.dataset.val_dir
    np.testing.assert_array_equal(ids, np.arange(16))  # eval_batches: 2 of 8 images
    assert size == 16 and ids.dtype == np.int64
    ops.metric(model, 1)  # the per-epoch monitor's limited evaluation
    np.testing.assert_array_equal(module.METRIC_CALLS.pop()[1], np.arange(8))


def test_a_result_trains_and_evaluates_on_the_detection_data(tmp_path):
    """``dopt train``'s trainer (docs/training-a-result.md) reads the same generators and metric arguments."""
    path = workdir(tmp_path)
    module, scenario, space, ops = session(path)
    arch = space.decode(space.smallest())
    model = ops.extract(arch)
    ops.recalibrate(model, ops.calibration_set(np.random.default_rng(0)))
    script = path / "results" / "model_arch_result_1.py"
    script.parent.mkdir()
    header = {"accuracy": 0.5, "model_param_size": 0, "encoding": list(space.encode(arch))}
    ops.write_result(model, arch, script, header)
    trainer = ops.setup.build_result(load_script(script), script.with_name(script.stem + ".weights.h5"))
    before = trainer.evaluate()
    valid_dir, ids, size = module.METRIC_CALLS.pop()
    np.testing.assert_array_equal(ids, np.arange(24))  # the whole validation set, not eval_batches
    assert size == 24 and 0 < before <= 1
    state = TrainState()
    train(trainer, lambda epoch: [arch], range(2), state, TrainHooks(lambda s: None), False)
    assert state.step == 10 and np.isfinite(trainer.evaluate())


@pytest.mark.parametrize(
    ("old", "new", "words"),
    [
        (
            "def build_dataset_search(self, dataset_dir, is_training, is_shuffle):",
            "def build_dataset_search(self, dataset_dir, is_training):\n        is_shuffle = is_training",
            ["UserModule.build_dataset_search", "(dataset_dir, is_training)", "is_shuffle", "Fix:"],
        ),
        (
            "            return self.train, 40\n",
            "            return tf.data.Dataset.from_tensor_slices((np.zeros((8, 16, 16, 3), np.float32), "
            "np.zeros(8))).batch(8), 8\n",
            ["tf.data.Dataset", "(train_generator, train_dataset_size)", "PyDataset"],
        ),
        (
            "        return val, val.labels, 24\n",
            "        return val, 24\n",
            ["2 items", "(val_generator, val_dataset, val_dataset_size)"],
        ),
        (
            "        self.images = rng.random((n, 16, 16, 3), dtype=np.float32)\n",
            "        self.images = rng.random((n, 16, 16, 3))\n",
            ["float64", "float32"],
        ),
    ],
)
def test_dataset_contract_mistakes_are_user_errors_at_setup(tmp_path, old, new, words):
    with pytest.raises(UserError) as info:
        session(workdir(tmp_path, old, new))
    message = str(info.value)
    for word in words:
        assert word in message, message


def test_a_classification_metrics_op_fails_the_rehearsal_with_the_detection_arguments(tmp_path):
    path = workdir(
        tmp_path,
        "        valid_dir, model = inputs\n",
        "        return tf.reduce_mean(tf.cast(tf.equal(tf.argmax(outputs, -1), inputs), tf.float32))\n",
    )
    _, _, space, ops = session(path)
    with pytest.raises(UserError) as info:
        ops.rehearse([space.decode(space.smallest())])
    message = str(info.value)
    assert message.startswith("UserModule.metrics_op: metrics_op failed on one validation batch")
    assert detection.METRIC_ARGS in message and "\n" not in message


# -- generators across epochs, resumes and processes, without a model ---------------------------


def stream_of(batches, builds):
    """A build_dataset_search stand-in returning a one-pass Python generator of numbered batches."""

    def make():
        builds.append(1)
        return (((np.full((2, 1), i, np.float32), np.array([i])) for i in range(batches)), 2 * batches)

    return make


def numbers(batches):
    return [int(labels[0]) for _, labels in batches]


def test_a_stream_is_read_on_across_epochs_and_built_again_when_it_ends():
    builds = []
    data = detection.Batches(stream_of(3, builds), "build", 2)
    assert data.steps == 3 and numbers([data.first()]) == [0]
    epochs = data.epochs()
    assert [numbers(epochs.batches(e)) for e in range(3)] == [[0, 1, 2]] * 3
    assert len(builds) == 3


def test_a_resumed_stream_skips_the_batches_of_the_epochs_done():
    uninterrupted = detection.Batches(stream_of(5, []), "build", 4)  # 10 images: 3 steps a pass of 5 batches
    epochs = uninterrupted.epochs()
    expected = [numbers(epochs.batches(e)) for e in range(3)]
    resumed = detection.Batches(stream_of(5, []), "build", 4).epochs()
    assert numbers(resumed.batches(2)) == expected[2] == [1, 2, 3]


def test_processes_take_every_world_size_th_batch_the_same_number_of_steps():
    stream = [detection.Batches(stream_of(5, []), "build", 2) for _ in range(2)]
    for rank, data in enumerate(stream):
        data.shard(rank, 2)
    assert [d.steps for d in stream] == [2, 2]
    assert [numbers(d.epochs().batches(0)) for d in stream] == [[0, 2], [1, 3]]

    class Indexed:
        def __len__(self):
            return 5

        def __getitem__(self, i):
            return np.full((2, 1), i, np.float32), np.array([i])

    sequences = [detection.Batches(lambda: (Indexed(), 10), "build", 2) for _ in range(2)]
    for rank, data in enumerate(sequences):
        data.shard(rank, 2)
    assert [numbers(d.epochs().batches(1)) for d in sequences] == [[0, 2], [1, 3]]
    with pytest.raises(UserError, match="fewer than the 8 processes"):
        detection.Batches(lambda: (Indexed(), 10), "build", 2).shard(0, 8)
