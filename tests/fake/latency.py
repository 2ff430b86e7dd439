"""A simulated latency meter: milliseconds computed from MACs, so a latency run of the fake backend
is deterministic and instant. A fixed cost per call and per block keeps dopt's fit
(dopt/latency/table.py) from being trivial."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from dopt.backends.cpus import source_hash
from dopt.latency.build import Job
from dopt.latency.timing import ROUNDS

__all__ = ["FakeLatencyMeter", "block_macs", "MS_PER_MAC", "MS_PER_CALL", "MS_PER_BLOCK"]

MS_PER_MAC = 1e-5
MS_PER_CALL = 0.01  # what calling anything costs (dopt subtracts the "empty" job)
MS_PER_BLOCK = 0.002


def block_macs(row: Sequence[int], hw: tuple[int, int]) -> int:
    """MACs of an inverted-residual block (in, out, kernel, stride, expand) at input size ``hw``."""
    cin, cout, k, stride, e = row
    hidden = cin * e
    ho, wo = (hw[0] - 1) // stride + 1, (hw[1] - 1) // stride + 1
    expand = cin * hidden * hw[0] * hw[1] if e != 1 else 0
    return expand + hidden * k * k * ho * wo + hidden * cout * ho * wo


class FakeLatencyMeter:
    """Times jobs by formula. ``model_macs(model)`` is the MACs of a model object (a rebuilt result)."""

    def __init__(
        self,
        pre: Any,
        post: Any,
        fixed_macs: tuple[int, int],
        in_hw: tuple[int, int],
        threads: int,
        model_macs: Callable[[Any], tuple[int, int]],
    ) -> None:
        self.pre, self.post = pre, post
        self.pre_macs, self.post_macs = fixed_macs
        self.in_hw, self.threads, self.model_macs = in_hw, threads, model_macs

    def key(self) -> dict[str, Any]:
        return {
            "device": "cpu: simulated",
            "framework": "fake",
            "framework_version": "0",
            "runtime": "numpy, latency simulated from MACs",
            "threads": self.threads,
            "fixed_parts": source_hash(self.pre, self.post),
        }

    def measure(self, jobs: Sequence[Job], on_round: Callable[[int], None] | None = None) -> list[float]:
        ms = [self._ms(job) for job in jobs]
        for n in range(ROUNDS if on_round is not None else 0):
            on_round(n + 1)  # type: ignore[misc]
        return ms

    def _ms(self, job: Job) -> float:
        if job.kind == "empty":
            return MS_PER_CALL
        if job.kind == "prenet":
            return MS_PER_CALL + MS_PER_MAC * self.pre_macs
        if job.kind == "postnet":
            return MS_PER_CALL + MS_PER_MAC * self.post_macs
        if job.kind == "block":
            assert job.block is not None
            return MS_PER_CALL + MS_PER_BLOCK + MS_PER_MAC * block_macs(job.block.row, job.block.hw)
        if job.kind == "subnet":
            macs, hw = 0, self.in_hw
            for row in job.rows:
                macs += block_macs(row, hw)
                hw = ((hw[0] - 1) // row[3] + 1, (hw[1] - 1) // row[3] + 1)
            blocks = len(job.rows)
        elif job.kind == "model":
            macs, blocks = self.model_macs(job.model)
        else:
            raise ValueError(f"unknown latency job {job.kind!r}")
        return MS_PER_CALL + MS_PER_MAC * (self.pre_macs + self.post_macs + macs) + MS_PER_BLOCK * blocks
