"""Is the supernet trained enough? The largest and smallest subnets watched after every epoch
(docs/search-space.md#is-the-supernet-trained-enough).

A supernet given too few epochs scores every subnet near chance, and the search then ranks noise.
After each epoch the largest and the smallest subnets are evaluated as any candidate is (BN
recalibration, the user's metric), on at most ``training.monitor_batches`` validation batches;
their metrics go to the log and TensorBoard, so that training can be judged before the search
spends its time. At the end the run warns when the largest subnet was still improving fast over
the last epoch (more epochs would change the results), or, under uniform sampling, when the
smallest lags far behind the largest.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from dopt.evaluation import Evaluator
from dopt.space import Arch

__all__ = ["ConvergenceCheck", "RISING", "APART"]

log = logging.getLogger(__name__)

# The largest subnet's metric rising by more than this fraction over the last epoch: still learning.
RISING = 0.02
# The smallest subnet's metric below this fraction of the largest's, under uniform sampling.
APART = 0.8


class ConvergenceCheck:
    """Metrics of the largest and smallest subnets after every epoch.

    Args:
        evaluator: the run's evaluator, which scores subnets as the search does.
        ends: the largest and the smallest subnet.
        epochs: the training epochs of the run.
        sampling: the scenario's ``training.sampling``.
        writer: the run's TensorBoard writer.
        batches: validation batches per evaluation (``training.monitor_batches``); 0 turns the
            check off.
    """

    def __init__(
        self, evaluator: Evaluator, ends: tuple[Arch, Arch], epochs: int, sampling: str, writer: Any, batches: int
    ) -> None:
        self.evaluator, self.ends, self.epochs, self.sampling, self.writer = evaluator, ends, epochs, sampling, writer
        self.batches = batches
        self.history: dict[int, tuple[float, float]] = {}

    def on_epoch_end(self, epoch: int, step: int) -> None:
        if self.batches == 0:
            return
        self.evaluator.reset()  # the weights changed since anything was extracted
        largest, smallest = (self.evaluator.evaluate(arch, self.batches) for arch in self.ends)
        self.evaluator.reset()
        self.history[epoch] = (largest, smallest)
        # At the training step, as train/loss is, so that the curves line up.
        self.writer.add_scalar("train/largest_subnet_metric", largest, step)
        self.writer.add_scalar("train/smallest_subnet_metric", smallest, step)
        self.writer.flush()
        log.info(
            "epoch %d/%d: largest subnet's metric %.4g, smallest's %.4g (on at most %d validation batches)",
            epoch + 1,
            self.epochs,
            largest,
            smallest,
            self.batches,
        )

    def warnings(self) -> list[str]:
        """What the last two epochs say about training; empty when nothing is amiss."""
        done = sorted(self.history)
        if not done:
            return []
        found = []
        largest, smallest = self.history[done[-1]]
        if len(done) >= 2:
            before = self.history[done[-2]][0]
            if math.isfinite(before) and math.isfinite(largest) and largest - before > RISING * max(abs(before), 1e-9):
                found.append(
                    f"the supernet is still learning: the largest subnet's metric rose from {before:.4g} to "
                    f"{largest:.4g} in the last epoch, so more epochs would change what the search finds. Fix: "
                    f"train longer (e.g. epochs: {2 * self.epochs}) and run again with --overwrite"
                )
        if self.sampling == "uniform" and largest > 0 and smallest < APART * largest:
            found.append(
                f"the smallest subnet ({smallest:.4g}) lags far behind the largest ({largest:.4g}): under uniform "
                "sampling the ends of the space are rarely trained. Fix: training: {sampling: sandwich} "
                "(the default), or more epochs"
            )
        return found
