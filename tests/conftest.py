"""Fixtures shared by the test modules that run whole working directories."""

from __future__ import annotations

import os

import pytest

if os.environ.get("PYTEST_XDIST_WORKER"):
    # Several test processes share the cores: one thread each (and in the dopt processes they start),
    # or the frameworks' thread pools would spin against each other, ten times slower.
    for _name in ("OMP_NUM_THREADS", "TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
        os.environ.setdefault(_name, "1")

from tests.frameworks import require


@pytest.fixture(scope="module", params=["pytorch", "tensorflow"])
def framework(request):
    """Each framework in turn, for tests that run a whole working directory in both."""
    require("torch" if request.param == "pytorch" else "tensorflow")
    return request.param


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, framework):
    """The session's trained and searched digits run of ``framework`` (tests/shared_runs.py): read
    it, or copy it before running anything in it."""
    from tests.shared_runs import finished_run as shared

    return shared(tmp_path_factory, framework)


def pytest_runtest_logreport(report):
    """With DOPT_TEST_TIMES=FILE, append each test phase's seconds and outcome to FILE as it ends
    (what --durations prints only at the very end, kept when a run is stopped early)."""
    path = os.environ.get("DOPT_TEST_TIMES")
    if os.environ.get("PYTEST_XDIST_WORKER"):  # the main process gets every report: logged there once
        return
    if path and report.when in ("setup", "call") and report.duration > 0.5 or (path and report.failed):
        with open(path, "a") as f:
            f.write(f"{report.duration:8.1f} {report.when:5} {report.outcome:7} {report.nodeid}\n")


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    """The slow tests first, in their collected order, the quick ones after: xdist hands tests out
    in this order, so the quick ones fill the workers at the end instead of one long whole run
    keeping one worker busy while the other waits (docs/contributing.md#running-the-tests)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
