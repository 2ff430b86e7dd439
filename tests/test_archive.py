"""Archive: Pareto front, hypervolume, best metric and the record round trip."""

from __future__ import annotations

import json
import math

import pytest

from dopt.archive import Archive, Candidate
from dopt.costs import Costs
from dopt.scenario.model import Constraint
from dopt.space import LayerChoice

ARCH = (LayerChoice(kernel=3, expand=1, out_channels=8),)
FLOPS_100 = Constraint(application="image_classification", kind="flops", value=100.0)


def cand(
    enc: int,
    metric: float | None,
    cost: int,
    *,
    feasible: bool | None = None,
    gen: int = 0,
    latency: float | None = None,
) -> Candidate:
    """A candidate whose flops and size are both ``cost``."""
    return Candidate(
        encoding=(enc,),
        arch=ARCH,
        metric=metric,
        costs=Costs(size=cost, flops=cost, latency=latency),
        feasible=cost <= 100 if feasible is None else feasible,
        generation=gen,
        eval_seconds=0.125 * enc,
    )


def archive_of(*cands: Candidate, constraint: Constraint = FLOPS_100) -> Archive:
    a = Archive(constraint)
    for c in cands:
        a.add(c)
    return a


def test_front_drops_dominated_infeasible_and_nan():
    a = archive_of(
        cand(0, 0.50, 40),  # front
        cand(1, 0.45, 50),  # dominated by 0
        cand(2, 0.70, 80),  # front
        cand(3, None, 150),  # infeasible
        cand(4, math.nan, 10),  # NaN metric: never on the front
        cand(5, 0.30, 20),  # front (cheapest with a metric)
        cand(6, 0.70, 90),  # dominated by 2 (same metric, dearer)
        cand(7, math.inf, 30),  # not a finite metric
    )
    assert a.front() == [5, 0, 2]


def test_front_ties_keep_earliest_duplicate_and_sort_by_cost():
    a = archive_of(
        cand(0, 0.6, 50),
        cand(1, 0.6, 50),  # exact duplicate of 0 in (metric, cost): dropped
        cand(2, 0.5, 50),  # same cost, lower metric: dominated
        cand(3, 0.4, 30),
        cand(4, 0.6, 70),  # same metric, dearer: dominated
    )
    assert a.front() == [3, 0]


def test_front_is_empty_without_feasible_metrics():
    assert archive_of().front() == []
    assert archive_of(cand(0, None, 200), cand(1, math.nan, 50)).front() == []


def test_front_ignores_a_metric_on_an_infeasible_candidate():
    a = archive_of(cand(0, 0.9, 120, feasible=False), cand(1, 0.5, 60))
    assert a.front() == [1]


def test_front_uses_the_constraint_kind():
    lat = Constraint(application="image_classification", kind="latency", value=10.0)
    a = Archive(lat)
    a.add(
        Candidate(
            encoding=(0,),
            arch=ARCH,
            metric=0.5,
            costs=Costs(size=10, flops=10, latency=5.0),
            feasible=True,
            generation=0,
        )
    )
    a.add(
        Candidate(
            encoding=(1,),
            arch=ARCH,
            metric=0.6,
            costs=Costs(size=99, flops=99, latency=4.0),
            feasible=True,
            generation=0,
        )
    )
    assert a.front() == [1]


def test_cost_kinds():
    c = cand(0, 0.5, 40, latency=2.5)
    assert (c.cost("size"), c.cost("flops"), c.cost("latency")) == (40.0, 40.0, 2.5)
    with pytest.raises(ValueError, match="not measured"):
        cand(1, 0.5, 40).cost("latency")
    with pytest.raises(ValueError, match="unknown cost kind"):
        c.cost("energy")


def test_hypervolume_of_one_point_by_hand():
    # (-0.5, 0.5) against (0, 1): a 0.5 x 0.5 square.
    assert archive_of(cand(0, 0.5, 50)).hypervolume() == pytest.approx(0.25)


def test_hypervolume_of_a_staircase_by_hand():
    # Points (-0.3, 0.2), (-0.6, 0.5): 0.3*0.8 + (0.6-0.3)*0.5 = 0.24 + 0.15.
    a = archive_of(cand(0, 0.3, 20), cand(1, 0.6, 50), cand(2, 0.2, 60), cand(3, None, 500))
    assert a.hypervolume() == pytest.approx(0.39)


@pytest.mark.parametrize(
    "cands",
    [
        (),
        (cand(0, None, 150),),
        (cand(0, 0.0, 50),),  # metric 0 does not dominate the reference
        (cand(0, -0.2, 50),),
        (cand(0, 0.8, 100),),  # cost at the constraint: zero width
        (cand(0, math.nan, 10),),
    ],
)
def test_hypervolume_is_zero_without_a_dominating_point(cands):
    assert archive_of(*cands).hypervolume() == 0.0


def test_best_metric_treats_nan_as_worst():
    assert archive_of().best_metric() is None
    assert archive_of(cand(0, None, 150)).best_metric() is None
    assert archive_of(cand(0, math.nan, 10), cand(1, 0.4, 20)).best_metric() == 0.4
    assert math.isnan(archive_of(cand(0, math.nan, 10)).best_metric())
    assert archive_of(cand(0, 0.9, 120, feasible=False), cand(1, 0.4, 20)).best_metric() == 0.4


def test_add_get_len_iter_getitem():
    a = archive_of(cand(0, 0.5, 40), cand(1, None, 140))
    assert len(a) == 2
    assert [c.encoding for c in a] == [(0,), (1,)]
    assert a[1].encoding == (1,)
    assert a.get((1,)) is a[1]
    assert a.get([0]) is a[0]
    assert a.get((9,)) is None
    with pytest.raises(ValueError, match="already in the archive"):
        a.add(cand(0, 0.7, 30))


def test_candidate_normalises_numpy_values():
    np = pytest.importorskip("numpy")
    c = Candidate(
        encoding=np.array([1, 2]),
        arch=ARCH,
        metric=np.float32(0.5),
        costs=Costs(size=np.int64(3), flops=np.int64(4)),
        feasible=np.bool_(True),
        generation=np.int64(0),
    )
    assert type(c.encoding[0]) is int and c.encoding == (1, 2)
    assert type(c.metric) is float and type(c.costs["size"]) is int and type(c.feasible) is bool
    json.dumps(archive_of(c).to_records())


def test_records_round_trip_exactly():
    a = archive_of(
        cand(0, 0.1 + 0.2, 40, gen=0),
        cand(1, None, 140, gen=1),
        cand(2, math.nan, 60, gen=1, latency=1.0 / 3),
        cand(3, 0.7, 80, gen=2),
    )
    records = json.loads(json.dumps(a.to_records(), allow_nan=False))
    assert records == a.to_records()
    assert records[2]["metric"] is None and records[1]["metric"] is None  # NaN as JSON's null
    assert [r["eval_seconds"] for r in records] == [c.eval_seconds for c in a]
    assert records[0]["metric"] == 0.1 + 0.2  # repr-exact float


def test_records_have_the_pareto_json_fields():
    (r,) = archive_of(cand(0, math.nan, 40)).to_records()
    assert list(r) == [
        "encoding",
        "arch",
        "metric",
        "size",
        "flops",
        "latency_ms",
        "feasible",
        "generation",
        "eval_seconds",
    ]
    assert r["metric"] is None and r["arch"] == [{"kernel": 3, "expand": 1, "out_channels": 8}]
