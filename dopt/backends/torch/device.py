"""Where a PyTorch run executes: device choice, CPU threads and seeding (docs/scenario.md#resource, docs/resume.md#determinism-and-threads)."""

from __future__ import annotations

import logging
import os
import random

import numpy as np
import torch

from dopt.backends.cpus import available_cpus, cpu_threads

__all__ = ["pick_device", "available_cpus", "cpu_threads", "seed_everything"]

log = logging.getLogger(__name__)


def pick_device(gpu_ids: tuple[int, ...], local_rank: int = 0, local_size: int = 1) -> torch.device:
    """The device of this process (docs/scenario.md#keys, docs/distributed.md#launching).

    One process: the first listed GPU if it exists, else the CPU with one warning line. One of
    ``local_size`` processes on this machine: ``gpu_id``'s ``local_rank``-th id when it lists one per
    process, else GPU ``local_rank`` (the launcher's own numbering).
    """
    if not gpu_ids:
        return torch.device("cpu")
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if local_size > 1:
        wanted = gpu_ids[local_rank] if len(gpu_ids) >= local_size else local_rank
        if wanted >= count:
            if local_rank == 0:
                log.warning(
                    "gpu_id %s: this machine has %d CUDA device(s) for %d processes; they run on the CPU",
                    ",".join(map(str, gpu_ids)),
                    count,
                    local_size,
                )
            return torch.device("cpu")
        return torch.device(f"cuda:{wanted}")
    if gpu_ids[0] >= count:
        log.warning("gpu_id %s: no such CUDA device here; running one process on the CPU", ",".join(map(str, gpu_ids)))
        return torch.device("cpu")
    return torch.device(f"cuda:{gpu_ids[0]}")


def seed_everything(seed: int, device: torch.device) -> None:
    """Python, NumPy and torch RNGs from the run's seed; deterministic cuDNN on a GPU."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
