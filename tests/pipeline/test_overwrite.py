"""What `--results DIR` may name and what `--overwrite` may remove (docs/resume.md#searching-again):
only a folder inside the working directory that holds nothing but dopt's results; anything else is
exit 2 before anything is written or deleted."""

from __future__ import annotations

import pytest

from tests.fake.outputs import listing

SEARCH = ("-c", "scen.yaml", "--stage", "search")


@pytest.mark.parametrize(
    ("results", "words"),
    [
        ("..", "not a folder inside the working directory"),
        (".", "not a folder inside the working directory"),
        # An absolute folder outside, made by the test beside the working directory: on code
        # without the check `--overwrite` deletes it, so never name a real system folder here.
        ("{outside}", "not a folder inside the working directory"),
        ("checkpoints", "(dopt's checkpoints), which a search must leave as it is"),
        ("checkpoints/mine", "which a search must leave as it is"),
        ("data", "(a dataset of the scenario), which a search must leave as it is"),
        ("data/train.npz", "which a search must leave as it is"),
        ("results", "the name results is taken by the whole run's results folder"),
        ("sub/results", "the name results is taken"),
        ("log_mine", "the name log_mine is taken"),
        ("supernet_final.npz", "the name supernet_final.npz is taken"),
        ("results/mine", "the name results is taken"),
        ("", "--results '': not a path (it is empty)"),
        ("res\nults", "not a path (it holds control characters)"),
        ("pretrained", "(the pre-training output)"),
    ],
)
def test_a_results_folder_dopt_must_not_write_or_remove_is_refused_before_anything(finished_run, dopt, results, words):
    (finished_run / "pretrained").mkdir()
    (finished_run.parent / "neighbour.txt").write_text("the user's")
    outside = finished_run.parent / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("the user's")
    before, around = listing(finished_run), listing(finished_run.parent)
    ran = dopt(finished_run, *SEARCH, "--results", results.format(outside=outside), "--overwrite")
    assert ran.code == 2, ran.err
    assert words in ran.err and "--results" in ran.err and "Fix:" in ran.err, ran.err
    assert listing(finished_run) == before and listing(finished_run.parent) == around


def test_overwrite_keeps_a_results_folder_holding_the_users_files(finished_run, dopt):
    mine = finished_run / "small"
    mine.mkdir()
    (mine / "notes.txt").write_text("the user's")
    (mine / "pareto.json").write_text("{}")
    ran = dopt(finished_run, *SEARCH, "--results", "small", "--overwrite")
    assert ran.code == 2 and "holds files dopt did not write (notes.txt)" in ran.err, ran.err
    assert (mine / "notes.txt").read_text() == "the user's"


def test_a_results_folder_in_a_nested_working_directory_is_refused(finished_run, dopt):
    inner = finished_run / "other"
    (inner / "checkpoints").mkdir(parents=True)
    (inner / "checkpoints" / "run.json").write_text("{}")
    ran = dopt(finished_run, *SEARCH, "--results", "other/results_x")
    assert ran.code == 2 and "lies in another working directory, other" in ran.err, ran.err
    assert not (inner / "results_x").exists()


def test_a_whole_run_overwrite_keeps_results_holding_the_users_files_and_a_dataset_inside(finished_run, dopt):
    (finished_run / "results" / "notes.txt").write_text("the user's")
    ran = dopt(finished_run, "-c", "scen.yaml", "--overwrite")
    assert ran.code == 2 and "holds files dopt did not write (notes.txt)" in ran.err, ran.err
    assert (finished_run / "results" / "pareto.json").exists()
    (finished_run / "results" / "notes.txt").unlink()
    data = finished_run / "checkpoints" / "data"
    (finished_run / "data").rename(data)
    scen = finished_run / "scen.yaml"
    scen.write_text(scen.read_text().replace("data/", "checkpoints/data/"))
    ran = dopt(finished_run, "-c", "scen.yaml", "--overwrite")
    assert ran.code == 2 and "holds the dataset checkpoints/data" in ran.err, ran.err
    assert data.is_dir() and (finished_run / "checkpoints" / "run.json").exists()


def test_dopt_train_writes_only_beside_a_script_of_this_working_directory(finished_run, dopt, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    script = elsewhere / "model_arch_result_1.py"
    script.write_bytes((finished_run / "results" / "model_arch_result_1.py").read_bytes())
    before = listing(elsewhere)
    ran = dopt(finished_run, "train", "-c", "scen.yaml", "--script", str(script), "--epochs", "1")
    assert ran.code == 2 and "not a folder inside the working directory" in ran.err, ran.err
    assert listing(elsewhere) == before


@pytest.mark.parametrize(
    "folder", ["checkpoints", "checkpoints/results", "log_20200101-000000", "log_20200101-000000/x"]
)
def test_a_whole_run_overwrite_keeps_checkpoints_and_logs_holding_the_users_files(finished_run, dopt, folder):
    (finished_run / folder).mkdir(parents=True, exist_ok=True)
    (finished_run / folder / "notes.txt").write_text("the user's")
    before = listing(finished_run)
    ran = dopt(finished_run, "-c", "scen.yaml", "--overwrite")
    top = folder.split("/")[0]
    assert ran.code == 2 and f"--overwrite would remove {top}/, which holds files dopt did not write" in ran.err, (
        ran.err
    )
    assert "notes.txt" in ran.err and listing(finished_run) == before


def test_a_whole_run_overwrite_removes_what_dopt_wrote(finished_run, dopt):
    (finished_run / "log_20200101-000000").mkdir()
    (finished_run / "log_20200101-000000" / "dopt.log").write_text("an earlier run's log")
    (finished_run / "results" / "space_analysis.json").write_text("{}")  # dopt analyze's
    ran = dopt(finished_run, "-c", "scen.yaml", "--overwrite")
    assert ran.code == 0, ran.err
    assert not (finished_run / "log_20200101-000000").exists()


def test_two_results_folders_of_one_name_keep_journals_of_their_own(finished_run, dopt):
    for folder in ("mine/small", "small"):
        ran = dopt(finished_run, *SEARCH, "--results", folder)
        assert ran.code == 0, ran.err
    assert (finished_run / "checkpoints" / "mine" / "small" / "journal.jsonl").is_file()
    assert (finished_run / "checkpoints" / "small" / "journal.jsonl").is_file()
    again = dopt(finished_run, *SEARCH, "--results", "mine/other")
    assert again.code == 0, again.err
