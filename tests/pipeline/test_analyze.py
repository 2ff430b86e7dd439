"""`dopt analyze` (dopt/commands/analyze.py): evaluations of the trained supernet taken from the
search's journal and its own, an interrupted analysis continued, its mistakes."""

from __future__ import annotations

import json

import pytest

from tests.fake.outputs import RUN, journal

ANALYZE = ("analyze", "-c", "scen.yaml")


def test_analyze_writes_its_summary_and_reuses_journaled_evaluations(finished_run, dopt, fake):
    ran = dopt(finished_run, *ANALYZE, "--samples", "12", "--split-by", "depth")
    assert ran.code == 0, ran.err
    doc = json.loads((finished_run / "results" / "space_analysis.json").read_text())
    assert doc["samples"] == len(doc["subnets"]) == 12 and doc["error"] == "1 - metric"
    assert "kernel" in doc["edf"] and doc["summary"] and doc["split"]["by"] == "depth"
    assert (finished_run / "results" / "space_analysis.png").exists()
    assert fake.figures[-1][0] == "analysis"
    # Subnets the search evaluated are taken from its journal, the others evaluated now.
    searched = {tuple(r["encoding"]) for r in journal(finished_run) if r["metric"] is not None}
    overlap = sum(tuple(s["encoding"]) in searched for s in doc["subnets"])
    assert f"search-space analysis of 12 subnets ({overlap} from earlier evaluations)" in ran.out
    assert fake.counts["metric"] == 12 - overlap
    # More samples: the first twelve are the same draws, taken from the analysis' own journal.
    more = dopt(finished_run, *ANALYZE, "--samples", "16")
    assert more.code == 0, more.err
    assert "search-space analysis of 16 subnets (12 from earlier evaluations)" in more.out
    assert fake.counts["metric"] == 12 - overlap + 4


def test_an_interrupted_analysis_continues(finished_run, dopt, fake):
    fake.interrupt("metric", 4)
    stopped = dopt(finished_run, *ANALYZE, "--samples", "20")
    assert stopped.code == 130, stopped.err
    path = finished_run / "checkpoints" / "space_analysis" / "journal.jsonl"
    done = len(path.read_text().splitlines())
    assert done == 3
    again = dopt(finished_run, *ANALYZE, "--samples", "20")
    assert again.code == 0, again.err
    reused = int(again.out.split("(")[1].split(" from")[0])
    assert reused >= done
    assert len(path.read_text().splitlines()) == 20 - (reused - done)  # nothing evaluated twice


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--samples", "0"], ["--samples 0", "at least 1"]),
        (["--cost-range", "9:1"], ["--cost-range 9:1", "LO ≤ HI"]),
        (["--cost-range", "1:2"], ["holds no subnet", "pick a range within 2,068:21,124"]),
        (["--split-by", "colour"], ["--split-by colour", "depth"]),
    ],
)
def test_analyze_mistakes_exit_2(finished_run, dopt, args, words):
    ran = dopt(finished_run, *ANALYZE, *args)
    assert ran.code == 2 and "Traceback" not in ran.err
    for word in words:
        assert word in ran.err, ran.err


def test_analyze_needs_a_trained_supernet(workdir, dopt, fake):
    work = workdir()
    first = dopt(work, *ANALYZE)
    assert first.code == 2 and "nothing to analyse" in first.err, first.err
    fake.interrupt("epoch", 1)
    assert dopt(work, *RUN).code == 130
    ran = dopt(work, *ANALYZE)
    assert ran.code == 2 and "holds no trained supernet" in ran.err, ran.err
