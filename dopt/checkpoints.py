"""What a run keeps in ``checkpoints/`` so that ``--resume`` and ``--stage search`` can continue it (docs/resume.md#resuming-a-run).

Layout::

    checkpoints/run.json                  identity: training-relevant scenario, user-module hash, seed
    checkpoints/supernet_epoch_N<suffix>  the supernet after N epochs (the last two are kept)
    checkpoints/supernet_final<suffix>    the trained supernet
    checkpoints/<results>/journal.jsonl   one line per evaluated candidate, appended as it finishes
    checkpoints/<results>/search_state.json  the archive after each generation; ``finished`` at the end

``<results>`` is the name of the results folder the search writes (``results``, or
``results_size_30000`` for a ``--stage search``), so every search keeps its own journal.

Everything is plain data (JSON, and the backend's weight files loaded without code execution).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dopt.atomic import atomic_write_text
from dopt.costs import Costs
from dopt.costs import kinds as cost_kinds
from dopt.errors import UserError
from dopt.scenario import Scenario

__all__ = [
    "training_identity",
    "write_identity",
    "recorded_overrides",
    "check_identity",
    "read_seed",
    "epoch_checkpoints",
    "final_checkpoint",
    "Journal",
    "evaluation_key",
    "journal_entry",
]

log = logging.getLogger(__name__)

RUN_FILE = "run.json"


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


def write_identity(
    ckpt_dir: Path, identity: dict[str, Any], threads: int | None = None, overrides: tuple[str, ...] = ()
) -> None:
    """Record what the trained supernet depends on, and the ``--set`` options that
    ``--resume`` and ``--stage search`` re-apply (docs/resume.md#overrides)."""
    record = {"identity": identity, "threads": threads, "overrides": list(overrides)}
    atomic_write_text(ckpt_dir / RUN_FILE, json.dumps(record, indent=1))


def recorded_overrides(ckpt_dir: Path) -> tuple[str, ...]:
    """The ``--set`` options recorded with the checkpoints; none when there is no record (the
    checks that follow report that)."""
    path = ckpt_dir / RUN_FILE
    try:
        found = json.loads(path.read_text()).get("overrides", [])
    except (OSError, ValueError, AttributeError):
        return ()
    return tuple(str(t) for t in found) if isinstance(found, list) else ()


def _read(ckpt_dir: Path) -> dict[str, Any] | None:
    path = ckpt_dir / RUN_FILE
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text())
        assert isinstance(data, dict) and isinstance(data.get("identity"), dict)
        return data
    except (ValueError, AssertionError) as exc:
        raise UserError(
            f"{path} is not a dopt checkpoint record ({exc})",
            fix="start a new run with --overwrite, or in another working directory",
        ) from None


def read_seed(ckpt_dir: Path) -> int | None:
    """The seed the checkpointed run used (it may have been drawn at random), or None."""
    data = _read(ckpt_dir)
    return None if data is None else int(data["identity"]["seed"])


def check_identity(ckpt_dir: Path, identity: dict[str, Any], what: str, threads: int | None = None) -> None:
    """Refuse checkpoints of another scenario or user module, naming what differs.

    Raises:
        UserError: no checkpoint record, or one whose training-relevant parts differ.
    """
    data = _read(ckpt_dir)
    if data is None:
        raise UserError(
            f"nothing to {what}: {ckpt_dir} holds no checkpoint of an earlier run",
            fix="run dopt -c scen.yaml without --resume / --stage search first",
        )
    saved = data["identity"]
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
    if threads is not None and data.get("threads") not in (None, threads):
        log.warning(
            "the checkpointed run used %s CPU threads, this one %d: results may differ in the last digits",
            data["threads"],
            threads,
        )


def _describe(key: str, old: Any, new: Any) -> str:
    if key == "user_module_sha256":
        return "user_module.py was edited"
    if isinstance(old, dict) and isinstance(new, dict):
        sub = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        return ", ".join(f"{key}.{k}: {old.get(k)!r} → {new.get(k)!r}" for k in sub[:2])
    return f"{key}: {old!r} → {new!r}"


def epoch_checkpoints(ckpt_dir: Path, suffix: str) -> list[tuple[int, Path]]:
    """``(epochs done, path)`` of every epoch checkpoint, newest first."""
    pattern = re.compile(r"supernet_epoch_(\d+)" + re.escape(suffix) + "$")
    found = [(int(m.group(1)), p) for p in ckpt_dir.glob(f"supernet_epoch_*{suffix}") if (m := pattern.match(p.name))]
    return sorted(found, reverse=True)


def final_checkpoint(ckpt_dir: Path, suffix: str) -> Path:
    return ckpt_dir / f"supernet_final{suffix}"


def journal_entry(encoding: tuple[int, ...], metric: float | None, costs: Costs, seconds: float) -> dict[str, Any]:
    """A journal line of an evaluated candidate: its encoding, metric, each measured cost under its
    column name, and the evaluation's seconds."""
    measured = {k.column: costs.get(k.name) for k in cost_kinds() if k.name in costs}
    return {"encoding": list(encoding), "metric": metric, **measured, "eval_seconds": seconds}


def evaluation_key(identity: dict[str, Any], bn_calib_batches: int | None, eval_batches: int | None) -> str:
    """What a candidate's metric depends on besides its encoding: the trained supernet and how
    it is evaluated. Journal entries with another key are not reused."""
    blob = json.dumps([identity, bn_calib_batches, eval_batches], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class Journal:
    """Evaluated candidates, one JSON line each, appended and fsynced the moment each finishes.

    Appending (rather than rewriting a file atomically per candidate) keeps each write O(1); a
    line torn by a crash mid-write is the only possible damage, and it is dropped on reading.
    """

    def __init__(self, path: Path, key: str) -> None:
        self.path, self.key = path, key
        self.entries: dict[tuple[int, ...], dict[str, Any]] = {}
        self._torn_tail = False  # the file ends mid-line (a crash while appending)
        if path.exists():
            self._load()

    def _load(self) -> None:
        stale = 0
        data = self.path.read_bytes()
        self._torn_tail = bool(data) and not data.endswith(b"\n")
        for n, line in enumerate(data.split(b"\n")):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                encoding = tuple(int(g) for g in record["encoding"])
            except (ValueError, KeyError, TypeError):
                log.warning("%s: line %d is torn (a crash while writing it) and is ignored", self.path.name, n + 1)
                continue
            if record.get("key") != self.key:
                stale += 1
                continue
            self.entries[encoding] = record
        if stale:
            log.warning(
                "%s: %d candidates were evaluated with another supernet or evaluation settings and "
                "will be evaluated again",
                self.path.name,
                stale,
            )
        if self.entries:
            log.info("journal: %d evaluated candidates reused from %s", len(self.entries), self.path)

    def get(self, encoding: tuple[int, ...]) -> dict[str, Any] | None:
        return self.entries.get(encoding)

    def append(self, record: dict[str, Any]) -> None:
        record = {**record, "key": self.key}
        line = json.dumps(record) + "\n"  # a NaN metric from user code round-trips as NaN
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        with open(self.path, "ab") as f:
            if self._torn_tail:
                f.write(b"\n")  # end the torn last line so the new record stands on its own line
                self._torn_tail = False
            f.write(line.encode())
            f.flush()
            os.fsync(f.fileno())
        if fresh:
            _fsync_dir(self.path.parent)
        self.entries[tuple(record["encoding"])] = record

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return iter(self.entries.values())

    def __len__(self) -> int:
        return len(self.entries)


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
