"""Search-space analysis on synthetic metrics whose answer is known (docs/analysis.md)."""

from __future__ import annotations

import numpy as np

from dopt.costs import CostModel, Costs
from dopt.results.space_analysis import Record, analyze, dimensions, draw, errors
from tests.spaces import make_space


def space_and_costs():
    space = make_space(filters=(16, 16, 24), strides=(1, 1, 2), kernel_sizes=(3, 5, 7))
    return space, CostModel(space, (8, 8), Costs(size=100, flops=1000))


def records(space, metric_of, n=300, seed=0):
    rng = np.random.default_rng(seed)
    encodings = {space.canonical(space.sample(rng)) for _ in range(n)}
    return [Record(e, metric_of(e, rng), 0.0) for e in sorted(encodings)]


def test_dimensions_name_each_layer_and_pool_the_kept_ones():
    space, _ = space_and_costs()
    # layer 0: kernel 7, expand 6, width 0.5; layer 1 skipped; layer 2 (last, full width): kernel 3
    encoding = space.canonical([2, 2, 0, 0, 0, 0, 0, 1, 0, 1, 2, 0])
    d = dimensions(space, encoding)
    assert d["kernel@0"] == [7] and d["kernel@2"] == [3] and "kernel@1" not in d
    assert d["kernel"] == [7, 3] and d["skip@1"] == ["skipped"] and "skip@2" not in d and "width@2" not in d
    assert d["depth"] == [2]


def test_a_gene_that_decides_the_error_ranks_first_and_clearly():
    space, _ = space_and_costs()

    def metric(e, rng):  # layer 0's kernel decides; everything else is noise
        return 0.6 + 0.1 * e[0] + rng.normal(0, 0.01)

    result = analyze(space, records(space, metric), seed=1)
    top = result["effects"][0]
    assert top["dimension"] == "kernel@0" and top["best"] == 7 and top["worst"] == 3 and top["clear"]
    assert abs(top["difference"] - 0.2) < 0.02
    noise = next(e for e in result["effects"] if e["dimension"] == "expand@2")
    assert not noise["clear"] and noise["difference"] < 0.05  # within the spread of the kernel's effect
    assert result["summary"][0].startswith("kernel@0: 7 beats 3 by 0.19") and result["summary"][0].endswith("matters)")
    edf = result["edf"]["kernel@0"]
    assert list(edf) == ["3", "5", "7"] and all(v == sorted(v) for v in edf.values())


def test_split_by_a_dimension_analyses_each_group_on_its_own():
    space, _ = space_and_costs()

    def metric(e, rng):  # the kernel of layer 2 matters only when layer 1 is skipped
        return 0.7 + (0.05 * e[8] if e[7] else 0.0) + rng.normal(0, 0.005)

    result = analyze(space, records(space, metric, n=600), seed=1, split_by="skip@1")
    groups = result["split"]["groups"]
    assert set(groups) == {"kept", "skipped"}
    assert groups["skipped"]["effects"][0]["dimension"] in ("kernel@2", "kernel")
    assert not any(e["clear"] for e in groups["kept"]["effects"] if e["dimension"] == "kernel@2")


def test_errors_of_an_unbounded_metric_are_gaps_to_the_best():
    assert errors([0.5, 0.9])[1] == "1 - metric" and np.allclose(errors([0.5, 0.9])[0], [0.5, 0.1])
    err, meaning = errors([10.0, 12.0])
    assert meaning == "best metric - metric" and list(err) == [2.0, 0.0]


def test_draw_is_distinct_seeded_and_honours_the_cost_range():
    space, costs = space_and_costs()
    a = draw(space, costs, 40, seed=5, kind="size")
    assert len(a) == len(set(a)) == 40 and a == draw(space, costs, 40, seed=5, kind="size")
    lo, hi = costs.cost_range("size")
    mid = (lo + hi) / 2
    inside = draw(space, costs, 20, seed=5, kind="size", cost_range=(lo, mid))
    assert inside and all(costs.cost("size", space.decode(e)) <= mid for e in inside)
