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


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    work = make_workdir(tmp_path_factory.mktemp("run"))
    proc = dopt(work, "-c", "scen.yaml")
    assert proc.returncode == 0, proc.stderr
    return work, proc


def header(script: Path) -> dict:
    values = {}
    for line in script.read_text().splitlines():
        if not line.startswith("# "):
            break
        key, value = line[2:].split(": ", 1)
        values[key] = json.loads(value) if key == "encoding" else float(value)
    return values


def test_run_writes_results_logs_and_checkpoints(finished_run):
    work, proc = finished_run
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


def test_tensorboard_generations_are_1_based_as_in_the_json(finished_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    work, _ = finished_run
    events = EventAccumulator(str(next(work.glob("log_*")))).Reload()
    steps = [e.step for e in events.Scalars("search/hypervolume")]
    doc = json.loads((work / "results" / "pareto.json").read_text())
    assert steps == [1, 2] == sorted({c["generation"] for c in doc["archive"]})


def test_result_script_exports_match_its_header(finished_run, tmp_path):
    from tests.backends.torch.onnx_macs import onnx_macs

    torch = require("torch")
    work, _ = finished_run
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


def test_result_script_runs_from_results_dir(finished_run, tmp_path):
    work, _ = finished_run
    results = tmp_path / "w" / "results"
    results.parent.mkdir()
    (results.parent / "user_module.py").write_text((work / "user_module.py").read_text())
    results.mkdir()
    script = work / "results" / "model_arch_result_1.py"
    (results / script.name).write_bytes(script.read_bytes())
    proc = subprocess.run([sys.executable, script.name], cwd=results, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "freshly initialised" in proc.stdout and (results / "model_arch_result_1.onnx").exists()


def test_same_seed_gives_identical_pareto_json(finished_run, tmp_path):
    work, _ = finished_run
    again = make_workdir(tmp_path / "again")
    proc = dopt(again, "-c", "scen.yaml")
    assert proc.returncode == 0, proc.stderr
    assert (again / "results" / "pareto.json").read_bytes() == (work / "results" / "pareto.json").read_bytes()


def test_flops_constraint(tmp_path):
    work = make_workdir(tmp_path, kind="flops", value=300000)
    proc = dopt(work, "-c", "scen.yaml", "--set", "scenario.strategy.searcher.generation_num=1")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((work / "results" / "pareto.json").read_text())
    assert doc["constraint"]["type"] == "flops" and doc["front"]
    assert all(doc["archive"][e["index"]]["flops"] <= 300000 for e in doc["front"])


def test_refuses_to_overwrite_an_earlier_run(finished_run):
    work, _ = finished_run
    before = (work / "results" / "pareto.json").read_bytes()
    proc = dopt(work, "-c", "scen.yaml")
    assert proc.returncode == 2
    assert "--overwrite" in proc.stderr and "Traceback" not in proc.stderr
    assert (work / "results" / "pareto.json").read_bytes() == before


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


@pytest.mark.parametrize(
    ("setup", "args", "words"),
    [
        (lambda w: (w / "user_module.py").unlink(), [], ["no user_module.py"]),
        (
            lambda w: (w / "scen.yaml").write_text((w / "scen.yaml").read_text().replace("pop_size", "pop_sise")),
            [],
            ["scen.yaml:", "pop_sise", "pop_size"],
        ),
        (
            lambda w: None,
            ["--set", "scenario.strategy.constraint.constraint_value=10"],
            ["constraint_value", "smallest subnet", "≥"],
        ),
        (
            lambda w: (w / "user_module.py").write_text(
                (w / "user_module.py").read_text().replace("def metrics_func", "def metric_func")
            ),
            [],
            ["UserModule.metrics_func", "metric_func"],
        ),
        (
            lambda w: (w / "user_module.py").write_text(
                (w / "user_module.py")
                .read_text()
                .replace(
                    'return torch.utils.data.TensorDataset(images, torch.from_numpy(data["labels"]))',
                    'return torch.utils.data.TensorDataset(images, images, torch.from_numpy(data["labels"]))',
                )
            ),
            [],
            ["dataset_define", "(inputs, labels)"],
        ),
        (lambda w: None, ["--bogus"], ["unrecognized arguments", "--help"]),
        (
            lambda w: None,
            [
                "--set",
                "scenario.strategy.constraint.constraint_type=latency",
                "--set",
                "scenario.strategy.constraint.processor_version=npu_v1",
            ],
            ["processor_version 'npu_v1'", "latency_func"],
        ),
        (
            lambda w: (w / "user_module.py").write_text(
                (w / "user_module.py").read_text().replace("nn.Linear(48, 10)", "nn.Linear(32, 10)")
            ),
            [],
            ["PostNet.forward failed", "filters[-1] = 48"],
        ),
        (
            lambda w: _edit(w, "return correct / total", "return {'accuracy': correct / total}"),
            [],
            ["metrics_func returned dict", "return a float"],
        ),
        (
            lambda w: _edit(w, "cross_entropy(logits, labels)", "cross_entropy(logits, labels, reduction='none')"),
            [],
            ["loss_func returned a tensor of shape (64,)", "scalar"],
        ),
        (
            lambda w: _edit(
                w,
                """return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optimizer.param_groups[0]["lr"], total_steps=self.epoch * steps_per_epoch
        )""",
                "return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer)",
            ),
            [],
            ["ReduceLROnPlateau", "step() needs arguments"],
        ),
        (lambda w: _edit(w, ".float().div(16.0)", ".double().div(16.0)"), [], ["torch.float64 inputs", ".float()"]),
    ],
)
def test_user_mistakes_exit_2_with_one_clear_line_and_write_nothing(tmp_path, setup, args, words):
    work = make_workdir(tmp_path)
    setup(work)
    before = sorted(p.name for p in work.iterdir())
    proc = dopt(work, "-c", "scen.yaml", *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr
    assert sorted(p.name for p in work.iterdir()) == before


def test_exception_in_user_code_exits_1_showing_the_users_frame_first(tmp_path):
    work = make_workdir(tmp_path)
    module = work / "user_module.py"
    module.write_text(
        module.read_text().replace(
            "return nn.functional.cross_entropy(logits, labels)", "raise ValueError('bad loss in my code')"
        )
    )
    proc = dopt(work, "-c", "scen.yaml")
    assert proc.returncode == 1
    first = proc.stderr.strip().splitlines()
    line = next(i for i, text in enumerate(first) if "error in user code" in text)
    assert "rehearsing" in first[line] and "bad loss in my code" in first[line]  # caught before training
    assert "user_module.py" in first[line + 2] and "loss_func" in first[line + 2]


def test_validate_checks_everything_and_writes_nothing(tmp_path):
    work = make_workdir(tmp_path)
    before = sorted(p.name for p in work.iterdir())
    proc = dopt(work, "validate", "-c", "scen.yaml")
    assert proc.returncode == 0, proc.stderr
    assert "distinct subnets" in proc.stdout and "smallest subnet" in proc.stdout and "largest subnet" in proc.stdout
    assert "scen.yaml: OK" in proc.stdout and "Warning" not in proc.stderr
    assert sorted(p.name for p in work.iterdir()) == before


def test_run_from_elsewhere_points_at_the_working_directory(tmp_path):
    work = make_workdir(tmp_path / "w")
    proc = dopt(tmp_path, "-c", "w/scen.yaml")
    assert proc.returncode == 2 and "--workdir" in proc.stderr and str(work) in proc.stderr


def test_lazy_postnet_layers_are_counted_after_the_dry_run(tmp_path):
    plain, lazy = make_workdir(tmp_path / "plain"), make_workdir(tmp_path / "lazy")
    _edit(lazy, "nn.Linear(48, 10)", "nn.LazyLinear(10)")
    # LazyLinear(10) on PreNet's 48 features becomes Linear(48, 10): the same 490 parameters, once
    # the dry run has materialised it; counted before, it would have none.
    assert _smallest_size(lazy) == _smallest_size(plain)


def test_verbosity_flags_may_come_before_a_command(tmp_path):
    work = make_workdir(tmp_path)
    proc = dopt(work, "-q", "validate", "-c", "scen.yaml")
    assert proc.returncode == 0 and "scen.yaml: OK" in proc.stdout, proc.stderr
    assert "checking the user module" not in proc.stderr  # -q took effect


def test_help_lists_every_command():
    proc = subprocess.run([sys.executable, "-m", "dopt", "--help"], capture_output=True, text=True)
    usage = proc.stdout.split("\n\n")[0]
    assert "dopt validate -c scen.yaml" in usage and "dopt init" in usage, usage


def _smallest_size(work: Path) -> int:
    proc = dopt(work, "validate", "-c", "scen.yaml")
    assert proc.returncode == 0, proc.stderr
    line = next(x for x in proc.stdout.splitlines() if x.startswith("size: smallest subnet"))
    return int(line.split("smallest subnet ")[1].split(", ")[0].replace(",", ""))


def test_a_search_that_finds_nothing_ends_with_a_banner_and_exit_3(tmp_path):
    """A constraint only the very smallest subnets meet: validate warns, the run warns before
    searching, and ends with exit 3 and a banner naming the smallest cost seen and the fix."""
    work = make_workdir(tmp_path)
    tight = ["--set", f"scenario.strategy.constraint.constraint_value={_smallest_size(work)}"]
    check = dopt(work, "validate", "-c", "scen.yaml", *tight)
    assert check.returncode == 0, check.stderr
    assert "of subnets drawn at random meet size" in check.stderr and "raise constraint_value" in check.stderr
    assert "tiny" in check.stdout
    proc = dopt(work, "-c", "scen.yaml", *tight)
    assert proc.returncode == 3, proc.stderr
    assert "NO RESULT: the Pareto front is empty" in proc.stdout and "the smallest seen had" in proc.stdout
    assert "--stage search --set scenario.strategy.constraint.constraint_value=" in proc.stdout
    assert "within the constraint" in proc.stderr and "best n/a" not in proc.stdout
    doc = json.loads((work / "results" / "pareto.json").read_text())
    assert doc["front"] == [] and doc["archive"] and not any(c["feasible"] for c in doc["archive"])
    assert not list((work / "results").glob("model_arch_result_*"))


def test_an_exception_in_user_code_during_validate_is_exit_2(tmp_path):
    work = make_workdir(tmp_path)
    _edit(
        work,
        "def dataset_define(self, dataset_dir, is_training):",
        "def dataset_define(self, dataset_dir, is_training):\n        raise OSError('cannot open my data')",
    )
    proc = dopt(work, "validate", "-c", "scen.yaml")
    assert proc.returncode == 2, proc.stderr
    assert "error in user code" in proc.stderr and "cannot open my data" in proc.stderr
    assert "user_module.py" in proc.stderr


def test_the_metric_is_named_as_the_user_module_names_it(tmp_path):
    work = make_workdir(tmp_path)
    _edit(work, "class UserModule:", 'class UserModule:\n    metric_name = "top1"')
    proc = dopt(work, "-c", "scen.yaml", "--set", "scenario.strategy.searcher.generation_num=1")
    assert proc.returncode == 0, proc.stderr
    assert "top1" in proc.stdout.split("Pareto front")[1].splitlines()[1]
    doc = json.loads((work / "results" / "pareto.json").read_text())
    assert doc["metric_name"] == "top1"
    assert "top1" in header(work / "results" / "model_arch_result_1.py")
    _edit(work, 'metric_name = "top1"', 'metric_name = "a: b"')
    bad = dopt(work, "validate", "-c", "scen.yaml")
    assert bad.returncode == 2 and "UserModule.metric_name" in bad.stderr


@pytest.fixture
def analysed(finished_run, tmp_path):
    work = tmp_path / "w"
    subprocess.run(["cp", "-r", str(finished_run[0]), str(work)], check=True)
    return work


def test_analyze_writes_the_figure_and_summary_and_reuses_evaluations(analysed):
    work = analysed
    proc = dopt(work, "analyze", "-c", "scen.yaml", "--samples", "12", "--split-by", "depth")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads((work / "results" / "space_analysis.json").read_text())
    assert doc["samples"] == len(doc["subnets"]) == 12 and doc["error"] == "1 - metric"
    assert "kernel" in doc["edf"] and doc["summary"] and doc["split"]["by"] == "depth"
    assert (work / "results" / "space_analysis.png").stat().st_size > 0
    # Subnets the search already evaluated are taken from its journal, not evaluated again.
    lines = (work / "checkpoints" / "results" / "journal.jsonl").read_text().splitlines()
    searched = {tuple(r["encoding"]) for r in map(json.loads, lines) if r["metric"] is not None}
    overlap = sum(tuple(s["encoding"]) in searched for s in doc["subnets"])
    assert f"search-space analysis of 12 subnets ({overlap} from earlier evaluations)" in proc.stdout
    # More samples: the first twelve are the same draws, taken from the analysis' own journal.
    more = dopt(work, "analyze", "-c", "scen.yaml", "--samples", "16")
    assert more.returncode == 0, more.stderr
    assert "search-space analysis of 16 subnets (12 from earlier evaluations)" in more.stdout


def test_an_interrupted_analysis_continues(analysed):
    import signal
    import time

    work = analysed
    journal = work / "checkpoints" / "space_analysis" / "journal.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dopt", "analyze", "-c", "scen.yaml", "--samples", "30"],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 300
    while not (journal.exists() and journal.read_bytes().count(b"\n") >= 3):
        assert proc.poll() is None and time.monotonic() < deadline
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = journal.read_bytes().count(b"\n")
    again = dopt(work, "analyze", "-c", "scen.yaml", "--samples", "30")
    assert again.returncode == 0, again.stderr
    reused = int(again.stdout.split("(")[1].split(" from")[0])
    assert reused >= done


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--samples", "0"], ["--samples 0", "at least 1"]),
        (["--cost-range", "9:1"], ["--cost-range 9:1", "LO ≤ HI"]),
        (["--cost-range", "1:2"], ["holds no subnet", "pick a range within"]),
        (["--split-by", "colour"], ["--split-by colour", "depth"]),
    ],
)
def test_analyze_mistakes_exit_2(analysed, args, words):
    proc = dopt(analysed, "analyze", "-c", "scen.yaml", *args)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, proc.stderr


def test_analyze_needs_a_trained_supernet(tmp_path):
    proc = dopt(make_workdir(tmp_path), "analyze", "-c", "scen.yaml")
    assert proc.returncode == 2 and "nothing to analyse" in proc.stderr, proc.stderr
