"""constraint_type: latency end to end, in both frameworks: the table, the run, the verified
results, the script's own measurement, the cache, latency_func and the mistakes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dopt.cli import main
from dopt.latency import timing
from tests.frameworks import MAKE_WORKDIR

LATENCY_KEYS = ("latency_ms", "latency_ms_predicted", "latency_threads", "latency_device")


# Whole runs in real processes; one xdist process runs the module, so its shared run is made once.
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("latency_run")]


@pytest.fixture(scope="module", autouse=True)
def cache(tmp_path_factory):
    """One table cache for this module, never the user's ~/.cache."""
    path = tmp_path_factory.mktemp("cache")
    old = os.environ.get("DOPT_CACHE_DIR")
    os.environ["DOPT_CACHE_DIR"] = str(path)
    yield path / "latency"
    if old is None:
        del os.environ["DOPT_CACHE_DIR"]
    else:
        os.environ["DOPT_CACHE_DIR"] = old


def _header(script: Path) -> dict:
    from dopt.results.header import read_header

    return read_header(script)


_FINISHED: dict[str, Path] = {}  # one run per framework, however pytest orders the tests


@pytest.fixture(scope="module")
def finished(framework, tmp_path_factory):
    """A finished latency run of the tiny digits directory (every subnet fits 50 ms)."""
    if framework in _FINISHED:
        return _FINISHED[framework]
    work = MAKE_WORKDIR[framework](tmp_path_factory.mktemp(f"latency_{framework}"), kind="latency", value=50)
    old = Path.cwd()
    os.chdir(work)
    try:
        # 6 of the 60 timing passes: this checks the bookkeeping of the numbers, not their noise.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(timing, "ROUNDS", 6)
            assert main(["-c", "scen.yaml"]) == 0
    finally:
        os.chdir(old)
    _FINISHED[framework] = work
    return work


def test_results_carry_measured_and_predicted_latency(finished, framework, cache):
    doc = json.loads((finished / "results" / "pareto.json").read_text())
    section = doc["latency"]
    assert section["source"] == "table" and section["constraint_ms"] == 50
    # TensorFlow keeps the thread pools of the first test in this process that started it.
    assert section["key"]["threads"] == 1 or framework == "tensorflow"
    assert section["held_out"]["subnets"] == 20
    assert Path(section["table"]).parent == cache
    assert len(section["results"]) == len(doc["front"]) > 0
    for n, result in enumerate(section["results"], start=1):
        header = _header(finished / "results" / f"model_arch_result_{n}.py")
        assert all(key in header for key in LATENCY_KEYS) and "latency_over_constraint" not in header
        assert header["latency_threads"] == section["key"]["threads"]
        assert header["latency_ms"] == pytest.approx(result["measured_ms"], rel=1e-3)
        assert header["latency_ms_predicted"] == pytest.approx(result["predicted_ms"], rel=1e-3)
        assert 0 < result["measured_ms"] <= 50 and not result["over_constraint"]
    # Every candidate has its predicted latency; the run keeps its table beside the checkpoints.
    assert all(r["latency_ms"] > 0 for r in doc["archive"])
    assert (finished / "checkpoints" / "latency_table.json").exists()


def test_result_script_prints_the_latency_it_measures(finished):
    out = subprocess.run(
        [sys.executable, "model_arch_result_1.py"],
        cwd=finished / "results",
        capture_output=True,
        text=True,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    line = next(line for line in out.stdout.splitlines() if line.startswith("latency at batch 1"))
    assert " 1 " in line.replace("(", " ") and "thread(s)" in line and "fastest of 300 timed calls" in line
    assert float(line.split("): ")[1].split(" ms")[0]) > 0


LATENCY_FUNC = """

def _latency_func(self, model):
    return {body}


UserModule.latency_func = _latency_func
"""


def _with_latency_func(work: Path, body: str) -> None:
    module = work / "user_module.py"
    module.write_text(module.read_text() + LATENCY_FUNC.format(body=body))
