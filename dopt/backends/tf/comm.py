"""The communicator of a TensorFlow run of several processes: Horovod (docs/distributed.md,
``dopt.backends.horovod``) over its TensorFlow binding, launched by horovodrun or mpirun. Also the
gradients' all-reduce of a training step (:func:`reduce_gradients`)."""

from __future__ import annotations

from typing import Any

import tensorflow as tf

from dopt.backends.horovod import Horovod
from dopt.errors import UserError
from dopt.parallel.comm import Comm, RanksDiverged
from dopt.parallel.launcher import Launch, engine

__all__ = ["connect", "reduce_gradients"]


def connect(launch: Launch, device: str) -> Horovod:
    """Join ``launch`` through Horovod, ``device`` being this process's."""
    engine(launch, "tensorflow")  # TensorFlow under torchrun: exit 2 naming horovodrun
    try:
        import horovod.tensorflow as hvd

        return Horovod(hvd, device, gather_barrier=True)
    except ImportError as exc:
        raise UserError(
            f"started by {launch.launcher}, which needs Horovod's TensorFlow binding: {exc}",
            fix="install Horovod with scripts/install_horovod.sh",
        ) from None


def reduce_gradients(comm: Comm, summed: list[Any], finite: bool) -> bool:
    """Average the accumulated gradients ``summed`` (None where the step's subnets did not use a
    variable) across processes, in place; whether every process's step was finite. As in PyTorch
    (dopt/backends/torch/comm.py): which variables have a gradient is compared first, and must match."""
    if comm.world_size == 1:  # one process: nothing to average
        return finite
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
