"""Dry runs that catch user-module mistakes before anything trains (docs/cli.md#what-a-run-does, docs/resume.md#resuming-a-run).

Each check turns a contract violation into a UserError (exit 2) that names the function and the
fix; an exception raised inside user code itself still surfaces with the user's frames (exit 1).
"""

from __future__ import annotations

import logging
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from dopt.backends.tf.profile import count_macs
from dopt.costs.formulas import out_hw
from dopt.errors import UserError

__all__ = ["check_classes", "prenet_output", "postnet_input", "check_postnet", "check_loss", "check_distillable"]

log = logging.getLogger(__name__)


def check_classes(module: Any) -> None:
    for name in ("PreNet", "PostNet"):
        if not issubclass(getattr(module, name), keras.layers.Layer):
            raise UserError(
                f"{name} must subclass tf.keras.layers.Layer or tf.keras.Model",
                key=name,
                fix=f"class {name}(tf.keras.layers.Layer): ... with call(self, inputs, training=True)",
            )


def prenet_output(pre: Any, example: np.ndarray, data_format: str) -> tuple[int, tuple[int, int]]:
    """Channels and spatial size PreNet produces for ``example`` (batch 1, inference mode)."""
    try:
        out = pre(example, training=False)
    except Exception as exc:
        raise UserError(
            f"PreNet.call failed on a zero input of input_shape {tuple(example.shape[1:])}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}",
            key="PreNet.call",
            fix=f"make PreNet accept {_layout(data_format)} batches of supernet.input_shape",
        ) from None
    if not isinstance(out, tf.Tensor) or out.shape.rank != 4:
        shape = f" of shape {tuple(out.shape)}" if isinstance(out, tf.Tensor) else ""
        raise UserError(
            f"PreNet.call returned {type(out).__name__}{shape}; the searched layers need one {_layout(data_format)} tensor",
            key="PreNet.call",
            fix="return the feature map that the searched layers start from",
        )
    n, a, b, c = (int(d) for d in out.shape)
    return (c, (a, b)) if data_format == "channels_last" else (a, (b, c))


def _layout(data_format: str) -> str:
    return "(N, H, W, C)" if data_format == "channels_last" else "(N, C, H, W)"


def postnet_input(
    filters: tuple[int, ...],
    strides: tuple[int, ...],
    feature_choose: tuple[int, ...],
    hw: tuple[int, int],
    data_format: str,
) -> Any:
    """Zeros shaped like what PostNet receives at batch 1: the full-width last layer's output,
    preceded by the feature_choose layers' outputs as a list when there are any."""
    shapes = []
    for f, s in zip(filters, strides):
        hw = out_hw(hw, s)
        shapes.append((1, *hw, f) if data_format == "channels_last" else (1, f, *hw))
    last = tf.zeros(shapes[-1])
    return [tf.zeros(shapes[i]) for i in feature_choose] + [last] if feature_choose else last


def check_postnet(post: Any, post_in: Any, last_filters: int) -> int:
    """MACs of PostNet on ``post_in`` (which also builds it); a PostNet that cannot take it is the user's mistake."""
    try:
        post(post_in, training=False)
        return count_macs(post, post_in)
    except Exception as exc:
        shapes = [tuple(t.shape) for t in post_in] if isinstance(post_in, list) else tuple(post_in.shape)
        raise UserError(
            f"PostNet.call failed on what the searched layers give it, {shapes}: {type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''}",
            key="PostNet.call",
            fix=f"PostNet receives filters[-1] = {last_filters} channels (after the feature_choose layers' outputs, "
            "in a list, when there are any): size its first layer for that",
        ) from None


def check_loss(loss: Any, grads: list[Any]) -> None:
    """A scalar tensor with a gradient to at least one trainable variable."""
    if not isinstance(loss, tf.Tensor) or loss.shape.num_elements() != 1:
        what = f"a tensor of shape {tuple(loss.shape)}" if isinstance(loss, tf.Tensor) else type(loss).__name__
        raise UserError(
            f"loss_op returned {what}; dopt needs a scalar tensor to differentiate",
            key="UserModule.loss_op",
            fix="return one number computed from logits, e.g. tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy("
            "labels, logits, from_logits=True))",
        )
    if all(g is None for g in grads):
        raise UserError(
            "loss_op returned a loss that does not depend on the model's outputs (no gradient)",
            key="UserModule.loss_op",
            fix="compute the loss from logits with TensorFlow ops, not NumPy",
        )


def check_distillable(outputs: Any, distill: bool) -> None:
    if distill and not (isinstance(outputs, tf.Tensor) and outputs.shape.rank == 2):
        log.warning(
            "training.distill is on but PostNet returns %s, not (N, classes) logits: training without distillation",
            type(outputs).__name__
            if not isinstance(outputs, tf.Tensor)
            else f"a tensor of shape {tuple(outputs.shape)}",
        )
