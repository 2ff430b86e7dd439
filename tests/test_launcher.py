"""Launcher detection; a command that runs in one process refuses a launch of several with one line and writes nothing."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dopt.parallel.launcher import Launch, detect
from tests.digits_workdir import make_workdir


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        ({}, Launch(launcher=None)),
        (
            {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2", "TORCHELASTIC_RUN_ID": "x"},
            Launch(launcher="torchrun", rank=3, world_size=4, local_rank=1, local_size=2),
        ),
        (
            {"HOROVOD_RANK": "3", "HOROVOD_SIZE": "4", "HOROVOD_LOCAL_RANK": "3", "HOROVOD_LOCAL_SIZE": "4"},
            Launch(launcher="horovodrun", rank=3, world_size=4, local_rank=3, local_size=4),
        ),
        (  # horovodrun over MPI sets both: Horovod's name wins
            {"HOROVOD_RANK": "0", "HOROVOD_SIZE": "2", "OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "2"},
            Launch(launcher="horovodrun", rank=0, world_size=2, local_rank=0, local_size=2),
        ),
        (
            {"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"},
            Launch(launcher="mpirun", rank=1, world_size=2, local_rank=1, local_size=2),
        ),
        (
            {"PMI_RANK": "0", "PMI_SIZE": "8"},
            Launch(launcher="mpirun", rank=0, world_size=8, local_rank=0, local_size=8),
        ),  # no local variables: one machine
        ({"WORLD_SIZE": "earth"}, Launch(launcher=None)),  # somebody else's variable
        (  # a stale export must not hide a launch of two
            {"RANK": "0", "WORLD_SIZE": "1", "OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_SIZE": "2"},
            Launch(launcher="mpirun", rank=1, world_size=2, local_rank=1, local_size=2),
        ),
        (
            {"RANK": "0", "WORLD_SIZE": "1"},
            Launch(launcher="torchrun", rank=0, world_size=1),
        ),  # one process under torchrun runs
    ],
)
def test_detect(environ, expected):
    assert detect(environ) == expected


@pytest.mark.parametrize("command", ["validate", "analyze", "train"])
def test_commands_of_one_process_refuse_a_launch_of_several_with_one_line_and_nothing_written(tmp_path, command):
    work = make_workdir(tmp_path)
    before = sorted(p.name for p in work.iterdir())
    extra = ["--result", "1"] if command == "train" else []
    proc = subprocess.run(
        [sys.executable, "-m", "dopt", command, "-c", "scen.yaml", *extra],
        cwd=work,
        capture_output=True,
        text=True,
        env={**os.environ, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"},
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and f"dopt {command} was started as process 1 of 2 by torchrun" in lines[0], proc.stderr
    assert "Fix: start it without the launcher" in lines[0], proc.stderr
    assert sorted(p.name for p in work.iterdir()) == before
