"""A run killed with SIGKILL at any instant (start-up, training, search, writing results) and
resumed as the user is told to ends byte-identical to an uninterrupted one: its pareto.json, its
result scripts and its journal (docs/resume.md#resuming-a-run)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests import helpers, shared_runs
from tests.frameworks import MAKE_WORKDIR

pytestmark = pytest.mark.slow  # whole runs in real processes (docs/contributing.md#running-the-tests)


def _instants(n: int, seed: int) -> list[float]:
    """``n`` kill instants as shares of an uninterrupted run's wall time, one drawn in each n-th of
    it (so start-up, training, search and writing results all get some), with a fixed seed."""
    rng = np.random.default_rng(seed)
    return [round(float(rng.uniform(k / n, (k + 1) / n)), 3) for k in range(n)]


# Twelve for PyTorch, three for TensorFlow (the slower one to run).
INSTANTS = {"pytorch": _instants(12, 27), "tensorflow": _instants(3, 28)}
CASES = [(fw, share) for fw, shares in INSTANTS.items() for share in shares]


def _kill_after(work: Path, seconds: float) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "dopt", "-c", "scen.yaml", *shared_runs.ARGS],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=helpers.env(shared_runs.THREADS),
    )
    try:
        proc.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


def _journal(work: Path) -> list[dict]:
    path = work / "checkpoints" / "results" / "journal.jsonl"
    drop = ("eval_seconds", "elapsed_s", "sum")
    return [{k: v for k, v in json.loads(x).items() if k not in drop} for x in path.read_text().splitlines()]


@pytest.mark.parametrize(("framework", "share"), CASES, indirect=["framework"])
def test_a_run_killed_at_any_instant_resumes_to_the_same_results(trained_run, tmp_path, framework, share):
    work = MAKE_WORKDIR[framework](tmp_path / "w")
    _kill_after(work, share * trained_run.seconds)
    resumed = helpers.dopt(work, "-c", "scen.yaml", "--resume", threads=shared_runs.THREADS)
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
