"""CPU cores and thread counts, shared by the backends (no framework import)."""

from __future__ import annotations

import os

__all__ = ["available_cpus", "cpu_threads", "cpu_name", "source_hash"]


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def cpu_threads() -> int:
    """OMP_NUM_THREADS when set, else the cores this process may use.

    Set explicitly (docs/resume.md#resuming-a-run): results are reproducible for one thread count, and on a machine
    shared with other jobs fewer threads can be much faster than oversubscribed ones.

    One of several processes on this machine (docs/distributed.md#threads): ``DOPT_THREADS`` when
    set, else its share of the cores. OMP_NUM_THREADS is not read there, as torchrun sets it to 1
    for every process whether or not the user asked for it.
    """
    from dopt.parallel.launcher import detect

    launch = detect()
    if launch.world_size > 1:
        env = os.environ.get("DOPT_THREADS", "")
        if env.isdigit() and int(env) > 0:
            return int(env)
        return max(1, available_cpus() // max(1, launch.local_size))
    env = os.environ.get("OMP_NUM_THREADS", "")
    return int(env) if env.isdigit() and int(env) > 0 else available_cpus()


def cpu_name() -> str:
    """The CPU's model name (Linux: /proc/cpuinfo), else the platform's processor string."""
    import platform

    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def source_hash(*objects: object) -> str:
    """A short hash of the classes of ``objects`` (their source where readable, else their names):
    PreNet and PostNet in a latency table's key."""
    import hashlib
    import inspect

    digest = hashlib.sha256()
    for obj in objects:
        cls = type(obj)
        try:
            digest.update(inspect.getsource(cls).encode())
        except (OSError, TypeError):
            digest.update(f"{cls.__module__}.{cls.__qualname__}".encode())
    return digest.hexdigest()[:16]
