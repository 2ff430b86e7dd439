"""The core and the fake backend run, search, analyse and measure latency without importing a
framework: checked in a fresh interpreter, since other test modules of a session import them."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

FRAMEWORKS = ("torch", "tensorflow", "keras", "jax")

SCRIPT = textwrap.dedent(
    """
    import sys
    from pathlib import Path

    from tests.fake import installed, make_workdir, run_dopt

    here = Path(sys.argv[1])
    one = ("--set", "scenario.strategy.searcher.generation_num=1")
    with installed(here / "cache"):
        work = make_workdir(here / "size")
        codes = [run_dopt(work, "-c", "scen.yaml", *one).code]
        codes.append(run_dopt(work, "analyze", "-c", "scen.yaml", "--samples", "4").code)
        codes.append(run_dopt(make_workdir(here / "latency", "latency", 0.2), "-c", "scen.yaml", *one).code)
    print(codes, sorted({name.split(".")[0] for name in sys.modules} & set(sys.argv[2:])))
    """
)


def test_a_fake_run_imports_no_framework(tmp_path):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path), *FRAMEWORKS],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[-1] == "[0, 0, 0] []"
