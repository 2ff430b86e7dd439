"""Running the user's metric on one candidate's calibrated static model (docs/search-space.md#evaluating-a-candidate)."""

from __future__ import annotations

from typing import Any

import torch

from dopt.backends.torch.data import to_device

__all__ = ["evaluate"]


def _device_of(obj: Any) -> torch.device | None:
    if isinstance(obj, torch.Tensor):
        return obj.device
    if isinstance(obj, (list, tuple)):
        for v in obj:
            d = _device_of(v)
            if d is not None:
                return d
    if isinstance(obj, dict):
        return _device_of(list(obj.values()))
    return None


def evaluate(model: torch.nn.Module, metrics_func: Any, loader: Any, device: torch.device) -> Any:
    """The user's ``metrics_func`` over ``loader`` with a calibrated static ``model``, as returned
    (``dopt.evaluation.metric_value`` makes it a float)."""
    model.eval()

    def eval_function(inputs: Any) -> Any:
        home = _device_of(inputs) or torch.device("cpu")
        with torch.no_grad():
            outputs = model(to_device(inputs, device))
        return to_device(outputs, home)

    return metrics_func(loader, eval_function)
