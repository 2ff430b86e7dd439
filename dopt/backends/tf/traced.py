"""Running a whole static model as one traced function, with an eager fallback (docs/search-space.md#training).

An extracted candidate runs its calibration and validation batches through Keras: eagerly, every
layer call costs a millisecond or more of Python on a small net, about ten times the arithmetic.
One trace per candidate and mode costs less than three eager batches. User code that cannot be
traced (NumPy on tensors, Python branching on values) runs eagerly instead, as written.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import tensorflow as tf

__all__ = ["traced_call"]

log = logging.getLogger(__name__)


def traced_call(fn: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """``fn`` traced once, for inputs shaped like the first call's with any batch size, or ``fn``
    itself when tracing fails."""
    compiled: Any = None
    eager = False

    def call(inputs: Any) -> Any:
        nonlocal compiled, eager
        if not eager:
            try:
                if compiled is None:
                    spec = tf.nest.map_structure(lambda t: tf.TensorSpec([None, *t.shape[1:]], t.dtype), inputs)
                    compiled = tf.function(fn, autograph=False).get_concrete_function(spec)
                return compiled(inputs)
            except Exception as exc:  # noqa: BLE001 - any tracing failure: eager decides whether it is real
                log.debug("tracing failed (%s: %s); running eagerly", type(exc).__name__, exc)
                eager = True
        return fn(inputs)

    return call
