"""PyTorch training: the optimizer from the scenario, the distillation loss, and the trainer whose
primitives the core's training loop drives, with its checkpoints.

The training policy (sampling, sandwich accumulation, NaN skipping, logging) is framework-free, in
``dopt/training.py``; :class:`TorchTrainer` supplies its steps for the supernet
(``backend.TorchSession``), a result's static model (``backend.TorchResultTrainer``) and
pre-training (``pretrain.TorchPretrainer``).
"""

from __future__ import annotations

import io
import logging
import pickle
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, DistributedSampler

from dopt.backends.base import CorruptCheckpoint, epoch_seed
from dopt.backends.torch import data, probe
from dopt.backends.torch.comm import reduce_gradients
from dopt.backends.torch.device import seed_everything
from dopt.parallel.comm import learning_rate
from dopt.store.atomic import atomic_write_bytes
from dopt.training import Forward

if TYPE_CHECKING:
    from dopt.backends.torch.backend import TorchSetup
    from dopt.space import Arch

__all__ = ["make_optimizer", "distill_loss", "save_atomic", "TorchTrainer"]

log = logging.getLogger(__name__)


def make_optimizer(
    params: Any, kind: str, lr: float, betas: tuple[float, float], momentum: float | None
) -> torch.optim.Optimizer:
    if kind == "Adam":
        return torch.optim.Adam(params, lr=lr, betas=betas)
    # PyTorch has no separate Momentum optimizer: SGD applies `momentum` when the scenario sets it.
    return torch.optim.SGD(params, lr=lr, momentum=momentum or 0.0)


def distill_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """KL(softmax(teacher/T) || softmax(student/T)), in-place distillation (BigNAS)."""
    t = temperature
    return F.kl_div(F.log_softmax(student / t, dim=1), F.softmax(teacher / t, dim=1), reduction="batchmean") * t * t


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save(obj)`` into ``path``, written atomically."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    atomic_write_bytes(path, buffer.getvalue())


