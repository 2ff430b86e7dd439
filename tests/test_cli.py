"""The `dopt` command end to end on a tiny digits scenario, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.digits_workdir import make_workdir
from tests.frameworks import require
from tests.helpers import dopt

require("torch")


pytestmark = pytest.mark.slow  # a whole run in a real process, shared by the module


@pytest.fixture(scope="module")
def framework():
    """This module's runs are PyTorch's; `trained_run` is the session's shared one (tests/shared_runs.py)."""
    return "pytorch"


def header(script: Path) -> dict:
    values = {}
    for line in script.read_text().splitlines():
        if not line.startswith("# "):
            break
        key, value = line[2:].split(": ", 1)
        values[key] = json.loads(value) if key == "encoding" else float(value)
    return values


def test_run_writes_results_logs_and_checkpoints(trained_run):
    work, proc = trained_run.work, trained_run
    doc = json.loads((work / "results" / "pareto.json").read_text())
    assert doc["constraint"] == {"type": "size", "value": 20000}
    assert doc["seed"] == 7 and doc["front"]
    scripts = sorted((work / "results").glob("model_arch_result_*.py"))
    assert len(scripts) == len(doc["front"])
    for entry in doc["front"]:
        cand = doc["archive"][entry["index"]]
        assert cand["feasible"] and cand["size"] <= 20000
        h = header(work / "results" / f"model_arch_result_{entry['n']}.py")
        assert (h["model_param_size"], h["flops"], h["encoding"]) == (cand["size"], cand["flops"], cand["encoding"])
        assert h["accuracy"] == cand["metric"]
    for name in ("pareto.csv", "pareto.png"):
        assert (work / "results" / name).stat().st_size > 0
    assert (work / "checkpoints" / "supernet_final.pt").exists()
    logs = list(work.glob("log_*"))
    assert len(logs) == 1 and list(logs[0].glob("events.out.tfevents.*")) and (logs[0] / "dopt.log").exists()
    assert "Pareto front" in proc.stdout
    # No silent phase: every stage is announced, writing results shows progress.
    for line in (
        "dopt: checking the user module",
        "dopt: reading the first batch and dry-running PreNet/PostNet",
        "dopt: drawing the BN-calibration subset",
        "dopt: training the supernet",
        "dopt: searching",
        "dopt: writing results",
        "dopt: writing results: 1/",
        "largest subnet's metric",
    ):
        assert line in proc.stderr, line
    # TensorFlow, installed beside PyTorch, stays out of a PyTorch run (its start-up lines included).
    assert "absl" not in proc.stderr and "oneDNN" not in proc.stderr, proc.stderr
    assert not list(work.rglob("__pycache__")), "dopt must not write bytecode into the user's directory"


def test_tensorboard_generations_are_1_based_as_in_the_json(trained_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work = trained_run.work
    events = EventAccumulator(str(next(work.glob("log_*")))).Reload()
    steps = [e.step for e in events.Scalars("search/hypervolume")]
    doc = json.loads((work / "results" / "pareto.json").read_text())
    assert steps == [1, 2] == sorted({c["generation"] for c in doc["archive"]})


def test_result_script_exports_match_its_header(trained_run, tmp_path):
    from tests.backends.torch.onnx_macs import onnx_macs

    torch = require("torch")
    work = trained_run.work
    copy = tmp_path / "deploy"
    copy.mkdir()
    (copy / "user_module.py").write_text((work / "user_module.py").read_text())
    for script in sorted((work / "results").glob("model_arch_result_*.py")):
        for f in (script, script.with_name(script.stem + ".weights.pth")):
            (copy / f.name).write_bytes(f.read_bytes())
        proc = subprocess.run([sys.executable, script.name], cwd=copy, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, proc.stderr
        assert "loaded inherited weights" in proc.stdout
        h = header(script)
        ts = torch.jit.load(str(copy / f"{script.stem}.pt"))
        assert sum(p.numel() for p in ts.parameters() if p.requires_grad) == h["model_param_size"]
        macs = onnx_macs(str(copy / f"{script.stem}.onnx"))
        assert abs(macs - h["flops"]) <= 0.01 * h["flops"], (macs, h["flops"])
        assert list((copy / f"log_{script.stem}").glob("events.out.tfevents.*"))


def test_result_script_runs_from_results_dir(trained_run, tmp_path):
    work = trained_run.work
    results = tmp_path / "w" / "results"
    results.parent.mkdir()
    (results.parent / "user_module.py").write_text((work / "user_module.py").read_text())
    results.mkdir()
    script = work / "results" / "model_arch_result_1.py"
    (results / script.name).write_bytes(script.read_bytes())
    proc = subprocess.run([sys.executable, script.name], cwd=results, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "freshly initialised" in proc.stdout and (results / "model_arch_result_1.onnx").exists()


def test_help_and_version():
    proc = subprocess.run([sys.executable, "-m", "dopt", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "--config" in proc.stdout and "--set" in proc.stdout
    proc = subprocess.run([sys.executable, "-m", "dopt", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("dopt ")


def _edit(work: Path, old: str, new: str) -> None:
    module = work / "user_module.py"
    text = module.read_text()
    assert old in text, old
    module.write_text(text.replace(old, new))


def test_lazy_postnet_layers_are_counted_after_the_dry_run(tmp_path):
    plain, lazy = make_workdir(tmp_path / "plain"), make_workdir(tmp_path / "lazy")
    _edit(lazy, "nn.Linear(48, 10)", "nn.LazyLinear(10)")
    # LazyLinear(10) on PreNet's 48 features becomes Linear(48, 10): the same 490 parameters, once
    # the dry run has materialised it; counted before, it would have none.
    assert _smallest_size(lazy) == _smallest_size(plain)


def test_help_lists_every_command():
    proc = subprocess.run([sys.executable, "-m", "dopt", "--help"], capture_output=True, text=True)
    usage = proc.stdout.split("\n\n")[0]
    assert "dopt validate -c scen.yaml" in usage and "dopt init" in usage, usage


def _smallest_size(work: Path) -> int:
    proc = dopt(work, "validate", "-c", "scen.yaml")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("size: smallest subnet"))
    return int(line.split("smallest subnet ")[1].split(", ")[0].replace(",", ""))
