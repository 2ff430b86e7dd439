"""The run record, ``checkpoints/run.json``: what a trained supernet depends on, its seed, the CPU
threads it trained with and the ``--set`` options that ``--resume`` and ``--stage search`` re-apply
(docs/resume.md#resuming-a-run). Read once per command (:func:`read_record`) and carried from there."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dopt.errors import UserError
from dopt.scenario import Scenario
from dopt.store.atomic import atomic_write_text

__all__ = ["RunRecord", "training_identity", "write_record", "read_record", "check_identity"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RunRecord:
    """What ``run.json`` holds."""

    path: Path
    identity: dict[str, Any]
    threads: int | None
    overrides: tuple[str, ...]

    @property
    def seed(self) -> int:
        """The seed the checkpointed run used (it may have been drawn at random)."""
        return int(self.identity["seed"])


def training_identity(sc: Scenario, seed: int, user_sha256: str) -> dict[str, Any]:
    """The parts of a scenario a trained supernet depends on (docs/resume.md#resuming-a-run), as JSON-ready data.

    Constraint, searcher and budgets are left out: they may change for ``--resume`` and
    ``--stage search``. Dataset paths inside the working directory are kept relative to it, so a
    working directory moved or copied elsewhere still resumes.
    """
    return {
        "framework": sc.framework,
        "batch_size": sc.batch_size,
        "epochs": sc.epochs,
        "supernet": _plain(sc.supernet),
        "optimizer": _plain(sc.optimizer),
        "dataset": {k: _relative(v, sc.workdir) for k, v in _plain(sc.dataset).items()},
        # monitor_batches only decides what is watched after each epoch, not what is trained
        "training": {k: v for k, v in _plain(sc.training).items() if k != "monitor_batches"},
        "seed": seed,
        "user_module_sha256": user_sha256,
    }


def _relative(value: Any, workdir: Path) -> Any:
    if isinstance(value, str) and os.path.isabs(value):
        try:
            return Path(value).relative_to(workdir).as_posix()
        except ValueError:
            return value
    return value


def _plain(obj: Any) -> Any:
    return json.loads(json.dumps(dataclasses.asdict(obj), default=str))


def write_record(
    path: Path, identity: dict[str, Any], threads: int | None = None, overrides: tuple[str, ...] = ()
) -> None:
    """Record what the trained supernet depends on, and the ``--set`` options that
    ``--resume`` and ``--stage search`` re-apply (docs/resume.md#overrides)."""
    record = {"identity": identity, "threads": threads, "overrides": list(overrides)}
    atomic_write_text(path, json.dumps(record, indent=1))


def read_record(path: Path) -> RunRecord | None:
    """The run record at ``path``; None when there is none.

    Raises:
        UserError: the file is not a dopt run record.
    """
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        problem = _not_a_record(data)
    except (OSError, ValueError) as exc:
        problem = f"{type(exc).__name__}: {str(exc)[:200]}"
    if problem:
        raise UserError(
            f"{path} is not a dopt checkpoint record ({problem})",
            fix="restore it, or start a new run with --overwrite, or in another working directory",
        )
    found = data.get("overrides", [])
    overrides = tuple(str(t) for t in found) if isinstance(found, list) else ()
    return RunRecord(path=path, identity=data["identity"], threads=data.get("threads"), overrides=overrides)


def _not_a_record(data: Any) -> str:
    """What makes ``data`` something other than a run record written by dopt; "" when it is one."""
    if not isinstance(data, dict) or not isinstance(data.get("identity"), dict):
        return "no identity section"
    seed = data["identity"].get("seed")
    if not isinstance(seed, int) or isinstance(seed, bool):
        return f"identity.seed is {str(seed)[:40]!r}, not a whole number"
    threads = data.get("threads")
    if threads is not None and (not isinstance(threads, int) or isinstance(threads, bool)):
        return f"threads is {str(threads)[:40]!r}, not a whole number"
    overrides = data.get("overrides", [])
    if not isinstance(overrides, list) or not all(isinstance(o, str) for o in overrides):
        return "overrides is not a list of KEY=VALUE texts"
    return ""


def check_identity(record: RunRecord, identity: dict[str, Any], what: str, threads: int | None = None) -> None:
    """Refuse checkpoints of another scenario or user module, naming what differs.

    Raises:
        UserError: a record whose training-relevant parts differ.
    """
    ckpt_dir = record.path.parent
    saved = record.identity
    diffs = [k for k in sorted(set(saved) | set(identity)) if saved.get(k) != identity.get(k)]
    if diffs:
        details = "; ".join(_describe(k, saved.get(k), identity.get(k)) for k in diffs[:3])
        raise UserError(
            f"the checkpoints in {ckpt_dir} come from another scenario or user module ({details}), so they "
            f"cannot be used to {what}",
            fix="undo the change (in scen.yaml, or the --set that makes it: the --set options the run was "
            "started with are re-applied by themselves), or start a new run with --overwrite or in another "
            "working directory (constraint, searcher and budgets may change; training settings may not)",
        )
    if threads is not None and record.threads not in (None, threads):
        log.warning(
            "the checkpointed run used %s CPU threads, this one %d: results may differ in the last digits",
            record.threads,
            threads,
        )


def _describe(key: str, old: Any, new: Any) -> str:
    if key == "user_module_sha256":
        return "user_module.py was edited"
    if isinstance(old, dict) and isinstance(new, dict):
        sub = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        return ", ".join(f"{key}.{k}: {old.get(k)!r} → {new.get(k)!r}" for k in sub[:2])
    return f"{key}: {old!r} → {new!r}"
