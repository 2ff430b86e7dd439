"""`torchrun … -m dopt -c scen.yaml` on the CPU (gloo), as a user runs it: two processes, two
simulated machines, a rank killed, and a resume with another number of processes
(docs/distributed.md)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.digits_workdir import make_workdir
from tests.frameworks import require

require("torch")

# Two processes of a tiny run on this machine's cores: one thread each.
# One thread per process, and in the one-process runs compared with them: "identical" holds for
# one thread count (docs/resume.md#determinism-and-threads).
ENV = {**os.environ, "DOPT_THREADS": "1", "OMP_NUM_THREADS": "1", "DOPT_TIMEOUT_S": "120"}


pytestmark = pytest.mark.slow  # whole runs in real processes (docs/contributing.md#running-the-tests)


def _torchrun(work: Path, *args: str, nproc: int = 2, launcher: tuple[str, ...] = ("--standalone",)) -> list[str]:
    return [
        sys.executable,
        "-m",
        "torch.distributed.run",
        *launcher,
        f"--nproc_per_node={nproc}",
        "-m",
        "dopt",
        "-c",
        "scen.yaml",
        *args,
    ]


def _run(command: list[str], work: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=work, capture_output=True, text=True, env=ENV, timeout=timeout)


def _archive(results: Path) -> list[tuple]:
    data = json.loads((results / "pareto.json").read_text())
    return [(tuple(c["encoding"]), c["metric"], c["size"], c["flops"], c["generation"]) for c in data["archive"]]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_train_and_search_as_one_and_only_rank_0_writes(tmp_path):
    work = make_workdir(tmp_path / "w")
    proc = _run(_torchrun(work, "--set", "scenario.strategy.epochs=2"), work)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "[rank 1]" not in proc.stderr and "Pareto front" in proc.stdout, (proc.stdout + proc.stderr)[-3000:]
    logs = sorted(work.glob("log_*"))
    assert len(logs) == 1, logs  # one log folder: rank 0's
    text = (logs[0] / "dopt.log").read_text()
    assert "2 processes (torch.distributed (gloo)): batch_size 64 per process, 128 in all" in text
    assert "learning rate 0.01 (learning_rate 0.005 × 2 processes" in text
    journal = [
        json.loads(line) for line in (work / "checkpoints" / "results" / "journal.jsonl").read_text().splitlines()
    ]
    archive = _archive(work / "results")
    assert len(journal) == len(archive) == len({tuple(r["encoding"]) for r in journal}), (journal, archive)
    # The sharded search over the trained supernet equals one process's search of it.
    single = _run([sys.executable, "-m", "dopt", "-c", "scen.yaml", "--stage", "search", "--results", "one"], work)
    assert single.returncode == 0, single.stderr[-3000:]
    assert _archive(work / "one") == archive
    # A budget of evaluations cuts a sharded search where it cuts one process's.
    budget = ("--stage", "search", "--set", "scenario.strategy.searcher.max_evaluations=5")
    two = _run(_torchrun(work, *budget, "--results", "two_budget"), work)
    one = _run([sys.executable, "-m", "dopt", "-c", "scen.yaml", *budget, "--results", "one_budget"], work)
    assert two.returncode == one.returncode == 0, (two.stderr + one.stderr)[-3000:]
    assert _archive(work / "two_budget") == _archive(work / "one_budget"), two.stderr[-3000:]
    assert sum(c[1] is not None for c in _archive(work / "two_budget")) == 5, _archive(work / "two_budget")


def test_two_simulated_machines_on_localhost(tmp_path):
    work = make_workdir(tmp_path / "w")
    port = _free_port()
    nodes = [
        subprocess.Popen(
            _torchrun(
                work,
                nproc=1,
                launcher=("--nnodes=2", f"--node_rank={n}", "--master_addr=127.0.0.1", f"--master_port={port}"),
            ),
            cwd=work,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        for n in (0, 1)
    ]
    outputs = [node.communicate(timeout=600) for node in nodes]
    assert [node.returncode for node in nodes] == [0, 0], [err[-2000:] for _, err in outputs]
    assert "Pareto front" in outputs[0][0] and "Pareto front" not in outputs[1][0]
    assert (work / "results" / "pareto.json").exists() and len(list(work.glob("log_*"))) == 1


def _rank_pid(launcher: subprocess.Popen, rank: int) -> int | None:
    """The pid of the child of ``launcher`` whose environment says RANK=rank."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            ppid = int(next(line for line in status.splitlines() if line.startswith("PPid:")).split()[1])
            environ = (entry / "environ").read_bytes().split(b"\0")
        except (OSError, StopIteration, ValueError):
            continue
        if ppid == launcher.pid and f"RANK={rank}".encode() in environ:
            return int(entry.name)
    return None


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="finds the ranks' processes through /proc")
def test_a_killed_rank_stops_every_rank_within_a_minute_and_the_run_resumes_in_one_process(tmp_path):
    work = make_workdir(tmp_path / "w")
    launcher = subprocess.Popen(
        _torchrun(work, "--set", "scenario.strategy.epochs=8"),
        cwd=work,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        deadline = time.monotonic() + 300
        while not list((work / "checkpoints").glob("supernet_epoch_1.*")) and time.monotonic() < deadline:
            assert launcher.poll() is None, launcher.communicate()[1][-2000:]
            time.sleep(0.2)
        pid = _rank_pid(launcher, 1)
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        killed = time.monotonic()
        _, err = launcher.communicate(timeout=60)  # every rank ended within 60 s
        assert time.monotonic() - killed < 60
    finally:
        if launcher.poll() is None:
            launcher.kill()
    assert launcher.returncode != 0
    assert "rank      : 1" in err and "SIGKILL" in err, err[-2000:]
    # Resumed in one process (its data order then differs from the two processes'): it continues.
    resumed = _run([sys.executable, "-m", "dopt", "-c", "scen.yaml", "--resume"], work)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming supernet training after epoch" in resumed.stderr
    assert "supernet trained: 8 epochs" in resumed.stderr, resumed.stderr[-3000:]
    # The resumed run searched the supernet it saved last: searching that supernet again gives its front.
    again = _run([sys.executable, "-m", "dopt", "-c", "scen.yaml", "--stage", "search", "--results", "again"], work)
    assert again.returncode == 0, again.stderr[-3000:]
    assert _archive(work / "again") == _archive(work / "results") and _archive(work / "results")


def test_an_error_on_one_rank_stops_all_with_that_ranks_error_on_the_console(tmp_path):
    work = make_workdir(tmp_path / "w")
    module = work / "user_module.py"
    module.write_text(
        module.read_text().replace(
            "    def loss_func(self, labels, logits):\n",
            "    def loss_func(self, labels, logits):\n"
            "        if os.environ.get('RANK') == '1':\n"
            "            raise ValueError('broken on rank 1')\n",
        )
    )
    module.write_text("import os\n" + module.read_text())
    t0 = time.monotonic()
    proc = _run(_torchrun(work, "--set", "scenario.strategy.epochs=3"), work, timeout=300)
    assert proc.returncode != 0 and time.monotonic() - t0 < 120
    lines = [line for line in proc.stderr.splitlines() if line.startswith("dopt")]
    assert any(
        line.startswith("dopt [rank 1]: error in user code while rehearsing") and "broken on rank 1" in line
        for line in lines
    ), lines
    assert "Pareto front" not in proc.stdout
