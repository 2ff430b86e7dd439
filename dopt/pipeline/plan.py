"""What one `dopt -c` invocation will do, decided from the command line and the working directory
before anything expensive runs: a new run, a resumed one, or another search (docs/cli.md#commands, docs/resume.md#resuming-a-run)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from dopt.errors import UserError
from dopt.scenario import Scenario
from dopt.store import search_state
from dopt.store.identity import RunRecord, check_identity, read_record, training_identity
from dopt.store.results_folder import check_results_folder, foreign_entries, foreign_files, listed
from dopt.store.workdir import SEARCH_STATE, WorkDir
from dopt.text import rel
from dopt.user_module import file_sha256

__all__ = ["Plan", "plan", "results_dir_of", "trained", "load_scenario"]


@dataclass(frozen=True, kw_only=True)
class Plan:
    """What one invocation does, decided from the command line and the working directory before
    anything expensive runs: a new run, a resumed one, or another search of a trained supernet."""

    stage: str  # "all" or "search"
    resume: bool
    overwrite: bool
    results_dir: Path
    workdir: WorkDir
    record: RunRecord | None = None  # checkpoints/run.json of the run being continued, read once
    finished: bool = False  # --resume of a run (or search) that already finished

    @property
    def seed(self) -> int | None:
        """The checkpointed run's seed when continuing one (the scenario's seed wins)."""
        return None if self.record is None else self.record.seed

    @property
    def search_dir(self) -> Path:
        """Journal and search state of the search writing ``results_dir``."""
        return self.workdir.search_dir(self.results_dir)


def plan(
    sc: Scenario,
    *,
    resume: bool = False,
    stage: str = "all",
    results: Path | None = None,
    overwrite: bool = False,
    record: RunRecord | None = None,
) -> Plan:
    """Check the working directory for this invocation; nothing is read from the user module yet.
    ``record``: the run record the command read, when it continues a run.

    Raises:
        UserError: outputs of an earlier run in the way (without --resume / --overwrite), nothing
            to resume, no trained supernet for ``--stage search``, or checkpoints of another
            scenario or user module.
    """
    work = WorkDir(sc.workdir)
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other", fix="pass one of them")
    if stage == "all":
        return _whole_run(sc, work, resume, overwrite, results, record)
    record = _check_checkpoints(sc, record, "search again")
    _check_trained(work)
    results_dir = results_dir_of(sc, results)
    check_results_folder(results_dir, work, _datasets(sc), overwrite=overwrite and not resume)
    p = Plan(stage="search", resume=resume, overwrite=overwrite, results_dir=results_dir, workdir=work, record=record)
    if resume:
        if not p.search_dir.exists():
            raise UserError(
                f"nothing to resume: no search writing {rel(results_dir, work.root)}/ was started",
                fix="drop --resume to start that search",
            )
        done = search_state.finished(p.search_dir / SEARCH_STATE, sc)
        return Plan(
            stage="search",
            resume=True,
            overwrite=False,
            results_dir=results_dir,
            workdir=work,
            record=record,
            finished=done,
        )
    if (results_dir.exists() or p.search_dir.exists()) and not overwrite:
        raise UserError(
            f"{rel(results_dir, work.root)}/ of an earlier search exists",
            fix="pass --resume to continue that search, --overwrite to replace it, or --results DIR for another folder",
        )
    return p


def _whole_run(
    sc: Scenario, work: WorkDir, resume: bool, overwrite: bool, results: Path | None, record: RunRecord | None
) -> Plan:
    if results is not None:
        raise UserError(
            "--results is for --stage search; a whole run writes results/",
            fix="add --stage search, or drop --results",
        )
    if not resume:
        existing = work.outputs()
        if existing and not overwrite:
            names = ", ".join(p.name + "/" for p in existing[:4]) + (", ..." if len(existing) > 4 else "")
            raise UserError(
                f"{names} from an earlier run exist in {work.root}",
                fix="pass --resume to continue that run, --overwrite to replace it, or run in another "
                "working directory (--workdir)",
            )
        if overwrite:
            _check_replaceable(existing, work, _datasets(sc))
        return Plan(stage="all", resume=False, overwrite=overwrite, results_dir=work.results, workdir=work)
    record = _check_checkpoints(sc, record, "resume")
    done = search_state.finished(work.search_dir(work.results) / SEARCH_STATE, sc)
    return Plan(
        stage="all", resume=True, overwrite=False, results_dir=work.results, workdir=work, record=record, finished=done
    )


def trained(sc: Scenario, what: str, record: RunRecord | None = None) -> RunRecord:
    """The run record of this working directory's trained supernet, for a command that only reads
    it (``dopt analyze``).

    Raises:
        UserError: no checkpoints, checkpoints of another scenario, or training unfinished.
    """
    record = _check_checkpoints(sc, record, what)
    _check_trained(WorkDir(sc.workdir))
    return record


def _datasets(sc: Scenario) -> list[Path]:
    """The local dataset paths of the scenario (a remote URL is nothing dopt could remove)."""
    ds = sc.dataset
    return [Path(d) for d in (ds.train_dir, ds.val_dir, ds.pre_train_dir) if d and "://" not in d]


def _check_replaceable(existing: list[Path], work: WorkDir, datasets: list[Path]) -> None:
    """--overwrite of a whole run removes ``existing``: never a dataset in them, nor files dopt
    did not write into results/, checkpoints/ or a log_* folder."""
    for folder in existing:
        inside = [d for d in datasets if folder.resolve() in d.resolve().parents or d.resolve() == folder.resolve()]
        if inside:
            raise UserError(
                f"--overwrite would remove {folder.name}/, which holds the dataset {rel(inside[0], work.root)}",
                fix="move the dataset out of dopt's output folders (results/, checkpoints/, log_*/)",
            )
        foreign = foreign_entries(folder) if folder == work.results else foreign_files(folder)
        if foreign:
            raise UserError(
                f"--overwrite would remove {folder.name}/, which holds files dopt did not write ({listed(foreign)})",
                fix="move those files elsewhere, or run in another working directory (--workdir)",
            )


def _check_trained(work: WorkDir) -> None:
    if not any(work.checkpoints.glob("supernet_final*")):  # its suffix is the backend's, checked again on loading
        raise UserError(
            f"{work.checkpoints} holds no trained supernet (supernet_final): training did not finish",
            fix="finish the run first: dopt -c scen.yaml --resume",
        )


def results_dir_of(sc: Scenario, results: Path | None) -> Path:
    """The results folder of a ``--stage search``: ``--results DIR``, else named after the constraint."""
    folder = (
        results if results is not None else WorkDir(sc.workdir).search_results(sc.constraint.kind, sc.constraint.value)
    )
    return folder.resolve()


def _check_checkpoints(sc: Scenario, record: RunRecord | None, what: str) -> RunRecord:
    """The checkpointed run's record, after checking its identity against this scenario."""
    work = WorkDir(sc.workdir)
    if record is None:
        record = read_record(work.run_file)  # absent, or broken: UserError names the file
    if record is None:
        raise UserError(
            f"nothing to {what}: {work.checkpoints} holds no checkpoint of an earlier run",
            fix="run dopt -c scen.yaml (without --resume / --stage search) first",
        )
    seed = sc.searcher.seed if sc.searcher.seed is not None else record.seed  # a different one is reported below
    module = work.user_module
    identity = training_identity(sc, seed, file_sha256(module) if module.exists() else "")
    check_identity(record, identity, what)
    return record


