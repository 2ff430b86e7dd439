"""The latency table: measured milliseconds of every searched block at every shape the space can
produce, plus PreNet and PostNet, calibrated on whole subnets (docs/latency.md#the-table).

A subnet's predicted latency is ``scale × (fixed + Σ its blocks) + per_block × blocks + intercept``.
The table is a drop-in for a cost kind's per-layer formula: :meth:`LatencyTable.layer` and
:meth:`LatencyTable.fixed` have the signatures of :class:`dopt.costs.CostKind`'s, so the cost
model's exact min/max over the space works on it unchanged (every term is ≥ 0).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from dopt.space import Arch, LayerChoice, SearchSpace

__all__ = ["Block", "space_blocks", "arch_blocks", "Fit", "fit", "Accuracy", "accuracy", "LatencyTable", "FORMAT"]

FORMAT = 1  # of the table's JSON; another number is rebuilt, never read


def _out_hw(hw: tuple[int, int], stride: int) -> tuple[int, int]:
    return ((hw[0] - 1) // stride + 1, (hw[1] - 1) // stride + 1)


@dataclass(frozen=True, order=True)
class Block:
    """One searched block at one input size: ``row`` is (in, out, kernel, stride, expand), as
    result scripts list their layers."""

    row: tuple[int, int, int, int, int]
    hw: tuple[int, int]

    @property
    def key(self) -> str:
        cin, cout, k, s, e = self.row
        return f"{cin}-{cout}-k{k}-s{s}-e{e}@{self.hw[0]}x{self.hw[1]}"


def arch_blocks(space: SearchSpace, in_hw: tuple[int, int], arch: Arch) -> list[Block]:
    """The kept blocks of ``arch`` with their input sizes."""
    blocks, hw = [], in_hw
    cin = space.in_channels
    for spec, choice in zip(space.layers, arch):
        if not choice.skip:
            blocks.append(Block((cin, choice.out_channels, choice.kernel, spec.stride, choice.expand), hw))
            cin = choice.out_channels
        hw = _out_hw(hw, spec.stride)
    return blocks


def space_blocks(space: SearchSpace, in_hw: tuple[int, int]) -> list[Block]:
    """Every block any subnet of ``space`` contains: each layer's choices at each input width the
    layers before it can hand on (a skipped layer hands on its own input)."""
    blocks: set[Block] = set()
    widths, hw = {space.in_channels}, in_hw
    for spec in space.layers:
        after: set[int] = set()
        for choice in space.layer_options(spec):
            if choice.skip:
                after |= widths
                continue
            for cin in widths:
                blocks.add(Block((cin, choice.out_channels, choice.kernel, spec.stride, choice.expand), hw))
            after.add(choice.out_channels)
        widths, hw = after, _out_hw(hw, spec.stride)
    return sorted(blocks)


@dataclass(frozen=True)
class Fit:
    """measured ≈ scale × Σ table entries + per_block × number of blocks + intercept, all ≥ 0.

    ``per_block`` absorbs what a block timed alone pays beyond the empty call subtracted from
    it (a runtime's per-call cost), ``intercept`` the model's own call overhead.
    """

    scale: float = 1.0
    per_block: float = 0.0
    intercept: float = 0.0


def fit(sums: Sequence[float], blocks: Sequence[int], measured: Sequence[float]) -> Fit:
    """Least squares on relative errors (each subnet weighs 1/measured), coefficients ≥ 0.

    scipy's non-negative least squares: a negative scale would make the prediction rank subnets
    backwards, and a negative per-block term would reward depth.
    """
    from scipy.optimize import nnls

    y = np.asarray(measured, dtype=float)
    a = np.stack([np.asarray(sums, float), np.asarray(blocks, float), np.ones_like(y)], axis=1)
    coef, _ = nnls(a / y[:, None], np.ones_like(y))
    if coef[0] <= 0:  # the entries explain nothing: fall back to a plain scale, which still ranks
        scale = float(np.sum(y * np.asarray(sums)) / max(np.sum(np.square(sums)), 1e-12))
        return Fit(scale=scale)
    return Fit(*(float(c) for c in coef))


@dataclass(frozen=True, kw_only=True)
class Accuracy:
    """Prediction error on subnets not used for the fit (docs/latency.md#calibration)."""

    subnets: int
    within_10: float  # share with |predicted - measured| ≤ 10 % of measured
    within_5: float
    mape: float  # mean absolute percentage error, in percent
    median_ape: float  # in percent
    kendall_tau: float
    tau_ci95: tuple[float, float] = (math.nan, math.nan)  # bootstrap over subnets

    def text(self) -> str:
        lo, hi = self.tau_ci95
        return (
            f"{self.within_10:.0%} of {self.subnets} held-out subnets within ±10 %, {self.within_5:.0%} within ±5 %, "
            f"mean abs. error {self.mape:.1f} %, median {self.median_ape:.1f} %, Kendall τ {self.kendall_tau:.2f} "
            f"(95 % CI {lo:.2f}–{hi:.2f})"
        )


def accuracy(predicted: Sequence[float], measured: Sequence[float], seed: int = 0) -> Accuracy:
    from scipy.stats import kendalltau

    p, m = np.asarray(predicted, float), np.asarray(measured, float)
    if not len(p):
        return Accuracy(
            subnets=0, within_10=math.nan, within_5=math.nan, mape=math.nan, median_ape=math.nan, kendall_tau=math.nan
        )
    err = np.abs(p - m) / m
    tau = float(kendalltau(p, m).statistic) if len(p) > 1 else math.nan
    rng = np.random.default_rng(seed)
    taus = []
    for _ in range(200 if len(p) > 2 else 0):
        i = rng.integers(0, len(p), len(p))
        t = kendalltau(p[i], m[i]).statistic
        if math.isfinite(t):
            taus.append(t)
    ci = (float(np.percentile(taus, 2.5)), float(np.percentile(taus, 97.5))) if taus else (math.nan, math.nan)
    return Accuracy(
        subnets=len(p),
        within_10=float(np.mean(err <= 0.10)),
        within_5=float(np.mean(err <= 0.05)),
        mape=float(100 * np.mean(err)),
        median_ape=float(100 * np.median(err)),
        kendall_tau=tau,
        tau_ci95=ci,
    )


@dataclass(frozen=True, kw_only=True)
class LatencyTable:
    """Measured entries, their calibration and what it was measured on.

    Attributes:
        key: what the table is valid for: device, framework and version, runtime, threads, input
            shape, space, PreNet/PostNet (docs/latency.md#the-cache).
        entries: milliseconds of each :class:`Block` by its ``key``, the empty call subtracted.
        fixed_ms: PreNet + PostNet, the empty call subtracted.
        fit: the calibration.
        accuracy: on held-out subnets.
        build_s: seconds the measurements took.
    """

    key: Mapping[str, Any]
    entries: Mapping[str, float]
    fixed_ms: float
    fit: Fit
    accuracy: Accuracy
    build_s: float
    calibration_ms: Mapping[str, float] = field(default_factory=dict)  # measured subnets by encoding

    # -- the per-layer cost interface (dopt.costs.CostKind) --------------------------------------
    def layer(self, choice: LayerChoice, cin: int, stride: int, hw: tuple[int, int]) -> float:
        block = Block((cin, choice.out_channels, choice.kernel, stride, choice.expand), hw)
        return self.fit.scale * self.entries[block.key] + self.fit.per_block

    def fixed(self, fixed: Any = None) -> float:
        return self.fit.scale * self.fixed_ms + self.fit.intercept

    def predict(self, space: SearchSpace, in_hw: tuple[int, int], arch: Arch) -> float:
        blocks = arch_blocks(space, in_hw, arch)
        total = self.fixed_ms + sum(self.entries[b.key] for b in blocks)
        return self.fit.scale * total + self.fit.per_block * len(blocks) + self.fit.intercept

    def covers(self, blocks: Sequence[Block]) -> bool:
        return all(b.key in self.entries for b in blocks)

    # -- JSON with a checksum ------------------------------------------------------------------
    def to_json(self) -> str:
        body = {
            "format": FORMAT,
            "key": dict(self.key),
            "entries": dict(self.entries),
            "fixed_ms": self.fixed_ms,
            "fit": asdict(self.fit),
            "accuracy": {**asdict(self.accuracy), "tau_ci95": list(self.accuracy.tau_ci95)},
            "build_s": self.build_s,
            "calibration_ms": dict(self.calibration_ms),
        }
        text = json.dumps(body, sort_keys=True, allow_nan=True)
        return json.dumps({"sha256": hashlib.sha256(text.encode()).hexdigest(), "table": body}, indent=1)

    @classmethod
    def from_json(cls, text: str) -> LatencyTable:
        """The table in ``text``.

        Raises:
            ValueError: not a table of this format, or its checksum does not match (torn or edited).
        """
        try:
            outer = json.loads(text)
            body = outer["table"]
            digest = hashlib.sha256(json.dumps(body, sort_keys=True, allow_nan=True).encode()).hexdigest()
            if outer["sha256"] != digest:
                raise ValueError("checksum mismatch")
            if body["format"] != FORMAT:
                raise ValueError(f"format {body['format']}, expected {FORMAT}")
            acc = dict(body["accuracy"])
            acc["tau_ci95"] = tuple(acc["tau_ci95"])
            return cls(
                key=body["key"],
                entries={str(k): float(v) for k, v in body["entries"].items()},
                fixed_ms=float(body["fixed_ms"]),
                fit=Fit(**body["fit"]),
                accuracy=Accuracy(**acc),
                build_s=float(body["build_s"]),
                calibration_ms={str(k): float(v) for k, v in body.get("calibration_ms", {}).items()},
            )
        except (KeyError, TypeError, AttributeError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a dopt latency table ({type(exc).__name__}: {exc})") from None
