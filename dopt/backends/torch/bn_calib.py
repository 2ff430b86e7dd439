"""BatchNorm recalibration of the active subnet on the fixed calibration subset (docs/search-space.md#evaluating-a-candidate)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

__all__ = ["recalibrate"]


def recalibrate(model: nn.Module, batches: Sequence[Any]) -> None:
    """Reset every BatchNorm of ``model`` (PreNet and PostNet included) and set its statistics to the
    cumulative mean/variance over ``batches``: BN layers in training mode with ``momentum=None``,
    everything else (dropout) in eval mode, no gradients.

    Done explicitly per call instead of patching ``forward`` (as once-for-all does) so the model's
    state is always what its modules say.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return
    was_training = model.training
    momenta = [m.momentum for m in bns]
    model.eval()
    for m in bns:
        m.reset_running_stats()
        m.momentum = None
        m.train()
    try:
        with torch.no_grad():
            for inputs in batches:
                model(inputs)
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        model.train(was_training)
