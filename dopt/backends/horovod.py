"""Horovod behind dopt's communicator, for both frameworks (docs/distributed.md#launching).

One class over a framework's binding, ``horovod.torch`` or ``horovod.tensorflow``: the backend
imports the binding (and with it the framework) and hands it in, so this module imports neither.
"""

from __future__ import annotations

from types import ModuleType
from typing import Any

__all__ = ["Horovod"]


class Horovod:
    """Horovod's binding of one framework as a ``dopt.parallel.comm.Comm`` (horovodrun over gloo or MPI).

    Args:
        hvd: the binding, ``horovod.torch`` or ``horovod.tensorflow``; initialised here.
        device: this process's device, picked by the backend before joining.
        gather_barrier: wait at a barrier by gathering nothing rather than through ``hvd.barrier()``
            (the TensorFlow backend's way).
    """

    def __init__(self, hvd: ModuleType, device: Any, *, gather_barrier: bool = False) -> None:
        self.hvd = hvd
        hvd.init()
        self.rank, self.world_size = hvd.rank(), hvd.size()
        self.local_rank, self.local_size = hvd.local_rank(), hvd.local_size()
        self.engine = "Horovod (" + ("MPI" if hvd.mpi_enabled() and not hvd.gloo_enabled() else "gloo") + ")"
        self.device = device
        self._gather_barrier = gather_barrier
        self._name = 0

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        return self.hvd.broadcast_object(obj, root_rank=root, name=self._next("broadcast"))

    def allgather(self, obj: Any) -> list[Any]:
        return list(self.hvd.allgather_object(obj, name=self._next("allgather")))

    def barrier(self) -> None:
        if self._gather_barrier:
            self.allgather(None)
        else:
            self.hvd.barrier()

    def allreduce_sum(self, tensor: Any) -> Any:
        return self.hvd.allreduce(tensor, op=self.hvd.Sum, name=self._next("allreduce"))

    def grouped_sum(self, tensors: list[Any]) -> list[Any]:
        return list(self.hvd.grouped_allreduce(tensors, op=self.hvd.Sum, name=self._next("grads")))

    def close(self) -> None:
        self.hvd.shutdown()

    def _next(self, what: str) -> str:
        # Horovod matches collectives across ranks by name: every rank calls them in one order.
        self._name += 1
        return f"dopt.{what}.{self._name}"
