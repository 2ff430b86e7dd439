from __future__ import annotations

import numpy as np

from tests.frameworks import require

torch = require("torch")

from dopt.backends.torch.supernet import Supernet  # noqa: E402
from dopt.backends.torch.train import TrainState, make_optimizer, train_epoch  # noqa: E402
from tests.backends.torch.nets import PostNet, PreNet  # noqa: E402
from tests.test_space import make_space  # noqa: E402


def setup(loss_func=None):
    torch.manual_seed(0)
    space = make_space(filters=(16, 16, 24, 32), strides=(1, 1, 2, 1))
    net = Supernet(PreNet(), PostNet(), space, ())
    opt = make_optimizer(net.parameters(), "SGD", 0.05, (0.9, 0.999), 0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=0.5)
    loader = [(torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))) for _ in range(3)]
    return net, space, opt, sched, loader


def test_sandwich_with_distillation_makes_one_optimizer_and_scheduler_step_per_batch():
    net, space, opt, sched, loader = setup()
    rng = np.random.default_rng(0)
    largest, smallest = space.decode(space.largest()), space.decode(space.smallest())
    calls = []

    def sample():
        random = [space.decode(rng.integers(np.array(space.xl), np.array(space.xu) + 1).tolist()) for _ in range(2)]
        calls.append(1)
        return [largest, smallest, *random]

    logs = []
    before = [p.detach().clone() for p in net.parameters()]
    train_epoch(net, loader, opt, sched, lambda y, out: torch.nn.functional.cross_entropy(out, y),
                sample, 0, TrainState(), torch.device("cpu"), True, logs.append)
    assert len(calls) == 3 and [s.step for s in logs] == [0, 1, 2]
    assert opt.param_groups[0]["lr"] == 0.05 * 0.5**3  # the user's scheduler stepped after every step
    assert all(np.isfinite(s.loss) and not s.skipped for s in logs)
    assert any(not torch.equal(a, b) for a, b in zip(before, net.parameters()))


def test_non_finite_loss_skips_the_step_and_leaves_weights_untouched(caplog):
    net, space, opt, sched, loader = setup()
    arch = space.decode(space.largest())
    logs = []
    before = [p.detach().clone() for p in net.parameters()]

    def nan_loss(labels, logits):
        return torch.nn.functional.cross_entropy(logits, labels) * float("nan")

    train_epoch(net, loader[:1], opt, sched, nan_loss, lambda: [arch], 0, TrainState(), torch.device("cpu"), False, logs.append)
    assert logs[0].skipped
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))
    assert "step skipped" in caplog.text and "k7e6" in caplog.text
