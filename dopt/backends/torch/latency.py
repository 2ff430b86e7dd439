"""Latency of PyTorch models and blocks (docs/latency.md#how-latency-is-measured).

Runtime: the model in eval mode under ``torch.no_grad()``, at batch 1, with the scenario's
``latency_threads`` CPU threads; on a GPU every call is followed by ``torch.cuda.synchronize``.
The same method runs in every result script (dopt/latency/timing.py is copied there).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import torch
from torch import nn

from dopt.backends.cpus import cpu_name, source_hash
from dopt.backends.torch import static
from dopt.latency import timing
from dopt.latency.build import Job

__all__ = ["TorchLatencyMeter", "RUNTIME"]

RUNTIME = "torch eager, eval, no_grad"


class TorchLatencyMeter:
    """Times :class:`dopt.latency.build.Job` s with one PyTorch runtime.

    Args:
        pre, post: the user's PreNet and PostNet (copied; never changed).
        example: a zero input at batch 1.
        post_input: what PostNet receives at batch 1 (a tensor, or a list with feature_choose).
        device: where the run's models live.
        threads: CPU threads while timing (restored afterwards).
    """

    def __init__(
        self,
        pre: nn.Module,
        post: nn.Module,
        example: torch.Tensor,
        post_input: Any,
        device: torch.device,
        threads: int,
    ) -> None:
        self.pre, self.post = copy.deepcopy(pre).eval(), copy.deepcopy(post).eval()
        self.example, self.post_input = example, post_input
        self.device, self.threads = device, threads

    def key(self) -> dict[str, Any]:
        gpu = self.device.type == "cuda"
        return {
            "device": f"cuda: {torch.cuda.get_device_name(self.device)}" if gpu else f"cpu: {cpu_name()}",
            "framework": "pytorch",
            "framework_version": torch.__version__,
            "runtime": RUNTIME,
            "threads": self.threads,
            "fixed_parts": source_hash(self.pre, self.post),
        }

    def measure(self, jobs: Sequence[Job], on_round: Callable[[int], None] | None = None) -> list[float]:
        calls = [self._call(job) for job in jobs]
        sync = torch.cuda.synchronize if self.device.type == "cuda" else None
        before = torch.get_num_threads()
        torch.set_num_threads(self.threads)
        try:
            with torch.no_grad():
                return timing.measure_ms(
                    calls, timing.ROUNDS, timing.REPEATS, sync=sync, on_round=on_round
                )  # read at the call: tests lower them
        finally:
            torch.set_num_threads(before)

    def _call(self, job: Job) -> Callable[[], Any]:
        x = self.example.to(self.device)
        model: nn.Module
        if job.kind == "empty":
            model, inputs = nn.Identity(), x
        elif job.kind == "prenet":
            model, inputs = self.pre, x
        elif job.kind == "postnet":
            model, inputs = self.post, _to(self.post_input, self.device)
        elif job.kind == "block":
            assert job.block is not None
            model = static.InvertedResidual(*job.block.row)
            inputs = torch.randn(1, job.block.row[0], *job.block.hw, device=self.device)
        elif job.kind == "subnet":
            model = static.Net(copy.deepcopy(self.pre), copy.deepcopy(self.post), list(job.rows), job.features)
            inputs = x
        elif job.kind == "model":
            model, inputs = job.model, x
        else:
            raise ValueError(f"unknown latency job {job.kind!r}")
        model = model.to(self.device).eval()
        return lambda: model(inputs)


def _to(value: Any, device: torch.device) -> Any:
    if isinstance(value, list):
        return [v.to(device) for v in value]
    return value.to(device)
