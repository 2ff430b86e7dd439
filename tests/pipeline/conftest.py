"""Whole runs of `dopt` in-process on the fake numpy backend (tests/fake): what the search, resume,
overrides and outputs do, in seconds and without torch or tensorflow."""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fake import Control, Ran, installed, make_workdir, run_dopt
from tests.fake.outputs import RUN


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[Control]:
    """The fake backend serves framework PyTorch during the test; its control interrupts runs."""
    with installed(tmp_path / "cache") as control:
        yield control


@pytest.fixture
def dopt(fake: Control) -> Callable[..., Ran]:
    """``dopt(workdir, *args) -> (exit code, stdout, stderr)``, in this process."""
    return run_dopt


@pytest.fixture
def workdir(tmp_path: Path) -> Callable[..., Path]:
    """``workdir(name="work", kind="size", value=6000)``: a fresh working directory in tmp_path."""

    def make(name: str = "work", kind: str = "size", value: float = 6000) -> Path:
        return make_workdir(tmp_path / name, kind, value)

    return make


@pytest.fixture(scope="session")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Ran, Control]:
    """One finished run of ``RUN`` for the whole session: never run in again, copied by finished_run."""
    work = make_workdir(tmp_path_factory.mktemp("finished") / "work")
    with installed(work.parent / "cache") as control:
        ran = run_dopt(work, *RUN)
    assert ran.code == 0, ran.err
    return work, ran, control


@pytest.fixture
def finished_run(finished: tuple[Path, Ran, Control], tmp_path: Path) -> Path:
    """A copy of the finished run's working directory, free to change."""
    return Path(shutil.copytree(finished[0], tmp_path / "finished"))
