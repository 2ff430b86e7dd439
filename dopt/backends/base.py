"""The small interface every framework backend implements (docs/architecture.md).

The core drives a run through these calls only; everything that imports torch or tensorflow
lives behind them (``dopt/backends/torch``, ``dopt/backends/tf``). ``get_backend`` is in
``dopt/backends/__init__.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from dopt.costs import Costs
from dopt.errors import CorruptCheckpoint
from dopt.evaluation import EvalOps
from dopt.latency.build import LatencyMeter
from dopt.parallel.comm import Comm
from dopt.training import StepOps

if TYPE_CHECKING:
    from dopt.parallel.launcher import Launch
    from dopt.scenario import Scenario
    from dopt.space import Arch, SearchSpace

__all__ = ["Probe", "Backend", "Setup", "Session", "Pretrainer", "ResultTrainer", "CorruptCheckpoint", "epoch_seed"]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed every RNG is reset to at the start of ``epoch`` (a 31-bit int, fit for any framework)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, 2, epoch]).generate_state(1)[0]) & 0x7FFFFFFF


@dataclass(frozen=True, kw_only=True)
class Probe:
    """What a dry run through PreNet and PostNet tells the core (docs/search-space.md#genes, docs/costs.md#measured-on-the-extracted-model)."""

    in_channels: int  # channels PreNet produces: the first skeleton layer's input
    in_hw: tuple[int, int]  # spatial size of PreNet's output
    fixed: Costs  # what the backend counts on PreNet + PostNet (parameters, MACs at batch 1)
    steps_per_epoch: int
    device: str  # e.g. "cpu", "cuda:0"


class Setup(Protocol):
    """What ``Backend.setup`` returns: the user module instantiated, datasets read and checked,
    PreNet/PostNet dry-run. Immutable; the only way on is :meth:`build_supernet`."""

    @property
    def probe(self) -> Probe:
        """What the dry run of PreNet and PostNet found."""
        ...

    def build_supernet(self, space: SearchSpace) -> Session:
        """Create the weight-sharing supernet, its optimizer and the user's LR schedule."""
        ...

    @property
    def user(self) -> Any:
        """The user's UserModule instance."""
        ...

    def latency_meter(self) -> LatencyMeter:
        """Timing of models and blocks in this run's runtime (docs/latency.md#how-latency-is-measured)."""
        ...

    @property
    def result_weights_suffix(self) -> str:
        """What a result script's weights file adds to its name: ".weights.pth", ".weights.h5"."""
        ...

    def build_result(self, script: Any, weights: Path | None) -> ResultTrainer:
        """The static model of a result script (``script.build_model()``) with ``weights`` loaded,
        or freshly initialised from the seed when None, its optimizer and the user's schedule."""
        ...


class Session(StepOps, EvalOps, Protocol):
    """One supernet with its optimizer and schedule: the training primitives the core's loop
    drives (:class:`dopt.training.StepOps`), the evaluation primitives (:class:`dopt.evaluation.EvalOps`),
    the rehearsal and checkpoints."""

    checkpoint_suffix: str  # of supernet checkpoints: ".pt" (torch), ".weights.npz" (tf)

    def rehearse(self, archs: list[Arch]) -> list[str]:
        """One forward/backward per arch and one metric call on a batch, leaving no trace, so that
        contract mistakes (loss shape, metric type) surface before training; a line per arch."""
        ...

    def pretrainer(self, folder: Path, epochs: int) -> Pretrainer:
        """Pre-training on ``folder`` (the user's pre-training dataset function, else class folders).

        Raises:
            UserError: the dataset is unusable (one class, unreadable images, wrong labels).
        """
        ...

    def load_pretrained(self, weights: Path, folder: Path) -> None:
        """PreNet's and the layers' weights from a pre-training output in ``folder``.

        Raises:
            UserError: they do not fit this PreNet and skeleton (the message names what differs).
        """
        ...

    def save(self, path: Path, step: int) -> None:
        """Weights, optimizer and scheduler state and the global ``step``, written atomically."""
        ...

    def load(self, path: Path) -> int:
        """Restore what :meth:`save` wrote, without executing code from the file; the global step.

        Raises:
            CorruptCheckpoint: the file is unreadable or does not fit the supernet.
        """
        ...


class Pretrainer(StepOps, Protocol):
    """Pre-training of PreNet + the largest skeleton under a temporary pooled linear head
    (docs/tasks.md#pre-training); it trains the session's own PreNet and layers in place."""

    checkpoint_suffix: str
    steps_per_epoch: int
    classes: int  # of the pre-training dataset

    def save(self, path: Path, step: int) -> None: ...

    def load(self, path: Path) -> int:
        """As :meth:`Session.load`.

        Raises:
            CorruptCheckpoint: the file is unreadable or does not fit.
        """
        ...

    def save_pretrained(self, path: Path) -> None:
        """PreNet's and the layers' weights, without the head, as :meth:`Session.load_pretrained` reads them."""
        ...


class ResultTrainer(StepOps, Protocol):
    """A result's static model being trained fully (docs/training-a-result.md)."""

    checkpoint_suffix: str

    def save(self, path: Path, step: int) -> None: ...

    def load(self, path: Path) -> int:
        """As :meth:`Session.load`.

        Raises:
            CorruptCheckpoint: the file is unreadable or does not fit the model.
        """
        ...

    def evaluate(self) -> float:
        """The user's metric over the whole validation set, BatchNorm statistics as trained."""
        ...

    def save_weights(self, path: Path) -> None:
        """The model's weights in the form the result script loads, written atomically."""
        ...


class Backend(Protocol):
    """One framework's entry point (docs/architecture.md#call-order).

    ``check_user_module`` → ``setup`` (a :class:`Setup`) → ``Setup.build_supernet`` (a
    :class:`Session`): each stage is reachable only through the object the previous one returns.
    """

    framework: str

    def check_user_module(self, module: ModuleType) -> None:
        """Check base classes of PreNet/PostNet (names and signatures are checked by the core)."""
        ...

    def gpu_count(self) -> int:
        """GPUs the framework sees on this machine."""
        ...

    def connect(self, scenario: Scenario, launch: Launch) -> Comm:
        """Join the other processes of a launch (docs/distributed.md#launching): the communicator
        of its engine (torch.distributed or Horovod), which also all-reduces gradients.

        Raises:
            UserError: the launcher's engine is not installed, or does not serve this framework.
        """
        ...

    def setup(self, scenario: Scenario, module: ModuleType, seed: int, comm: Comm | None = None) -> Setup:
        """Instantiate the user module, build datasets, dry-run PreNet/PostNet, check one batch.
        With several processes (``comm``), pick this process's device and read its shard of the
        training data."""
        ...
