"""MACs of an exported ONNX graph: Conv + Gemm + MatMul, from inferred shapes (the deployed truth)."""

from __future__ import annotations

from math import prod


def onnx_macs(path: str) -> int:
    import onnx
    from onnx import numpy_helper, shape_inference

    model = shape_inference.infer_shapes(onnx.load(path))
    graph = model.graph
    shapes = {}
    for vi in list(graph.value_info) + list(graph.input) + list(graph.output):
        dims = vi.type.tensor_type.shape.dim
        # A symbolic dimension (the dynamic batch) has no dim_value: count it as 1.
        shapes[vi.name] = [d.dim_value if d.HasField("dim_value") else 1 for d in dims]
    for init in graph.initializer:
        shapes[init.name] = list(numpy_helper.to_array(init).shape)
    total = 0
    for node in graph.node:
        if node.op_type == "Conv":
            w = shapes[node.input[1]]  # Cout, Cin/groups, kh, kw
            out = shapes[node.output[0]]  # N, Cout, H, W
            total += prod(w) * out[2] * out[3] * out[0]
        elif node.op_type in ("Gemm", "MatMul"):
            a, b = shapes[node.input[0]], shapes[node.input[1]]
            trans_b = any(att.name == "transB" and att.i for att in node.attribute)
            k = a[-1]
            n = b[0] if trans_b else b[-1]
            total += prod(a[:-1]) * k * n
    return total
