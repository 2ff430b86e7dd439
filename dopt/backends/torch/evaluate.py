"""Running the user's metric on one candidate's calibrated static model (SPEC 5.4)."""

from __future__ import annotations

import math
from typing import Any

import torch

from dopt.backends.torch.data import to_device
from dopt.errors import UserError

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


def evaluate(model: torch.nn.Module, metrics_func: Any, loader: Any, device: torch.device) -> float:
    """The user's metric of a calibrated static ``model``; NaN counts as the worst (SPEC 4.1)."""
    model.eval()

    def eval_function(inputs: Any) -> Any:
        home = _device_of(inputs) or torch.device("cpu")
        with torch.no_grad():
            outputs = model(to_device(inputs, device))
        return to_device(outputs, home)

    result = metrics_func(loader, eval_function)
    try:
        value = float(result)
    except (TypeError, ValueError):
        raise UserError(
            f"metrics_func returned {type(result).__name__} {result!r:.60}, not a number",
            key="UserModule.metrics_func", fix="return a float (higher is better), e.g. the accuracy",
        ) from None
    return value if not math.isinf(value) else float("nan")
