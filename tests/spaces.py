"""Small search spaces for tests, and every encoding of one."""

from __future__ import annotations

import itertools

from dopt.scenario.model import SearchSpaceChoices, Supernet
from dopt.space import SearchSpace


def make_space(filters=(16, 16, 24), strides=(1, 1, 2), feature_choose=(), in_channels=16, **choices) -> SearchSpace:
    choices.setdefault("expand_ratios", (1, 3, 6))  # expansion 1 too: its plans differ (no expand conv)
    cfg = Supernet(
        input_shape=(1, 8, 8),
        data_format="channels_first",
        filters=filters,
        strides=strides,
        feature_choose=feature_choose,
        search_space=SearchSpaceChoices(**choices),
    )
    return SearchSpace(cfg, in_channels)


def all_encodings(space: SearchSpace):
    return itertools.product(*(range(lo, hi + 1) for lo, hi in zip(space.xl, space.xu)))
