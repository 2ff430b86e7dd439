"""The per-epoch check of the largest and smallest subnets, and its end-of-training warnings."""

from __future__ import annotations

from dopt.pipeline.convergence import ConvergenceCheck
from dopt.space import LayerChoice

LARGEST, SMALLEST = (
    (LayerChoice(kernel=7, expand=6, out_channels=16),),
    (LayerChoice(kernel=3, expand=3, out_channels=8),),
)


class FakeEvaluator:
    def __init__(self, metrics):
        self.metrics = metrics  # per epoch: (largest, smallest)
        self.epoch = 0
        self.resets = 0

    def evaluate(self, arch, max_batches=None):
        self.batches = max_batches
        return self.metrics[self.epoch][0 if arch == LARGEST else 1]

    def reset(self):
        self.resets += 1


class Writer:
    def __init__(self):
        self.scalars = []

    def add_scalar(self, tag, value, step):
        self.scalars.append((tag, value, step))

    def flush(self):
        pass


def run_check(metrics, epochs=5, sampling="sandwich", batches=20):
    evaluator, writer = FakeEvaluator(metrics), Writer()
    check = ConvergenceCheck(evaluator, (LARGEST, SMALLEST), epochs, sampling, writer, batches)
    for epoch in range(epochs):
        evaluator.epoch = epoch
        check.on_epoch_end(epoch, step=10 * (epoch + 1))
    return check, writer, evaluator


def test_every_epoch_is_evaluated_on_the_bounded_batches_and_logged(caplog):
    metrics = {e: (0.5 + 0.1 * e, 0.4) for e in range(5)}
    with caplog.at_level("INFO", logger="dopt"):
        check, writer, evaluator = run_check(metrics, batches=7)
    assert sorted(check.history) == [0, 1, 2, 3, 4] and evaluator.resets == 10 and evaluator.batches == 7
    assert [t for t, _, _ in writer.scalars] == ["train/largest_subnet_metric", "train/smallest_subnet_metric"] * 5
    assert [s for _, _, s in writer.scalars][::2] == [10, 20, 30, 40, 50]  # the training step, as train/loss
    assert "epoch 3/5: largest subnet's metric 0.7, smallest's 0.4 (on at most 7 validation batches)" in caplog.text


def test_monitor_batches_0_turns_the_check_off():
    check, writer, evaluator = run_check({e: (0.5 + 0.1 * e, 0.4) for e in range(5)}, batches=0)
    assert check.history == {} and writer.scalars == [] and evaluator.resets == 0 and check.warnings() == []


def test_a_largest_subnet_still_rising_fast_is_a_warning_naming_more_epochs():
    check, _, _ = run_check({e: (0.5 + 0.1 * e, 0.85) for e in range(5)})
    (warning,) = check.warnings()
    assert "still learning" in warning and "0.8 to 0.9" in warning and "epochs: 10" in warning


def test_a_converged_supernet_gives_no_warning():
    assert run_check({e: (0.95 + 0.001 * e, 0.9) for e in range(5)})[0].warnings() == []


def test_far_apart_ends_are_a_warning_under_uniform_sampling_only():
    metrics = {e: (0.9, 0.3) for e in range(5)}
    (warning,) = run_check(metrics, sampling="uniform")[0].warnings()
    assert "lags far behind" in warning and "sandwich" in warning
    assert run_check(metrics, sampling="sandwich")[0].warnings() == []


def test_one_epoch_of_history_cannot_say_rising():
    assert run_check({0: (0.5, 0.45)}, epochs=1)[0].warnings() == []
