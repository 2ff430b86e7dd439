"""Where a TensorFlow run executes: visible devices, CPU threads and seeding (docs/scenario.md#resource, docs/resume.md#determinism-and-threads)."""

from __future__ import annotations

import logging

import keras
import tensorflow as tf

from dopt.backends.cpus import cpu_threads
from dopt.errors import UserError

__all__ = ["pick_device", "set_threads", "seed_everything", "check_data_format"]

log = logging.getLogger(__name__)


def pick_device(gpu_ids: tuple[int, ...], local_rank: int = 0, local_size: int = 1) -> str:
    """Make only this process's GPU visible, or none; the CPU with one warning line when the GPU
    is not there (docs/scenario.md#keys, docs/distributed.md#launching). One process: the first listed
    GPU. One of ``local_size`` processes on a machine: ``gpu_id``'s ``local_rank``-th id when it
    lists one per process, else GPU ``local_rank``. Called before the runtime starts; a runtime
    already started (the user module ran TensorFlow ops at import) keeps its devices, with a warning."""
    gpus = tf.config.list_physical_devices("GPU")
    index = (gpu_ids[local_rank] if len(gpu_ids) >= local_size else local_rank) if gpu_ids else 0
    wanted = gpus[index] if gpu_ids and index < len(gpus) else None
    if gpu_ids and wanted is None and local_rank == 0:
        log.warning(
            "gpu_id %s: no such GPU visible to TensorFlow here; running %s on the CPU",
            ",".join(map(str, gpu_ids)),
            "one process" if local_size == 1 else f"all {local_size} processes",
        )
    try:
        tf.config.set_visible_devices([wanted] if wanted is not None else [], "GPU")
    except RuntimeError:  # the runtime is already initialised
        log.warning("TensorFlow was already running when dopt set the visible devices; using its defaults")
        return "/GPU:0" if tf.config.list_logical_devices("GPU") else "/CPU:0"
    return "/GPU:0" if wanted is not None else "/CPU:0"


def set_threads(n: int | None = None) -> int:
    """Fix the intra-op thread count, ``n`` or the cores (reproducible results for one count,
    docs/resume.md#resuming-a-run)."""
    n = n or cpu_threads()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(n)
        tf.config.threading.set_inter_op_parallelism_threads(min(n, 2))
    except RuntimeError:
        log.warning("TensorFlow was already running: thread counts left at its defaults")
    return tf.config.threading.get_intra_op_parallelism_threads() or n


def seed_everything(seed: int) -> None:
    """Python, NumPy, TensorFlow and Keras RNGs from one seed."""
    keras.utils.set_random_seed(seed)


def check_data_format(data_format: str, device: str) -> None:
    """TensorFlow's CPU kernels of Conv2D and DepthwiseConv2dNative take NHWC only."""
    if data_format == "channels_first" and "GPU" not in device:
        raise UserError(
            "channels_first needs a GPU in TensorFlow (its CPU convolutions take channels_last only), "
            "and this run is on the CPU",
            key="scenario.strategy.supernet.data_format",
            fix="data_format: channels_last with input_shape in HWC order (e.g. (224, 224, 3)) and NHWC datasets, "
            "or set gpu_id to a GPU of this machine",
        )
