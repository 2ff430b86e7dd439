"""Evaluating a candidate, written once for every framework (docs/search-space.md#evaluating-a-candidate).

Extract the subnet as a static model, recalibrate its BatchNorm on a fixed calibration subset,
run the user's metric; measure its costs on the same extracted model. A backend supplies only
the primitives of :class:`EvalOps`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import numpy as np

from dopt import costs as cost_kinds
from dopt.costs import CostModel, Costs
from dopt.errors import UserError
from dopt.scenario.model import Constraint
from dopt.space import Arch
from dopt.store.journal import Journal, complete, journal_entry

__all__ = ["EvalOps", "Evaluator", "Evaluated", "JournaledEvaluator", "metric_value", "calibration_indices"]

# Default calibration subset: about this many images, in full batches (BatchNorm never sees a
# one-sample batch), or the whole training set where it is smaller.
CALIBRATION_IMAGES = 2000


class EvalOps(Protocol):
    """What a backend does for one candidate; the sequence around it is :class:`Evaluator`'s."""

    metric_function: str  # the user's metric function, as error messages name it

    def calibration_set(self, rng: np.random.Generator) -> Any:
        """Draw the BN-calibration subset once from ``rng`` and materialise it."""
        ...

    def extract(self, arch: Arch) -> Any:
        """The static model of ``arch`` with the supernet's current weights."""
        ...

    def recalibrate(self, model: Any, calibration: Any) -> None:
        """Reset every BatchNorm of ``model`` to the exact statistics of ``calibration``; leave
        ``model`` in inference mode."""
        ...

    def metric(self, model: Any, max_batches: int | None = None) -> Any:
        """The user's metric of ``model`` over the validation set (its first ``max_batches``
        batches when given), as the user's code returned it."""
        ...

    def count(self, model: Any) -> Costs:
        """The costs the backend measures on a static model (parameters, MACs)."""
        ...

    def write_result(self, model: Any, arch: Arch, script: Path, header: dict[str, Any]) -> tuple[Costs, Any]:
        """Write the result script of ``arch`` and ``model``'s weights; rebuild, export and verify
        them; the costs counted on the rebuilt model, and that model."""
        ...


class Evaluator:
    """Candidates of one trained supernet: costs, metric and result files.

    The last extracted subnet is kept, as measuring and evaluating a candidate follow each
    other. Recalibration changes only the BN statistics of that extracted copy, never the
    supernet, so an evaluation is a pure function of (weights, architecture) and the model
    measured is exactly the model exported.
    """

    def __init__(
        self,
        ops: EvalOps,
        costs: CostModel,
        rng: np.random.Generator,
        latency: Callable[[Any, Arch], float] | None = None,
    ) -> None:
        """``latency``: the user's latency_func, checked (dopt.latency.source), when it measures
        each candidate's latency on its extracted model."""
        self.ops, self.costs, self.latency = ops, costs, latency
        self.calibration = ops.calibration_set(rng)
        self._last: tuple[Arch, Any] | None = None

    def reset(self) -> None:
        """Forget the kept subnet: the supernet's weights changed (training went on, or a
        checkpoint was loaded) since it was extracted."""
        self._last = None

    def measure(self, arch: Arch) -> Costs:
        """Every cost kind of ``arch``, counted on its extracted model where the backend counts it."""
        model = self._extracted(arch)
        counted = dict(self.ops.count(model))
        if self.latency is not None:
            counted["latency"] = self.latency(model, arch)
        return self.costs.measure(arch, counted)

    def evaluate(self, arch: Arch, max_batches: int | None = None) -> float:
        """The user's metric of ``arch`` after BN recalibration, over at most ``max_batches``
        validation batches when given; NaN where it is NaN or infinite."""
        return metric_value(self.ops.metric(self._calibrated(arch), max_batches), self.ops.metric_function)

    def write_result(self, arch: Arch, script: Path, header: dict[str, Any]) -> tuple[Costs, Any]:
        """Write ``arch``'s result script and recalibrated weights; the costs the backend counts
        on the model the written script builds (the others from the formula or table), and that model."""
        counted, model = self.ops.write_result(self._calibrated(arch), arch, script, header)
        return self.costs.measure(arch, counted), model

    def _extracted(self, arch: Arch) -> Any:
        if self._last is None or self._last[0] != arch:
            try:
                self._last = (arch, self.ops.extract(arch))
            except Exception as exc:
                if hasattr(exc, "add_note"):  # Python 3.11+
                    from dopt.training import brief

                    exc.add_note(f"extracting subnet {brief(arch)}")
                raise
        return self._last[1]

    def _calibrated(self, arch: Arch) -> Any:
        model = self._extracted(arch)
        self.ops.recalibrate(model, self.calibration)
        return model


