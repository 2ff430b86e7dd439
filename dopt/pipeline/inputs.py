"""The typed inputs of the stages: what preparing a run checked (:class:`Prepared`), and what every
later stage works with (:class:`StageInput`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dopt.store.identity import training_identity

if TYPE_CHECKING:
    from dopt.backends.base import Pretrainer, Probe, Session
    from dopt.costs import CostModel
    from dopt.evaluation import Evaluator
    from dopt.latency.source import LatencySource
    from dopt.parallel.context import RunContext
    from dopt.pipeline.plan import Plan
    from dopt.scenario import Scenario
    from dopt.space import SearchSpace
    from dopt.store.pretrained import Source

__all__ = ["Prepared", "Pretraining", "StageInput"]


@dataclass(frozen=True)
class Pretraining:
    """What ``pre_train_dir`` gave: pre-trained weights already loaded (``trainer`` None), or the
    backend's pre-training of the dataset, ready to run."""

    source: Source
    trainer: Pretrainer | None = None


@dataclass(frozen=True, kw_only=True)
class Prepared:
    """Everything checked before anything is trained or written."""

    scenario: Scenario
    session: Session  # the backend's supernet, optimizer and schedule
    probe: Probe
    space: SearchSpace
    costs: CostModel
    seed: int
    cost_range: tuple[float, float]
    feasible_share: float | None  # of subnets drawn uniformly, as NSGA-II's first population is; None: unknown
    rehearsal: list[str]  # one line per rehearsed subnet (smallest, largest)
    user_sha256: str  # of user_module.py as imported
    metric_name: str  # UserModule.metric_name, or "accuracy"
    latency: LatencySource | None = None  # when the constraint is latency (docs/latency.md)
    pretraining: Pretraining | None = None  # detection/segmentation (docs/tasks.md#pre-training)

    @property
    def identity(self) -> dict[str, Any]:
        return training_identity(self.scenario, self.seed, self.user_sha256)


@dataclass(frozen=True, kw_only=True)
class StageInput:
    """What the stages after preparation share: the prepared run, what this invocation does, the
    run context every write goes through, the TensorBoard writer and the candidate evaluator."""

    prepared: Prepared
    plan: Plan
    ctx: RunContext
    writer: Any  # a TensorBoard SummaryWriter, or the context's null writer on other ranks
    evaluator: Evaluator
