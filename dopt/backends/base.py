"""The small interface every framework backend implements, and the lazy backend lookup.

The core drives a run through these calls only; everything that imports torch or tensorflow
lives behind them (``dopt/backends/torch``, ``dopt/backends/tf``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any, Protocol

from dopt.errors import UserError

if TYPE_CHECKING:
    import numpy as np

    from dopt.costs import Costs
    from dopt.scenario import Scenario
    from dopt.space import Arch, SearchSpace

__all__ = ["Probe", "StepLog", "Backend", "CorruptCheckpoint", "epoch_seed", "get_backend"]


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed every RNG is reset to at the start of ``epoch`` (a 31-bit int, fit for any framework)."""
    import numpy as np

    return int(np.random.SeedSequence([seed, 2, epoch]).generate_state(1)[0]) & 0x7FFFFFFF


class CorruptCheckpoint(Exception):
    """A checkpoint file that cannot be loaded (torn, truncated, or of another supernet)."""


@dataclass(frozen=True)
class Probe:
    """What a dry run through PreNet and PostNet tells the core (SPEC 5.1, 6)."""

    in_channels: int  # channels PreNet produces: the first skeleton layer's input
    in_hw: tuple[int, int]  # spatial size of PreNet's output
    fixed_size: int  # trainable params of PreNet + PostNet
    fixed_flops: int  # MACs of PreNet + PostNet at batch 1
    steps_per_epoch: int
    device: str  # e.g. "cpu", "cuda:0"


@dataclass(frozen=True)
class StepLog:
    """One optimizer step, reported to the core's logger and TensorBoard writer."""

    epoch: int
    step: int  # global optimizer step, from 0
    loss: float
    lr: float
    images_per_s: float
    skipped: bool = False  # a non-finite loss: the step was not applied


class Backend(Protocol):
    """One framework's implementation of the supernet life cycle.

    Call order: ``check_user_module`` → ``setup`` → ``build_supernet`` → ``rehearse`` (all before
    anything is written) → ``train`` (or ``load_supernet``) → ``prepare_evaluation`` →
    ``measure``/``evaluate`` per candidate → ``write_result`` per Pareto architecture.
    Pre-training of detection/segmentation skeletons (SPEC 5.5) will slot in between
    ``rehearse`` and ``train``; a list-taking PostNet (feature_choose) is the backend's business.
    """

    framework: str
    checkpoint_suffix: str  # of supernet checkpoints: ".pt" (torch), ".weights.npz" (tf)

    def check_user_module(self, module: ModuleType) -> None:
        """Check base classes of PreNet/PostNet (names and signatures are checked by the core)."""

    def setup(self, scenario: Scenario, module: ModuleType, seed: int) -> Probe:
        """Instantiate the user module, build datasets, dry-run PreNet/PostNet, check one batch."""

    def build_supernet(self, space: SearchSpace) -> None:
        """Create the weight-sharing supernet, its optimizer and the user's LR schedule."""

    def rehearse(self, archs: list[Arch]) -> list[str]:
        """One forward/backward per arch and one metric call on a batch, leaving no trace, so that
        contract mistakes (loss shape, metric type) surface before training; a line per arch."""

    def train(
        self,
        sample: Callable[[int], list[Arch]],
        epochs: int,
        log_step: Callable[[StepLog], None],
        on_epoch_end: Callable[[int], None] | None = None,
        start_epoch: int = 0,
    ) -> None:
        """Train epochs ``start_epoch`` … ``epochs - 1``; ``sample(epoch)`` gives the subnets of one
        step (SPEC 5.3).

        At the start of every epoch the backend reseeds every RNG it and the user's code draw from
        (python, numpy, the framework's, the data order) from ``(seed, epoch)``, so that training
        resumed from the checkpoint of epoch k is identical to an uninterrupted run: the
        checkpoint need not carry RNG states.
        """

    def save_supernet(self, path: Path) -> None:
        """Weights, optimizer and scheduler state and the global step, written atomically."""

    def load_supernet(self, path: Path) -> None:
        """Restore what ``save_supernet`` wrote, without executing code from the file. Raises
        ``CorruptCheckpoint`` when the file is unreadable or does not fit the supernet."""

    def prepare_evaluation(self, rng: np.random.Generator) -> None:
        """Draw and materialise the BN-calibration subset once (SPEC 5.4)."""

    def evaluate(self, arch: Arch) -> float:
        """Recalibrate BN for ``arch`` and return the user's metric."""

    def measure(self, arch: Arch) -> Costs:
        """Params and MACs of the extracted static model of ``arch`` (the truth, SPEC 6)."""

    def write_result(self, arch: Arch, script: Path, header: dict[str, Any]) -> Costs:
        """Write the standalone script and inherited weights, re-import and verify them.

        Returns the costs measured on the model the written script builds.
        """


def get_backend(framework: str) -> Backend:
    """The backend of ``framework``; its framework is imported here and only here."""
    if framework == "pytorch":
        try:
            from dopt.backends.torch import TorchBackend  # torch is imported only here
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in {"torch", "onnx", "onnxruntime"}:
                raise UserError(
                    f"framework PyTorch needs the package {exc.name!r}, which is not installed",
                    key="scenario.strategy.framework",
                    fix="pip install torch (the build for your CUDA, see pytorch.org), then pip install 'dopt[torch]'",
                ) from None
            raise
        return TorchBackend()
    if framework == "tensorflow":
        try:
            from dopt.backends.tf import TFBackend  # tensorflow is imported only here
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in {"tensorflow", "keras"}:
                raise UserError(
                    f"framework TensorFlow needs the package {exc.name!r}, which is not installed",
                    key="scenario.strategy.framework",
                    fix="pip install 'dopt[tf]' (GPU builds) or 'dopt[tf-cpu]' (CPU only)",
                ) from None
            raise
        return TFBackend()
    raise ValueError(f"unknown framework {framework!r}")
