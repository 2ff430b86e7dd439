"""One trained and searched digits working directory per framework per test session, shared by the
modules that only read it or copy it (docs/contributing.md#where-a-test-goes).

Under pytest-xdist each worker is a session of its own; the first worker to ask trains the run
under a file lock in the directory the workers share, the others wait and read it. A test never
changes the shared directory: it copies it (``tests.helpers.copy_workdir``) before running in it.
"""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.frameworks import MAKE_WORKDIR
from tests.helpers import dopt

# The settings every sharing module assumes: two epochs (a kill during training needs a second),
# two generations of six (the digits scenario's own), one thread (identical results run to run).
ARGS = ("--set", "scenario.strategy.epochs=2")
THREADS = 1


@dataclass(frozen=True)
class Finished:
    """A finished run: its working directory (never to be changed) and its console."""

    work: Path
    stdout: str
    stderr: str
    seconds: float  # the run's wall time


def shared_root(factory: pytest.TempPathFactory) -> Path:
    """The folder all xdist workers of this session see (the base temp's parent under xdist)."""
    base = factory.getbasetemp()
    root = (base.parent if base.name.startswith("popen-gw") else base) / "shared_runs"
    root.mkdir(exist_ok=True)
    return root


def finished_run(factory: pytest.TempPathFactory, framework: str) -> Finished:
    """The shared digits run of ``framework`` ("pytorch" or "tensorflow"), made on first use."""
    return shared_run(factory, framework, MAKE_WORKDIR[framework], ARGS)


def shared_run(
    factory: pytest.TempPathFactory, name: str, make: Callable[[Path], Path], args: Sequence[str]
) -> Finished:
    """The session's run ``name``: ``dopt -c scen.yaml ARGS`` in a working directory ``make(path)``
    lays out, made by the first xdist worker to ask, under a lock the others wait on."""
    root = shared_root(factory)
    work, record = root / name, root / f"{name}.json"
    with (root / f"{name}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not record.exists():
            make(work)
            t0 = time.monotonic()
            proc = dopt(work, "-c", "scen.yaml", *args, threads=THREADS)
            assert proc.returncode == 0, proc.stderr[-3000:]
            done = {"stdout": proc.stdout, "stderr": proc.stderr, "seconds": time.monotonic() - t0}
            record.write_text(json.dumps(done))
    console = json.loads(record.read_text())
    return Finished(work, console["stdout"], console["stderr"], console["seconds"])
