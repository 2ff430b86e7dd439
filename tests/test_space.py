from __future__ import annotations

import pytest

from dopt.space import round_width
from tests.spaces import all_encodings, make_space


@pytest.mark.parametrize(
    ("filters", "ratio", "width"),
    [(64, 0.5, 32), (64, 0.75, 48), (16, 0.75, 16), (24, 0.5, 16), (20, 0.25, 8), (6, 0.5, 6), (100, 1.0, 100)],
)
def test_round_width(filters, ratio, width):
    assert round_width(filters, ratio) == width


def test_last_layer_and_feature_layers_keep_full_width_and_are_never_skipped():
    space = make_space(filters=(16, 16, 16, 16), strides=(1, 1, 1, 1), feature_choose=(1,))
    fixed = [s.fixed_width for s in space.layers]
    skippable = [s.skippable for s in space.layers]
    assert fixed == [False, True, False, True]
    assert skippable == [True, False, True, False]
    for enc in all_encodings(space):
        arch = space.decode(enc)
        assert arch[1].out_channels == 16 and arch[3].out_channels == 16


def test_skip_only_where_shapes_allow():
    # layer 0: stride 1 but 16 -> 24 channels; layer 2: stride 2
    space = make_space(filters=(24, 24, 32, 32), strides=(1, 1, 2, 1))
    assert [s.skippable for s in space.layers] == [False, True, False, False]


def test_canonical_merges_equivalent_encodings_and_size_counts_distinct_networks():
    space = make_space(kernel_sizes=(3, 5), expand_ratios=(1, 6))
    canon = {space.canonical(list(e)) for e in all_encodings(space)}
    archs = {space.decode(list(e)) for e in all_encodings(space)}
    assert len(canon) == len(archs) == space.size()
    for enc in canon:  # canonical is a fixed point and round-trips
        assert space.canonical(list(enc)) == enc
        assert space.encode(space.decode(enc)) == enc


def test_largest_and_smallest():
    space = make_space()
    largest, smallest = space.decode(space.largest()), space.decode(space.smallest())
    assert all(c.kernel == 7 and c.expand == 6 for c in largest)
    assert [c.out_channels for c in largest] == [16, 16, 24]
    assert smallest[0].skip and smallest[1].skip
    assert (smallest[2].kernel, smallest[2].expand, smallest[2].out_channels) == (3, 1, 24)


def test_plan_residual_only_when_shapes_match():
    space = make_space(filters=(16, 16, 24), strides=(1, 1, 2))
    arch = space.decode([0, 0, 0, 0, 0, 0, 2, 0, 0, 0, 2, 0])  # layer 0 at width 8, layer 1 full
    plans = space.plan(arch)
    assert [(p.in_channels, p.choice.out_channels, p.residual) for p in plans] == [
        (16, 8, False),
        (8, 16, False),
        (16, 24, False),
    ]
    arch = space.decode([0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 2, 0])
    assert [p.residual for p in space.plan(arch)] == [True, True, False]


def test_decode_rejects_out_of_range_genes():
    space = make_space()
    with pytest.raises(ValueError, match="gene 3"):
        space.decode([0, 0, 0, 5] + [0] * 8)
    with pytest.raises(ValueError, match="genes"):
        space.decode([0])
