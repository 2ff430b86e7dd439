"""BatchNorm recalibration of an extracted subnet on the fixed calibration subset (docs/search-space.md#evaluating-a-candidate)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras
import numpy as np

from dopt.backends.tf.traced import traced_call

__all__ = ["recalibrate", "all_layers"]

# Layers that are random in training mode; silenced while BN statistics are gathered.
_NOISE = {
    "rate": (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout),
    "stddev": (keras.layers.GaussianNoise,),
}


def all_layers(model: Any) -> list[Any]:
    """``model`` and every layer nested in it, each once (Keras tracks sublayers of any attribute)."""
    seen: dict[int, Any] = {}
    stack = [model]
    while stack:
        layer = stack.pop()
        if id(layer) in seen:
            continue
        seen[id(layer)] = layer
        stack.extend(reversed(getattr(layer, "_layers", [])))
    return list(seen.values())


def recalibrate(model: Any, batches: Sequence[Any]) -> None:
    """Reset every BatchNormalization of ``model`` (PreNet and PostNet included) and set its
    statistics to the mean over ``batches`` of each batch's mean and variance (what torch's
    ``momentum=None`` gives).

    The model runs in training mode with momentum 0, so after each batch every BatchNorm's moving
    statistics are that batch's (computed on inputs normalised by the batch statistics of the
    layers before, as in training); they are summed here and their average assigned at the end.
    Dropout and noise layers are silenced for the pass (rate 0) and restored after; no gradient
    is taken, nothing else changes.
    """
    layers = all_layers(model)
    bns = [m for m in layers if isinstance(m, keras.layers.BatchNormalization)]
    if not bns or not batches:
        return
    saved = [(m, attr, getattr(m, attr)) for m in layers for attr, kinds in _NOISE.items() if isinstance(m, kinds)]
    momenta = [m.momentum for m in bns]
    for m, attr, _ in saved:
        setattr(m, attr, 0.0)
    for m in bns:
        m.momentum = 0.0

    def batch_statistics(inputs: Any) -> list[Any]:
        model(inputs, training=True)
        return [s.value for m in bns for s in (m.moving_mean, m.moving_variance)]

    try:
        step = traced_call(batch_statistics)
        sums = [np.zeros(s.shape, np.float64) for m in bns for s in (m.moving_mean, m.moving_variance)]
        for inputs in batches:
            for total, value in zip(sums, step(inputs)):
                total += np.asarray(value, np.float64)
        for i, m in enumerate(bns):
            m.moving_mean.assign((sums[2 * i] / len(batches)).astype(np.float32))
            m.moving_variance.assign((sums[2 * i + 1] / len(batches)).astype(np.float32))
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        for m, attr, value in saved:
            setattr(m, attr, value)
