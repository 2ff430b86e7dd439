"""Running the user's metric on one candidate's calibrated static model (SPEC 4.2, 5.4)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import tensorflow as tf

from dopt.backends.tf.traced import traced_call
from dopt.errors import UserError

__all__ = ["evaluate", "concat"]


def concat(parts: list[Any]) -> Any:
    """Batches of (nested) tensors joined along the batch axis."""
    return tf.nest.map_structure(lambda *xs: tf.concat(xs, axis=0), *parts)


def evaluate(model: Any, metrics_op: Any, batches: Iterable[Any]) -> float:
    """``metrics_op(labels, outputs)`` over the whole evaluation set at once, so that
    non-decomposable metrics (mIoU) come out exact; NaN counts as the worst (SPEC 4.2)."""
    labels, outputs = [], []
    infer = traced_call(lambda inputs: model(inputs, training=False))
    for inputs, y in batches:
        outputs.append(infer(inputs))
        labels.append(y)
    result = metrics_op(concat(labels), concat(outputs))
    try:
        value = float(result)
    except (TypeError, ValueError):
        raise UserError(
            f"metrics_op returned {type(result).__name__} {result!r:.60}, not a number",
            key="UserModule.metrics_op", fix="return a float or a scalar tensor (higher is better), e.g. the accuracy",
        ) from None
    return value if not math.isinf(value) else float("nan")
