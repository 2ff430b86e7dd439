"""TensorFlow training: the optimizer, the user's schedule as a float, distillation, a traced
optimizer update, and the trainer whose primitives the core's training loop drives, with its
checkpoints. The training policy is framework-free, in ``dopt/training.py``; :class:`TFTrainer`
supplies its steps with tf.GradientTape for the supernet (``backend.TFSession``), a result's static
model (``backend.TFResultTrainer``) and pre-training (``pretrain.TFPretrainer``).

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

import logging
import math
import zipfile
import zlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from dopt.backends.base import CorruptCheckpoint, epoch_seed
from dopt.backends.checkpoint_format import restore_group, save_npz
from dopt.backends.tf.comm import reduce_gradients
from dopt.backends.tf.device import seed_everything
from dopt.errors import UserError
from dopt.parallel.comm import learning_rate
from dopt.training import Forward

if TYPE_CHECKING:
    from dopt.backends.tf.backend import TFSetup
    from dopt.space import Arch

__all__ = ["make_optimizer", "lr_value", "distill_loss", "is_logits", "traced_apply", "TFTrainer"]

log = logging.getLogger(__name__)


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


class TFTrainer:
    """A Keras network, its optimizer and the user's schedule: the primitives of
    ``dopt.training.StepOps`` and checkpoints with tf.GradientTape, for the supernet, a result's
    static model and pre-training alike.

    Args:
        net: the network trained: called as ``net(inputs, training=...)``, with ``variables``
            (what a checkpoint holds) and ``trainable_variables``.
        epochs: its training batches per epoch (``batches(epoch)``); the setup's training data when None.
    """

    checkpoint_suffix = ".weights.npz"
    loss_function = "loss_op"
    metric_function = "metrics_op"
    # How a checkpoint that does not fit is reported (restore_group).
    _here = "in this supernet"
    _check_shapes = True

    def __init__(self, setup: TFSetup, net: Any, epochs: Any = None) -> None:
        self.setup = s = setup
        self.net = net
        opt = s.scenario.optimizer
        self.lr_init = learning_rate(opt, s.comm.world_size)
        self.optimizer = make_optimizer(opt.type, self.lr_init, opt.betas, opt.momentum)
        self.optimizer.build(self.net.trainable_variables)
        self.variables = self.net.trainable_variables
        self._epochs = s.data.train.epochs() if epochs is None else epochs
        self._apply = traced_apply(self.optimizer, self.variables)  # traced on its first call
        self._summed: list[Any] = []  # gradients accumulated in the current step

    def _activate(self, arch: Arch) -> None:
        """Make ``arch`` the network that the next forward runs (a static model has only one)."""

    def _lr(self, step: int) -> float:
        """The learning rate of global step ``step``: the user's ``lr_scheduler``."""
        return lr_value(self.setup.user.lr_scheduler, self.lr_init, step)

    # -- training primitives (dopt.training.StepOps) ---------------------------------------------
    def begin_epoch(self, epoch: int) -> Iterator[Any]:
        # Every RNG from (seed, epoch): a run resumed at this epoch draws what an uninterrupted
        # one does; the data order comes from the dataset's own iteration count (data.TrainEpochs).
        seed_everything(epoch_seed(self.setup.seed, epoch))
        batches: Iterator[Any] = self._epochs.batches(epoch)
        return batches

    def start_step(self) -> float:
        lr = self._lr(int(self.optimizer.iterations.numpy()))
        self.optimizer.learning_rate = lr
        self._summed = [None] * len(self.variables)
        return lr

    def forward(self, batch: Any, arch: Arch, teacher: Any) -> Forward:
        inputs, labels = batch
        self._activate(arch)
        with tf.GradientTape() as tape:
            outputs = self.net(inputs, training=True)
            loss = self.setup.user.loss_op(labels, outputs)
            if teacher is not None and is_logits(outputs):
                loss = loss + distill_loss(outputs, teacher)
        return Forward(float(loss), (tape, loss), tf.stop_gradient(outputs) if is_logits(outputs) else None)

    def backward(self, forward: Forward) -> None:
        tape, loss = forward.handle
        for i, g in enumerate(tape.gradient(loss, self.variables)):
            if g is not None:
                self._summed[i] = g if self._summed[i] is None else self._summed[i] + g

    def reduce_step(self, finite: bool) -> bool:
        return reduce_gradients(self.setup.comm, self._summed, finite)

    def apply(self) -> None:
        self._apply([tf.zeros_like(v) if g is None else g for g, v in zip(self._summed, self.variables)])

    def discard(self) -> None:
        self._summed = []

    def batch_len(self, batch: Any) -> int:
        # The images: checked to be (N, H, W, C), where detection labels may be a list per image.
        return int(tf.nest.flatten(batch[0])[0].shape[0] or 0)

    # -- checkpoints (dopt.backends.checkpoint_format) -------------------------------------------
    def save(self, path: Path, step: int) -> None:
        """Every variable of the network (weights, BN statistics, dropout seed states) and of the
        optimizer (its step count included), plus dopt's counters, as one .npz."""
        save_npz(path, {"model": self.net.variables, "optimizer": self.optimizer.variables}, self._counters(step))

    def _counters(self, step: int) -> dict[str, int]:
        """The counters a checkpoint holds: the global step and the steps per epoch it counts in."""
        return {"step": step, "steps_per_epoch": self.setup.data.train.steps}

    def load(self, path: Path) -> int:
        try:
            with np.load(path, allow_pickle=False) as archive:  # arrays only: no code runs
                for group, variables in (("model", self.net.variables), ("optimizer", self.optimizer.variables)):
                    restore_group(archive, group, variables, here=self._here, check_shapes=self._check_shapes)
                step = int(archive["step"])
                before = int(archive["steps_per_epoch"]) if "steps_per_epoch" in archive.files else None
            if before is not None and before != self.setup.data.train.steps:
                step = self._restart_schedule(path, before, step)
            return step
        except (OSError, KeyError, ValueError, EOFError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
            raise CorruptCheckpoint.of(path, exc) from exc

    def _restart_schedule(self, path: Path, before: int, step: int) -> int:
        """A checkpoint of another number of processes (docs/distributed.md#resuming): the schedule
        goes on from the same epoch, counted in this run's steps per epoch; the global step."""
        now = self.setup.data.train.steps
        step = step // before * now
        self.optimizer.iterations.assign(step)
        log.warning(
            "%s was written with %d steps per epoch, this run has %d (another number of processes): the "
            "learning-rate schedule continues from epoch %d",
            path.name,
            before,
            now,
            step // now,
        )
        return step
