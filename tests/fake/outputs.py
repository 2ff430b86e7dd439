"""Reading what a run wrote, for comparisons between runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["RUN", "TIMINGS", "pareto", "journal", "listing", "weights"]

# The command of tests/pipeline's finished run: one --set option, so that resuming it re-applies one.
RUN = ("-c", "scen.yaml", "--set", "scenario.strategy.searcher.generation_num=4")
# The fields of a journal line that vary between runs (its checksum covers the timings).
TIMINGS = ("eval_seconds", "elapsed_s", "sum")


def pareto(work: Path, results: str = "results") -> dict[str, Any]:
    return json.loads((work / results / "pareto.json").read_text())


def journal(work: Path, results: str = "results") -> list[dict[str, Any]]:
    """The search's journal lines without their timings."""
    path = work / "checkpoints" / results / "journal.jsonl"
    return [{k: v for k, v in json.loads(line).items() if k not in TIMINGS} for line in path.read_text().splitlines()]


def listing(work: Path) -> list[str]:
    """Every path under ``work`` with its size: what a refused command must leave as it was."""
    return sorted(f"{p.relative_to(work)} {p.stat().st_size if p.is_file() else '/'}" for p in work.rglob("*"))


def weights(checkpoint: Path) -> dict[str, np.ndarray]:
    """The supernet weights in a fake checkpoint (its bytes differ between runs: zip timestamps)."""
    with np.load(checkpoint, allow_pickle=False) as f:
        return {k: f[k] for k in f.files if k.startswith("w.")}
