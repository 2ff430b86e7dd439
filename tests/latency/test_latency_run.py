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
from tests.frameworks import MAKE_WORKDIR, require

LATENCY_KEYS = ("latency_ms", "latency_ms_predicted", "latency_threads", "latency_device")


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


@pytest.fixture(scope="module")
def finished(framework, tmp_path_factory):
    """A finished latency run of the tiny digits directory (every subnet fits 50 ms)."""
    work = MAKE_WORKDIR[framework](tmp_path_factory.mktemp(f"latency_{framework}"), kind="latency", value=50)
    old = Path.cwd()
    os.chdir(work)
    try:
        assert main(["-c", "scen.yaml"]) == 0
    finally:
        os.chdir(old)
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


def test_validate_reuses_the_cached_table_and_another_thread_count_measures_a_new_one(
    finished, framework, capsys, monkeypatch
):
    monkeypatch.chdir(finished)
    assert main(["validate", "-c", "scen.yaml"]) == 0
    out = capsys.readouterr().out
    assert "latency: cached table" in out and "held-out subnets within ±10 %" in out
    if framework == "tensorflow":
        return  # its thread pools are fixed for this test process: another count needs a new process
    assert main(["validate", "-c", "scen.yaml", "--set", "scenario.strategy.constraint.latency_threads=2"]) == 0
    out = capsys.readouterr().out
    assert "table measured now" in out and "2 thread(s)" in out


def test_a_result_measured_over_the_constraint_is_flagged(tmp_path, monkeypatch, capsys):
    require("torch")
    from dopt.latency.source import LatencySource

    work = MAKE_WORKDIR["pytorch"](tmp_path / "work", kind="latency", value=50)
    monkeypatch.chdir(work)
    monkeypatch.setattr(LatencySource, "verify", lambda self, models, archs: [99.0] * len(models))
    assert main(["-c", "scen.yaml"]) == 0
    out = capsys.readouterr().out
    assert "OVER THE CONSTRAINT" in out and "measured over the latency constraint" in out
    header = _header(work / "results" / "model_arch_result_1.py")
    assert header["latency_ms"] == 99.0 and header["latency_over_constraint"] is True
    results = json.loads((work / "results" / "pareto.json").read_text())["latency"]["results"]
    assert all(r["over_constraint"] and r["measured_ms"] == 99.0 for r in results)


LATENCY_FUNC = """

def _latency_func(self, model):
    return {body}


UserModule.latency_func = _latency_func
"""


def _with_latency_func(work: Path, body: str) -> None:
    module = work / "user_module.py"
    module.write_text(module.read_text() + LATENCY_FUNC.format(body=body))


def test_latency_func_replaces_the_table_for_another_device(tmp_path, monkeypatch, cache):
    require("torch")
    work = MAKE_WORKDIR["pytorch"](tmp_path / "work", kind="latency", value=30)
    (work / "scen.yaml").write_text(
        (work / "scen.yaml")
        .read_text()
        .replace("constraint_value: 30", "constraint_value: 30\n      processor_version: npu_v1")
    )
    _with_latency_func(work, "sum(p.numel() for p in model.parameters()) / 1000")
    monkeypatch.chdir(work)
    before = set(cache.glob("*")) if cache.exists() else set()
    assert main(["-c", "scen.yaml"]) == 0
    doc = json.loads((work / "results" / "pareto.json").read_text())
    assert doc["latency"]["source"] == "latency_func"
    for record in doc["archive"]:
        assert record["latency_ms"] == pytest.approx(record["size"] / 1000)
    header = _header(work / "results" / "model_arch_result_1.py")
    assert header["latency_ms"] == pytest.approx(header["model_param_size"] / 1000)
    assert (set(cache.glob("*")) if cache.exists() else set()) == before, "no table is measured"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("-1.0", ["latency_func returned -1.0 for subnet", "expected milliseconds > 0"]),
        ("'fast'", ["latency_func returned 'fast'"]),
        ("1 / 0", ["latency_func raised ZeroDivisionError", "on subnet"]),
    ],
)
def test_a_wrong_latency_func_is_exit_2_naming_the_subnet(tmp_path, monkeypatch, capsys, body, words):
    require("torch")
    work = MAKE_WORKDIR["pytorch"](tmp_path / "work", kind="latency", value=30)
    _with_latency_func(work, body)
    monkeypatch.chdir(work)
    before = sorted(work.rglob("*"))
    assert main(["-c", "scen.yaml"]) == 2
    error = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dopt: error:")]
    assert len(error) == 1 and all(w in error[0] for w in words), error
    assert sorted(work.rglob("*")) == before


def test_constraint_below_the_fastest_subnet_names_its_latency(tmp_path, monkeypatch, capsys):
    require("torch")
    work = MAKE_WORKDIR["pytorch"](tmp_path / "work", kind="latency", value=0.0001)
    monkeypatch.chdir(work)
    before = sorted(work.rglob("*"))
    assert main(["-c", "scen.yaml"]) == 2
    [error] = [line for line in capsys.readouterr().err.splitlines() if line.startswith("dopt: error:")]
    assert "below the fastest subnet's predicted latency (" in error and " ms, PreNet and PostNet included" in error
    assert "Fix: set constraint_value ≥ 0." in error
    assert sorted(work.rglob("*")) == before
