"""Dry runs that catch user-module mistakes before anything trains (docs/cli.md#what-a-run-does, docs/resume.md#resuming-a-run).

Each check turns a contract violation into a UserError (exit 2) that names the function and the
fix; an exception raised inside user code itself still surfaces with the user's frames (exit 1).
"""

from __future__ import annotations

import inspect
import logging
from typing import Any

import torch
from torch import nn

from dopt.backends.torch.profile import count_macs
from dopt.costs.formulas import out_hw
from dopt.errors import UserError

__all__ = ["prenet_output", "postnet_input", "check_postnet", "check_loss", "check_scheduler", "check_distillable"]

log = logging.getLogger(__name__)


def prenet_output(pre: nn.Module, example: torch.Tensor) -> tuple[int, tuple[int, int]]:
    """Channels and spatial size PreNet produces for ``example`` (batch 1, eval mode)."""
    try:
        with torch.no_grad():
            pre.eval()
            out = pre(example)
    except Exception as exc:
        raise UserError(
            f"PreNet.forward failed on a zero input of input_shape {tuple(example.shape[1:])}: {type(exc).__name__}: {exc}",
            key="PreNet.forward",
            fix="make PreNet accept (N, C, H, W) tensors of supernet.input_shape",
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 4:
        shape = f" of shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else ""
        raise UserError(
            f"PreNet.forward returned {type(out).__name__}{shape}; the searched layers need one (N, C, H, W) tensor",
            key="PreNet.forward",
            fix="return the feature map that the searched layers start from",
        )
    return int(out.shape[1]), (int(out.shape[2]), int(out.shape[3]))


def postnet_input(
    filters: tuple[int, ...],
    strides: tuple[int, ...],
    feature_choose: tuple[int, ...],
    hw: tuple[int, int],
) -> torch.Tensor | list[torch.Tensor]:
    """Zeros shaped like what PostNet receives at batch 1: the full-width last layer's output,
    preceded by the feature_choose layers' outputs as a list when there are any."""
    shapes = []
    for f, s in zip(filters, strides):
        hw = out_hw(hw, s)
        shapes.append((1, f, *hw))
    last = torch.zeros(shapes[-1])
    return [torch.zeros(shapes[i]) for i in feature_choose] + [last] if feature_choose else last


def check_postnet(post: nn.Module, post_in: Any, last_filters: int) -> int:
    """MACs of PostNet on ``post_in``; a PostNet that cannot take it is the user's mistake."""
    try:
        return int(count_macs(post, post_in))
    except Exception as exc:
        shapes = [tuple(t.shape) for t in post_in] if isinstance(post_in, list) else tuple(post_in.shape)
        raise UserError(
            f"PostNet.forward failed on what the searched layers give it, {shapes}: {type(exc).__name__}: {exc}",
            key="PostNet.forward",
            fix=f"PostNet receives filters[-1] = {last_filters} channels (after the feature_choose layers' outputs, "
            "in a list, when there are any): size its first layer for that",
        ) from None


def check_loss(loss: Any) -> None:
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1 or not loss.requires_grad:
        what = (
            f"a tensor of shape {tuple(loss.shape)}" + ("" if loss.requires_grad else " without gradient")
            if isinstance(loss, torch.Tensor)
            else type(loss).__name__
        )
        raise UserError(
            f"loss_func returned {what}; dopt needs a scalar tensor to call backward() on",
            key="UserModule.loss_func",
            fix="return one number as a tensor computed from logits, e.g. F.cross_entropy(logits, labels) (reduction='mean')",
        )


def check_scheduler(scheduler: Any) -> None:
    """dopt calls ``scheduler.step()`` with no argument after every optimizer step (docs/user-module.md#pytorch)."""
    step = getattr(scheduler, "step", None)
    if not callable(step):
        raise UserError(
            f"scheduler_define returned {type(scheduler).__name__}, which has no step()",
            key="UserModule.scheduler_define",
            fix="return a torch.optim.lr_scheduler object built on the optimizer passed in",
        )
    try:
        inspect.signature(step).bind()
    except TypeError:
        raise UserError(
            f"scheduler_define returned {type(scheduler).__name__}, whose step() needs arguments; dopt steps the "
            "schedule after every optimizer step without any",
            key="UserModule.scheduler_define",
            fix="use a step-based schedule (CosineAnnealingLR, OneCycleLR, LambdaLR) sized with steps_per_epoch",
        ) from None
    except ValueError:  # no signature to read: trust it
        pass


def check_distillable(outputs: Any, distill: bool) -> None:
    if distill and not (isinstance(outputs, torch.Tensor) and outputs.dim() == 2):
        log.warning(
            "training.distill is on but PostNet returns %s, not (N, classes) logits: training without distillation",
            type(outputs).__name__
            if not isinstance(outputs, torch.Tensor)
            else f"a tensor of shape {tuple(outputs.shape)}",
        )
