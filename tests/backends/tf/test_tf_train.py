"""Supernet training with tf.GradientTape: steps, sandwich, NaN skipping, resume (mirrors tests/backends/torch)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.frameworks import require

tf = require("tensorflow")

from dopt.backends import get_backend  # noqa: E402
from dopt.scenario import load  # noqa: E402
from dopt.space import SearchSpace  # noqa: E402
from dopt.training import TrainHooks, TrainState, train, train_epoch  # noqa: E402
from dopt.user_module import load_user_module  # noqa: E402
from tests.backends.tf.tf_workdir import make_workdir  # noqa: E402


def _session(workdir, overrides=()):
    scenario = load(workdir / "scen.yaml", workdir=workdir, overrides=list(overrides))
    backend = get_backend("tensorflow")
    module = load_user_module(workdir, "tensorflow")
    backend.check_user_module(module)
    setup = backend.setup(scenario, module, 7)
    space = SearchSpace(scenario.supernet, setup.probe.in_channels)
    return setup.build_supernet(space), space


def session(tmp_path, kind="SGD"):
    s, space = _session(
        make_workdir(tmp_path / "w"),
        [
            f"scenario.strategy.optimizer.weights_optimizer.type={kind}",
            "scenario.strategy.optimizer.weights_optimizer.learning_rate=0.05",
        ],
    )
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((8, 8, 8, 1)).astype(np.float32), rng.integers(0, 10, 8)) for _ in range(3)]
    return s, space, batches


def test_training_reduces_the_loss_of_a_fixed_batch(tmp_path):
    s, space, batches = session(tmp_path, "Adam")
    s.setup.user.lr_scheduler = lambda lr, step: 0.01
    arch = space.decode(space.largest())
    s.supernet.set_active(arch)
    x, y = batches[0]
    before = float(s.setup.user.loss_op(y, s.supernet(x, training=True)))
    logs = []
    for epoch in range(8):
        train_epoch(s, batches[:1], lambda: [arch], epoch, TrainState(), TrainHooks(logs.append), False)
    assert logs[-1].loss < 0.5 * before, (before, [log.loss for log in logs])


def test_sandwich_with_distillation_makes_one_optimizer_step_per_batch_and_feeds_the_schedule(tmp_path):
    s, space, batches = session(tmp_path, "Momentum")
    rng = np.random.default_rng(0)
    largest, smallest = space.decode(space.largest()), space.decode(space.smallest())
    steps_seen = []

    def lr_scheduler(lr_init, global_step):
        steps_seen.append(global_step)
        return tf.constant(lr_init * 0.5**global_step)  # a tensor: dopt reads it as a float

    s.setup.user.lr_scheduler = lr_scheduler
    logs = []
    before = [v.numpy().copy() for v in s.supernet.trainable_variables]
    train_epoch(
        s,
        batches,
        lambda: [largest, smallest, *(space.decode(space.sample(rng)) for _ in range(2))],
        0,
        TrainState(),
        TrainHooks(logs.append),
        True,
    )
    opt = s.optimizer
    assert steps_seen == [0, 1, 2] and int(opt.iterations) == 3 and [log.step for log in logs] == [0, 1, 2]
    assert np.isclose(logs[-1].lr, 0.05 * 0.25) and np.isclose(float(opt.learning_rate), 0.05 * 0.25)
    assert all(np.isfinite(log.loss) and not log.skipped for log in logs)
    assert any(not np.array_equal(a, v.numpy()) for a, v in zip(before, s.supernet.trainable_variables))


def test_non_finite_loss_skips_the_step_and_leaves_weights_untouched(tmp_path, caplog):
    s, space, batches = session(tmp_path, "Adam")
    arch = space.decode(space.largest())
    logs = []
    before = [v.numpy().copy() for v in s.supernet.trainable_variables]
    loss_op = s.setup.user.loss_op
    s.setup.user.loss_op = lambda labels, logits: loss_op(labels, logits) * float("nan")
    train_epoch(s, batches[:1], lambda: [arch], 0, TrainState(), TrainHooks(logs.append), False)
    assert logs[0].skipped and int(s.optimizer.iterations) == 0
    assert all(np.array_equal(a, v.numpy()) for a, v in zip(before, s.supernet.trainable_variables))
    assert "step skipped" in caplog.text and "k5e3" in caplog.text


def _sampler(space):
    def sample(epoch):  # the same subnets for an epoch however training got there
        rng = sample.rngs.setdefault(epoch, np.random.default_rng([3, epoch]))
        return [space.decode(space.sample(rng))]

    sample.rngs = {}
    return sample


@pytest.mark.slow
def test_resumed_training_equals_an_uninterrupted_run(tmp_path):
    """Train epochs 0..2 in one go, or 0..1, save, a new session loads and trains epoch 2: the
    same weights (per-epoch reseeding; the dataset's shuffle advanced to epoch 2)."""
    workdir = make_workdir(tmp_path / "w", epochs=3)
    whole, space = _session(workdir)
    train(whole, _sampler(space), range(3), TrainState(), TrainHooks(lambda s: None), False)

    first, space = _session(workdir)
    state = TrainState()
    train(first, _sampler(space), range(2), state, TrainHooks(lambda s: None), False)
    first.save(tmp_path / "epoch_2.weights.npz", state.step)
    resumed, space = _session(workdir)
    step = resumed.load(tmp_path / "epoch_2.weights.npz")
    steps = []
    train(
        resumed, _sampler(space), range(2, 3), TrainState(step=step), TrainHooks(lambda s: steps.append(s.step)), False
    )

    assert steps[0] == 2 * whole.setup.data.train.steps
    assert int(resumed.optimizer.iterations) == int(whole.optimizer.iterations)
    for a, b in zip(whole.supernet.variables, resumed.supernet.variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)


def test_a_torn_checkpoint_is_reported_as_corrupt(tmp_path):
    import pytest

    from dopt.backends.base import CorruptCheckpoint

    s, _ = _session(make_workdir(tmp_path / "w"))
    path = tmp_path / "s.weights.npz"
    s.save(path, 5)
    assert s.load(path) == 5  # round trip
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptCheckpoint, match="s.weights.npz"):
        s.load(path)