class TorchTrainer:
    """A network, its optimizer and the user's schedule: the primitives of
    ``dopt.training.StepOps`` and checkpoints in PyTorch, for the supernet, a result's static
    model and pre-training alike.

    Args:
        net: the network trained, moved to the setup's device.
        loader: its training batches; the setup's training loader when None.
    """

    checkpoint_suffix = ".pt"
    loss_function = "loss_func"
    metric_function = "metrics_func"
    _state_key = "net"  # the network's entry in a checkpoint

    def __init__(self, setup: TorchSetup, net: nn.Module, loader: DataLoader | None = None) -> None:
        self.setup = s = setup
        self.loader = s.train_loader if loader is None else loader
        self.net = net.to(s.device)
        opt = s.scenario.optimizer
        self.base_lr = learning_rate(opt, s.comm.world_size)
        self.optimizer = make_optimizer(self.net.parameters(), opt.type, self.base_lr, opt.betas, opt.momentum)
        self._params = list(self.net.parameters())
        self.scheduler = self._schedule()

    def _schedule(self) -> Any:
        """The user's learning-rate scheduler over this trainer's optimizer, checked."""
        scheduler = self.setup.user.scheduler_define(self.optimizer, len(self.loader))
        probe.check_scheduler(scheduler)
        return scheduler

    def _activate(self, arch: Arch) -> None:
        """Make ``arch`` the network that the next forward runs (a static model has only one)."""

    # -- training primitives (dopt.training.StepOps) ---------------------------------------------
    def begin_epoch(self, epoch: int) -> Iterator[Any]:
        # Every RNG from (seed, epoch): a run resumed at this epoch draws what an uninterrupted one does.
        seed = epoch_seed(self.setup.seed, epoch)
        seed_everything(seed, self.setup.device)
        cast(torch.Generator, self.loader.generator).manual_seed(seed)
        if isinstance(self.loader.sampler, DistributedSampler):  # this process's shard of the epoch
            self.loader.sampler.set_epoch(epoch)
        self.net.train()
        return (data.to_device(batch, self.setup.device) for batch in self.loader)

    def start_step(self) -> float:
        self.optimizer.zero_grad(set_to_none=True)
        return float(self.optimizer.param_groups[0]["lr"])

    def forward(self, batch: Any, arch: Arch, teacher: Any) -> Forward:
        inputs, labels = batch
        self._activate(arch)
        outputs = self.net(inputs)
        loss = self.setup.user.loss_func(labels, outputs)
        if teacher is not None:
            loss = loss + distill_loss(outputs, teacher)
        logits = outputs.detach() if isinstance(outputs, torch.Tensor) and outputs.dim() == 2 else None
        return Forward(float(loss.detach()), loss, logits)

    def backward(self, forward: Forward) -> None:
        forward.handle.backward()

    def reduce_step(self, finite: bool) -> bool:
        return reduce_gradients(self.setup.comm, self._params, finite)

    def apply(self) -> None:
        self.optimizer.step()
        self.scheduler.step()  # after every optimizer step, and only then (docs/user-module.md)
        self._sync()

    def discard(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self._sync()

    def batch_len(self, batch: Any) -> int:
        labels = batch[1]
        return len(labels) if hasattr(labels, "__len__") else 0

    def _sync(self) -> None:
        if self.setup.device.type == "cuda":  # step timings measure the work, not its queueing
            torch.cuda.synchronize(self.setup.device)

    # -- checkpoints -----------------------------------------------------------------------------
    def save(self, path: Path, step: int) -> None:
        save_atomic(self._checkpoint(step), path)

    def _checkpoint(self, step: int) -> dict[str, Any]:
        """What a checkpoint holds: weights, optimizer and schedule, the global step and the steps
        per epoch it counts in."""
        return {
            self._state_key: self.net.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if hasattr(self.scheduler, "state_dict") else {},
            "step": step,
            "steps_per_epoch": len(self.loader),
        }

    def load(self, path: Path) -> int:
        try:
            state = torch.load(path, map_location=self.setup.device, weights_only=True)
            self.net.load_state_dict(state[self._state_key])
            self.optimizer.load_state_dict(state["optimizer"])
            step = self._load_schedule(state)
            before = state.get("steps_per_epoch")
        # pickle.UnpicklingError: weights_only refused something that is not plain tensors (a
        # payload): nothing ran, and the file is as unusable as a torn one.
        except (OSError, RuntimeError, KeyError, ValueError, EOFError, TypeError, pickle.UnpicklingError) as exc:
            raise CorruptCheckpoint.of(path, exc) from exc
        now = len(self.loader)
        if before is not None and int(before) != now:
            step = self._restart_schedule(path, int(before), now, step)
        return step

    def _load_schedule(self, state: dict[str, Any]) -> int:
        """The schedule's state from a checkpoint; its global step."""
        if state["scheduler"] and hasattr(self.scheduler, "load_state_dict"):
            self.scheduler.load_state_dict(state["scheduler"])
        return int(state["step"])

    def _restart_schedule(self, path: Path, before: int, now: int, step: int) -> int:
        """A checkpoint of another number of processes, hence of other steps per epoch
        (docs/distributed.md#resuming): the user's schedule is built again for this run's steps per
        epoch and learning rate, and advanced to the same epoch; the global step, counted in this
        run's steps."""
        import warnings

        epochs_done = step // before
        step = epochs_done * now
        for group in self.optimizer.param_groups:
            group["lr"] = group["initial_lr"] = self.base_lr
        self.scheduler = self.setup.user.scheduler_define(self.optimizer, now)
        with warnings.catch_warnings():  # "scheduler.step() before optimizer.step()": on purpose
            warnings.simplefilter("ignore")
            for _ in range(step):
                self.scheduler.step()
        log.warning(
            "%s was written with %d steps per epoch, this run has %d (another number of processes): the learning-rate "
            "schedule was rebuilt and continues from epoch %d",
            path.name,
            before,
            now,
            epochs_done,
        )
        return step
