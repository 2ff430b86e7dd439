"""Asking for a framework in a test module: skipped where missing, a failure under CI=true."""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest


def require(module: str) -> ModuleType:
    """Import ``module`` or skip the test, except under CI=true, where a missing framework fails.

    CI installs every backend's framework; a backend test skipped there would pass CI without
    testing anything (pytest.importorskip alone would let that happen).
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{module} is required in CI but cannot be imported: {exc}")
        pytest.skip(f"{module} is not installed", allow_module_level=True)


def _workdir_makers() -> dict:
    from tests.backends.tf import tf_workdir
    from tests.digits_workdir import make_workdir

    return {"pytorch": make_workdir, "tensorflow": tf_workdir.make_workdir}


# make_workdir(path) of a tiny digits working directory, per framework
MAKE_WORKDIR = _workdir_makers()
