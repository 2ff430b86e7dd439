"""Running the user's metric on one candidate's calibrated static model (docs/user-module.md#tensorflow, docs/search-space.md#evaluating-a-candidate)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
import tensorflow as tf

from dopt.backends.tf.traced import traced_call
from dopt.errors import UserError

__all__ = ["evaluate", "concat", "MAX_KEPT_BYTES"]

# The most bytes of labels and outputs kept for one metrics_op call (docs/tasks.md#training-and-evaluation):
# segmentation outputs are a score per pixel and class, so a large evaluation set would not fit.
MAX_KEPT_BYTES = 2 * 1024**3


def concat(parts: list[Any]) -> Any:
    """Batches of (nested) tensors joined along the batch axis."""
    return tf.nest.map_structure(lambda *xs: tf.concat(xs, axis=0), *parts)


def evaluate(model: Any, metrics_op: Any, batches: Iterable[Any], limit: int = MAX_KEPT_BYTES) -> Any:
    """``metrics_op(labels, outputs)`` over the whole evaluation set at once, so that
    non-decomposable metrics (mIoU) come out exact; as returned (``dopt.evaluation.metric_value``
    makes it a float).

    Each batch's labels and outputs are kept on the CPU in their own dtype as they come, and
    joined into tensors for the call; past ``limit`` bytes in all, the run stops with what to do.

    Raises:
        UserError: the evaluation set's labels and outputs would exceed ``limit`` bytes.
    """
    labels: list[Any] = []
    outputs: list[Any] = []
    kept = 0
    infer = traced_call(lambda inputs: model(inputs, training=False))
    for inputs, y in batches:
        out = tf.nest.map_structure(np.asarray, infer(inputs))
        y = tf.nest.map_structure(np.asarray, y)
        kept += sum(a.nbytes for a in tf.nest.flatten(out) + tf.nest.flatten(y))
        if kept > limit:
            raise UserError(
                f"the evaluation set's labels and outputs exceed {limit / 1024**3:g} GiB after {len(outputs) + 1} "
                "batches; metrics_op receives them all at once",
                key="UserModule.metrics_op",
                fix="make PostNet output less per image (class ids, or float16), evaluate fewer batches "
                "(searcher.eval_batches), or a smaller val_dir (docs/tasks.md#training-and-evaluation)",
            )
        outputs.append(out)
        labels.append(y)
    joined = [tf.nest.map_structure(lambda *xs: tf.constant(np.concatenate(xs)), *parts) for parts in (labels, outputs)]
    return metrics_op(*joined)
