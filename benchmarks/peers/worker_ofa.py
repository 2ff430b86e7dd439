"""Once-for-All against dopt, interleaved in one process (runs in the ofa env).

OFA's idiom: a network of its dynamic layers (``DynamicMBConvLayer``: elastic kernel, expansion
and output width), subnets chosen by setting each layer's ``active_*`` attributes and extracted
layer by layer with ``get_active_subnet(in_channel)``. The shared space maps one to one, and the
subnets drawn are the very ones dopt draws (same seed, same per-layer choices). Where it differs:
OFA transforms centre-cropped kernels through learned 25x25/9x9 matrices (its elastic kernel)
where dopt crops only; OFA's ``ResidualBlock`` adds its shortcut unconditionally, which elastic
widths break, so a five-line wrapper adds it where the active widths match (dopt's rule); the stem
and head are plain modules as in dopt. Expansion 1 is not in the space (OFA's extracted subnet
then differs from its supernet when 1 is mixed with larger ratios, measured earlier here).

OFA imports torchvision for its ImageNet data providers only; torchvision from PyPI does not load
beside the CPU torch build, so a stub stands in for it (nothing here loads data).
"""

from __future__ import annotations

import copy
import sys
import types

import torch
from shared_space import SPACE
from torch import nn
from torch_side import Contender, arch_rows, head, stem, worker_main


def _stub_torchvision() -> None:
    """Empty ``torchvision``, ``.transforms``, ``.transforms.functional`` and ``.datasets`` modules
    whose every attribute is a placeholder class, enough for OFA's imports to succeed."""
    try:
        import torchvision  # noqa: F401

        return
    except Exception:
        pass

    class _Stub(types.ModuleType):
        def __getattr__(self, name: str) -> type:
            if name.startswith("__"):
                raise AttributeError(name)
            return type(name, (), {})

    names = ("torchvision", "torchvision.transforms", "torchvision.transforms.functional", "torchvision.datasets")
    for name in names:
        sys.modules[name] = _Stub(name)
    for name in names[1:]:
        parent, _, child = name.rpartition(".")
        setattr(sys.modules[parent], child, sys.modules[name])


class _Residual(nn.Module):
    """``layer(x) + x`` where stride is 1 and the active widths match, else ``layer(x)``."""

    def __init__(self, layer: nn.Module, stride: int) -> None:
        super().__init__()
        self.layer, self.stride = layer, stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layer(x)
        return out + x if self.stride == 1 and out.shape[1] == x.shape[1] else out


def ofa_contender() -> Contender:
    _stub_torchvision()
    from ofa.imagenet_classification.elastic_nn.modules.dynamic_layers import DynamicMBConvLayer

    from dopt.space import round_width

    last = len(SPACE["filters"]) - 1
    blocks, cin = [], [SPACE["stem"]]
    for i, (filters, stride) in enumerate(zip(SPACE["filters"], SPACE["strides"])):
        widths = [filters] if i == last else sorted({round_width(filters, w) for w in SPACE["widths"]})
        layer = DynamicMBConvLayer(cin, widths, list(SPACE["kernels"]), list(SPACE["expands"]), stride, "relu6")
        blocks.append(_Residual(layer, stride))
        cin = widths
    supernet = nn.Sequential(stem(), *blocks, head())

    def activate(rows: list[tuple[int, int, int]]) -> None:
        for block, (k, e, c) in zip(blocks, rows):
            block.layer.active_kernel_size, block.layer.active_expand_ratio, block.layer.active_out_channel = k, e, c

    def extract() -> nn.Module:
        layers, c = [], SPACE["stem"]
        for block in blocks:
            layers.append(_Residual(block.layer.get_active_subnet(c, preserve_weight=True), block.stride))
            c = block.layer.active_out_channel
        return nn.Sequential(copy.deepcopy(supernet[0]), *layers, copy.deepcopy(supernet[-1]))

    return Contender(
        "Once-for-All 0.1.0",
        supernet,
        arch_rows,
        activate,
        extract,
        notes="same subnets as dopt; elastic kernel by transform matrices; residual by a wrapper",
    )


def main() -> int:
    return worker_main(__doc__, "Once-for-All", "ofa env", ofa_contender, stage="build")


if __name__ == "__main__":
    sys.exit(main())
