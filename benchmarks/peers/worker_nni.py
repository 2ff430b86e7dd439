"""NNI 3.0 (a historical point: NNI's NAS is no longer developed) against dopt, interleaved in one
process (runs in the nni env).

NNI's idiom: a ``ModelSpace`` whose layers take ``nni.choice`` values and expressions of them
(``MutableConv2d(cin, cin * e, ...)``), turned into a weight-sharing supernet by a one-shot
strategy (``RandomOneShot().mutate_model``: every mutable layer becomes a sliced ``Mixed*``
operation). A subnet is a sample {label: value}, activated by ``resample(memo=sample)`` on every
supernet module and extracted with ``freeze(sample)``. The shared space maps one to one (labels
k<i>, e<i>, w<i>; each layer's input width is the previous layer's choice), the subnets drawn
are dopt's, and the residual is the same rule in ``forward``.

NNI's ``MixedOperation.freeze`` loads a state dict holding ``None`` for absent biases, which
fails on bias-free convolutions; :func:`_patch_freeze` drops those entries at run time.
"""

from __future__ import annotations

import sys

import torch
from shared_space import SPACE
from torch import nn
from torch_side import Contender, arch_rows, head, stem, worker_main


def _patch_freeze() -> None:
    """``MixedOperation.freeze`` as NNI writes it, minus the ``None`` entries of the state dict."""
    from nni.nas.oneshot.pytorch.supermodule.operation import MixedOperation

    def freeze(self, sample):  # type: ignore[no-untyped-def]
        arguments = {**self.init_arguments, **{k: m.freeze(sample) for k, m in self.mutable_arguments.items()}}
        operation = self.bound_type(**arguments)
        state = {k: v for k, v in self.freeze_weight(**arguments).items() if v is not None}
        operation.load_state_dict(state)
        return operation

    MixedOperation.freeze = freeze


def _space():  # type: ignore[no-untyped-def]
    import nni
    from nni.nas.nn.pytorch import ModelSpace, MutableBatchNorm2d, MutableConv2d

    from dopt.space import round_width

    class Block(nn.Module):
        def __init__(self, i: int, cin, filters: int, stride: int, last: bool) -> None:  # type: ignore[no-untyped-def]
            super().__init__()
            k = nni.choice(f"k{i}", list(SPACE["kernels"]))
            e = nni.choice(f"e{i}", list(SPACE["expands"]))
            widths = [filters] if last else sorted({round_width(filters, w) for w in SPACE["widths"]})
            cout = nni.choice(f"w{i}", widths) if len(widths) > 1 else widths[0]
            hidden = cin * e
            self.stride = stride
            # expand
            self.expand = nn.Sequential(
                MutableConv2d(cin, hidden, 1, bias=False), MutableBatchNorm2d(hidden), nn.ReLU6()
            )
            # depthwise
            self.depthwise = nn.Sequential(
                MutableConv2d(hidden, hidden, k, stride, k // 2, groups=hidden, bias=False),
                MutableBatchNorm2d(hidden),
                nn.ReLU6(),
            )
            # project
            self.project = nn.Sequential(MutableConv2d(hidden, cout, 1, bias=False), MutableBatchNorm2d(cout))
            self.cout = cout

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            out = self.project(self.depthwise(self.expand(x)))
            return x + out if self.stride == 1 and out.shape[1] == x.shape[1] else out

    class Space(ModelSpace):
        def __init__(self) -> None:
            super().__init__()
            self.stem = stem()
            cin, blocks = SPACE["stem"], []
            last = len(SPACE["filters"]) - 1
            for i, (filters, stride) in enumerate(zip(SPACE["filters"], SPACE["strides"])):
                blocks.append(Block(i, cin, filters, stride, i == last))
                cin = blocks[-1].cout
            self.blocks = nn.Sequential(*blocks)
            self.head = head()

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(self.blocks(self.stem(x)))

    return Space()


def nni_contender() -> Contender:
    from importlib.metadata import version

    from nni.nas.oneshot.pytorch.strategy import RandomOneShot
    from nni.nas.oneshot.pytorch.supermodule.base import BaseSuperNetModule

    _patch_freeze()
    supernet = RandomOneShot().mutate_model(_space())
    labels = set(supernet.simplify())
    active: dict = {}

    def sample(rng):  # type: ignore[no-untyped-def]
        chosen = {}
        for i, (k, e, c) in enumerate(arch_rows(rng)):
            chosen.update({f"k{i}": k, f"e{i}": e, f"w{i}": c})
        return {label: value for label, value in chosen.items() if label in labels}

    def activate(chosen: dict) -> None:
        for module in supernet.modules():
            if isinstance(module, BaseSuperNetModule):
                module.resample(memo=dict(chosen))
        active.clear()
        active.update(chosen)

    def extract() -> nn.Module:
        return supernet.freeze(dict(active))

    return Contender(
        f"NNI {version('nni')} RandomOneShot",
        supernet,
        sample,
        activate,
        extract,
        notes="same subnets as dopt; freeze patched for bias-free convs",
    )


def main() -> int:
    return worker_main(__doc__, "NNI 3.0", "nni env", nni_contender, stage="build")


if __name__ == "__main__":
    sys.exit(main())
