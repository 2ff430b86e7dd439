"""The journal of a search (or an analysis): one JSON line per evaluated candidate, appended and
fsynced the moment it finishes, so an interrupted search takes every finished evaluation from it
(docs/resume.md#the-journal)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from dopt import costs as cost_kinds
from dopt.costs import Costs
from dopt.scenario.model import Constraint
from dopt.store.atomic import naming

__all__ = ["Journal", "evaluation_key", "journal_entry", "complete"]

log = logging.getLogger(__name__)


def journal_entry(encoding: tuple[int, ...], metric: float | None, costs: Costs, seconds: float) -> dict[str, Any]:
    """A journal line of an evaluated candidate: its encoding, metric, each measured cost under its
    column name, and the evaluation's seconds."""
    measured = {k.column: costs.get(k.name) for k in cost_kinds.kinds() if k.name in costs}
    return {"encoding": list(encoding), "metric": metric, **measured, "eval_seconds": seconds}


def evaluation_key(identity: dict[str, Any], bn_calib_batches: int | None, eval_batches: int | None) -> str:
    """What a candidate's metric depends on besides its encoding: the trained supernet and how
    it is evaluated. Journal entries with another key are not reused."""
    blob = json.dumps([identity, bn_calib_batches, eval_batches], sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def complete(entry: dict[str, Any] | None, constraint: Constraint) -> bool:
    """A journal entry that needs no more work: evaluated, or infeasible by its costs alone (an
    entry without the constraint's cost, written under another constraint kind, is not)."""
    if entry is None:
        return False
    cost = entry.get(cost_kinds.get(constraint.kind).column)
    return entry.get("metric") is not None or (cost is not None and not cost <= constraint.value)


def _checksum(record: dict[str, Any]) -> str:
    """The checksum a journal line carries: of its other fields, in a canonical form."""
    body = {k: v for k, v in record.items() if k != "sum"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _valid(record: Any) -> bool:
    """A journal line dopt could have written: its checksum holds (lines of older versions have
    none) and every field has its type (a flipped digit, a renamed or retyped field fail here)."""
    if not isinstance(record, dict) or "sum" in record and record["sum"] != _checksum(record):
        return False
    encoding, metric = record.get("encoding"), record.get("metric", "missing")
    if not isinstance(encoding, list) or not all(isinstance(g, int) and not isinstance(g, bool) for g in encoding):
        return False
    columns = [k.column for k in cost_kinds.kinds() if k.column in record]
    return (
        (metric is None or _number(metric))
        and _number(record.get("eval_seconds"))
        and all(_number(record[c]) for c in columns)
    )


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
            except ValueError:
                record = None
            if not _valid(record):
                log.warning(
                    "%s: line %d is torn or altered (a crash while writing it, or an edit) and is ignored; "
                    "that candidate is evaluated again",
                    self.path.name,
                    n + 1,
                )
                continue
            encoding = tuple(record["encoding"])
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
        record["sum"] = _checksum(record)
        line = json.dumps(record) + "\n"  # a NaN metric from user code round-trips as NaN
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fresh = not self.path.exists()
        try:
            with open(self.path, "ab") as f:
                if self._torn_tail:
                    f.write(b"\n")  # end the torn last line so the new record stands on its own line
                    self._torn_tail = False
                f.write(line.encode())
                f.flush()
                os.fsync(f.fileno())
        except OSError as exc:
            raise naming(exc, self.path) from exc
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
