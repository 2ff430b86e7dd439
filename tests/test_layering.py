"""The package's layering rules, checked: a framework-free core, and types that hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.frameworks import require

ROOT = Path(__file__).resolve().parents[1]


def test_the_core_never_imports_a_framework():
    code = (
        "import sys\n"
        "import dopt.cli, dopt.run, dopt.search, dopt.space, dopt.costs, dopt.archive, dopt.results.plot, "
        "dopt.scenario, dopt.user_module, dopt.backends.base\n"
        "bad = sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules)\n"
        "print(bad)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_mypy_is_clean():
    require("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy", "dopt"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
