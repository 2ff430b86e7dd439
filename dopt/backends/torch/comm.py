"""Communicators of a PyTorch run of several processes (docs/distributed.md): torch.distributed
under torchrun, Horovod (``dopt.backends.horovod``) under horovodrun / mpirun; both implement
``dopt.parallel.comm.Comm``. Also the gradients' all-reduce of a training step (:func:`reduce_gradients`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import torch

from dopt.backends.horovod import Horovod
from dopt.parallel.comm import Comm, RanksDiverged
from dopt.parallel.launcher import Launch

__all__ = ["TorchDistributed", "connect", "reduce_gradients", "timeout_s"]

log = logging.getLogger(__name__)


def timeout_s() -> float:
    """Seconds any collective may wait for the other processes (``DOPT_TIMEOUT_S``, default 1800):
    long enough for rank 0 to write a checkpoint or watch convergence while the others wait, short
    enough that a lost process never leaves the rest waiting for ever (docs/distributed.md#failures)."""
    value = os.environ.get("DOPT_TIMEOUT_S", "")
    try:
        return max(10.0, float(value)) if value else 1800.0
    except ValueError:
        return 1800.0


class TorchDistributed:
    """torch.distributed over the environment torchrun sets (``env://``): gloo on the CPU, NCCL on GPUs."""

    def __init__(self, launch: Launch, device: torch.device) -> None:
        import torch.distributed as dist

        self.dist = dist
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)  # NCCL's object collectives use the current device
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s()))
        self.rank, self.world_size = dist.get_rank(), dist.get_world_size()
        self.local_rank, self.local_size = launch.local_rank, launch.local_size
        self.engine = f"torch.distributed ({backend})"
        self.device = device

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        box = [obj]
        self.dist.broadcast_object_list(box, src=root)
        return box[0]

    def allgather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world_size
        self.dist.all_gather_object(out, obj)
        return out

    def barrier(self) -> None:
        self.dist.barrier()

    def allreduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        self.dist.all_reduce(tensor, op=self.dist.ReduceOp.SUM)
        return tensor

    def grouped_sum(self, tensors: list[torch.Tensor]) -> list[torch.Tensor]:
        return [self.allreduce_sum(t) for t in tensors]

    def close(self) -> None:
        if self.dist.is_initialized():
            self.dist.destroy_process_group()


def connect(launch: Launch, device: torch.device) -> TorchDistributed | Horovod:
    """The communicator of ``launch``: torch.distributed under torchrun, Horovod otherwise."""
    from dopt.parallel.launcher import engine

    if engine(launch, "pytorch") == "torch.distributed":
        return TorchDistributed(launch, device)
    try:
        import horovod.torch as hvd

        comm = Horovod(hvd, device)
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return comm
    except ImportError as exc:
        from dopt.errors import UserError

        raise UserError(
            f"started by {launch.launcher}, which needs Horovod's PyTorch binding: {exc}",
            fix="install Horovod with scripts/install_horovod.sh, or launch with torchrun --nproc_per_node N -m dopt -c scen.yaml",
        ) from None


def reduce_gradients(comm: Comm, params: Sequence[torch.Tensor], finite: bool) -> bool:
    """Average the gradients of ``params`` across processes; whether every process's step was finite.

    Parameters the step's subnets did not use have no gradient (None) and keep none: the optimizer
    then leaves them alone, as in one process. Which ones have a gradient is compared first (one
    small all-reduce): the ranks trained the same subnets, so they must agree, and a disagreement
    stops the run. Then one all-reduce of every gradient, flattened into one buffer.
    """
    if comm.world_size == 1:  # one process: nothing to average
        return finite
    device = params[0].device if params else torch.device("cpu")
    present = [p.grad is not None for p in params]
    head = torch.tensor([*present, not finite], dtype=torch.float32, device=device)
    head = comm.allreduce_sum(head)
    if float(head[-1]) > 0:  # a non-finite loss on some rank: every rank skips this step
        return False
    counts = head[:-1].round().to(torch.int64).tolist()
    world = comm.world_size
    if any(c not in (0, world) for c in counts):
        odd = sum(c not in (0, world) for c in counts)
        raise RanksDiverged(
            f"{odd} parameters have a gradient on some processes and not on others: the ranks trained different "
            "subnets in this step, so the run stops; please report this with the log"
        )
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return True
    flat = torch.cat([g.reshape(-1) for g in grads])
    flat = comm.allreduce_sum(flat)
    flat.div_(world)
    offset = 0
    for g in grads:
        n = g.numel()
        g.copy_(flat[offset : offset + n].view_as(g))
        offset += n
    return True
