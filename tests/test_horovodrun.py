"""`horovodrun -np 2 dopt -c scen.yaml` on the CPU (gloo), PyTorch and TensorFlow, as a user runs it
with Horovod built by scripts/install_horovod.sh (docs/distributed.md). Skipped where Horovod is
not installed, a failure under CI=true (CI builds it first)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.frameworks import MAKE_WORKDIR, require
from tests.shapes_workdir import SHORT_ARGS, make_workdir

require("horovod")

# One thread per process, and in the one-process runs compared with them: "identical" holds for
# one thread count (docs/resume.md#determinism-and-threads).
ENV = {**os.environ, "DOPT_THREADS": "1", "OMP_NUM_THREADS": "1", "DOPT_TIMEOUT_S": "120"}
FRAMEWORK_MODULE = {"pytorch": "horovod.torch", "tensorflow": "horovod.tensorflow"}


pytestmark = pytest.mark.slow  # whole runs in real processes (docs/contributing.md#running-the-tests)


def _horovodrun(*args: str) -> list[str]:
    horovodrun = shutil.which("horovodrun") or str(Path(sys.executable).with_name("horovodrun"))
    return [
        horovodrun,
        "-np",
        "2",
        "-H",
        "localhost:2",
        "--gloo",
        sys.executable,
        "-m",
        "dopt",
        "-c",
        "scen.yaml",
        *args,
    ]


def _archive(results: Path) -> list[tuple]:
    data = json.loads((results / "pareto.json").read_text())
    return [(tuple(c["encoding"]), c["metric"], c["size"], c["flops"], c["generation"]) for c in data["archive"]]


def _search_alone(work: Path, results: str) -> None:
    """``--stage search --results RESULTS`` in one process: the search of the supernet the run saved."""
    single = subprocess.run(
        [sys.executable, "-m", "dopt", "-c", "scen.yaml", "--stage", "search", "--results", results],
        cwd=work,
        capture_output=True,
        text=True,
        env=ENV,
        timeout=900,
    )
    assert single.returncode == 0, single.stderr[-3000:]


@pytest.mark.parametrize("framework", ["pytorch", "tensorflow"])
def test_two_processes_pretrain_train_and_search_as_one_and_only_rank_0_writes(tmp_path, framework):
    """One run of every stage (pre-training, training, search, results) in two processes: one log,
    one pre-training output, one journal line per candidate, the archive one process finds."""
    require(FRAMEWORK_MODULE[framework])
    work = make_workdir(tmp_path / "w", framework)
    shorter = [
        "--set",
        "scenario.strategy.dataset.pre_train_epochs=1",
        "--set",
        "scenario.strategy.searcher.generation_num=1",
    ]
    args = [*SHORT_ARGS, *shorter]  # what is checked is who writes and what is found, not how well it trains
    proc = subprocess.run(_horovodrun(*args), cwd=work, capture_output=True, text=True, env=ENV, timeout=900)
    console = proc.stdout + proc.stderr
    assert proc.returncode == 0, console[-3000:]
    assert "[rank 1]" not in console and "Pareto front" in proc.stdout, console[-3000:]
    assert "set pre_train_dir: pretrained" in console, console[-3000:]
    manifest = json.loads((work / "pretrained" / "pretrain.json").read_text())
    assert manifest["epochs"] == 1 and (work / "pretrained" / manifest["weights"]).is_file(), manifest
    logs = sorted(work.glob("log_*"))
    assert len(logs) == 1, logs
    assert "2 processes (Horovod (gloo))" in (logs[0] / "dopt.log").read_text()
    journal = (work / "checkpoints" / "results" / "journal.jsonl").read_text().splitlines()
    archive = _archive(work / "results")
    assert json.loads((work / "results" / "pareto.json").read_text())["front"]
    assert len(journal) == len(archive) == len({tuple(json.loads(r)["encoding"]) for r in journal})
    _search_alone(work, "one")
    assert _archive(work / "one") == archive


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the ranks' processes through /proc")
def test_a_killed_rank_stops_every_rank_within_a_minute_and_resume_continues_with_two(tmp_path):
    require("horovod.torch")
    work = MAKE_WORKDIR["pytorch"](tmp_path / "w")
    command = _horovodrun("--set", "scenario.strategy.epochs=8")
    launcher = subprocess.Popen(command, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    try:
        deadline = time.monotonic() + 300
        while not list((work / "checkpoints").glob("supernet_epoch_1.*")) and time.monotonic() < deadline:
            assert launcher.poll() is None, launcher.communicate()[1][-2000:]
            time.sleep(0.2)
        pid = _pid_with(b"HOROVOD_RANK=1")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        out, err = launcher.communicate(timeout=60)
        assert time.monotonic() - killed < 60
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    assert "Exit code: 137" in out + err, (out + err)[-2000:]
    resumed = subprocess.run(_horovodrun("--resume"), cwd=work, capture_output=True, text=True, env=ENV, timeout=900)
    assert resumed.returncode == 0, (resumed.stdout + resumed.stderr)[-3000:]
    console = resumed.stdout + resumed.stderr
    assert "resuming supernet training after epoch" in console and "supernet trained: 8 epochs" in console, console[
        -3000:
    ]
    # The two resumed processes searched the supernet they saved last, as one process searching it again does.
    _search_alone(work, "again")
    assert _archive(work / "again") == _archive(work / "results") and _archive(work / "results")


def _pid_with(variable: bytes) -> int | None:
    """A dopt process (not the launcher) whose environment holds ``variable``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"dopt" in cmdline and b"-m" in cmdline and variable in environ and b"horovodrun" not in cmdline[1]:
            return int(entry.name)
    return None
