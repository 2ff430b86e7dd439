"""`dopt --resume` (dopt/pipeline/plan.py, train.py, search.py; docs/resume.md): an interrupted run
resumed ends as an uninterrupted one, recorded --set options are re-applied, a finished search is
extended, torn files are fallen back from, checkpoints of another scenario are refused."""

from __future__ import annotations

import errno
import json
import shutil
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from dopt.pipeline import search
from tests.fake.outputs import RUN, journal, listing, pareto, weights

FINAL = "checkpoints/supernet_final.fake.npz"
STATE = "checkpoints/results/search_state.json"


def _after_generation(monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    """Ctrl-C right after generation ``n``'s state is saved (once)."""
    real, armed = search.save_state, [True]

    def save_then_stop(s: Any, archive: Any, generations: int, result: Any) -> None:
        real(s, archive, generations, result)
        if generations == n and result is None and armed:
            armed.clear()
            raise KeyboardInterrupt

    monkeypatch.setattr(search, "save_state", save_then_stop)


# where the run is interrupted: (how, what the resumed run says)
INTERRUPTIONS: dict[str, tuple[Callable[..., None], list[str]]] = {
    "during-training": (lambda fake, mp: fake.interrupt("epoch", 1), ["resuming supernet training after epoch 1 of 2"]),
    "between-generations": (lambda fake, mp: _after_generation(mp, 2), ["supernet already trained"]),
    "within-a-generation": (lambda fake, mp: fake.interrupt("metric", 9), ["supernet already trained"]),
}


@pytest.mark.parametrize("where", list(INTERRUPTIONS))
def test_an_interrupted_run_resumed_ends_as_an_uninterrupted_one(finished, workdir, dopt, fake, monkeypatch, where):
    interrupt, words = INTERRUPTIONS[where]
    work = workdir()
    interrupt(fake, monkeypatch)
    stopped = dopt(work, *RUN)
    assert stopped.code == 130 and "dopt: interrupted; continue with --resume" in stopped.err, stopped.err
    assert not (work / "results").exists()
    done = len(journal(work)) if (work / "checkpoints" / "results" / "journal.jsonl").exists() else 0
    if where == "between-generations":
        state = json.loads((work / STATE).read_text())
        assert state["generations"] == 2 and not state["finished"] and done == 12
    resumed = dopt(work, "-c", "scen.yaml", "--resume")  # the run's --set option is re-applied by itself
    assert resumed.code == 0, resumed.err
    assert f"re-applying the --set options recorded with the checkpoints: --set {RUN[-1]}" in resumed.err
    for word in words + ([f"journal: {done} evaluated candidates reused"] if done else []):
        assert word in resumed.err, word
    reference = finished[0]
    assert (work / "results/pareto.json").read_bytes() == (reference / "results/pareto.json").read_bytes()
    assert journal(work) == journal(reference)  # in the same order, each candidate once
    mine, theirs = weights(work / FINAL), weights(reference / FINAL)
    assert all(np.array_equal(mine[k], theirs[k]) for k in theirs)


def test_resuming_a_finished_run_says_there_is_nothing_to_resume(finished_run, dopt):
    before = listing(finished_run)
    ran = dopt(finished_run, "-c", "scen.yaml", "--resume")
    assert ran.code == 0 and "dopt: nothing to resume: the run finished; results in results/" in ran.out
    assert "raise searcher.generation_num" in ran.out
    assert listing(finished_run) == before


def test_nothing_to_resume_without_checkpoints_is_exit_2(workdir, dopt):
    work = workdir()
    ran = dopt(work, "-c", "scen.yaml", "--resume")
    assert ran.code == 2 and "nothing to resume" in ran.err
    assert sorted(p.name for p in work.iterdir()) == ["data", "scen.yaml", "user_module.py"]


def test_a_finished_search_goes_on_with_more_generations(finished_run, dopt):
    """--resume with a larger generation_num extends the finished search; it ends with the archive
    of a search that asked for that many generations from the start (same supernet)."""
    more = ["--set", "scenario.strategy.searcher.generation_num=6"]
    ran = dopt(finished_run, "-c", "scen.yaml", "--resume", *more)
    assert ran.code == 0, ran.err
    assert "extending the finished search: 4 generations done (stopped by generations), now up to 6" in ran.err
    assert "journal: " in ran.err and "no training step" not in ran.err
    extended = pareto(finished_run)
    assert max(c["generation"] for c in extended["archive"]) == 6
    assert len(journal(finished_run)) == len(extended["archive"])  # the first 4 generations taken from it
    fresh = dopt(finished_run, "-c", "scen.yaml", "--stage", "search", "--results", "from_start", *more)
    assert fresh.code == 0, fresh.err
    assert extended == pareto(finished_run, "from_start")
    scripts = sorted((finished_run / "results").glob("model_arch_result_*.py"))
    assert len(scripts) == len(extended["front"])  # none left from the shorter search's front
    again = dopt(finished_run, "-c", "scen.yaml", "--resume")  # the extension was recorded
    assert again.code == 0 and "nothing to resume" in again.out, again.err


@pytest.mark.parametrize(
    "evaluations",
    [
        3,  # cuts the second generation short
        8,  # cuts the last (fourth) generation short
    ],
)
def test_a_search_stopped_by_its_budget_goes_on_with_a_larger_one(finished, workdir, dopt, evaluations):
    work = workdir()
    budget = "scenario.strategy.searcher.max_evaluations="
    first = dopt(work, *RUN, "--set", f"{budget}{evaluations}")
    assert first.code in (0, 3), first.err
    assert pareto(work)["stopped_by"] == "max_evaluations"
    same = dopt(work, "-c", "scen.yaml", "--resume")  # the recorded budget is re-applied: nothing to do
    assert same.code == 0 and "nothing to resume" in same.out, same.err
    more = dopt(work, "-c", "scen.yaml", "--resume", "--set", budget + "1000")
    assert more.code == 0, more.err
    assert "extending the finished search" in more.err and "(stopped by max_evaluations)" in more.err
    doc, reference = pareto(work), pareto(finished[0])
    assert doc["overrides"] == [RUN[-1], budget + "1000"]
    assert {**doc, "overrides": None} == {**reference, "overrides": None}
    assert journal(work) == journal(finished[0])


def test_a_torn_checkpoint_and_journal_line_are_fallen_back_from(finished, finished_run, dopt):
    """What a crash mid-write could leave (were writes not atomic): the newest epoch checkpoint
    truncated, the journal's last line torn. Resume falls back and still ends identical."""
    work = finished_run
    shutil.rmtree(work / "results")
    for path in (STATE, FINAL):
        (work / path).unlink()
    newest = work / "checkpoints" / "supernet_epoch_2.fake.npz"
    newest.write_bytes(newest.read_bytes()[:1000])
    path = work / "checkpoints" / "results" / "journal.jsonl"
    lines = path.read_bytes().splitlines(keepends=True)
    path.write_bytes(b"".join(lines[:-1]) + lines[-1][:20])
    ran = dopt(work, "-c", "scen.yaml", "--resume")
    assert ran.code == 0, ran.err
    assert "supernet_epoch_2.fake.npz is unreadable" in ran.err and "after epoch 1 of 2" in ran.err
    assert "is torn" in ran.err and f"journal: {len(lines) - 1} evaluated candidates reused" in ran.err
    assert pareto(work) == pareto(finished[0])
    kept = [line for n, line in enumerate(path.read_text().splitlines()) if n != len(lines) - 1]  # the torn one
    assert [json.loads(line)["encoding"] for line in kept] == [r["encoding"] for r in journal(finished[0])]


@pytest.mark.parametrize(
    ("args", "edit", "words"),
    [
        (["--set", "scenario.strategy.epochs=5"], False, ["another scenario", "epochs: 2 → 5", "--set"]),
        (["--set", "scenario.strategy.searcher.seed=8"], False, ["seed: 7 → 8"]),
        ([], True, ["user_module.py was edited"]),
    ],
    ids=["epochs", "seed", "user-module"],
)
def test_checkpoints_of_another_scenario_are_refused(finished_run, dopt, args, edit, words):
    if edit:
        module = finished_run / "user_module.py"
        module.write_text(module.read_text() + "\n# edited\n")
    before = listing(finished_run)
    for extra in (["--resume"], ["--stage", "search", "--set", "scenario.strategy.constraint.constraint_value=4000"]):
        ran = dopt(finished_run, "-c", "scen.yaml", *args, *extra)
        assert ran.code == 2, ran.err
        assert all(word in ran.err for word in words), ran.err
        assert "Traceback" not in ran.err
    assert listing(finished_run) == before


def _alter(path, source) -> None:
    """Replace ``path``'s bytes by another valid checkpoint's: it still loads, but is not what was written."""
    path.write_bytes(source.read_bytes())


def test_a_checkpoint_altered_since_it_was_written_is_fallen_back_from(finished, finished_run, dopt):
    """Checkpoints carry a SHA-256 (docs/resume.md#corrupt-checkpoints): an altered final one makes
    the search refuse it and --resume retrain the last epoch from the one before; an altered epoch
    checkpoint is skipped for the one before it."""
    work = finished_run
    ckpt = work / "checkpoints"
    _alter(work / FINAL, ckpt / "supernet_epoch_1.fake.npz")
    again = dopt(work, "-c", "scen.yaml", "--stage", "search", "--results", "again")
    assert again.code == 2 and "differ from the SHA-256 recorded" in again.err and "--resume" in again.err, again.err
    shutil.rmtree(work / "results")
    (work / STATE).unlink()
    resumed = dopt(work, "-c", "scen.yaml", "--resume")
    assert resumed.code == 0, resumed.err
    assert "supernet_final.fake.npz is unreadable" in resumed.err and "after epoch 2 of 2" in resumed.err
    assert pareto(work) == pareto(finished[0])
    # An altered newest epoch checkpoint: training resumes from the one before it.
    for path in (work / "results", work / STATE, work / FINAL):
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    _alter(ckpt / "supernet_epoch_2.fake.npz", ckpt / "supernet_epoch_1.fake.npz")
    resumed = dopt(work, "-c", "scen.yaml", "--resume")
    assert resumed.code == 0, resumed.err
    assert "supernet_epoch_2.fake.npz is unreadable" in resumed.err and "after epoch 1 of 2" in resumed.err
    assert pareto(work) == pareto(finished[0])


ALTERED_LINES: dict[str, Callable[[dict], None]] = {
    "metric-renamed": lambda r: r.update(accuracy=r.pop("metric")),
    "size-as-text": lambda r: r.update(size=str(r["size"])),
    "metric-as-text": lambda r: r.update(metric="x"),
    "flipped-digit": lambda r: r.update(metric=round(1 - r["metric"], 6)),  # valid JSON, wrong number
}


@pytest.mark.parametrize("alter", list(ALTERED_LINES))
def test_an_altered_journal_line_is_evaluated_again(finished, finished_run, dopt, alter):
    work = finished_run
    shutil.rmtree(work / "results")
    (work / STATE).unlink()
    path = work / "checkpoints" / "results" / "journal.jsonl"
    lines = path.read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if json.loads(line)["metric"] is not None)
    record = json.loads(lines[n])
    ALTERED_LINES[alter](record)
    path.write_text("\n".join([*lines[:n], json.dumps(record), *lines[n + 1 :]]) + "\n")
    ran = dopt(work, "-c", "scen.yaml", "--resume")
    assert ran.code == 0, ran.err
    assert f"journal.jsonl: line {n + 1} is torn or altered" in ran.err, ran.err
    assert f"journal: {len(lines) - 1} evaluated candidates reused" in ran.err
    assert pareto(work) == pareto(finished[0])


