"""Supernet training: one sampled subnet (uniform) or four (sandwich) per optimizer step (SPEC 5.3)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F


from dopt.backends.base import StepLog
from dopt.backends.torch.data import to_device
from dopt.space import Arch

__all__ = ["make_optimizer", "train_epoch", "TrainState", "NonFiniteLoss"]

log = logging.getLogger(__name__)

# Consecutive non-finite steps after which the run stops: a diverged supernet, not a bad batch.
_MAX_BAD_STEPS = 20


class NonFiniteLoss(RuntimeError):
    pass


def make_optimizer(params: Any, kind: str, lr: float, betas: tuple[float, float], momentum: float | None) -> torch.optim.Optimizer:
    if kind == "Adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    # PyTorch has no separate Momentum optimizer: SGD applies `momentum` when the scenario sets it.
    return torch.optim.SGD(params, lr=lr, momentum=momentum or 0.0)


def _distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(teacher/T) || softmax(student/T)), in-place distillation (BigNAS)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.softmax(teacher / t, dim=1), reduction="batchmean") * t * t


class TrainState:
    """Counters that outlive an epoch: the global step and the run of non-finite losses."""

    def __init__(self) -> None:
        self.step = 0
        self.bad_in_row = 0


def train_epoch(
    model: Any,
    loader: Any,
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    loss_func: Callable[[Any, Any], torch.Tensor],
    sample: Callable[[], list[Arch]],
    epoch: int,
    state: TrainState,
    device: torch.device,
    distill: bool,
    log_step: Callable[[StepLog], None],
) -> None:
    """One pass over ``loader``. Gradients of every sampled subnet accumulate into one step."""
    model.train()
    for batch in loader:
        t0 = time.perf_counter()
        inputs, labels = to_device(batch, device)
        archs = sample()
        optimizer.zero_grad(set_to_none=True)
        teacher = None
        total = 0.0
        finite = True
        for j, arch in enumerate(archs):
            model.set_active(arch)
            try:
                outputs = model(inputs)
                loss = loss_func(labels, outputs)
            except Exception as exc:
                if hasattr(exc, "add_note"):  # Python 3.11+
                    exc.add_note(f"at epoch {epoch + 1}, step {state.step}, subnet {_brief(arch)}")
                raise
            if distill and j > 0 and isinstance(teacher, torch.Tensor) and teacher.dim() == 2:
                loss = loss + _distill_loss(outputs, teacher)
            if distill and j == 0 and isinstance(outputs, torch.Tensor):
                teacher = outputs.detach()
            value = float(loss.detach())
            if not math.isfinite(value):
                finite = False
                log.warning("epoch %d step %d: loss is %s for subnet %s; step skipped", epoch, state.step, value, _brief(arch))
                break
            loss.backward()
            total += value
        lr = optimizer.param_groups[0]["lr"]
        if finite:
            optimizer.step()
            scheduler.step()  # after every optimizer step, and only then (SPEC 4.1)
            state.bad_in_row = 0
        else:
            optimizer.zero_grad(set_to_none=True)
            state.bad_in_row += 1
            if state.bad_in_row >= _MAX_BAD_STEPS:
                raise NonFiniteLoss(
                    f"the loss was NaN/inf for {state.bad_in_row} steps in a row (last at epoch {epoch}, step {state.step}); "
                    "lower learning_rate or check loss_func"
                )
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - t0
        n = len(labels) if hasattr(labels, "__len__") else 0
        log_step(StepLog(epoch, state.step, total / max(1, len(archs)), lr, n / seconds if seconds > 0 else 0.0, not finite))
        state.step += 1


def _brief(arch: Arch) -> str:
    return "[" + ", ".join("skip" if c.skip else f"k{c.kernel}e{c.expand}w{c.out_channels}" for c in arch) + "]"


