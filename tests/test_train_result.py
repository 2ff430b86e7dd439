"""Training a result fully: `dopt train` and `model_arch_result_N.py --train` (docs/training-a-result.md)."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from tests import helpers

WEIGHTS = {"pytorch": ".weights.pth", "tensorflow": ".weights.h5"}


run = functools.partial(helpers.python, threads=1)
dopt = functools.partial(helpers.dopt, threads=1)


pytestmark = pytest.mark.slow  # whole runs in real processes (docs/contributing.md#running-the-tests)


@pytest.fixture
def work(trained_run, tmp_path):
    """A copy of the session's shared searched run (tests/shared_runs.py)."""
    return helpers.copy_workdir(trained_run.work, tmp_path / "w")


def test_script_trains_then_loads_and_exports_the_trained_weights(work, framework):
    results = work / "results"
    proc = run(work, "results/model_arch_result_1.py", "--train", "2")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((results / "model_arch_result_1.trained.json").read_text())
    assert record["epochs"] == 2 and len(record["per_epoch"]) == 2 and not record["from_scratch"]
    assert record["after"] == record["per_epoch"][-1] and record["metric_name"] == "accuracy"
    header = float(results.joinpath("model_arch_result_1.py").read_text().split("\n")[0].split(": ")[1])
    assert record["header_metric"] == header
    # One epoch of full training lifts the tiny demo far above its one-epoch supernet metric.
    assert record["after"] > record["before"], record
    assert "training raised it" in proc.stdout
    assert (results / f"model_arch_result_1.trained{WEIGHTS[framework]}").exists()
    assert "loaded trained weights" in proc.stdout  # the script went on to export with them
    again = run(work, "results/model_arch_result_1.py")
    assert again.returncode == 0 and "loaded trained weights" in again.stdout, again.stderr


@pytest.mark.parametrize("framework", ["pytorch"], indirect=True)  # TensorFlow's: the script's own run above
def test_exports_carry_the_trained_weights(work, framework):
    import torch

    proc = dopt(work, "train", "-c", "scen.yaml", "--result", "1", "--epochs", "1")
    assert proc.returncode == 0, proc.stderr
    exported = run(work, "results/model_arch_result_1.py")
    assert exported.returncode == 0, exported.stderr
    sys.path.insert(0, str(work))
    stale = sys.modules.pop("user_module", None)  # another test's, imported in this process before
    try:
        from dopt.backends.scripts import load_script

        script = load_script(work / "results" / "model_arch_result_1.py")
        trained, inherited = script.build_model(), script.build_model()
        trained.load_state_dict(torch.load(work / "results" / "model_arch_result_1.trained.weights.pth"))
        inherited.load_state_dict(torch.load(work / "results" / "model_arch_result_1.weights.pth"))
    finally:
        sys.path.remove(str(work))
        sys.modules.pop("user_module", None)
        if stale is not None:
            sys.modules["user_module"] = stale
    x = torch.randn(3, 1, 8, 8)
    scripted = torch.jit.load(str(work / "model_arch_result_1.pt")).eval()
    with torch.no_grad():
        out = scripted(x)
        assert torch.allclose(out, trained.eval()(x), atol=1e-5)
        assert not torch.allclose(out, inherited.eval()(x), atol=1e-3)


def test_kill_during_training_then_resume_equals_an_uninterrupted_training(work, tmp_path, framework):
    twin = tmp_path / "twin"
    subprocess.run(["cp", "-r", str(work), str(twin)], check=True)
    args = ["train", "-c", "scen.yaml", "--result", "1", "--epochs", "3"]
    whole = dopt(twin, *args)
    assert whole.returncode == 0, whole.stderr
    ckpt = work / "checkpoints" / "train_model_arch_result_1"
    suffix = {"pytorch": ".pt", "tensorflow": ".weights.npz"}[framework]
    proc = subprocess.Popen(
        [sys.executable, "-m", "dopt", *args],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    deadline = time.monotonic() + 300
    while not (ckpt / f"epoch_1{suffix}").exists():
        assert proc.poll() is None and time.monotonic() < deadline, "the kill point was never reached"
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (work / "results" / "model_arch_result_1.trained.json").exists(), "killed too late"
    refused = dopt(work, *args)
    assert refused.returncode == 2 and "--resume" in refused.stderr
    resumed = dopt(work, *args, "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming the training of model_arch_result_1.py after epoch" in resumed.stderr
    a, b = (json.loads((w / "results" / "model_arch_result_1.trained.json").read_text()) for w in (work, twin))
    assert np.allclose(a["per_epoch"], b["per_epoch"], atol=1e-6), (a, b)
    done = dopt(work, *args, "--resume")
    assert done.returncode == 0 and "nothing to resume" in done.stdout


def test_from_scratch(work):
    proc = dopt(work, "train", "-c", "scen.yaml", "--result", "1", "--epochs", "1", "--from-scratch")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((work / "results" / "model_arch_result_1.trained.json").read_text())
    assert record["from_scratch"] and "from scratch" in proc.stdout


@pytest.mark.parametrize("framework", ["pytorch"], indirect=True)  # the core decides these, once for both
@pytest.mark.parametrize(
    ("args", "edit", "words"),
    [
        (["--result", "99"], False, ["--result 99", "model_arch_result_99.py", "results 1"]),
        (["--result", "1", "--epochs", "0"], False, ["--epochs 0", "at least 1"]),
        (["--result", "1", "--resume"], False, ["nothing to resume"]),
        (["--result", "1"], True, ["another user_module.py", "hashes"]),
    ],
)
def test_mistakes_exit_2(work, framework, args, edit, words):
    if edit:
        module = work / "user_module.py"
        module.write_text(module.read_text() + "\n# edited\n")
    proc = dopt(work, "train", "-c", "scen.yaml", *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
