"""A run killed with SIGKILL at any instant (start-up, training, search, writing results) and
resumed as the user is told to ends byte-identical to an uninterrupted one: its pareto.json, its
result scripts and its journal (docs/resume.md#resuming-a-run)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from tests import helpers, shared_runs
from tests.frameworks import MAKE_WORKDIR

pytestmark = pytest.mark.slow  # whole runs in real processes (docs/contributing.md#running-the-tests)


# A chain starts the run and SIGKILLs it in one phase, resumes it as the user is told to and kills
# the resumed process in the next phase, and so on through start-up, training, search and writing
# results; a last resume ends the run, which must equal the uninterrupted one. Each kill comes a
# random delay (fixed seed) after its phase is seen to begin, so kills land at varied instants of
# each phase, and a chain costs about one run plus a start-up per kill, where one run per kill
# cost a whole run each.
PHASES = ("start-up", "training", "search", "writing results")

# Seconds a phase lasts at least on this machine's digits run, the range of the random delays.
SPAN = {
    "pytorch": {"start-up": 4.0, "training": 1.0, "search": 0.5, "writing results": 2.5},
    "tensorflow": {"start-up": 10.0, "training": 3.0, "search": 2.0, "writing results": 4.0},
}


def _begun(phase: str, draw: float) -> Callable[[Path], bool]:
    """Whether ``phase`` has begun in a working directory (start-up: from the launch)."""
    ckpt = Path("checkpoints")
    if phase == "training":
        return lambda w: any((w / ckpt).glob("supernet_epoch_1.*"))
    if phase == "search":
        lines = 1 + int(draw * 8)  # after the first to the eighth journal line
        return lambda w: _lines(w / ckpt / "results" / "journal.jsonl") >= lines
    if phase == "writing results":
        return lambda w: (w / "results").exists()
    return lambda w: True


def _lines(path: Path) -> int:
    return path.read_bytes().count(b"\n") if path.exists() else 0


def _chains(framework: str, n: int, seed: int) -> list[tuple[tuple[str, float, float], ...]]:
    """``n`` chains, each a (phase, draw, delay in seconds) per phase, with a fixed seed."""
    rng = np.random.default_rng(seed)
    return [
        tuple(
            (ph, round(float(rng.uniform()), 3), round(float(rng.uniform(0, SPAN[framework][ph])), 2)) for ph in PHASES
        )
        for _ in range(n)
    ]


# Three chains for PyTorch (12 kills, 3 in each phase), one for TensorFlow (the slower one to run).
CHAINS = {"pytorch": _chains("pytorch", 3, 27), "tensorflow": _chains("tensorflow", 1, 28)}
CASES = [(fw, chain) for fw, chains in CHAINS.items() for chain in chains]


def _kill_in(work: Path, args: tuple[str, ...], begun: Callable[[Path], bool], delay: float) -> bool:
    """Start ``dopt ARGS`` and SIGKILL it ``delay`` seconds after ``begun(work)`` first holds;
    False if it ended first."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "dopt", "-c", "scen.yaml", *args],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=helpers.env(shared_runs.THREADS),
    )
    try:
        deadline = time.monotonic() + 600
        while not begun(work) and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.005)
        proc.wait(timeout=delay)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        return True
    return False


def _resume_args(work: Path) -> tuple[str, ...]:
    """How the user goes on: --resume, or the first command again when nothing was saved yet."""
    if (work / "checkpoints" / "run.json").exists():
        return ("--resume",)
    return (*shared_runs.ARGS, "--overwrite")


def _journal(work: Path) -> list[dict]:
    path = work / "checkpoints" / "results" / "journal.jsonl"
    drop = ("eval_seconds", "elapsed_s", "sum")
    return [{k: v for k, v in json.loads(x).items() if k not in drop} for x in path.read_text().splitlines()]


@pytest.mark.parametrize(("framework", "chain"), CASES, indirect=["framework"])
def test_a_run_killed_at_any_instant_resumes_to_the_same_results(trained_run, tmp_path, framework, chain):
    work = MAKE_WORKDIR[framework](tmp_path / "w")
    args: tuple[str, ...] = shared_runs.ARGS
    for phase, draw, delay in chain:
        assert _kill_in(work, args, _begun(phase, draw), delay), f"the run ended before its kill in {phase}"
        args = _resume_args(work)
    resumed = helpers.dopt(work, "-c", "scen.yaml", *args, threads=shared_runs.THREADS)
    if resumed.returncode == 2 and "nothing to resume" in resumed.stderr:  # killed before the first checkpoint
        resumed = helpers.dopt(work, "-c", "scen.yaml", *shared_runs.ARGS, "--overwrite", threads=shared_runs.THREADS)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    reference = trained_run.work
    assert (work / "results" / "pareto.json").read_bytes() == (reference / "results" / "pareto.json").read_bytes()
    scripts = sorted(p.name for p in (reference / "results").glob("model_arch_result_*.py"))
    assert sorted(p.name for p in (work / "results").glob("model_arch_result_*.py")) == scripts
    for name in scripts:
        assert (work / "results" / name).read_bytes() == (reference / "results" / name).read_bytes(), name
    assert _journal(work) == _journal(reference)
    # Resumed, not started again: training went on from its checkpoint, the search from its journal.
    logs = "".join(p.read_text() for p in work.glob("log_*/dopt.log"))
    assert "resuming supernet training after epoch" in logs and "evaluated candidates reused" in logs