def metric_value(result: Any, name: str) -> float:
    """The user's metric as a float; infinite counts as NaN, which ranks last.

    A float32 or float16 value (numpy scalar or array, torch or TensorFlow tensor) becomes the
    shortest decimal that reads back as the same float32/float16, so 0.20555556 stays 0.20555556
    in every output rather than its float64 widening 0.20555555820465088. Other values are exact.

    Raises:
        UserError: the metric function returned something that is not a number.
    """
    try:
        value = float(result)
    except (TypeError, ValueError):
        raise UserError(
            f"{name} returned {type(result).__name__} {result!r:.60}, not a number",
            key=f"UserModule.{name}",
            fix="return a float or a scalar tensor (higher is better), e.g. the accuracy",
        ) from None
    narrow = _NARROW_FLOATS.get(_dtype_name(result))
    if narrow is not None and math.isfinite(value):
        # Distinct narrow floats have distinct, equally ordered shortest decimals: ranking is unchanged.
        value = float(np.format_float_positional(narrow(value), unique=True))
    return value if not math.isinf(value) else float("nan")


# Float types narrower than a Python float whose shortest decimal numpy can write.
_NARROW_FLOATS: dict[str, type[np.floating[Any]]] = {"float32": np.float32, "float16": np.float16}


def _dtype_name(result: Any) -> str:
    """'float32' for a numpy, torch or TensorFlow float32 value; '' for a value without a dtype."""
    dtype = getattr(result, "dtype", None)
    if dtype is None:
        return ""
    # numpy and TensorFlow dtypes have a name ('float32'); torch's print as 'torch.float32'.
    return str(getattr(dtype, "name", None) or dtype).rsplit(".", 1)[-1]


def calibration_indices(n: int, batch_size: int, n_batches: int | None, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of the BN-calibration subset of a training set of ``n`` samples.

    ``n_batches`` full batches (``searcher.bn_calib_batches``); by default enough for about
    :data:`CALIBRATION_IMAGES` images, all of the training set if it is smaller.
    """
    if n_batches is None:
        n_batches = max(1, -(-CALIBRATION_IMAGES // batch_size))
    n_batches = max(1, min(n_batches, n // batch_size))
    take = min(n, n_batches * batch_size)
    return np.sort(rng.choice(n, size=take, replace=False))


class Evaluated(NamedTuple):
    """One candidate's costs, metric (None: infeasible, never evaluated) and the seconds the metric took."""

    costs: Costs
    metric: float | None
    seconds: float


def _call(fn: Callable[..., Any], *args: Any) -> Any:
    return fn(*args)


class JournaledEvaluator:
    """Candidates evaluated once: taken from a journal where an earlier (interrupted) run evaluated
    them, else evaluated, costs first and the metric only when feasible, and journaled at once
    (docs/resume.md#the-journal). The search, the sharded search and `dopt analyze` use it.

    ``write`` runs the journal's append (a run context's ``write``: only the main process writes).
    """

    def __init__(self, evaluator: Evaluator, journal: Journal, write: Callable[..., Any] = _call) -> None:
        self.evaluator, self.journal, self.write = evaluator, journal, write

    def journaled(self, encoding: tuple[int, ...], constraint: Constraint) -> Evaluated | None:
        """What the journal holds for ``encoding`` when it needs no more work: evaluated, or
        infeasible by its costs alone."""
        entry = self.journal.get(encoding)
        if entry is None or not complete(entry, constraint):
            return None
        costs = Costs({k.name: entry.get(k.column) for k in cost_kinds.kinds()})
        if costs[constraint.kind] <= constraint.value:
            return Evaluated(costs, entry["metric"], entry["eval_seconds"])
        return Evaluated(costs, None, 0.0)

    def evaluate(self, arch: Arch, constraint: Constraint | None = None) -> Evaluated:
        """Costs of ``arch``, and its metric unless ``constraint`` rules it out (not journaled)."""
        costs = self.evaluator.measure(arch)
        if constraint is not None and not costs[constraint.kind] <= constraint.value:
            return Evaluated(costs, None, 0.0)  # infeasible: decided by cost alone
        t0 = time.perf_counter()
        metric = self.evaluator.evaluate(arch)
        return Evaluated(costs, metric, time.perf_counter() - t0)

    def record(self, encoding: tuple[int, ...], done: Evaluated, **extra: Any) -> None:
        """Append ``done`` to the journal (with ``extra`` fields, e.g. the search's elapsed time)."""
        self.write(self.journal.append, {**journal_entry(encoding, done.metric, done.costs, done.seconds), **extra})
