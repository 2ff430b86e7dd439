"""CPU cores and thread counts, shared by the backends (no framework import)."""

from __future__ import annotations

import os

__all__ = ["available_cpus", "cpu_threads"]


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_threads() -> int:
    """OMP_NUM_THREADS when set, else the cores this process may use.

    Set explicitly (docs/resume.md#resuming-a-run): results are reproducible for one thread count, and on a machine
    shared with other jobs fewer threads can be much faster than oversubscribed ones.
    """
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else available_cpus()
