"""Resume after kill -9, train once / search many, and the checkpoint identity (docs/cli.md#commands, docs/resume.md#resuming-a-run)."""

from __future__ import annotations

import functools
import json
import subprocess
from pathlib import Path

import pytest

from tests import helpers, shared_runs
from tests.frameworks import MAKE_WORKDIR
from tests.helpers import archive, assert_same_archive, kill_when

SUFFIX = {"pytorch": ".pt", "tensorflow": ".weights.npz"}

# The settings of the session's shared run (tests/shared_runs.py), which is the uninterrupted one here.
LONGER = list(shared_runs.ARGS)

# What these tests check beyond the framework's checkpoints is the core's work, tested on the fake
# backend (tests/pipeline/test_resume.py, tests/pipeline/test_search_again.py); once more here with
# PyTorch. TensorFlow's kills during training and search, and its resumes, are in
# tests/test_kill_anywhere.py, byte for byte.
PYTORCH_ONLY = pytest.mark.parametrize("framework", ["pytorch"], indirect=True)


dopt = functools.partial(helpers.dopt, threads=shared_runs.THREADS)  # one thread: identical results run to run


pytestmark = pytest.mark.slow  # whole runs in real processes (docs/contributing.md#running-the-tests)


def journal_lines(workdir: Path) -> int:
    path = workdir / "checkpoints" / "results" / "journal.jsonl"
    return path.read_bytes().count(b"\n") if path.exists() else 0


@pytest.fixture(scope="module")
def uninterrupted(trained_run):
    return trained_run.work


@pytest.fixture
def make_workdir(framework):
    return MAKE_WORKDIR[framework]


@PYTORCH_ONLY
def test_kill_during_training_then_resume_gives_the_same_archive(uninterrupted, tmp_path, make_workdir, framework):
    work = make_workdir(tmp_path)
    suffix = SUFFIX[framework]
    kill_when(work, lambda w: (w / "checkpoints" / f"supernet_epoch_1{suffix}").exists(), "-c", "scen.yaml", *LONGER)
    assert not (work / "checkpoints" / f"supernet_final{suffix}").exists(), "killed too late: training had finished"
    proc = dopt(work, "-c", "scen.yaml", "--resume")  # the run's --set options are re-applied by themselves
    assert proc.returncode == 0, proc.stderr
    assert "re-applying the --set options recorded with the checkpoints" in proc.stderr
    log = next(iter(sorted(work.glob("log_*"))[-1:])).joinpath("dopt.log").read_text()
    assert "resuming supernet training after epoch" in log
    assert_same_archive(archive(work), archive(uninterrupted))


@PYTORCH_ONLY
def test_kill_during_search_then_resume_reuses_the_journal(uninterrupted, tmp_path, make_workdir):
    work = make_workdir(tmp_path)
    kill_when(work, lambda w: journal_lines(w) >= 4, "-c", "scen.yaml", *LONGER)
    state = work / "checkpoints" / "results" / "search_state.json"
    assert not (state.exists() and json.loads(state.read_text())["finished"]), "killed too late: search had finished"
    done = journal_lines(work)
    proc = dopt(work, "-c", "scen.yaml", "--resume")
    assert proc.returncode == 0, proc.stderr
    log = sorted(work.glob("log_*"))[-1].joinpath("dopt.log").read_text()
    assert "supernet already trained" in log and f"journal: {done} evaluated candidates reused" in log
    assert_same_archive(archive(work), archive(uninterrupted))
    # Nothing evaluated twice: one journal line per distinct candidate.
    assert journal_lines(work) == len(archive(work)["archive"])


@PYTORCH_ONLY
def test_stage_search_trains_nothing_and_meets_the_new_constraint(uninterrupted, tmp_path, framework):
    work = tmp_path / "w"
    subprocess.run(["cp", "-r", str(uninterrupted), str(work)], check=True)
    final = (work / "checkpoints" / f"supernet_final{SUFFIX[framework]}").read_bytes()
    proc = dopt(
        work,
        "-c",
        "scen.yaml",
        "--stage",
        "search",
        "--set",
        "scenario.strategy.constraint.constraint_value=9000",
    )  # the run's --set options (epochs=4) are re-applied by themselves
    assert proc.returncode == 0, proc.stderr
    doc = archive(work, "results_size_9000")
    assert doc["constraint"]["value"] == 9000 and doc["front"]
    assert doc["overrides"] == [*LONGER[1::2], "scenario.strategy.constraint.constraint_value=9000"]
    assert all(doc["archive"][e["index"]]["size"] <= 9000 for e in doc["front"])
    log = sorted(work.glob("log_*"))[-1].joinpath("dopt.log").read_text()
    assert "no training step" in log and "supernet trained" not in log
    assert (work / "checkpoints" / f"supernet_final{SUFFIX[framework]}").read_bytes() == final
    assert archive(work) == archive(uninterrupted)  # the first results are untouched
    # A second search into the same folder is refused; --overwrite replaces only that folder.
    again = dopt(
        work,
        "-c",
        "scen.yaml",
        "--stage",
        "search",
        *LONGER,
        "--set",
        "scenario.strategy.constraint.constraint_value=9000",
    )
    assert again.returncode == 2 and "--resume" in again.stderr and "--overwrite" in again.stderr
    flops = dopt(
        work,
        "-c",
        "scen.yaml",
        "--stage",
        "search",
        *LONGER,
        "--results",
        "by_flops",
        "--set",
        "scenario.strategy.constraint.constraint_type=flops",
        "--set",
        "scenario.strategy.constraint.constraint_value=400000",
    )
    assert flops.returncode == 0, flops.stderr
    assert all(c["flops"] <= 400000 for c in archive(work, "by_flops")["archive"] if c["feasible"])


@PYTORCH_ONLY
def test_corrupt_checkpoint_and_torn_journal_line_fall_back(uninterrupted, tmp_path, framework):
    """What a crash mid-write could leave (were writes not atomic): the newest epoch checkpoint
    truncated, the journal's last line torn. Resume falls back and still ends identical."""
    work = tmp_path / "w"
    subprocess.run(["cp", "-r", str(uninterrupted), str(work)], check=True)
    ckpt = work / "checkpoints"
    suffix = SUFFIX[framework]
    for path in (work / "results", ckpt / "results" / "search_state.json", ckpt / f"supernet_final{suffix}"):
        subprocess.run(["rm", "-r", str(path)], check=True)
    newest = ckpt / f"supernet_epoch_2{suffix}"
    newest.write_bytes(newest.read_bytes()[:1000])
    journal = ckpt / "results" / "journal.jsonl"
    lines = journal.read_bytes().splitlines(keepends=True)
    journal.write_bytes(b"".join(lines[:-1]) + lines[-1][:20])
    proc = dopt(work, "-c", "scen.yaml", "--resume", *LONGER)
    assert proc.returncode == 0, proc.stderr
    log = sorted(work.glob("log_*"))[-1].joinpath("dopt.log").read_text()
    assert f"supernet_epoch_2{suffix} is unreadable" in log and "after epoch 1 of 2" in log
    assert "is torn" in log and f"journal: {len(lines) - 1} evaluated candidates reused" in log
    assert_same_archive(archive(work), archive(uninterrupted))
