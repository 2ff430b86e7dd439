from __future__ import annotations

from dopt.costs import CostModel, Costs
from tests.spaces import all_encodings, make_space


def test_cost_range_is_the_exact_min_and_max_over_the_space():
    space = make_space(filters=(16, 16, 24), strides=(1, 1, 2), kernel_sizes=(3, 5), expand_ratios=(1, 3))
    model = CostModel(space, (8, 8), Costs(size=100, flops=1000))
    for kind in ("size", "flops"):
        values = [model.costs(space.decode(list(e)))[kind] for e in all_encodings(space)]
        assert model.cost_range(kind) == (min(values), max(values))


def test_skipped_layer_costs_nothing_and_fixed_part_is_added():
    space = make_space(filters=(16, 16), strides=(1, 1))
    model = CostModel(space, (4, 4), Costs(size=7, flops=11))
    arch = space.decode(list(space.smallest()))
    assert arch[0].skip
    only_last = model.costs(arch)
    # layer 1: k3, e1, 16 -> 16: depthwise 16*9 + BN 32, project 16*16 + BN 32
    assert only_last["size"] == 7 + 16 * 9 + 32 + 256 + 32
    assert only_last["flops"] == 11 + (16 * 9 + 256) * 16
