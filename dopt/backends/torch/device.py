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


def pick_device(gpu_ids: tuple[int, ...]) -> torch.device:
    """The first listed GPU if it exists, else the CPU with one warning line (docs/scenario.md#keys)."""
    if not gpu_ids:
        return torch.device("cpu")
    if not torch.cuda.is_available() or gpu_ids[0] >= torch.cuda.device_count():
        log.warning("gpu_id %s: no such CUDA device here; running one process on the CPU", ",".join(map(str, gpu_ids)))
        return torch.device("cpu")
    if len(gpu_ids) > 1:
        log.warning(
            "gpu_id lists %d GPUs; runs of several processes are not available yet in this version: using cuda:%d only",
            len(gpu_ids),
            gpu_ids[0],
        )
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
