"""Running the user's metric on one candidate's calibrated static model (docs/user-module.md#tensorflow, docs/search-space.md#evaluating-a-candidate)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import tensorflow as tf

from dopt.backends.tf.traced import traced_call

__all__ = ["evaluate", "concat"]


def concat(parts: list[Any]) -> Any:
    """Batches of (nested) tensors joined along the batch axis."""
    return tf.nest.map_structure(lambda *xs: tf.concat(xs, axis=0), *parts)


def evaluate(model: Any, metrics_op: Any, batches: Iterable[Any]) -> Any:
    """``metrics_op(labels, outputs)`` over the whole evaluation set at once, so that
    non-decomposable metrics (mIoU) come out exact; as returned (``dopt.evaluation.metric_value``
    makes it a float)."""
    labels, outputs = [], []
    infer = traced_call(lambda inputs: model(inputs, training=False))
    for inputs, y in batches:
        outputs.append(infer(inputs))
        labels.append(y)
    return metrics_op(concat(labels), concat(outputs))
