"""Supernet training, written once for every framework (docs/search-space.md#training).

The policy lives here: which subnets a step trains (one uniform draw, or the sandwich rule's
largest, smallest and two random), gradients of every subnet of a step accumulated into one
optimizer step, in-place distillation from the first subnet's logits, skipping a step whose loss
is NaN/inf (and stopping after too many in a row), the learning-rate schedule, and step logs. A
backend supplies only the primitives of :class:`StepOps`, in its framework.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from dopt.scenario.model import Training
from dopt.space import Arch, SearchSpace

__all__ = [
    "StepLog",
    "Forward",
    "StepOps",
    "TrainState",
    "NonFiniteLoss",
    "MAX_BAD_STEPS",
    "train",
    "train_epoch",
    "brief",
    "cosine",
    "TrainHooks",
]

log = logging.getLogger(__name__)

# Consecutive non-finite steps after which the run stops: a diverged supernet, not a bad batch.
MAX_BAD_STEPS = 20


class NonFiniteLoss(RuntimeError):
    pass


@dataclass(frozen=True, kw_only=True)
class StepLog:
    """One optimizer step, reported to the core's logger and TensorBoard writer."""

    epoch: int
    step: int  # global optimizer step, from 0
    loss: float
    lr: float
    images_per_s: float
    skipped: bool = False  # a non-finite loss: the step was not applied


@dataclass(frozen=True)
class Forward:
    """One subnet's forward pass on a batch, as a backend returns it.

    ``handle`` is what the backend's ``backward`` needs (the loss tensor, or a gradient tape);
    ``logits`` the detached outputs when they can teach the next subnets (rank 2), else None.
    """

    value: float  # the loss, distillation term included, as a Python float
    handle: Any
    logits: Any = None


class StepOps(Protocol):
    """What a backend does for one optimizer step; the policy around it is :func:`train_epoch`'s."""

    loss_function: str  # the user's loss function, as error messages name it

    def begin_epoch(self, epoch: int) -> Iterable[Any]:
        """Reseed every RNG from ``(seed, epoch)``, set training mode; the epoch's batches."""
        ...

    def start_step(self) -> float:
        """Clear accumulated gradients, set the learning rate; the learning rate of this step."""
        ...

    def forward(self, batch: Any, arch: Arch, teacher: Any) -> Forward:
        """Activate ``arch``, run it on ``batch`` in training mode, compute the user's loss, plus
        the distillation loss towards ``teacher`` when it is not None."""
        ...

    def backward(self, forward: Forward) -> None:
        """Add the gradients of ``forward``'s loss to those accumulated in this step."""
        ...

    def reduce_step(self, finite: bool) -> bool:
        """With several processes, average the accumulated gradients across them (one all-reduce
        per step, after every subnet of the step); whether every process's loss was finite. In one
        process: ``finite`` (docs/distributed.md#data-parallel-training)."""
        ...

    def apply(self) -> None:
        """One optimizer step with the accumulated gradients (and the user's schedule step)."""
        ...

    def discard(self) -> None:
        """Drop the accumulated gradients: the step is skipped."""
        ...

    def batch_len(self, batch: Any) -> int:
        """Samples in ``batch``, for the throughput log."""
        ...


@dataclass
class TrainState:
    """Counters that outlive an epoch: the global step and the run of non-finite losses."""

    step: int = 0
    bad_in_row: int = 0


def sampler(space: SearchSpace, training: Training, seed: int) -> Callable[[int], list[Arch]]:
    """The subnets of one step, as a function of the epoch.

    Each epoch's draws come from an RNG of ``(seed, epoch)`` alone, so a run resumed at epoch k
    samples what an uninterrupted one does. Warm-up epochs train the largest subnet alone; then
    one uniform draw per step, or the sandwich rule's largest, smallest and two uniform draws.
    """
    largest, smallest = space.decode(space.largest()), space.decode(space.smallest())
    rngs: dict[int, np.random.Generator] = {}

    def random_arch(epoch: int) -> Arch:
        if epoch not in rngs:
            rngs.clear()
            rngs[epoch] = np.random.default_rng([seed, 0, epoch])
        return space.decode(space.sample(rngs[epoch]))

    def sample(epoch: int) -> list[Arch]:
        if epoch < training.warmup_epochs:
            return [largest]
        if training.sampling == "sandwich":
            # BigNAS sandwich rule: largest first (the distillation teacher), smallest, two random.
            return [largest, smallest, random_arch(epoch), random_arch(epoch)]
        return [random_arch(epoch)]

    return sample


