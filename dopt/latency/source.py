"""Where a latency run's numbers come from: this machine's table, or the user's ``latency_func``
(docs/latency.md). Chosen and checked before anything is trained or written."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dopt.errors import UserError
from dopt.latency.build import Job, LatencyMeter, Obtained, obtain, poor_fit_warning
from dopt.latency.table import LatencyTable
from dopt.scenario import Scenario
from dopt.space import Arch, SearchSpace

__all__ = ["LatencySource", "latency_source", "RUN_COPY"]

log = logging.getLogger(__name__)

RUN_COPY = "latency_table.json"  # in checkpoints/: the table a run predicted with, for --resume

UserLatency = Callable[[Any, Arch], float]


@dataclass(frozen=True, kw_only=True)
class LatencySource:
    """The table (``obtained``, timed by ``meter``) or the user's function (``user``)."""

    meter: LatencyMeter | None = None
    obtained: Obtained | None = None
    user: UserLatency | None = None
    user_range: tuple[float, float] | None = None  # latency_func on the smallest and largest subnets

    @property
    def table(self) -> LatencyTable | None:
        return self.obtained.table if self.obtained is not None else None

    def cost_model_args(self) -> dict[str, Any]:
        """What :class:`dopt.costs.CostModel` needs: the table, or latency counted by the function."""
        if self.table is not None:
            return {"tables": {"latency": self.table}}
        return {"counted": ("latency",)}

    def verify(self, models: Sequence[Any], archs: Sequence[Arch]) -> list[float]:
        """Milliseconds of each exported model, measured again: by ``latency_func``, or all timed
        interleaved in the table's runtime."""
        if self.user is not None:
            return [self.user(m, a) for m, a in zip(models, archs)]
        assert self.meter is not None
        return self.meter.measure([Job(kind="model", model=m) for m in models]) if models else []

    def describe(self) -> list[str]:
        """Lines for the log and `dopt validate`."""
        if self.user is not None:
            lo, hi = self.user_range or (math.nan, math.nan)
            return [f"latency: measured by UserModule.latency_func ({lo:.4g} ms smallest subnet, {hi:.4g} ms largest)"]
        assert self.obtained is not None and self.table is not None
        o, t = self.obtained, self.table
        how = {
            "run": f"this run's table, {o.path}",
            "cache": f"cached table {o.path} (measured in {t.build_s:.1f} s; read in {o.seconds:.2f} s)",
            "built": f"table measured now in {o.seconds:.1f} s, cached as {o.path}",
        }[o.source]
        key = t.key
        return [
            f"latency: {how}: {len(t.entries)} blocks, {key['device']}, {key['runtime']}, {key['threads']} thread(s)",
            f"latency prediction: {t.accuracy.text()}",
        ]

    def as_json(self) -> dict[str, Any]:
        """The ``latency`` section of pareto.json (results are added by the caller)."""
        if self.user is not None:
            return {"source": "latency_func"}
        assert self.obtained is not None and self.table is not None
        t = self.table
        acc = t.accuracy
        return _finite(
            {
                "source": "table",
                "table": str(self.obtained.path),
                "key": dict(t.key),
                "blocks": len(t.entries),
                "build_s": round(t.build_s, 2),
                "fit": {"scale": t.fit.scale, "per_block_ms": t.fit.per_block, "intercept_ms": t.fit.intercept},
                "held_out": {
                    "subnets": acc.subnets,
                    "within_10_percent": acc.within_10,
                    "within_5_percent": acc.within_5,
                    "mape_percent": acc.mape,
                    "median_ape_percent": acc.median_ape,
                    "kendall_tau": acc.kendall_tau,
                    "kendall_tau_ci95": list(acc.tau_ci95),
                },
            }
        )


def _finite(value: Any) -> Any:
    """NaN (a statistic of too few subnets) as null, recursively: pareto.json is strict JSON."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def latency_source(
    sc: Scenario,
    user: Any,
    meter: Callable[[], LatencyMeter],
    extract: Callable[[Arch], Any],
    space: SearchSpace,
    in_hw: tuple[int, int],
    continuing: bool,
) -> LatencySource:
    """The latency source of a run that constrains latency.

    Args:
        user: the user's UserModule instance.
        meter: makes the backend's meter (only called for a table).
        extract: a static model of a subnet (for ``latency_func``'s range).
        continuing: ``--resume`` or another search of a trained supernet: the run's own table
            (checkpoints/latency_table.json) is read first, so that predictions do not change.

    Raises:
        UserError: a processor_version dopt cannot measure without latency_func, or a
            latency_func that fails or returns no positive number.
    """
    func = getattr(user, "latency_func", None)
    if func is not None:
        wrapped = _checked(func)
        ends = [space.decode(space.smallest()), space.decode(space.largest())]
        values = [wrapped(extract(a), a) for a in ends]
        log.info("latency: UserModule.latency_func replaces the table (processor_version %s)", sc.constraint.processor)
        return LatencySource(user=wrapped, user_range=(min(values), max(values)))
    if sc.constraint.processor != "host":
        raise UserError(
            f"processor_version {sc.constraint.processor!r}: dopt measures latency only on this machine (host), and "
            "user_module.py defines no latency_func",
            key="scenario.strategy.constraint.processor_version",
            fix="define UserModule.latency_func(self, model) returning the milliseconds measured on that device "
            "(docs/latency.md#your-own-hardware-latency_func), or set processor_version: host",
            **sc.where("scenario.strategy.constraint.processor_version"),
        )
    timing = meter()
    copy = sc.workdir / "checkpoints" / RUN_COPY if continuing else None
    obtained = obtain(timing, space, in_hw, sc.supernet.input_shape, sc.supernet.feature_choose, run_copy=copy)
    warning = poor_fit_warning(obtained.table)
    if warning:
        log.warning("%s", warning)
    return LatencySource(meter=timing, obtained=obtained)


def _checked(func: Callable[[Any], Any]) -> UserLatency:
    """``latency_func`` with its result checked, each failure naming the subnet."""
    from dopt.training import brief

    def call(model: Any, arch: Arch) -> float:
        try:
            value = func(model)
        except Exception as exc:
            raise UserError(
                f"latency_func raised {type(exc).__name__}: {exc} on subnet {brief(arch)}",
                key="UserModule.latency_func",
                fix="make latency_func(self, model) return the model's latency in milliseconds, > 0",
            ) from exc
        try:
            ms = float(value)
        except (TypeError, ValueError):
            ms = math.nan
        if not (math.isfinite(ms) and ms > 0):
            raise UserError(
                f"latency_func returned {value!r:.60} for subnet {brief(arch)}: expected milliseconds > 0",
                key="UserModule.latency_func",
                fix="return the measured latency in milliseconds as a positive number",
            )
        return ms

    return call


def write_run_copy(table: LatencyTable, checkpoints: Path) -> None:
    """Keep the table a run predicts with beside its checkpoints."""
    from dopt.store.atomic import atomic_write_text

    checkpoints.mkdir(parents=True, exist_ok=True)
    atomic_write_text(checkpoints / RUN_COPY, table.to_json())
