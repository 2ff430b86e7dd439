"""The TensorFlow metric call: the whole evaluation set at once, within a memory bound (docs/tasks.md)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.frameworks import require

tf = require("tensorflow")

from dopt.backends.tf.evaluate import evaluate  # noqa: E402
from dopt.errors import UserError  # noqa: E402


def _model(inputs, training=False):
    return tf.cast(inputs, tf.float16) * 2


def _batches(n: int = 3):
    return [(np.full((2, 4, 4, 1), i, np.float32), np.full((2,), i, np.int32)) for i in range(n)]


def test_metrics_op_receives_every_batch_joined_in_the_outputs_dtype() -> None:
    seen = {}

    def metrics_op(labels, outputs):
        seen["labels"], seen["outputs"] = labels, outputs
        return 1.0

    assert evaluate(_model, metrics_op, _batches()) == 1.0
    assert seen["outputs"].dtype == tf.float16 and tuple(seen["outputs"].shape) == (6, 4, 4, 1)
    assert seen["labels"].numpy().tolist() == [0, 0, 1, 1, 2, 2]


def test_outputs_beyond_the_limit_stop_with_what_to_do() -> None:
    # a batch keeps 2*16*2 bytes of outputs and 2*4 of labels: 72 bytes; the third passes 200
    with pytest.raises(UserError) as caught:
        evaluate(_model, lambda labels, outputs: 0.0, _batches(), limit=200)
    message = str(caught.value)
    assert "after 3 batches" in message and "searcher.eval_batches" in message, message
