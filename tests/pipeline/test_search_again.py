"""`dopt --stage search` (docs/cli.md#commands: train once, search many): another constraint searched
on the trained supernet, into its own results folder, resumable, refused or replaced like a run."""

from __future__ import annotations

from tests.fake.outputs import RUN, journal, listing, pareto

SEARCH = ("-c", "scen.yaml", "--stage", "search")
TIGHTER = ("--set", "scenario.strategy.constraint.constraint_value=4000")


def test_another_constraint_is_searched_without_training_into_results_size_n(finished, finished_run, dopt):
    final = (finished_run / "checkpoints" / "supernet_final.fake.npz").read_bytes()
    ran = dopt(finished_run, *SEARCH, *TIGHTER)  # the run's --set option is re-applied by itself
    assert ran.code == 0, ran.err
    doc = pareto(finished_run, "results_size_4000")
    assert doc["constraint"] == {"type": "size", "value": 4000} and doc["front"]
    assert doc["overrides"] == [RUN[-1], TIGHTER[1]]
    assert all(doc["archive"][e["index"]]["size"] <= 4000 for e in doc["front"])
    assert len(list((finished_run / "results_size_4000").glob("model_arch_result_*.py"))) == len(doc["front"])
    assert "no training step" in ran.err and "supernet trained" not in ran.err
    assert (finished_run / "checkpoints" / "supernet_final.fake.npz").read_bytes() == final
    assert pareto(finished_run) == pareto(finished[0])  # the run's own results are untouched
    assert "results: results_size_4000/" in ran.out


def test_a_second_search_into_one_folder_is_refused_and_overwrite_replaces_only_it(finished_run, dopt):
    assert dopt(finished_run, *SEARCH, *TIGHTER).code == 0
    first = pareto(finished_run, "results_size_4000")
    before = listing(finished_run)
    again = dopt(finished_run, *SEARCH, *TIGHTER)
    assert again.code == 2 and "results_size_4000/ of an earlier search exists" in again.err
    assert "--resume" in again.err and "--overwrite" in again.err and "--results" in again.err
    assert listing(finished_run) == before
    (finished_run / "results_size_4000" / ".pareto.json.123.abcd.tmp").write_text("a torn atomic write")
    replaced = dopt(finished_run, *SEARCH, *TIGHTER, "--overwrite")
    assert replaced.code == 0, replaced.err
    assert not (finished_run / "results_size_4000" / ".pareto.json.123.abcd.tmp").exists()
    assert pareto(finished_run, "results_size_4000") == first
    assert (finished_run / "results" / "pareto.json").exists() and (finished_run / "checkpoints" / "run.json").exists()


def test_a_search_into_a_named_folder_by_another_cost_kind(finished_run, dopt):
    flops = ["--set", "scenario.strategy.constraint.constraint_type=flops"]
    flops += ["--set", "scenario.strategy.constraint.constraint_value=9000"]
    ran = dopt(finished_run, *SEARCH, "--results", "by_flops", *flops)
    assert ran.code == 0, ran.err
    doc = pareto(finished_run, "by_flops")
    assert doc["constraint"] == {"type": "flops", "value": 9000} and doc["front"]
    assert all(c["flops"] <= 9000 for c in doc["archive"] if c["feasible"])
    assert any(c["flops"] > 9000 for c in doc["archive"])  # the constraint took effect
    assert (finished_run / "checkpoints" / "by_flops" / "journal.jsonl").exists()


def test_an_interrupted_search_resumes_with_its_own_set_options(finished_run, dopt, fake):
    """--stage search --resume re-applies the search's --set options (recorded in its state), not
    only the run's, and ends as the uninterrupted search."""
    assert dopt(finished_run, *SEARCH, "--results", "whole", *TIGHTER).code == 0
    fake.interrupt("metric", 5)
    stopped = dopt(finished_run, *SEARCH, "--results", "again", *TIGHTER)
    assert stopped.code == 130, stopped.err
    resumed = dopt(finished_run, *SEARCH, "--results", "again", "--resume")
    assert resumed.code == 0, resumed.err
    assert f"--set {TIGHTER[1]}" in resumed.err.split("re-applying the --set options")[1].splitlines()[0]
    assert pareto(finished_run, "again") == pareto(finished_run, "whole")
    assert journal(finished_run, "again") == journal(finished_run, "whole")


def test_searching_again_needs_a_trained_supernet(workdir, dopt, fake):
    work = workdir()
    ran = dopt(work, *SEARCH)
    assert ran.code == 2 and "nothing to search again" in ran.err, ran.err
    fake.interrupt("epoch", 1)
    assert dopt(work, *RUN).code == 130
    ran = dopt(work, *SEARCH)
    assert ran.code == 2 and "holds no trained supernet (supernet_final)" in ran.err, ran.err
    assert "dopt -c scen.yaml --resume" in ran.err
