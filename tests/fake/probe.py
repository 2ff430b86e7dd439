"""Checking a fake user module and counting it: its datasets, PreNet's output, PostNet's matrix,
the loss value, parameters and MACs (the fake backend's counterpart of dopt/backends/torch/probe.py
and profile.py)."""

from __future__ import annotations

from typing import Any

import numpy as np

from dopt.errors import UserError
from tests.fake.static import Net

__all__ = ["dataset", "affine", "spatial", "softmax", "loss_value", "param_count", "fixed_macs", "layer_macs"]


def dataset(data: Any, what: str, chw: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """What ``dataset_define`` returned, as (inputs, integer labels).

    Raises:
        UserError: not an (inputs, labels) pair, or inputs not of ``chw``.
    """
    if not (isinstance(data, tuple) and len(data) == 2):
        raise UserError(
            f"{what} returned {type(data).__name__}, not an (inputs, labels) pair of arrays",
            key="UserModule.dataset_define",
            fix="return (inputs, labels): inputs of shape (N, C, H, W), labels of shape (N,)",
        )
    inputs, labels = np.asarray(data[0], dtype=float), np.asarray(data[1])
    if inputs.shape[1:] != tuple(chw) or len(labels) != len(inputs) or not len(labels):
        raise UserError(
            f"{what} returned inputs of shape {inputs.shape} and {len(labels)} labels; input_shape is {tuple(chw)}",
            key="UserModule.dataset_define",
            fix="return as many labels as inputs, each input of input_shape",
        )
    return inputs, labels.astype(int)


def affine(post: Any, channels: int, hw: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """PostNet's matrix and bias, measured on spatially constant inputs, checked on a random one."""
    basis = np.concatenate([np.zeros((1, channels)), np.eye(channels)])
    out = np.asarray(post.forward(spatial(basis, hw)))
    if out.ndim != 2:
        raise UserError(f"PostNet.forward returned shape {out.shape}, not (N, classes)", key="PostNet.forward")
    bias, matrix = out[0], (out[1:] - out[0]).T
    probe = np.random.default_rng(0).normal(size=(3, channels))
    if not np.allclose(np.asarray(post.forward(spatial(probe, hw))), probe @ matrix.T + bias, atol=1e-8):
        raise UserError("PostNet is not affine in its input: the fake backend cannot train through it", key="PostNet")
    return matrix, bias


def spatial(vectors: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """One vector per sample as a spatially constant (N, C, H, W) map."""
    return np.broadcast_to(vectors[:, :, None, None], vectors.shape + tuple(hw))


def softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def loss_value(value: Any) -> float:
    """The user's loss as a float.

    Raises:
        UserError: an array of several values, or not a number.
    """
    if np.ndim(value) != 0 and np.size(value) != 1:
        raise UserError(
            f"loss_func returned an array of shape {np.shape(value)}, not a scalar",
            key="UserModule.loss_func",
            fix="return the mean loss over the batch",
        )
    try:
        return float(np.asarray(value).reshape(()))
    except (TypeError, ValueError):
        raise UserError(
            f"loss_func returned {type(value).__name__}, not a number", key="UserModule.loss_func", fix="return a float"
        ) from None


def param_count(part: Any) -> int:
    """Parameters of PreNet or PostNet: the sizes of the arrays its parameters() returns."""
    return int(sum(np.size(a) for a in part.parameters()))


def fixed_macs(part: Any) -> int:
    """MACs of PreNet or PostNet at batch 1: each 2-D array counts as a dense layer applied once."""
    return int(sum(np.size(a) for a in part.parameters() if np.ndim(a) == 2))


def layer_macs(model: Net, in_hw: tuple[int, int]) -> int:
    """MACs of the searched layers, from their arrays: the 1x1 expand at the input size, the
    depthwise and project convolutions at the output size."""
    macs, hw = 0, in_hw
    for layer in model.layers:
        stride = layer.row[3]
        out = ((hw[0] - 1) // stride + 1) * ((hw[1] - 1) // stride + 1)
        if layer.expand is not None:
            macs += layer.expand.size * hw[0] * hw[1]
        macs += (layer.depthwise.size + layer.project.size) * out
        hw = ((hw[0] - 1) // stride + 1, (hw[1] - 1) // stride + 1)
    return macs
