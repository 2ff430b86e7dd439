"""One dopt command per working directory: a second is refused, a killed one never blocks the next."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dopt.errors import UserError
from dopt.store.lock import LOCK_NAME, hold
from tests.digits_workdir import make_workdir
from tests.frameworks import require

# Ctrl-C's handler is set explicitly: a process started in the background of a shell script (as a
# CI job may be) inherits SIGINT ignored, and Python then leaves it ignored.
HOLDER = """
import signal, sys, time
from pathlib import Path
from dopt.store.lock import hold
signal.signal(signal.SIGINT, signal.default_int_handler)
with hold(Path(sys.argv[1]), "dopt -c scen.yaml --resume"):
    print("held", flush=True)
    time.sleep(120)
"""


def _hold_elsewhere(workdir: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(workdir)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    holder = _hold_elsewhere(tmp_path)
    try:
        with pytest.raises(UserError) as err, hold(tmp_path, "dopt -c scen.yaml"):
            pass
        message = str(err.value)
        assert f"pid {holder.pid}" in message and "dopt -c scen.yaml --resume" in message
        assert "Fix:" in message and str(tmp_path) in message
    finally:
        holder.send_signal(signal.SIGINT)  # Ctrl-C: the holder's own exit path
        holder.wait()
    assert not (tmp_path / LOCK_NAME).exists()  # released cleanly: removed
    with hold(tmp_path, "dopt -c scen.yaml"):
        assert (tmp_path / LOCK_NAME).exists()
    assert not (tmp_path / LOCK_NAME).exists()


def test_a_killed_holder_leaves_the_folder_usable(tmp_path):
    holder = _hold_elsewhere(tmp_path)
    os.kill(holder.pid, signal.SIGKILL)
    holder.wait()
    assert (tmp_path / LOCK_NAME).exists()  # kill -9 cannot remove it, but the kernel dropped the lock
    with hold(tmp_path, "dopt -c scen.yaml --resume"):
        pass


# The child prints its pid itself: once it runs Python code its after-fork handlers have run. (The
# parent printing child.pid raced them: on a busy CI machine the test killed the parent before the
# child had been scheduled at all.)
FORKING_HOLDER = """
import multiprocessing, os, sys, time
from pathlib import Path
from dopt.store.lock import hold
def sleep_in_child():
    print(os.getpid(), flush=True)
    time.sleep(120)
with hold(Path(sys.argv[1]), "dopt -c scen.yaml"):
    child = multiprocessing.get_context("fork").Process(target=sleep_in_child, daemon=False)
    child.start()
    time.sleep(120)
"""


def test_a_killed_holders_forked_children_do_not_keep_the_lock(tmp_path):
    # DataLoader workers and a user's multiprocessing fork without exec: they must not inherit the lock.
    holder = subprocess.Popen([sys.executable, "-c", FORKING_HOLDER, str(tmp_path)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None
    child = int(holder.stdout.readline())
    try:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
        os.kill(child, 0)  # the orphan still runs
        with hold(tmp_path, "dopt -c scen.yaml --resume"):
            pass
    finally:
        os.kill(child, signal.SIGKILL)


def test_a_folder_that_cannot_be_written_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="cannot write into the working directory"), hold(tmp_path / "gone", "x"):
        pass


def test_one_holder_at_a_time_within_a_process(tmp_path):
    with hold(tmp_path, "first"), pytest.raises(UserError), hold(tmp_path, "second"):
        pass


@pytest.mark.slow
def test_two_runs_started_at_once_in_one_folder(tmp_path):
    require("torch")
    work = make_workdir(tmp_path)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": ""}
    command = [sys.executable, "-m", "dopt", "-c", "scen.yaml"]
    first = subprocess.Popen(command, cwd=work, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (work / LOCK_NAME).exists():
            assert first.poll() is None and time.monotonic() < deadline, "the first run never took the lock"
            time.sleep(0.05)
        second = subprocess.run(command, cwd=work, env=env, capture_output=True, text=True, timeout=300)
        assert second.returncode == 2, second.stderr
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "another dopt command is writing into" in lines[0], second.stderr
        assert f"pid {first.pid}" in lines[0]
        _, err = first.communicate(timeout=600)
        assert first.returncode == 0, err
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert (work / "results" / "pareto.json").exists()
    assert not (work / LOCK_NAME).exists()


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo"])
def test_a_lock_path_that_is_not_a_plain_file_of_its_own_is_refused_and_nothing_written(tmp_path, kind):
    victim = tmp_path / "elsewhere" / "victim.txt"
    victim.parent.mkdir()
    victim.write_text("the user's")
    work = tmp_path / "work"
    work.mkdir()
    lock = work / LOCK_NAME
    if kind == "symlink":
        lock.symlink_to(victim)
    elif kind == "hardlink":
        os.link(victim, lock)
    else:
        os.mkfifo(lock)
    with (
        pytest.raises(UserError, match=f"{LOCK_NAME} is .*not dopt's lock file") as err,
        hold(work, "dopt -c scen.yaml"),
    ):
        pass
    assert "rm " in str(err.value)
    assert victim.read_text() == "the user's"
    assert lock.exists() or lock.is_symlink()  # left for the user to look at
