"""Params and MACs of a PyTorch model as docs/costs.md#measured-on-the-extracted-model defines them."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["count_params", "count_macs"]

# aten ops that are convolutions or matrix multiplies; FlopCounterMode counts 2 FLOPs per MAC.
_MAC_OPS = {"convolution", "_convolution", "mm", "addmm", "bmm", "baddbmm", "matmul"}


def count_params(model: nn.Module) -> int:
    """Trainable parameters (BN gamma/beta count, running statistics do not)."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def count_macs(model: nn.Module, example: Any) -> int:
    """Multiply-accumulates of convolutions and matrix multiplies for one forward of ``example``.

    We count at the aten level (torch's FlopCounterMode) rather than with module hooks so that
    functional calls in the user's PreNet/PostNet (F.linear, torch.matmul) are counted too.
    """
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(example)
    finally:
        model.train(was_training)
    counts = counter.get_flop_counts().get("Global", {})
    flops = sum(v for op, v in counts.items() if _op_name(op) in _MAC_OPS)
    return int(flops // 2)


def _op_name(op: Any) -> str:
    name = getattr(op, "__name__", str(op))  # e.g. "convolution.default"
    return name.split(".")[0]
