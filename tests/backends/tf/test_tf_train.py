"""Supernet training with tf.GradientTape: steps, sandwich, NaN skipping, resume (mirrors tests/backends/torch)."""

from __future__ import annotations

import numpy as np

from tests.frameworks import require

tf = require("tensorflow")

import keras  # noqa: E402

from dopt.backends.base import get_backend  # noqa: E402
from dopt.backends.tf.supernet import Supernet  # noqa: E402
from dopt.backends.tf.train import TrainState, make_optimizer, train_epoch  # noqa: E402
from dopt.scenario import load  # noqa: E402
from dopt.space import SearchSpace  # noqa: E402
from dopt.user_module import load_user_module  # noqa: E402
from tests.backends.tf.keras_nets import PostNet, PreNet  # noqa: E402
from tests.backends.tf.tf_workdir import make_workdir  # noqa: E402
from tests.test_space import make_space  # noqa: E402


def loss_op(labels, logits):
    return tf.reduce_mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


def setup(kind="SGD"):
    keras.utils.set_random_seed(0)
    space = make_space(filters=(16, 16, 24, 32), strides=(1, 1, 2, 1), kernel_sizes=(3, 5), expand_ratios=(1, 3))
    pre, post = PreNet(), PostNet()
    pre(np.zeros((1, 8, 8, 1), np.float32))
    post(tf.zeros((1, 4, 4, 32)))
    net = Supernet(pre, post, space, (), (8, 8, 1))
    opt = make_optimizer(kind, 0.05, (0.9, 0.999), 0.9)
    opt.build(net.trainable_variables)
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((8, 8, 8, 1)).astype(np.float32), rng.integers(0, 10, 8)) for _ in range(3)]
    return net, space, opt, batches


def test_training_reduces_the_loss_of_a_fixed_batch():
    net, space, opt, batches = setup("Adam")
    arch = space.decode(space.largest())
    net.set_active(arch)
    x, y = batches[0]
    before = float(loss_op(y, net(x, training=True)))
    logs = []
    for epoch in range(8):
        train_epoch(net, batches[:1], opt, lambda lr, step: 0.01, 0.01, loss_op, lambda: [arch], epoch,
                    TrainState(), False, logs.append)
    assert logs[-1].loss < 0.5 * before, (before, [s.loss for s in logs])


def test_sandwich_with_distillation_makes_one_optimizer_step_per_batch_and_feeds_the_schedule():
    net, space, opt, batches = setup("Momentum")
    rng = np.random.default_rng(0)
    largest, smallest = space.decode(space.largest()), space.decode(space.smallest())
    steps_seen = []

    def lr_scheduler(lr_init, global_step):
        steps_seen.append(global_step)
        return tf.constant(lr_init * 0.5**global_step)  # a tensor: dopt reads it as a float

    logs = []
    before = [v.numpy().copy() for v in net.trainable_variables]
    train_epoch(net, batches, opt, lr_scheduler, 0.05, loss_op,
                lambda: [largest, smallest, *(space.decode(space.sample(rng)) for _ in range(2))],
                0, TrainState(), True, logs.append)
    assert steps_seen == [0, 1, 2] and int(opt.iterations) == 3 and [s.step for s in logs] == [0, 1, 2]
    assert np.isclose(logs[-1].lr, 0.05 * 0.25) and np.isclose(float(opt.learning_rate), 0.05 * 0.25)
    assert all(np.isfinite(s.loss) and not s.skipped for s in logs)
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(before, net.trainable_variables))


def test_non_finite_loss_skips_the_step_and_leaves_weights_untouched(caplog):
    net, space, opt, batches = setup("Adam")
    arch = space.decode(space.largest())
    logs = []
    before = [v.numpy().copy() for v in net.trainable_variables]

    def nan_loss(labels, logits):
        return loss_op(labels, logits) * float("nan")

    train_epoch(net, batches[:1], opt, lambda lr, step: lr, 0.05, nan_loss, lambda: [arch], 0, TrainState(), False,
                logs.append)
    assert logs[0].skipped and int(opt.iterations) == 0
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, net.trainable_variables))
    assert "step skipped" in caplog.text and "k5e3" in caplog.text


def _backend(workdir):
    scenario = load(workdir / "scen.yaml", workdir=workdir)
    backend = get_backend("tensorflow")
    module = load_user_module(workdir, "tensorflow")
    backend.check_user_module(module)
    probe = backend.setup(scenario, module, 7)
    space = SearchSpace(scenario.supernet, probe.in_channels)
    backend.build_supernet(space)
    return backend, space


def _sampler(space):
    def sample(epoch):  # the same subnets for an epoch however training got there
        rng = sample.rngs.setdefault(epoch, np.random.default_rng([3, epoch]))
        return [space.decode(space.sample(rng))]

    sample.rngs = {}
    return sample


def test_resumed_training_equals_an_uninterrupted_run(tmp_path):
    """Train epochs 0..2 in one go, or 0..1, save, a new backend loads and trains epoch 2: the
    same weights (per-epoch reseeding; the dataset's shuffle advanced to epoch 2)."""
    workdir = make_workdir(tmp_path / "w", epochs=3)
    whole, space = _backend(workdir)
    whole.train(_sampler(space), 3, lambda s: None)

    first, space = _backend(workdir)
    first.train(_sampler(space), 2, lambda s: None)
    first.save_supernet(tmp_path / "epoch_2.weights.npz")
    resumed, space = _backend(workdir)
    resumed.load_supernet(tmp_path / "epoch_2.weights.npz")
    steps = []
    resumed.train(_sampler(space), 3, lambda s: steps.append(s.step), start_epoch=2)

    assert steps[0] == 2 * whole.train_data.steps and int(resumed.optimizer.iterations) == int(whole.optimizer.iterations)
    for a, b in zip(whole.supernet.variables, resumed.supernet.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_a_torn_checkpoint_is_reported_as_corrupt(tmp_path):
    import pytest

    from dopt.backends.base import CorruptCheckpoint

    backend, _ = _backend(make_workdir(tmp_path / "w"))
    path = tmp_path / "s.weights.npz"
    backend.save_supernet(path)
    backend.load_supernet(path)  # round trip
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptCheckpoint, match="s.weights.npz"):
        backend.load_supernet(path)
