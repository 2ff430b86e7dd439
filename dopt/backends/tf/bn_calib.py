"""BatchNorm recalibration of an extracted subnet on the fixed calibration subset (SPEC 5.4)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import keras

__all__ = ["recalibrate", "all_layers"]

# Layers that are random in training mode; silenced while BN statistics are gathered.
_NOISE = {"rate": (keras.layers.Dropout, keras.layers.GaussianDropout, keras.layers.AlphaDropout),
          "stddev": (keras.layers.GaussianNoise,)}


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
    statistics to the cumulative mean and variance over ``batches``.

    The model runs in training mode, so every BatchNorm normalises with batch statistics and updates
    its moving ones; the momentum of batch ``k`` is ``(k - 1) / k``, which makes the moving values
    the exact average over the batches (what torch's ``momentum=None`` does). Dropout and noise
    layers are silenced for the pass (rate 0) and restored after; run eagerly, so each call reads
    the momentum set for it. Nothing else changes: no gradient is taken.
    """
    layers = all_layers(model)
    bns = [m for m in layers if isinstance(m, keras.layers.BatchNormalization)]
    if not bns or not batches:
        return
    saved = [(m, attr, getattr(m, attr)) for m in layers for attr, kinds in _NOISE.items() if isinstance(m, kinds)]
    momenta = [m.momentum for m in bns]
    for m, attr, _ in saved:
        setattr(m, attr, 0.0)
    try:
        for k, inputs in enumerate(batches, start=1):
            for m in bns:
                m.momentum = (k - 1) / k
            model(inputs, training=True)
    finally:
        for m, momentum in zip(bns, momenta):
            m.momentum = momentum
        for m, attr, value in saved:
            setattr(m, attr, value)