def load_scenario(
    config: Path, workdir: Path, overrides: tuple[str, ...], *, resume: bool, stage: str, results: str | None = None
) -> tuple[Scenario, RunRecord | None]:
    """The scenario with the ``--set`` options of what this invocation continues re-applied first
    (the run's for --resume, --stage search and the commands that read a trained supernet, the
    search's for --stage search --resume), then this command line's, which win
    (docs/resume.md#overrides); and the run record, read once here and carried from here on.
    """
    from dopt.scenario import load, merge_overrides
    from dopt.scenario.load import override_key

    if not resume and stage == "all":  # a new run: nothing recorded applies
        return load(config, workdir=workdir, overrides=overrides), None
    work = WorkDir(workdir)
    try:
        record = read_record(work.run_file)
    except UserError:  # reported by whatever needs the record (dopt train with a seed of its own does not)
        record = None
    recorded = record.overrides if record is not None else ()
    scenario = load(config, workdir=workdir, overrides=merge_overrides(recorded, overrides))
    if stage == "search" and resume:
        folder = Path(results) if results else None
        if folder is not None and not folder.is_absolute():
            folder = workdir / folder
        state = search_state.read_state(work.search_dir(results_dir_of(scenario, folder)) / SEARCH_STATE)
        if isinstance(state.get("overrides"), list):
            recorded = tuple(str(t) for t in state["overrides"])
            scenario = load(config, workdir=workdir, overrides=merge_overrides(recorded, overrides))
    replaced = {override_key(t) for t in overrides}
    again = [t for t in recorded if override_key(t) not in replaced]
    if again:
        logging.getLogger("dopt").info(
            "re-applying the --set options recorded with the checkpoints: %s", " ".join(f"--set {t}" for t in again)
        )
    return scenario, record