@pytest.mark.parametrize(
    "record",
    ['{"identity": {}}', '{"identity": {"seed": "zero"}}', "[]", '{"identity": {"seed": 7}, "overrides": "x"}'],
    ids=["no-seed", "seed-as-text", "a-list", "overrides-as-text"],
)
def test_a_run_record_that_is_not_dopts_is_exit_2_naming_it(finished_run, dopt, record):
    (finished_run / "checkpoints" / "run.json").write_text(record)
    before = listing(finished_run)
    for args in (["--resume"], ["--stage", "search", "--results", "again"]):
        ran = dopt(finished_run, "-c", "scen.yaml", *args)
        assert ran.code == 2 and "run.json is not a dopt checkpoint record" in ran.err, ran.err
        assert "Traceback" not in ran.err and "Fix:" in ran.err
    assert listing(finished_run) == before


DAMAGES: dict[str, Callable[[Any], None]] = {
    "truncated-pareto-json": lambda r: (r / "pareto.json").write_bytes((r / "pareto.json").read_bytes()[:100]),
    "script-removed": lambda r: (r / "model_arch_result_1.py").unlink(),
    "csv-removed": lambda r: (r / "pareto.csv").unlink(),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_results_of_a_finished_run_are_written_again_by_resume(finished, finished_run, dopt, damage):
    DAMAGES[damage](finished_run / "results")
    ran = dopt(finished_run, "-c", "scen.yaml", "--resume")
    assert ran.code == 0, ran.err
    assert "is damaged" in ran.err and "writing it again from the journal" in ran.err, ran.err
    assert "nothing to resume" not in ran.out
    assert pareto(finished_run) == pareto(finished[0])
    reference = finished[0] / "results"
    for script in reference.glob("model_arch_result_*.py"):
        assert (finished_run / "results" / script.name).read_bytes() == script.read_bytes()
    assert (finished_run / "results" / "pareto.csv").read_bytes() == (reference / "pareto.csv").read_bytes()


@pytest.mark.parametrize(
    ("target", "code"),
    [("supernet_epoch_2", errno.ENOSPC), ("journal.jsonl", errno.EFBIG), ("pareto.json", errno.EROFS)],
    ids=["checkpoint-disk-full", "journal-too-large", "results-read-only"],
)
def test_a_write_the_machine_refuses_is_one_line_naming_the_file_and_resume_goes_on(
    finished, workdir, dopt, monkeypatch, target, code
):
    """Disk full, file too large, read-only folder: exit 1 with one line that names the file and
    says --resume continues; nothing written before is lost."""
    import os

    from dopt.store import atomic, journal

    real_replace, real_open = os.replace, open

    def refuse(name: str) -> None:
        if target in name:
            raise OSError(code, os.strerror(code))

    monkeypatch.setattr(atomic.os, "replace", lambda src, dst: refuse(str(dst)) or real_replace(src, dst))
    monkeypatch.setattr(
        journal, "open", lambda path, mode="r": refuse(str(path)) or real_open(path, mode), raising=False
    )
    work = workdir()
    ran = dopt(work, *RUN)
    assert ran.code == 1, ran.err
    lines = [line for line in ran.err.splitlines() if line.startswith("dopt") and "error" in line]
    assert len(lines) == 1 and "Traceback" not in ran.err, ran.err
    assert f"could not write {work}" in lines[0] and target in lines[0] and os.strerror(code) in lines[0], lines
    assert "--resume" in lines[0]
    monkeypatch.undo()
    resumed = dopt(work, "-c", "scen.yaml", "--resume")
    assert resumed.code == 0, resumed.err
    assert pareto(work) == pareto(finished[0])


def test_a_working_directory_deleted_mid_run_is_named_not_blamed_on_user_code(workdir, dopt, monkeypatch):
    work = workdir()
    real = search.save_state

    def delete_then_save(s: Any, archive: Any, generations: int, result: Any) -> None:
        if generations == 1:
            shutil.rmtree(work)
        real(s, archive, generations, result)

    monkeypatch.setattr(search, "save_state", delete_then_save)
    ran = dopt(work, *RUN)
    assert ran.code == 1, ran.err
    assert f"the working directory {work} was deleted or moved during the run" in ran.err, ran.err
    assert "user code" not in ran.err and "Traceback" not in ran.err
