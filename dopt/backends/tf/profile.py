"""Params and MACs of a Keras model as docs/costs.md#measured-on-the-extracted-model defines them."""

from __future__ import annotations

from math import prod
from typing import Any

import tensorflow as tf

__all__ = ["count_params", "count_macs", "graph_macs"]

# Graph ops that are convolutions or matrix multiplies.
_CONV = {"Conv2D", "DepthwiseConv2dNative"}
_MATMUL = {"MatMul", "BatchMatMul", "BatchMatMulV2", "BatchMatMulV3"}


def count_params(model: Any) -> int:
    """Trainable parameters (BN gamma/beta count, moving statistics do not)."""
    return int(sum(prod(int(d) for d in w.shape) for w in model.trainable_weights))


def count_macs(model: Any, example: Any) -> int:
    """Multiply-accumulates of convolutions and matrix multiplies for one inference of ``example``.

    Counted on the traced graph rather than on Keras layers, so that raw ``tf.matmul`` or
    ``tf.nn.conv2d`` calls in the user's PreNet/PostNet count too (as torch's op-level count does).
    """
    spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), example)
    fn = tf.function(lambda x: model(x, training=False), autograph=False)
    return graph_macs(fn.get_concrete_function(spec).graph)


def graph_macs(graph: tf.Graph) -> int:
    """MACs of the Conv2D, DepthwiseConv2dNative and MatMul ops of ``graph`` from their static shapes."""
    total = 0
    for op in graph.get_operations():
        if op.type in _CONV:
            kernel = [int(d) for d in op.inputs[1].shape]  # kh, kw, Cin, Cout (or multiplier)
            out = [int(d) for d in op.outputs[0].shape]
            fmt = op.get_attr("data_format").decode()
            spatial = out[1] * out[2] if fmt == "NHWC" else out[2] * out[3]
            total += out[0] * spatial * prod(kernel)
        elif op.type in _MATMUL:
            a, out = op.inputs[0].shape, op.outputs[0].shape
            adj = op.get_attr("transpose_a") if op.type == "MatMul" else op.get_attr("adj_x")
            inner = int(a[-2] if adj else a[-1])
            total += prod(int(d) for d in out) * inner
    return int(total)
