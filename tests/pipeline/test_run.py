"""A whole `dopt -c scen.yaml` run (dopt/pipeline/run.py, dopt/commands/run.py): its outputs, its
determinism, what it refuses and how it ends without a result."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dopt.results.header import read_header
from tests.fake.outputs import RUN, journal, listing, pareto, weights


def test_a_run_writes_results_scripts_checkpoints_and_reports_1_based_generations(finished):
    work, ran, control = finished
    doc = pareto(work)
    assert doc["constraint"] == {"type": "size", "value": 6000}
    assert doc["seed"] == 7 and doc["framework"] == "pytorch" and doc["stopped_by"] == "generations"
    assert doc["overrides"] == [RUN[-1]] and len(doc["front"]) >= 2
    scripts = sorted((work / "results").glob("model_arch_result_*.py"))
    assert [s.name for s in scripts] == [f"model_arch_result_{n}.py" for n in range(1, len(doc["front"]) + 1)]
    for entry in doc["front"]:
        cand = doc["archive"][entry["index"]]
        assert cand["feasible"] and cand["size"] <= 6000
        header = read_header(work / "results" / f"model_arch_result_{entry['n']}.py")
        assert header == {
            "accuracy": cand["metric"],
            "model_param_size": cand["size"],
            "flops": cand["flops"],
            "encoding": cand["encoding"],
        }
        assert (work / "results" / f"model_arch_result_{entry['n']}.weights.npz").exists()
    with open(work / "results" / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(doc["archive"]) and sum(bool(r["front_n"]) for r in rows) == len(doc["front"])
    assert (work / "results" / "pareto.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in (work / "checkpoints").glob("supernet_*")) == [
        "supernet_epoch_1.fake.npz",
        "supernet_epoch_1.fake.npz.sha256",  # each checkpoint's digest (docs/resume.md#corrupt-checkpoints)
        "supernet_epoch_2.fake.npz",
        "supernet_epoch_2.fake.npz.sha256",
        "supernet_final.fake.npz",
        "supernet_final.fake.npz.sha256",
    ]
    # One journal line per distinct candidate: nothing evaluated twice, infeasible ones never scored.
    lines = journal(work)
    assert [r["encoding"] for r in lines] == [c["encoding"] for c in doc["archive"]]
    assert all((r["metric"] is None) == (r["size"] > 6000) for r in lines)
    assert "Pareto front" in ran.out and f"({len(doc['front'])} of {len(doc['archive'])} distinct" in ran.out
    for stage in ("checking the user module", "training the supernet", "searching", "writing results"):
        assert f"dopt: {stage}\n" in ran.err, stage
    # Generations are 1-based in TensorBoard as in pareto.json.
    [writer] = control.writers
    assert [step for step, _ in writer.scalars["search/hypervolume"]] == [1, 2, 3, 4]
    assert sorted({c["generation"] for c in doc["archive"]}) == [1, 2, 3, 4]
    assert len(writer.scalars["train/loss"]) == 12 and writer.closed
    assert not list(work.rglob("__pycache__")), "dopt must not write bytecode into the user's directory"


def test_a_result_script_rebuilds_its_model_on_its_own(finished, tmp_path):
    """The script needs numpy and user_module.py only: no dopt, no framework of the fake's."""
    work = finished[0]
    deploy = tmp_path / "deploy"
    deploy.mkdir()
    (deploy / "user_module.py").write_bytes((work / "user_module.py").read_bytes())
    for name in ("model_arch_result_1.py", "model_arch_result_1.weights.npz"):
        (deploy / name).write_bytes((work / "results" / name).read_bytes())
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run(
        [sys.executable, "-I", "model_arch_result_1.py"], cwd=deploy, capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "loaded inherited weights" in proc.stdout and "differs" not in proc.stdout
    fixed = 16 * 8 + 4 * 24 + 4  # PreNet's and PostNet's arrays (tests/fake/workdir.py)
    size = read_header(deploy / "model_arch_result_1.py")["model_param_size"]
    assert f"searched layers: {size - fixed} parameters; outputs of shape (2, 4)" in proc.stdout


def test_the_same_seed_gives_the_same_run(finished, workdir, dopt):
    again = workdir()
    ran = dopt(again, *RUN)
    assert ran.code == 0, ran.err
    work = finished[0]
    assert (again / "results" / "pareto.json").read_bytes() == (work / "results" / "pareto.json").read_bytes()
    assert journal(again) == journal(work)
    final = "checkpoints/supernet_final.fake.npz"
    mine, theirs = weights(again / final), weights(work / final)
    assert mine.keys() == theirs.keys() and all(np.array_equal(mine[k], theirs[k]) for k in mine)
    other = workdir("other")
    different = dopt(other, *RUN, "--set", "scenario.strategy.searcher.seed=8")
    assert different.code == 0, different.err
    assert pareto(other)["archive"] != pareto(work)["archive"]


def test_a_new_run_refuses_the_outputs_of_an_earlier_one(finished_run, dopt):
    before = listing(finished_run)
    ran = dopt(finished_run, *RUN)
    assert ran.code == 2 and ran.err.startswith("dopt: error: checkpoints/, log_")
    for word in ("--resume", "--overwrite", "--workdir"):
        assert word in ran.err
    assert listing(finished_run) == before


def test_overwrite_replaces_the_earlier_run(finished_run, finished, dopt):
    (finished_run / "checkpoints" / "supernet_epoch_9.npz").write_text("from the earlier run")
    ran = dopt(finished_run, *RUN, "--overwrite")
    assert ran.code == 0, ran.err
    assert not (finished_run / "checkpoints" / "supernet_epoch_9.npz").exists()
    assert "--overwrite: removing" in ran.err
    assert pareto(finished_run) == pareto(finished[0])
    assert len(list(finished_run.glob("log_*"))) == 1


def _smallest_size(workdir_path: Path, dopt) -> int:
    ran = dopt(workdir_path, "validate", "-c", "scen.yaml")
    assert ran.code == 0, ran.err
    line = next(x for x in ran.out.splitlines() if x.startswith("size: smallest subnet"))
    return int(line.split("smallest subnet ")[1].split(", ")[0].replace(",", ""))


def test_a_search_that_finds_nothing_within_the_constraint_exits_3(workdir, dopt):
    work = workdir()
    tight = ["--set", f"scenario.strategy.constraint.constraint_value={_smallest_size(work, dopt)}"]
    check = dopt(work, "validate", "-c", "scen.yaml", *tight)
    assert check.code == 0 and "tiny" in check.out and "raise constraint_value" in check.err, check.err
    ran = dopt(work, "-c", "scen.yaml", *tight)
    assert ran.code == 3, ran.err
    assert "NO RESULT: the Pareto front is empty: none of" in ran.out and "the smallest seen had" in ran.out
    assert "--stage search --set scenario.strategy.constraint.constraint_value=" in ran.out
    assert "of subnets drawn at random meet size" in ran.err  # warned before training
    doc = pareto(work)
    assert doc["front"] == [] and doc["archive"] and not any(c["feasible"] for c in doc["archive"])
    assert not list((work / "results").glob("model_arch_result_*"))


def test_a_metric_that_is_always_nan_exits_3_naming_the_metric(workdir, dopt):
    work = workdir()
    module = work / "user_module.py"
    module.write_text(module.read_text().replace("return correct / total", "return float('nan')"))
    ran = dopt(work, "-c", "scen.yaml")
    assert ran.code == 3, ran.err
    assert "the metric of every one was NaN or infinite" in ran.out
    assert all(c["metric"] is None for c in pareto(work)["archive"])


@pytest.mark.parametrize(
    ("how", "words"),
    [
        ("scen.yaml", ["scen.yaml:10:", "constraint_value", "smallest subnet's size (2068 parameters", "≥ 2068"]),
        ("--set", ["--set scenario.strategy.constraint.constraint_value=100", "≥ 2068"]),
    ],
)
def test_a_constraint_below_the_smallest_subnet_is_exit_2_naming_the_key(workdir, dopt, how, words):
    work = workdir(value=100 if how == "scen.yaml" else 6000)
    args = ["--set", "scenario.strategy.constraint.constraint_value=100"] if how == "--set" else []
    before = listing(work)
    ran = dopt(work, "-c", "scen.yaml", *args)
    assert ran.code == 2 and "Traceback" not in ran.err
    [line] = [x for x in ran.err.splitlines() if x.startswith("dopt: error:")]
    for word in words:
        assert word in line, line
    assert listing(work) == before


def test_the_metric_is_named_as_the_user_module_names_it(workdir, dopt):
    work = workdir()
    module = work / "user_module.py"
    module.write_text(module.read_text().replace("class UserModule:", 'class UserModule:\n    metric_name = "top1"'))
    ran = dopt(work, "-c", "scen.yaml", "--set", "scenario.strategy.searcher.generation_num=1")
    assert ran.code == 0, ran.err
    assert ran.out.split("Pareto front")[1].splitlines()[1].split()[1] == "top1"
    assert pareto(work)["metric_name"] == "top1"
    assert "top1" in read_header(work / "results" / "model_arch_result_1.py")
    hostile = [
        (repr(s), ["expected a short printable text"]) for s in ("a\x00b", "a\x0cb", "a\x85b", "a\u2028b", "a\ud800")
    ]
    cases = [('"a: b"', ["metric_name is 'a: b'"]), ('"flops"', ["'flops' is also a key of every result"]), *hostile]
    for bad, words in cases:
        module.write_text(module.read_text().replace('metric_name = "top1"', f"metric_name = {bad}"))
        refused = dopt(work, "validate", "-c", "scen.yaml")
        assert refused.code == 2 and "UserModule.metric_name" in refused.err, refused.err
        assert all(w in refused.err for w in words), refused.err
        module.write_text(module.read_text().replace(f"metric_name = {bad}", 'metric_name = "top1"'))


def test_a_run_records_its_overrides(finished):
    work, ran, _ = finished
    record = json.loads((work / "checkpoints" / "run.json").read_text())
    assert record["overrides"] == [RUN[-1]] == pareto(work)["overrides"]
    assert f"overrides: --set {RUN[-1]}" in ran.err
