"""The fake backend itself: its training is real backpropagation, its subnets are slices of the
supernet, its counts equal dopt's formulas (the header check of every result relies on it), its
checkpoints round-trip and refuse torn or foreign files."""

from __future__ import annotations

import numpy as np
import pytest

from dopt.backends.base import CorruptCheckpoint
from dopt.costs import CostModel
from dopt.scenario import load
from dopt.space import SearchSpace
from dopt.user_module import load_user_module
from tests.fake.backend import FakeBackend, FakeSession
from tests.fake.workdir import make_workdir

# Expansion 1 too: its blocks have no expand convolution.
CHOICES = "scenario.strategy.supernet.search_space.expand_ratios=[1, 3]"


def session(tmp_path, *overrides: str, seed: int = 7) -> FakeSession:
    """What dopt's prepare stage builds, without the rest of a run."""
    work = make_workdir(tmp_path / "work")
    scenario = load(work / "scen.yaml", workdir=work, overrides=overrides)
    setup = FakeBackend().setup(scenario, load_user_module(work, "pytorch"), seed)
    return setup.build_supernet(SearchSpace(scenario.supernet, setup.probe.in_channels))


def archs(s: FakeSession, n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [s.space.decode(s.space.largest()), s.space.decode(s.space.smallest())] + [
        s.space.decode(s.space.sample(rng)) for _ in range(n)
    ]


def test_the_gradients_are_those_of_the_loss(tmp_path):
    s = session(tmp_path, CHOICES)
    x = np.random.default_rng(1).normal(size=(5, s.space.in_channels))
    direction = np.random.default_rng(2).normal(size=(5, s.space.layers[-1].max_out))
    for arch in archs(s, 3):
        s.supernet.zero_grad()
        s.supernet.backward(s.supernet.forward(x, arch), direction)
        for name, weight in s.supernet.weights.items():
            touched = np.flatnonzero(s.supernet.grads[name])
            for i in touched[:: max(1, len(touched) // 3)]:
                old = weight.flat[i]
                losses = []
                for step in (1e-6, -1e-6):
                    weight.flat[i] = old + step
                    losses.append(float(np.sum(s.supernet.forward(x, arch).features * direction)))
                weight.flat[i] = old
                numeric = (losses[0] - losses[1]) / 2e-6
                assert s.supernet.grads[name].flat[i] == pytest.approx(numeric, rel=1e-4, abs=1e-6), name


def test_an_extracted_subnet_computes_what_the_supernet_does(tmp_path):
    s = session(tmp_path, CHOICES)
    inputs = s.setup.train[0][:32]
    pooled = np.asarray(s.setup.pre.forward(inputs)).mean(axis=(2, 3))
    for arch in archs(s, 4):
        model = s.extract(arch)
        in_training = s.supernet.forward(pooled, arch).features
        calibrated = model.forward(inputs, calibrate=True)  # batch statistics, as in training
        np.testing.assert_allclose(calibrated, s.setup.post.forward(in_training[:, :, None, None]), atol=1e-10)


def test_counted_costs_are_dopts_formulas(tmp_path):
    s = session(tmp_path, CHOICES)
    costs = CostModel(s.space, s.setup.probe.in_hw, s.setup.probe.fixed)
    for arch in archs(s, 20):
        assert s.count(s.extract(arch)) == costs.costs(arch)


def test_training_lowers_the_loss(tmp_path):
    s = session(tmp_path)
    arch = s.space.decode(s.space.largest())
    batch = (s.setup.train[0][:64], s.setup.train[1][:64])
    first = s.forward(batch, arch, None).value
    for _ in range(20):
        s.start_step()
        s.backward(s.forward(batch, arch, None))
        s.apply()
    assert s.forward(batch, arch, None).value < 0.8 * first


def test_a_checkpoint_round_trips_and_torn_or_foreign_ones_are_refused(tmp_path):
    s = session(tmp_path)
    arch = s.space.decode(s.space.largest())
    for batch in s.begin_epoch(0):
        s.start_step()
        s.backward(s.forward(batch, arch, None))
        s.apply()
    path = tmp_path / "ckpt.fake.npz"
    s.save(path, 6)
    fresh = session(tmp_path / "again")
    assert fresh.load(path) == 6
    assert all(np.array_equal(fresh.supernet.weights[k], v) for k, v in s.supernet.weights.items())
    assert fresh.optimizer.param_groups == s.optimizer.param_groups and fresh.scheduler.steps == s.scheduler.steps
    torn = tmp_path / "torn.fake.npz"
    torn.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CorruptCheckpoint, match="torn.fake.npz"):
        fresh.load(torn)
    other = session(tmp_path / "other", "scenario.strategy.supernet.filters=[16, 24, 24]")
    with pytest.raises(CorruptCheckpoint, match="another supernet"):
        other.load(path)


def test_a_result_script_rebuilds_the_subnet(tmp_path):
    s = session(tmp_path)
    arch = s.space.decode(s.space.largest())
    model = s.extract(arch)
    s.recalibrate(model, s.calibration_set(np.random.default_rng(0)))
    script = tmp_path / "work" / "results" / "model_arch_result_1.py"
    script.parent.mkdir()
    counted, rebuilt = s.write_result(model, arch, script, {"accuracy": 0.5, "encoding": [1, 2]})
    assert type(rebuilt).__module__ == "_dopt_result_model_arch_result_1" and counted == s.count(model)
    probe = np.random.default_rng(3).normal(size=(4, *s.setup.scenario.supernet.chw))
    np.testing.assert_array_equal(rebuilt.forward(probe), model.forward(probe))
    assert script.read_text().startswith("# accuracy: 0.5\n# encoding: [1, 2]\n")
    assert (script.parent / "model_arch_result_1.weights.npz").exists()
