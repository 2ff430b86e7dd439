"""TensorFlow training primitives: the optimizer, the user's schedule as a float, distillation, and a
traced optimizer update. The training policy is framework-free, in ``dopt/training.py``;
``backend.TFSession`` supplies its steps with tf.GradientTape.

Where the tracing goes, measured on the digits demo (2 CPU cores, batch 64, 5 layers):

- The step itself runs eagerly. A ``tf.function`` of the whole step would bake the active subnet's
  widths and kernel sizes (Python ints) into its graph and retrace for every distinct subnet,
  ~0.5 s a trace for a space of ~10^6 subnets. Passing the architecture as tensors instead would
  turn every slice, skip and expansion into dynamic-shape control flow or full-width masked
  compute, paying for the largest subnet at every step.
- Each searched block is traced with its kernel size and widths as tensors, once per (expansion
  or not, residual or not, training): at most 8 traces per layer (supernet.SuperBlock). Tracing
  per exact shape instead was ~170 traces of ~1 s on the demo; eager blocks cost ~120 ms per
  subnet forward and backward in Python overhead alone.
- The optimizer update is traced once (``traced_apply``): ~5 ms instead of ~150 ms eager.
- The user's PreNet, PostNet, loss_op and lr_scheduler run eagerly, as written (the schedule is
  plain Python, called before each step: docs/user-module.md).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import keras
import tensorflow as tf

from dopt.errors import UserError

__all__ = ["make_optimizer", "lr_value", "distill_loss", "is_logits", "traced_apply"]


def make_optimizer(
    kind: str, lr: float, betas: tuple[float, float], momentum: float | None
) -> keras.optimizers.Optimizer:
    if kind == "Adam":
        return keras.optimizers.Adam(lr, beta_1=betas[0], beta_2=betas[1])
    if kind == "Momentum":  # NASEA's MomentumOptimizer: SGD with momentum, 0.9 unless written
        return keras.optimizers.SGD(lr, momentum=0.9 if momentum is None else momentum)
    return keras.optimizers.SGD(lr, momentum=momentum or 0.0)


def lr_value(lr_scheduler: Callable[[float, int], Any], lr_init: float, global_step: int) -> float:
    """The user's ``lr_scheduler(lr_init, global_step)`` as a float: it may return a number, a
    tensor, a Keras ``LearningRateSchedule`` or a zero-argument callable (docs/user-module.md)."""
    result = lr_scheduler(lr_init, global_step)
    if isinstance(result, keras.optimizers.schedules.LearningRateSchedule):
        result = result(global_step)
    elif callable(result):
        result = result()
    try:
        value = float(result)
    except (TypeError, ValueError):
        raise UserError(
            f"lr_scheduler returned {type(result).__name__} {result!r:.60}, not a learning rate",
            key="UserModule.lr_scheduler",
            fix="return a float (or a scalar tensor), e.g. lr_init * 0.5 ** (global_step // 1000)",
        ) from None
    if not math.isfinite(value) or value < 0:
        raise UserError(
            f"lr_scheduler returned {value} at global_step {global_step}",
            key="UserModule.lr_scheduler",
            fix="return a finite learning rate ≥ 0",
        )
    return value


def distill_loss(student: Any, teacher: Any, temperature: float = 1.0) -> Any:
    """KL(softmax(teacher/T) || softmax(student/T)), batch mean (in-place distillation, BigNAS)."""
    t = temperature
    p = tf.nn.softmax(teacher / t, axis=1)
    kl = tf.reduce_sum(p * (tf.nn.log_softmax(teacher / t, axis=1) - tf.nn.log_softmax(student / t, axis=1)), axis=1)
    return tf.reduce_mean(kl) * t * t


def is_logits(outputs: Any) -> bool:
    return isinstance(outputs, tf.Tensor) and outputs.shape.rank == 2


def traced_apply(optimizer: keras.optimizers.Optimizer, variables: list[Any]) -> Callable[[list[Any]], None]:
    """``optimizer.apply_gradients`` over ``variables`` as one traced function.

    Eager, Keras' Adam runs ~10 ops per variable in Python (~150 ms a step on the demo, 30x the
    traced update). Traced with a fixed variable list, every variable gets a gradient: a variable
    that no subnet of the step used gets zeros, as the unused slices of a used variable do (in
    both backends), so Adam/Momentum moments decay over it; skipped steps (NaN loss) apply nothing.
    """

    def step(grads: list[Any]) -> None:
        optimizer.apply_gradients(zip(grads, variables))

    return tf.function(step, autograph=False)
