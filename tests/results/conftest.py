"""Small hand-made archives shared by the results tests."""

from __future__ import annotations

import math

import pytest

from dopt.archive import Archive, Candidate
from dopt.costs import Costs
from dopt.scenario.model import Constraint
from dopt.space import LayerChoice

ARCH = (LayerChoice(kernel=3, expand=1, out_channels=8),)
CONSTRAINT = Constraint(application="image_classification", kind="flops", value=100.0)


def _cand(enc: int, metric: float | None, cost: int, gen: int, latency: float | None = None) -> Candidate:
    return Candidate(
        encoding=(enc, enc % 2),
        arch=ARCH,
        metric=metric,
        costs=Costs(size=cost * 3, flops=cost, latency=latency),
        feasible=cost <= CONSTRAINT.value,
        generation=gen,
        eval_seconds=0.01 * (enc + 1),
    )


@pytest.fixture
def archive() -> Archive:
    """Front is [4, 0, 2] (N = 1, 2, 3); 1 is dominated, 3 infeasible, 5 has a NaN metric."""
    a = Archive(CONSTRAINT)
    for c in (
        _cand(0, 0.5, 40, 0),
        _cand(1, 0.45, 50, 0, latency=1.5),
        _cand(2, 0.7, 80, 1),
        _cand(3, None, 150, 1),
        _cand(4, 0.1 + 0.2, 20, 2),
        _cand(5, math.nan, 30, 2),
    ):
        a.add(c)
    return a


@pytest.fixture
def empty_archive() -> Archive:
    return Archive(CONSTRAINT)


@pytest.fixture
def infeasible_archive() -> Archive:
    """Evaluated candidates but an empty front."""
    a = Archive(CONSTRAINT)
    a.add(_cand(0, None, 150, 0))
    a.add(_cand(1, None, 300, 0))
    a.add(_cand(2, math.nan, 60, 1))
    return a
