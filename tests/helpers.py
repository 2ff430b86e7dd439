"""What the test modules share for running dopt as a user does: one way to run the command in a
real process, one way to stop it at a given moment, one way to copy a working directory."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path


def env(threads: int | None = None) -> dict[str, str]:
    """The environment of a dopt process: this one's, byte-code writing off, and ``threads`` CPU
    threads when given (results are identical across runs at one thread count)."""
    extra = {"PYTHONDONTWRITEBYTECODE": ""}
    if threads is not None:
        extra["OMP_NUM_THREADS"] = str(threads)
    return {**os.environ, **extra}


def dopt(workdir: Path, *args: str, threads: int | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python -m dopt ARGS`` in ``workdir``, in a process of its own; its output captured."""
    return python(workdir, "-m", "dopt", *args, threads=threads, timeout=timeout)


def python(workdir: Path, *args: str, threads: int | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """``python ARGS`` in ``workdir`` (a result script, ``-m dopt``), its output captured."""
    return subprocess.run(
        [sys.executable, *args], cwd=workdir, capture_output=True, text=True, env=env(threads), timeout=timeout
    )


def kill_when(workdir: Path, ready: Callable[[Path], bool], *args: str, threads: int | None = 1) -> None:
    """Start ``dopt ARGS`` and SIGKILL it the moment ``ready(workdir)`` holds."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dopt", *args],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env(threads),
    )
    deadline = time.monotonic() + 300
    while not ready(workdir):
        assert proc.poll() is None, f"the run ended before the kill point: {proc.stderr.read().decode()[-2000:]}"
        assert time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()


def copy_workdir(source: Path, target: Path) -> Path:
    """A copy of a working directory (a shared trained one is copied, never edited in place)."""
    shutil.copytree(source, target, symlinks=True)
    return target


def archive(workdir: Path, results: str = "results") -> dict:
    return json.loads((workdir / results / "pareto.json").read_text())


def assert_same_archive(a: dict, b: dict) -> None:
    assert [c["encoding"] for c in a["archive"]] == [c["encoding"] for c in b["archive"]]
    for x, y in zip(a["archive"], b["archive"]):
        assert (x["size"], x["flops"], x["feasible"], x["generation"]) == (
            y["size"],
            y["flops"],
            y["feasible"],
            y["generation"],
        )
        assert (x["metric"] is None) == (y["metric"] is None)
        if x["metric"] is not None:
            assert abs(x["metric"] - y["metric"]) <= 1e-6
    assert a["front"] == b["front"]
