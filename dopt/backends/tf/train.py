"""Supernet training with tf.GradientTape: one sampled subnet (uniform) or four (sandwich) per
optimizer step (SPEC 5.3).

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
- The user's PreNet, PostNet, loss_op and lr_scheduler run eagerly, as written (SPEC 4.2: the
  schedule is plain Python, called before each step).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import keras
import tensorflow as tf

from dopt.backends.base import StepLog
from dopt.errors import UserError
from dopt.space import Arch

__all__ = ["make_optimizer", "train_epoch", "TrainState", "NonFiniteLoss", "lr_value", "brief"]

log = logging.getLogger(__name__)

# Consecutive non-finite steps after which the run stops: a diverged supernet, not a bad batch.
_MAX_BAD_STEPS = 20


class NonFiniteLoss(RuntimeError):
    pass


def make_optimizer(kind: str, lr: float, betas: tuple[float, float], momentum: float | None) -> keras.optimizers.Optimizer:
    if kind == "Adam":
        return keras.optimizers.Adam(lr, beta_1=betas[0], beta_2=betas[1])
    if kind == "Momentum":  # NASEA's MomentumOptimizer: SGD with momentum, 0.9 unless written
        return keras.optimizers.SGD(lr, momentum=0.9 if momentum is None else momentum)
    return keras.optimizers.SGD(lr, momentum=momentum or 0.0)


def lr_value(lr_scheduler: Callable[[float, int], Any], lr_init: float, global_step: int) -> float:
    """The user's ``lr_scheduler(lr_init, global_step)`` as a float: it may return a number, a
    tensor, a Keras ``LearningRateSchedule`` or a zero-argument callable (SPEC 4.2)."""
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
            key="UserModule.lr_scheduler", fix="return a float (or a scalar tensor), e.g. lr_init * 0.5 ** (global_step // 1000)",
        ) from None
    if not math.isfinite(value) or value < 0:
        raise UserError(f"lr_scheduler returned {value} at global_step {global_step}",
                        key="UserModule.lr_scheduler", fix="return a finite learning rate ≥ 0")
    return value


def _distill_loss(student: Any, teacher: Any, temperature: float = 1.0) -> Any:
    """KL(softmax(teacher/T) || softmax(student/T)), batch mean (in-place distillation, BigNAS)."""
    t = temperature
    p = tf.nn.softmax(teacher / t, axis=1)
    kl = tf.reduce_sum(p * (tf.nn.log_softmax(teacher / t, axis=1) - tf.nn.log_softmax(student / t, axis=1)), axis=1)
    return tf.reduce_mean(kl) * t * t


def _is_logits(outputs: Any) -> bool:
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


class TrainState:
    """Counters that outlive an epoch: the step counter (every batch) and the run of non-finite
    losses. ``global_step`` for the user's schedule is the optimizer's own count of applied steps."""

    def __init__(self) -> None:
        self.step = 0
        self.bad_in_row = 0
        self.apply: Callable[[list[Any]], None] | None = None  # the traced optimizer update


def train_epoch(
    model: Any,
    batches: Iterable[Any],
    optimizer: keras.optimizers.Optimizer,
    lr_scheduler: Callable[[float, int], Any],
    lr_init: float,
    loss_op: Callable[[Any, Any], Any],
    sample: Callable[[], list[Arch]],
    epoch: int,
    state: TrainState,
    distill: bool,
    log_step: Callable[[StepLog], None],
) -> None:
    """One pass over ``batches``. Gradients of every sampled subnet accumulate into one step."""
    variables = model.trainable_variables
    for inputs, labels in batches:
        t0 = time.perf_counter()
        archs = sample()
        lr = lr_value(lr_scheduler, lr_init, int(optimizer.iterations.numpy()))
        optimizer.learning_rate = lr
        summed: list[Any] = [None] * len(variables)
        teacher = None
        total = 0.0
        finite = True
        for j, arch in enumerate(archs):
            model.set_active(arch)
            try:
                with tf.GradientTape() as tape:
                    outputs = model(inputs, training=True)
                    loss = loss_op(labels, outputs)
                    if distill and j > 0 and teacher is not None and _is_logits(outputs):
                        loss = loss + _distill_loss(outputs, teacher)
            except Exception as exc:
                if hasattr(exc, "add_note"):  # Python 3.11+
                    exc.add_note(f"at epoch {epoch + 1}, step {state.step}, subnet {brief(arch)}")
                raise
            if distill and j == 0 and _is_logits(outputs):
                teacher = tf.stop_gradient(outputs)
            value = float(loss)
            if not math.isfinite(value):
                finite = False
                log.warning("epoch %d step %d: loss is %s for subnet %s; step skipped", epoch, state.step, value, brief(arch))
                break
            for i, g in enumerate(tape.gradient(loss, variables)):
                if g is not None:
                    summed[i] = g if summed[i] is None else summed[i] + g
            total += value
        if finite:
            if state.apply is None:
                state.apply = traced_apply(optimizer, variables)
            state.apply([tf.zeros_like(v) if g is None else g for g, v in zip(summed, variables)])
            state.bad_in_row = 0
        else:
            state.bad_in_row += 1
            if state.bad_in_row >= _MAX_BAD_STEPS:
                raise NonFiniteLoss(
                    f"the loss was NaN/inf for {state.bad_in_row} steps in a row (last at epoch {epoch}, step {state.step}); "
                    "lower learning_rate or check loss_op"
                )
        seconds = time.perf_counter() - t0
        n = int(tf.nest.flatten(labels)[0].shape[0] or 0)
        log_step(StepLog(epoch, state.step, total / max(1, len(archs)), lr, n / seconds if seconds > 0 else 0.0, not finite))
        state.step += 1


def brief(arch: Arch) -> str:
    return "[" + ", ".join("skip" if c.skip else f"k{c.kernel}e{c.expand}w{c.out_channels}" for c in arch) + "]"