def _nothing(*args: Any) -> None:
    pass


@dataclass(frozen=True)
class TrainHooks:
    """What the training loop calls: after every step with its log, after every epoch, and before
    every step with its subnets (``check(epoch, step in epoch, step, subnets)``; several
    processes: :class:`dopt.parallel.comm.SampleCheck`)."""

    log_step: Callable[[StepLog], None]
    on_epoch_end: Callable[[int], None] = _nothing
    check: Callable[[int, int, int, list[Arch]], None] = _nothing


def train(
    ops: StepOps,
    sample: Callable[[int], list[Arch]],
    epochs: range,
    state: TrainState,
    hooks: TrainHooks,
    distill: bool = False,
) -> None:
    """Train every epoch of ``epochs``; ``sample(epoch)`` gives the subnets of one step.

    Every RNG is reseeded from ``(seed, epoch)`` at the start of each epoch (``begin_epoch``), so
    training resumed from the checkpoint of epoch k equals an uninterrupted run.
    """
    for epoch in epochs:
        batches = ops.begin_epoch(epoch)
        train_epoch(ops, batches, functools.partial(sample, epoch), epoch, state, hooks, distill)
        hooks.on_epoch_end(epoch)


def train_epoch(
    ops: StepOps,
    batches: Iterable[Any],
    sample: Callable[[], list[Arch]],
    epoch: int,
    state: TrainState,
    hooks: TrainHooks,
    distill: bool = False,
) -> None:
    """One pass over ``batches``. Gradients of every sampled subnet accumulate into one step;
    with several processes they are averaged across them once per step (``reduce_step``), and the
    step is applied or skipped on all of them alike."""
    for i, batch in enumerate(batches):
        t0 = time.perf_counter()
        archs = sample()
        hooks.check(epoch, i, state.step, archs)
        lr = ops.start_step()
        total, finite = _accumulate(ops, batch, archs, epoch, state.step, distill)
        finite = ops.reduce_step(finite)
        if finite:
            ops.apply()
            state.bad_in_row = 0
        else:
            ops.discard()
            state.bad_in_row += 1
            if state.bad_in_row >= MAX_BAD_STEPS:
                raise NonFiniteLoss(
                    f"the loss was NaN/inf for {state.bad_in_row} steps in a row (last at epoch {epoch}, step "
                    f"{state.step}); lower learning_rate or check {ops.loss_function}"
                )
        seconds = time.perf_counter() - t0
        n = ops.batch_len(batch)
        hooks.log_step(
            StepLog(
                epoch=epoch,
                step=state.step,
                loss=total / max(1, len(archs)),
                lr=lr,
                images_per_s=n / seconds if seconds > 0 else 0.0,
                skipped=not finite,
            )
        )
        state.step += 1


def _accumulate(
    ops: StepOps, batch: Any, archs: list[Arch], epoch: int, step: int, distill: bool
) -> tuple[float, bool]:
    """Forward and backward every subnet of one step; (summed loss, all finite). The first subnet
    (the largest, under the sandwich rule) teaches the others when ``distill`` is on (BigNAS)."""
    teacher = None
    total = 0.0
    for j, arch in enumerate(archs):
        try:
            forward = ops.forward(batch, arch, teacher if distill and j > 0 else None)
        except Exception as exc:
            if hasattr(exc, "add_note"):  # Python 3.11+
                exc.add_note(f"at epoch {epoch + 1}, step {step}, subnet {brief(arch)}")
            raise
        if distill and j == 0:
            teacher = forward.logits
        if not math.isfinite(forward.value):
            log.warning(
                "epoch %d step %d: loss is %s for subnet %s; step skipped", epoch, step, forward.value, brief(arch)
            )
            return total, False
        ops.backward(forward)
        total += forward.value
    return total, True


def brief(arch: Arch) -> str:
    """A subnet in a few characters: ``[k3e6w24, skip, ...]``."""
    return "[" + ", ".join("skip" if c.skip else f"k{c.kernel}e{c.expand}w{c.out_channels}" for c in arch) + "]"


def cosine(base: float, total_steps: int) -> Callable[[int], float]:
    """The pre-training schedule: ``base`` decayed to 0 along a half cosine over ``total_steps``."""

    def rate(step: int) -> float:
        return float(base * 0.5 * (1 + np.cos(np.pi * min(step, total_steps) / max(1, total_steps))))

    return rate
