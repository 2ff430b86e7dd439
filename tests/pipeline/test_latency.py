"""constraint_type: latency through the core (dopt/latency, docs/latency.md) with the fake's simulated
meter: the table built and cached, every result verified, the over-constraint flag, latency_func."""

from __future__ import annotations

import pytest

from dopt.latency.source import LatencySource
from dopt.results.header import read_header
from tests.fake.outputs import listing, pareto

LATENCY_KEYS = ("latency_ms", "latency_ms_predicted", "latency_threads", "latency_device")


def test_a_latency_run_predicts_with_a_cached_table_and_verifies_every_result(workdir, dopt, tmp_path):
    work = workdir(kind="latency", value=0.2)
    ran = dopt(work, "-c", "scen.yaml")
    assert ran.code == 0, ran.err
    doc = pareto(work)
    section = doc["latency"]
    assert section["source"] == "table" and section["constraint_ms"] == 0.2
    assert section["key"]["device"] == "cpu: simulated" and section["held_out"]["subnets"] == 20
    assert section["table"].startswith(str(tmp_path / "cache" / "latency"))
    assert len(section["results"]) == len(doc["front"]) > 0
    for n, result in enumerate(section["results"], start=1):
        header = read_header(work / "results" / f"model_arch_result_{n}.py")
        assert all(key in header for key in LATENCY_KEYS) and "latency_over_constraint" not in header
        assert header["latency_ms"] == pytest.approx(result["measured_ms"], rel=1e-3)
        assert result["predicted_ms"] == pytest.approx(result["measured_ms"], rel=1e-6)  # the simulation is linear
        assert not result["over_constraint"]
    assert all(r["latency_ms"] > 0 for r in doc["archive"]) and (work / "checkpoints" / "latency_table.json").exists()
    assert "measuring the latency table" in ran.err
    check = dopt(work, "validate", "-c", "scen.yaml")
    assert check.code == 0 and "latency: cached table" in check.out, check.err
    other = dopt(work, "validate", "-c", "scen.yaml", "--set", "scenario.strategy.constraint.latency_threads=2")
    assert other.code == 0 and "table measured now" in other.out and "2 thread(s)" in other.out


def test_a_result_measured_over_the_constraint_is_flagged(workdir, dopt, monkeypatch):
    work = workdir(kind="latency", value=0.2)
    monkeypatch.setattr(LatencySource, "verify", lambda self, models, archs: [9.0] * len(models))
    ran = dopt(work, "-c", "scen.yaml")
    assert ran.code == 0, ran.err
    assert "OVER THE CONSTRAINT" in ran.out and "measured over the latency constraint" in ran.out
    header = read_header(work / "results" / "model_arch_result_1.py")
    assert header["latency_ms"] == 9.0 and header["latency_over_constraint"] is True
    assert all(r["over_constraint"] and r["measured_ms"] == 9.0 for r in pareto(work)["latency"]["results"])


LATENCY_FUNC = """

def _latency_func(self, model):
    return {body}


UserModule.latency_func = _latency_func
"""

SEARCHED_SIZE = "sum(p.size for layer in model.layers for p in layer.parameters()) / 1000"


def _with_latency_func(work, body: str) -> None:
    module = work / "user_module.py"
    module.write_text(module.read_text() + LATENCY_FUNC.format(body=body))


def test_latency_func_replaces_the_table_for_another_device(workdir, dopt, tmp_path):
    work = workdir(kind="latency", value=5)
    scen = work / "scen.yaml"
    scen.write_text(
        scen.read_text().replace("constraint_value: 5", "constraint_value: 5\n      processor_version: npu_v1")
    )
    _with_latency_func(work, SEARCHED_SIZE)
    ran = dopt(work, "-c", "scen.yaml")
    assert ran.code == 0, ran.err
    doc = pareto(work)
    assert doc["latency"]["source"] == "latency_func"
    fixed = 16 * 8 + 4 * 24 + 4  # PreNet's and PostNet's arrays
    for record in doc["archive"]:
        assert record["latency_ms"] == pytest.approx((record["size"] - fixed) / 1000)
    header = read_header(work / "results" / "model_arch_result_1.py")
    assert header["latency_ms"] == pytest.approx((header["model_param_size"] - fixed) / 1000)
    assert not (tmp_path / "cache").exists(), "no table is measured"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("-1.0", ["latency_func returned -1.0 for subnet", "expected milliseconds > 0"]),
        ("'fast'", ["latency_func returned 'fast'"]),
        ("1 / 0", ["latency_func raised ZeroDivisionError", "on subnet"]),
    ],
)
def test_a_wrong_latency_func_is_exit_2_naming_the_subnet(workdir, dopt, body, words):
    work = workdir(kind="latency", value=5)
    _with_latency_func(work, body)
    before = listing(work)
    ran = dopt(work, "-c", "scen.yaml")
    assert ran.code == 2, ran.err
    [error] = [line for line in ran.err.splitlines() if line.startswith("dopt: error:")]
    assert all(w in error for w in words), error
    assert listing(work) == before


def test_a_constraint_below_the_fastest_subnet_names_its_predicted_latency(workdir, dopt):
    work = workdir(kind="latency", value=0.0001)
    before = listing(work)
    ran = dopt(work, "-c", "scen.yaml")
    assert ran.code == 2, ran.err
    [error] = [line for line in ran.err.splitlines() if line.startswith("dopt: error:")]
    assert "below the fastest subnet's predicted latency (" in error and " ms, PreNet and PostNet included" in error
    assert "Fix: set constraint_value ≥ 0." in error
    assert listing(work) == before
