"""The core's training loop (dopt/training.py) driving the PyTorch session's primitives."""

from __future__ import annotations

import numpy as np

from tests.frameworks import require

torch = require("torch")

from dopt.backends import get_backend  # noqa: E402
from dopt.scenario import load  # noqa: E402
from dopt.space import SearchSpace  # noqa: E402
from dopt.training import TrainHooks, TrainState, train_epoch  # noqa: E402
from dopt.user_module import load_user_module  # noqa: E402
from tests.digits_workdir import make_workdir  # noqa: E402


def session(tmp_path):
    work = make_workdir(tmp_path / "w")
    scenario = load(work / "scen.yaml", workdir=work)
    module = load_user_module(work, "pytorch")
    backend = get_backend("pytorch")
    backend.check_user_module(module)
    setup = backend.setup(scenario, module, 0)
    space = SearchSpace(scenario.supernet, setup.probe.in_channels)
    s = setup.build_supernet(space)
    s.scheduler = torch.optim.lr_scheduler.StepLR(s.optimizer, step_size=1, gamma=0.5)
    torch.manual_seed(0)
    batches = [(torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))) for _ in range(3)]
    return s, space, batches


def test_sandwich_with_distillation_makes_one_optimizer_and_scheduler_step_per_batch(tmp_path):
    s, space, batches = session(tmp_path)
    lr0 = s.optimizer.param_groups[0]["lr"]
    rng = np.random.default_rng(0)
    largest, smallest = space.decode(space.largest()), space.decode(space.smallest())
    calls = []

    def sample():
        calls.append(1)
        return [largest, smallest, *(space.decode(space.sample(rng)) for _ in range(2))]

    logs = []
    before = [p.detach().clone() for p in s.supernet.parameters()]
    s.begin_epoch(0)
    train_epoch(s, batches, sample, 0, TrainState(), TrainHooks(logs.append), True)
    assert len(calls) == 3 and [log.step for log in logs] == [0, 1, 2]
    assert s.optimizer.param_groups[0]["lr"] == lr0 * 0.5**3  # the user's scheduler stepped after every step
    assert [log.lr for log in logs] == [lr0, lr0 * 0.5, lr0 * 0.25]
    assert all(np.isfinite(log.loss) and not log.skipped for log in logs)
    assert any(not torch.equal(a, b) for a, b in zip(before, s.supernet.parameters()))


def test_distillation_adds_a_term_to_the_loss_of_the_students_only(tmp_path):
    s, space, batches = session(tmp_path)
    largest, smallest = space.decode(space.largest()), space.decode(space.smallest())
    s.begin_epoch(0)  # training mode: BatchNorm normalises with the batch's statistics
    teacher = s.forward(batches[0], largest, None)
    plain = s.forward(batches[0], smallest, None)
    taught = s.forward(batches[0], smallest, teacher.logits)
    assert teacher.logits is not None and teacher.logits.shape == (8, 10)
    assert taught.value > plain.value


def test_non_finite_loss_skips_the_step_and_leaves_weights_untouched(tmp_path, caplog):
    s, space, batches = session(tmp_path)
    arch = space.decode(space.largest())
    logs = []
    before = [p.detach().clone() for p in s.supernet.parameters()]
    loss_func = s.setup.user.loss_func
    s.setup.user.loss_func = lambda labels, logits: loss_func(labels, logits) * float("nan")
    s.begin_epoch(0)
    train_epoch(s, batches[:1], lambda: [arch], 0, TrainState(), TrainHooks(logs.append), False)
    assert logs[0].skipped
    assert all(torch.equal(a, b) for a, b in zip(before, s.supernet.parameters()))
    assert "step skipped" in caplog.text and "k7e6" in caplog.text


def test_the_calibration_subset_does_not_depend_on_the_global_rng(tmp_path):
    """A dataset that augments at random gives the same calibration batches after any amount of
    training (resume, --stage search)."""
    s, _, _ = session(tmp_path)

    class Noisy(torch.utils.data.Dataset):
        def __len__(self):
            return 256

        def __getitem__(self, i):
            return torch.rand(1, 8, 8), i % 10  # an augmentation drawn from torch's global RNG

    s.setup.__dict__["train_ds"] = Noisy()  # a frozen dataclass: replaced for the test only
    first = s.calibration_set(np.random.default_rng(1))
    torch.rand(1000)  # training draws from the global RNG
    second = s.calibration_set(np.random.default_rng(1))
    assert all(torch.equal(a, b) for a, b in zip(first, second)) and len(first) == len(second) > 0


class _Payload:
    """What a hostile checkpoint could hold: unpickling it would run code."""

    def __reduce__(self):
        return (print, ("payload ran",))


def test_a_pickle_payload_in_a_checkpoint_is_a_corrupt_checkpoint_and_runs_nothing(tmp_path, capsys):
    import pytest

    from dopt.errors import CorruptCheckpoint

    s, _, _ = session(tmp_path)
    path = tmp_path / "supernet_epoch_1.pt"
    torch.save({"model": _Payload()}, path)
    with pytest.raises(CorruptCheckpoint, match="supernet_epoch_1.pt: UnpicklingError"):
        s.load(path)
    assert "payload ran" not in capsys.readouterr().out
