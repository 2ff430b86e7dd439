"""NVIDIA ModelOpt AutoNAS against dopt, interleaved in one process (runs in the modelopt env).

ModelOpt's idiom: write the largest network as plain PyTorch and ``mtn.convert`` it with
``autonas`` rules; tracing turns its layers into dynamic modules and ties every width that a
residual or a depthwise convolution connects. The shared space written that way (rules below):
kernel {3, 5, 7} on depthwise convolutions, expansion as the hidden width's ratio {0.5, 1.0} of
the largest (x3 or x6 of the *largest* input, not the active one), width {0.5, 0.75, 1.0} on the
other convolutions, the last layer at full width. Where it differs from dopt: the residual is
always there, so the stem and layer 0, layers 1 and 2, layers 3 and 4 share one width (tied); the
stem may narrow with layer 0. ``mtn.sample`` draws the subnet, ``mtn.export`` (of a deep copy:
it converts in place) extracts it.

ModelOpt by default samples a new subnet at every training forward and recalibrates BatchNorm on
``eval()``; both patches are switched off here (``no_modelopt_patches``) so that one subnet is
timed and compared, as for every other contender.
"""

from __future__ import annotations

import random
import sys

import torch
from shared_space import SPACE
from torch import nn
from torch_side import Contender, PlainNet, worker_main


def _rules() -> dict:
    widths = {"channels_ratio": SPACE["widths"], "channel_divisor": 8, "kernel_size": ()}
    ratio = tuple(e / max(SPACE["expands"]) for e in SPACE["expands"])
    return {
        "nn.Conv2d": {
            "*": widths,
            "blocks.*.expand.0": {**widths, "channels_ratio": ratio},
            "blocks.*.depthwise.0": {**widths, "kernel_size": SPACE["kernels"]},
        },
        "nn.BatchNorm2d": {"features_ratio": tuple(sorted(set(SPACE["widths"]) | set(ratio))), "feature_divisor": 8},
        # Pins the head's input and with it the last layer's width (and layer 3's, tied by the residual).
        "nn.Linear": {"features_ratio": (1.0,), "feature_divisor": 1},
        "nn.Sequential": None,  # depth is not searched
    }


class _Unpatched(nn.Module):
    """The converted model run with ModelOpt's auto-sampling and BN-recalibration patches off."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from modelopt.torch.nas.utils import no_modelopt_patches

        with no_modelopt_patches():
            return self.model(x)

    def train(self, mode: bool = True) -> _Unpatched:
        from modelopt.torch.nas.utils import no_modelopt_patches

        with no_modelopt_patches():
            return super().train(mode)


def modelopt_contender() -> Contender:
    import copy

    import modelopt.torch.nas as mtn

    random.seed(0)
    model = mtn.convert(PlainNet(), mode=[("autonas", _rules())])
    wrapped = _Unpatched(model)

    def sample(_rng: object) -> dict:
        return mtn.sample(model)

    def activate(config: dict) -> None:
        mtn.select(model, config)

    def extract() -> nn.Module:
        return mtn.export(copy.deepcopy(model))

    from modelopt.torch.opt.utils import named_hparams, search_space_size

    hparams = {name: sorted(hp.choices) for name, hp in named_hparams(model, configurable=True)}
    print("ModelOpt hparams:", hparams, file=sys.stderr)
    return Contender(
        f"ModelOpt AutoNAS {_version('nvidia-modelopt')}",
        wrapped,
        sample,
        activate,
        extract,
        notes=f"{search_space_size(model):,} subnets in {len(hparams)} hparams; widths tied across residuals; patches off",
    )


def _version(dist: str) -> str:
    from importlib.metadata import version

    return version(dist)


def main() -> int:
    return worker_main(__doc__, "ModelOpt AutoNAS", "modelopt env", modelopt_contender, stage="convert")


if __name__ == "__main__":
    sys.exit(main())
