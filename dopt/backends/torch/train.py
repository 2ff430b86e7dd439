"""PyTorch training primitives: the optimizer from the scenario and the distillation loss.

The training policy (sampling, sandwich accumulation, NaN skipping, logging) is framework-free, in
``dopt/training.py``; ``backend.TorchSession`` supplies its steps.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

__all__ = ["make_optimizer", "distill_loss"]


def make_optimizer(
    params: Any, kind: str, lr: float, betas: tuple[float, float], momentum: float | None
) -> torch.optim.Optimizer:
    if kind == "Adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    # PyTorch has no separate Momentum optimizer: SGD applies `momentum` when the scenario sets it.
    return torch.optim.SGD(params, lr=lr, momentum=momentum or 0.0)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(teacher/T) || softmax(student/T)), in-place distillation (BigNAS)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.softmax(teacher / t, dim=1), reduction="batchmean") * t * t
