"""The scenario: ``load(scen.yaml)`` checks the file and returns a frozen ``Scenario`` (docs/scenario.md#keys)."""

from __future__ import annotations

from dopt.scenario.load import load, merge_overrides
from dopt.scenario.model import (
    Constraint,
    Dataset,
    Optimizer,
    Resource,
    Scenario,
    Searcher,
    SearchSpaceChoices,
    Supernet,
    Training,
)

__all__ = [
    "load",
    "merge_overrides",
    "Constraint",
    "Dataset",
    "Optimizer",
    "Resource",
    "Scenario",
    "SearchSpaceChoices",
    "Searcher",
    "Supernet",
    "Training",
]
