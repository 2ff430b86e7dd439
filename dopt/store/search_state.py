"""A search's state, ``checkpoints/<results>/search_state.json``: the archive after each generation,
the search's ``--set`` options, and whether it finished and what stopped it. For people, for
re-applying the options, and for telling whether new settings extend a finished search; resuming
reads the journal (docs/resume.md#the-journal)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dopt.scenario import Scenario
from dopt.store.atomic import atomic_write_text

__all__ = ["read_state", "write_state", "extends", "finished"]


def read_state(path: Path) -> dict[str, Any]:
    """The search state at ``path``; empty when there is none (or it is torn)."""
    try:
        state = json.loads(path.read_text()) if path.exists() else {}
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def write_state(path: Path, state: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(state, indent=1, allow_nan=True))


def extends(state: dict[str, Any], sc: Scenario) -> bool:
    """Whether ``sc``'s searcher settings take a finished search past where it stopped: more
    generations, and a larger (or no) budget where a budget stopped it."""
    cfg, budgets = sc.searcher, state.get("budgets") or {}
    stopped, begun = state.get("stopped_by"), int(state.get("generations", 0))
    if stopped == "space_exhausted":
        return False
    if stopped in ("max_evaluations", "max_duration_s"):
        now, before = getattr(cfg, stopped), budgets.get(stopped)
        raised = now is None or (before is not None and now > before)
        # A budget may have cut the last generation begun short: a larger one finishes it.
        return raised and cfg.generation_num >= begun
    return cfg.generation_num > begun


def finished(path: Path, sc: Scenario) -> bool:
    """True when the search whose state is at ``path`` finished and this scenario's searcher
    settings would not take it further (docs/resume.md#extending-a-finished-search)."""
    state = read_state(path)
    if not state.get("finished"):
        return False
    return not extends(state, sc)
