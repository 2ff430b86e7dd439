"""NNCF BootstrapNAS against dopt, interleaved in one process (runs in the bootstrapnas env).

BootstrapNAS's idiom: the largest network in plain PyTorch (torch_side.PlainNet, as for ModelOpt)
wrapped by NNCF (``create_nncf_network``) and given the ``elasticity`` algorithm (kernel and
width; depth off), which traces the graph and clusters every width that a residual or a depthwise
convolution ties. A subnet is ``get_random_config()`` / ``activate_subnet_for_config()`` of the
controller's ``multi_elasticity_handler``. Where it differs from dopt: widths are multipliers
{0.5, 0.75, 1.0} of every cluster, the hidden (expanded) widths included, so expansion is
{3, 4.5, 6} of the largest input rather than {3, 6} of the active one, and the last layer is
elastic too; residuals are always there (tied widths, as in ModelOpt); the kernel of smaller
sizes is transformed from the largest (OFA's elastic kernel).

BootstrapNAS has no PyTorch extraction: a subnet leaves as ONNX of the NNCF graph with the subnet
active (``TrainedSuperNet.export_active_subnet_to_onnx``). So (c) is not measured, and the static
network of (a) and (b) is PlainNet at the active widths and kernels (read from the supernet's
convolutions during one forward), with its own weights.

Versions: BootstrapNAS left NNCF in 3.0 (``nncf.experimental.torch.nas`` is absent in 3.0-3.4);
2.19.0 is the last release with it. Its default torch tracing (FunctionHookMode) traces nothing
here, so the elasticity finds no layer; ``NNCF_TORCH_LEGACY_TRACING=1`` (set below, before NNCF is
imported) restores the tracing by patching that BootstrapNAS was written for.
"""

from __future__ import annotations

import os

os.environ["NNCF_TORCH_LEGACY_TRACING"] = "1"

import random  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402

import torch  # noqa: E402
from shared_space import SPACE  # noqa: E402
from torch import nn  # noqa: E402
from torch_side import Contender, PlainNet, worker_main  # noqa: E402


def _config():  # type: ignore[no-untyped-def]
    from nncf import NNCFConfig

    return NNCFConfig.from_dict(
        {
            "input_info": {"sample_size": [1, *SPACE["input"]]},
            "bootstrapNAS": {
                "training": {
                    "elasticity": {
                        "available_elasticity_dims": ["kernel", "width"],
                        "width": {"min_width": 8, "width_step": 8, "width_multipliers": list(SPACE["widths"])},
                        "kernel": {"max_num_kernels": len(SPACE["kernels"])},
                    }
                }
            },
        }
    )


def _active_rows(model: nn.Module, handler) -> list[tuple[int, int, int, int, int, bool]]:  # type: ignore[no-untyped-def]
    """(cin, hidden, cout, kernel, stride, residual) of each block of the active subnet."""
    shapes: dict[str, tuple[int, int]] = {}
    hooks = [
        m.register_forward_hook(lambda m, i, o, name=name: shapes.__setitem__(name, (i[0].shape[1], o.shape[1])))
        for name, m in model.named_modules()
        if isinstance(m, nn.Conv2d)
    ]
    try:
        with torch.no_grad():
            model.eval()
            model(torch.zeros(1, *SPACE["input"]))
    finally:
        for h in hooks:
            h.remove()
    kernels = {}
    for op in handler.kernel_handler._elastic_kernel_ops:
        found = re.search(r"PlainBlock\[(\d+)\]/Sequential\[depthwise\]", op.node_name)
        if found:
            kernels[int(found.group(1))] = op.get_active_kernel_size()
    rows = []
    for i, stride in enumerate(SPACE["strides"]):
        cin, hidden = shapes[f"blocks.{i}.expand.0"]
        cout = shapes[f"blocks.{i}.project.0"][1]
        rows.append((cin, hidden, cout, kernels[i], stride, model.blocks[i].residual))
    return rows


def bootstrapnas_contender() -> Contender:
    from importlib.metadata import version

    from nncf.experimental.torch.nas.bootstrapNAS.training.model_creator_helpers import (
        create_compressed_model_from_algo_names,
    )
    from nncf.torch.model_creation import create_nncf_network

    random.seed(0)
    cfg = _config()
    ctrl, model = create_compressed_model_from_algo_names(
        create_nncf_network(PlainNet(), cfg), cfg, ["elasticity"], dump_graphs=False
    )
    handler = ctrl.multi_elasticity_handler
    handler.enable_all()
    space = handler.get_search_space()
    if not space.get("width") and not space.get("kernel"):
        raise RuntimeError(f"the elasticity found nothing to search: {space}")

    def extract() -> nn.Module:
        return PlainNet(_active_rows(model, handler))

    return Contender(
        f"NNCF BootstrapNAS {version('nncf')}",
        model,
        lambda _rng: handler.get_random_config(),
        handler.activate_subnet_for_config,
        extract,
        notes="static = PlainNet at the active sizes (no PyTorch extraction: ONNX only); "
        "widths tied across residuals; expansion {3,4.5,6}",
        exact=False,
    )


def main() -> int:
    return worker_main(__doc__, "NNCF BootstrapNAS", "bootstrapnas env", bootstrapnas_contender, stage="build")


if __name__ == "__main__":
    sys.exit(main())
