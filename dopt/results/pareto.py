"""pareto.json and pareto.csv: the whole archive and its front, numbered N = 1.. by ascending cost."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from dopt.archive import Archive
from dopt.costs import kinds
from dopt.store.atomic import atomic_write_text

__all__ = ["front_entries", "write_json", "write_csv", "csv_columns", "damage"]

_RESERVED = ("objective", "constraint", "archive", "front")
# Timings differ between two runs of one seed; pareto.json must not (docs/search.md#reproducibility).
_NOT_IN_JSON = ("eval_seconds",)


def front_entries(archive: Archive) -> list[dict[str, int]]:
    """The front as ``[{"n": N, "index": i}, ...]``, N = 1.. by ascending cost.

    The same numbering names ``results/model_arch_result_N.py`` and labels the picture.
    """
    return [{"n": n, "index": i} for n, i in enumerate(archive.front(), start=1)]


def write_json(
    path: str | os.PathLike[str],
    archive: Archive,
    *,
    objective: dict[str, Any],
    extra: dict[str, Any],
) -> None:
    """Write ``pareto.json`` atomically.

    Layout: ``{"objective", "constraint": {"type", "value"}, **extra, "archive", "front"}``.
    Two runs with the same seed write byte-identical files: no timings, fixed key order.

    Args:
        path: destination, usually ``results/pareto.json``.
        archive: every evaluated candidate.
        objective: describes the two objectives (e.g. metric name and cost kind).
        extra: further top-level keys, written between ``constraint`` and ``archive``.

    Raises:
        ValueError: ``extra`` reuses a key of the layout, or a value is not finite JSON.
    """
    clash = sorted(set(extra) & set(_RESERVED))
    if clash:
        raise ValueError(f"extra keys {clash} would overwrite pareto.json's own; rename them")
    records = [{k: v for k, v in r.items() if k not in _NOT_IN_JSON} for r in archive.to_records()]
    doc = {
        "objective": objective,
        "constraint": {"type": archive.constraint.kind, "value": archive.constraint.value},
        **extra,
        "archive": records,
        "front": front_entries(archive),
    }
    # allow_nan=False: a NaN that slipped through would make the file unreadable by strict parsers.
    atomic_write_text(path, json.dumps(doc, indent=2, allow_nan=False) + "\n")


def damage(folder: Path) -> str:
    """What is missing or broken in the results folder of a finished search ("" when nothing): its
    ``pareto.json`` readable with a front, ``pareto.csv``, ``pareto.png``, and for every front
    member its result script and weights."""
    try:
        doc = json.loads((folder / "pareto.json").read_text())
        numbers = [int(entry["n"]) for entry in doc["front"]]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"pareto.json is unreadable ({type(exc).__name__})"
    missing = [name for name in ("pareto.csv", "pareto.png") if not (folder / name).is_file()]
    for n in numbers:
        script = folder / f"model_arch_result_{n}.py"
        if not script.is_file() or script.stat().st_size == 0:
            missing.append(script.name)
        if not any(folder.glob(f"model_arch_result_{n}.weights.*")):
            missing.append(f"model_arch_result_{n}.weights.*")
    return f"{', '.join(missing[:3])} missing or empty" if missing else ""


def csv_columns() -> tuple[str, ...]:
    """The columns of ``pareto.csv``: one per registered cost kind between the metric and ``feasible``."""
    return (
        "index",
        "front_n",
        "metric",
        *(k.column for k in kinds()),
        "feasible",
        "generation",
        "eval_seconds",
        "encoding",
    )


def write_csv(path: str | os.PathLike[str], archive: Archive) -> None:
    """Write ``pareto.csv`` atomically: one row per candidate, in archive order.

    Columns are :func:`csv_columns`. ``front_n`` is empty off the front, ``metric`` empty for
    an infeasible candidate and ``nan`` where user code returned NaN, a cost empty where it was
    not measured (``latency_ms`` in this version), ``feasible`` is ``true``/``false``, ``encoding`` space-separated integers.

    Args:
        path: destination, usually ``results/pareto.csv``.
        archive: every evaluated candidate.
    """
    numbers = {e["index"]: e["n"] for e in front_entries(archive)}
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(csv_columns())
    for i, c in enumerate(archive):
        writer.writerow(
            (
                i,
                numbers.get(i, ""),
                _number(c.metric),
                *(_number(c.costs.get(k.name)) for k in kinds()),
                "true" if c.feasible else "false",
                c.generation,
                repr(c.eval_seconds),
                " ".join(str(g) for g in c.encoding),
            )
        )
    atomic_write_text(path, buf.getvalue())


def _number(x: float | None) -> str:
    if x is None:
        return ""
    return "nan" if math.isnan(x) else repr(x)
