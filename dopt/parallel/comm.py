"""Several processes of one run, framework-free (docs/distributed.md).

A communicator is the small set of collectives the core needs between the processes of one
launch: broadcast and gather of small Python objects, and a barrier; plus the sums of framework
tensors that the backends' ``reduce_step`` averages the gradients with (the core never calls
them). The engines behind it are torch.distributed (``dopt/backends/torch/comm.py``) and Horovod
(``dopt/backends/horovod.py``); :class:`SingleProcess` is the trivial one of a run in one process.

This module also holds the checks that keep ranks in step: :class:`SampleCheck` (every rank
trains the same subnets).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from typing import Any, Protocol

__all__ = ["Comm", "SingleProcess", "Relayed", "RanksDiverged", "SampleCheck", "learning_rate", "CHECK_EVERY"]

log = logging.getLogger(__name__)

# Steps between two comparisons of what the ranks sampled (and the first step of every epoch).
CHECK_EVERY = 20


class Comm(Protocol):
    """Collectives between the processes of one launch; every call is made by every rank, in the
    same order, and times out rather than waiting forever (docs/distributed.md#failures)."""

    rank: int
    world_size: int
    local_rank: int  # this process's index on its machine (its GPU)
    local_size: int  # processes on this machine (CPU threads are shared among them)
    engine: str  # "torch.distributed (gloo)", "Horovod (gloo)", "single process"
    device: Any  # this process's device, chosen by the backend when joining; None in one process

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        """``obj`` as rank ``root`` has it, on every rank (pickled: small objects only)."""
        ...

    def allgather(self, obj: Any) -> list[Any]:
        """Every rank's ``obj``, in rank order, on every rank."""
        ...

    def barrier(self) -> None: ...

    def allreduce_sum(self, tensor: Any) -> Any:
        """``tensor`` (of the backend's framework) summed over every rank. Use the tensor returned:
        an engine may sum in place or into a new tensor."""
        ...

    def grouped_sum(self, tensors: list[Any]) -> list[Any]:
        """Each of ``tensors`` summed over every rank, in one collective where the engine has one."""
        ...

    def close(self) -> None:
        """Leave the group (at the end of the run)."""
        ...


class SingleProcess:
    """The communicator of a run in one process: every collective is the identity."""

    rank, world_size, local_rank, local_size = 0, 1, 0, 1
    engine = "single process"
    device: Any = None

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        return obj

    def allgather(self, obj: Any) -> list[Any]:
        return [obj]

    def barrier(self) -> None:
        pass

    def allreduce_sum(self, tensor: Any) -> Any:
        return tensor

    def grouped_sum(self, tensors: list[Any]) -> list[Any]:
        return list(tensors)

    def close(self) -> None:
        pass


class RanksDiverged(RuntimeError):
    """The processes of a run no longer compute the same thing: a bug, never a user's mistake."""


def learning_rate(optimizer: Any, world_size: int) -> float:
    """The learning rate a process trains with: the scenario's, times the number of processes
    unless ``scale_lr: false`` (batch_size is per process, so N processes take N times larger
    steps' worth of samples; the linear scaling rule, as in the seed and Horovod's examples)."""
    rate = float(optimizer.learning_rate)
    return rate * world_size if optimizer.scale_lr else rate


class SampleCheck:
    """Compares a running hash of the subnets each rank trained, at the first step of an epoch and
    every :data:`CHECK_EVERY` steps after: data-parallel training is only correct while every rank
    trains the same subnets, and a rank that drew other ones would silently average unrelated
    gradients (docs/distributed.md#every-rank-trains-the-same-subnets)."""

    def __init__(self, comm: Comm, every: int = CHECK_EVERY) -> None:
        self.comm, self.every = comm, every
        self._digest = hashlib.sha256()

    def __call__(self, epoch: int, step_in_epoch: int, step: int, sampled: Sequence[Any]) -> None:
        if self.comm.world_size == 1:
            return
        self._digest.update(repr((epoch, step, list(sampled))).encode())
        if step_in_epoch % self.every:
            return
        mine = self._digest.hexdigest()[:16]
        seen = self.comm.allgather(mine)
        if len(set(seen)) > 1:
            odd = [r for r, h in enumerate(seen) if h != seen[0]]
            raise RanksDiverged(
                f"the processes of this run sampled different subnets by epoch {epoch + 1}, step {step} "
                f"(rank{'s' if len(odd) > 1 else ''} {', '.join(map(str, odd))} differ from rank 0); data-parallel "
                "training would average unrelated gradients, so the run stops. Every rank must run the same dopt, "
                "scenario and user module; please report this with the log"
            )


class Relayed:
    """A communicator that carries the warnings of ranks other than 0 to rank 0, which logs them
    tagged with their rank (docs/distributed.md#who-writes): they ride along with every gather, and
    :meth:`close` flushes the last ones. Rank 0 alone writes the log."""

    def __init__(self, comm: Comm) -> None:
        self.comm = comm
        self.rank, self.world_size = comm.rank, comm.world_size
        self.local_rank, self.local_size, self.engine = comm.local_rank, comm.local_size, comm.engine
        self.device = comm.device
        self._pending: list[str] = []
        self._handler: logging.Handler | None = None
        if self.rank != 0:
            self._handler = _Collect(self._pending)
            logging.getLogger("dopt").addHandler(self._handler)

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        return self.comm.broadcast(obj, root)

    def allgather(self, obj: Any) -> list[Any]:
        pending, self._pending[:] = list(self._pending), []
        parts = self.comm.allgather((obj, pending))
        if self.rank == 0:
            for rank, (_, messages) in enumerate(parts):
                for message in messages:
                    log.warning("[rank %d] %s", rank, message)
        return [o for o, _ in parts]

    def barrier(self) -> None:
        self.comm.barrier()

    def allreduce_sum(self, tensor: Any) -> Any:
        return self.comm.allreduce_sum(tensor)

    def grouped_sum(self, tensors: list[Any]) -> list[Any]:
        return self.comm.grouped_sum(tensors)

    def close(self) -> None:
        try:
            self.allgather(None)  # the last warnings
        finally:
            if self._handler is not None:
                logging.getLogger("dopt").removeHandler(self._handler)
            self.comm.close()


class _Collect(logging.Handler):
    def __init__(self, into: list[str]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.into.append(record.getMessage())
        except Exception:  # logging must never raise
            self.handleError(record)
