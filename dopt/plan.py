"""What one `dopt -c` invocation will do, decided from the command line and the working directory
before anything expensive runs: a new run, a resumed one, or another search (docs/cli.md#commands, docs/resume.md#resuming-a-run)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dopt.checkpoints import check_identity, read_seed, training_identity
from dopt.errors import UserError
from dopt.scenario import Scenario
from dopt.user_module import file_sha256

__all__ = ["Plan", "plan", "OUTPUTS", "search_state", "extends", "results_dir_of", "trained"]

OUTPUTS = ("results", "checkpoints", "log_*")  # what a new run would replace (docs/resume.md#overwriting)


@dataclass(frozen=True)
class Plan:
    """What one invocation does, decided from the command line and the working directory before
    anything expensive runs: a new run, a resumed one, or another search of a trained supernet."""

    stage: str  # "all" or "search"
    resume: bool
    overwrite: bool
    results_dir: Path
    seed: int | None  # the checkpointed run's seed when continuing one
    checkpoints: Path  # the working directory's checkpoints/
    finished: bool = False  # --resume of a run (or search) that already finished

    @property
    def search_dir(self) -> Path:
        """Journal and search state of the search writing ``results_dir``."""
        return self.checkpoints / self.results_dir.name


def plan(
    sc: Scenario, *, resume: bool = False, stage: str = "all", results: Path | None = None, overwrite: bool = False
) -> Plan:
    """Check the working directory for this invocation; nothing is read from the user module yet.

    Raises:
        UserError: outputs of an earlier run in the way (without --resume / --overwrite), nothing
            to resume, no trained supernet for ``--stage search``, or checkpoints of another
            scenario or user module.
    """
    work = sc.workdir
    ckpt = work / "checkpoints"
    if resume and overwrite:
        raise UserError("--resume and --overwrite contradict each other", fix="pass one of them")
    if stage == "all":
        if results is not None:
            raise UserError(
                "--results is for --stage search; a whole run writes results/",
                fix="add --stage search, or drop --results",
            )
        results_dir = work / "results"
        if not resume:
            existing = sorted({p for pattern in OUTPUTS for p in work.glob(pattern) if p.is_dir()})
            if existing and not overwrite:
                names = ", ".join(p.name + "/" for p in existing[:4]) + (", ..." if len(existing) > 4 else "")
                raise UserError(
                    f"{names} from an earlier run exist in {work}",
                    fix="pass --resume to continue that run, --overwrite to replace it, or run in another "
                    "working directory (--workdir)",
                )
            return Plan("all", False, overwrite, results_dir, None, ckpt)
        seed = _check_checkpoints(sc, ckpt, "resume")
        return Plan("all", True, False, results_dir, seed, ckpt, _finished(ckpt / "results", sc))
    # --stage search
    seed = _check_checkpoints(sc, ckpt, "search again")
    if not any(ckpt.glob("supernet_final*")):  # its suffix is the backend's, checked again on loading
        raise UserError(
            f"{ckpt} holds no trained supernet (supernet_final): training did not finish",
            fix="finish the run first: dopt -c scen.yaml --resume",
        )
    results_dir = results_dir_of(sc, results)
    p = Plan("search", resume, overwrite, results_dir, seed, ckpt)
    if resume:
        if not p.search_dir.exists():
            raise UserError(
                f"nothing to resume: no search writing {_rel(results_dir, work)}/ was started",
                fix="drop --resume to start that search",
            )
        return Plan("search", True, False, results_dir, seed, ckpt, _finished(p.search_dir, sc))
    if (results_dir.exists() or p.search_dir.exists()) and not overwrite:
        raise UserError(
            f"{_rel(results_dir, work)}/ of an earlier search exists",
            fix="pass --resume to continue that search, --overwrite to replace it, or --results DIR for another folder",
        )
    return p


def trained(sc: Scenario, what: str) -> int:
    """The seed of this working directory's trained supernet, for a command that only reads it
    (``dopt analyze``).

    Raises:
        UserError: no checkpoints, checkpoints of another scenario, or training unfinished.
    """
    ckpt = sc.workdir / "checkpoints"
    seed = _check_checkpoints(sc, ckpt, what)
    if not any(ckpt.glob("supernet_final*")):
        raise UserError(
            f"{ckpt} holds no trained supernet (supernet_final): training did not finish",
            fix="finish the run first: dopt -c scen.yaml --resume",
        )
    return seed


def results_dir_of(sc: Scenario, results: Path | None) -> Path:
    """The results folder of a ``--stage search``: ``--results DIR``, else named after the constraint."""
    kind, value = sc.constraint.kind, _plain_number(sc.constraint.value)
    return (results if results is not None else sc.workdir / f"results_{kind}_{value}").resolve()


def _check_checkpoints(sc: Scenario, ckpt: Path, what: str) -> int:
    """The checkpointed run's seed, after checking its identity against this scenario."""
    seed = read_seed(ckpt)
    if seed is None:
        raise UserError(
            f"nothing to {what}: {ckpt} holds no checkpoint of an earlier run",
            fix="run dopt -c scen.yaml (without --resume / --stage search) first",
        )
    if sc.searcher.seed is not None:
        seed = sc.searcher.seed  # a different one is reported by the identity check
    module = sc.workdir / "user_module.py"
    identity = training_identity(sc, seed, file_sha256(module) if module.exists() else "")
    check_identity(ckpt, identity, what)
    return seed


def _finished(search_dir: Path, sc: Scenario) -> bool:
    """True when the search writing to ``search_dir`` finished and this scenario's searcher
    settings would not take it further (docs/resume.md#extending-a-finished-search)."""
    state = search_state(search_dir)
    if not state.get("finished"):
        return False
    return not extends(state, sc)


def search_state(search_dir: Path) -> dict[str, Any]:
    """The search state a search keeps beside its journal; empty when there is none (or it is torn)."""
    path = search_dir / "search_state.json"
    try:
        state = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def extends(state: dict[str, Any], sc: Scenario) -> bool:
    """Whether ``sc``'s searcher settings take a finished search past where it stopped: more
    generations, and a larger (or no) budget where a budget stopped it."""
    cfg, budgets = sc.searcher, state.get("budgets") or {}
    if state.get("stopped_by") == "space_exhausted" or cfg.generation_num <= int(state.get("generations", 0)):
        return False
    stopped = state.get("stopped_by")
    if stopped in ("max_evaluations", "max_duration_s"):
        now, before = getattr(cfg, stopped), budgets.get(stopped)
        return now is None or (before is not None and now > before)
    return True


def _rel(path: Path, base: Path) -> str:
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def _plain_number(value: float) -> str:
    """20000 or 0.5, as in a folder name."""
    return f"{value:.0f}" if float(value).is_integer() else str(value)
