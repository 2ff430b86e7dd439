"""The communicator of a TensorFlow run of several processes: Horovod (docs/distributed.md),
launched by horovodrun or mpirun. It implements ``dopt.parallel.comm.Comm`` plus the gradients'
all-reduce of a training step (:func:`reduce_gradients`)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from dopt.errors import UserError
from dopt.parallel.comm import RanksDiverged
from dopt.parallel.launcher import Launch, engine

__all__ = ["HorovodTF", "connect", "reduce_gradients"]


class HorovodTF:
    """Horovod's TensorFlow binding."""

    def __init__(self, launch: Launch) -> None:
        import horovod.tensorflow as hvd

        self.hvd = hvd
        hvd.init()
        self.rank, self.world_size = hvd.rank(), hvd.size()
        self.local_rank, self.local_size = hvd.local_rank(), hvd.local_size()
        self.engine = "Horovod (" + ("MPI" if hvd.mpi_enabled() and not hvd.gloo_enabled() else "gloo") + ")"
        self.device = "/CPU:0"  # set by the backend's connect()
        self._name = 0

    def broadcast(self, obj: Any, root: int = 0) -> Any:
        return self.hvd.broadcast_object(obj, root_rank=root, name=self._next("broadcast"))

    def allgather(self, obj: Any) -> list[Any]:
        return list(self.hvd.allgather_object(obj, name=self._next("allgather")))

    def barrier(self) -> None:
        self.allgather(None)

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


def connect(launch: Launch) -> HorovodTF:
    engine(launch, "tensorflow")  # TensorFlow under torchrun: exit 2 naming horovodrun
    try:
        return HorovodTF(launch)
    except ImportError as exc:
        raise UserError(
            f"started by {launch.launcher}, which needs Horovod's TensorFlow binding: {exc}",
            fix="install Horovod with scripts/install_horovod.sh",
        ) from None


def reduce_gradients(comm: HorovodTF, summed: list[Any], finite: bool) -> bool:
    """Average the accumulated gradients ``summed`` (None where the step's subnets did not use a
    variable) across processes, in place; whether every process's step was finite. As in PyTorch
    (dopt/backends/torch/comm.py): which variables have a gradient is compared first, and must match."""
    present = [g is not None for g in summed]
    head = comm.allreduce_sum(tf.constant([*present, not finite], tf.float32)).numpy()
    if head[-1] > 0:
        return False
    world = comm.world_size
    counts = [int(round(c)) for c in head[:-1]]
    if any(c not in (0, world) for c in counts):
        raise RanksDiverged(
            "some variables have a gradient on some processes and not on others: the ranks trained different "
            "subnets in this step, so the run stops; please report this with the log"
        )
    index = [i for i, g in enumerate(summed) if g is not None]
    if index:
        reduced = comm.grouped_sum([tf.convert_to_tensor(summed[i]) for i in index])
        for i, g in zip(index, reduced):
            summed[i] = g / world
    return True
