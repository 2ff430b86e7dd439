"""The validated scenario: frozen dataclasses that nothing downstream re-validates."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "Constraint",
    "SearchSpaceChoices",
    "Supernet",
    "Optimizer",
    "Dataset",
    "Searcher",
    "Training",
    "Resource",
    "Scenario",
]

Framework = Literal["pytorch", "tensorflow"]
Application = Literal["image_classification", "object_detection", "semantic_segmentation"]


@dataclass(frozen=True, kw_only=True)
class Constraint:
    application: Application
    kind: str  # a registered cost kind: size, flops, latency, ... (dopt.costs)
    value: float
    processor: str = "host"  # latency only: "host" is measured here; anything else needs latency_func
    threads: int = 1  # latency only: CPU threads of the latency measurements (docs/latency.md#threads)


@dataclass(frozen=True, kw_only=True)
class SearchSpaceChoices:
    """Per-layer choices of the skeleton (docs/search-space.md#genes); `supernet.search_space` overrides them."""

    kernel_sizes: tuple[int, ...] = (3, 5, 7)
    # Not 1 by default: mixed with larger ratios under weight sharing it trains ~3x slower
    # (benchmarks/supernet_convergence.py; docs/search-space.md#genes).
    expand_ratios: tuple[int, ...] = (3, 6)
    width_ratios: tuple[float, ...] = (0.5, 0.75, 1.0)
    skip: bool = True


@dataclass(frozen=True, kw_only=True)
class Supernet:
    input_shape: tuple[int, int, int]  # as written: CHW for channels_first, HWC for channels_last
    data_format: Literal["channels_first", "channels_last"]
    filters: tuple[int, ...] = (64, 64, 128, 128, 256, 256)
    strides: tuple[int, ...] = (1, 1, 2, 1, 2, 1)
    feature_choose: tuple[int, ...] = ()
    search_space: SearchSpaceChoices = field(default_factory=SearchSpaceChoices)

    @property
    def chw(self) -> tuple[int, int, int]:
        """The input shape as (channels, height, width) whatever the data format."""
        if self.data_format == "channels_first":
            return self.input_shape
        h, w, c = self.input_shape
        return (c, h, w)


@dataclass(frozen=True, kw_only=True)
class Optimizer:
    type: Literal["SGD", "Momentum", "Adam"]
    learning_rate: float
    betas: tuple[float, float] = (0.9, 0.999)
    momentum: float | None = None  # None: not written (Momentum then uses 0.9, SGD none)
    scale_lr: bool = True  # multiplied by the number of processes of a distributed run (docs/distributed.md)


@dataclass(frozen=True, kw_only=True)
class Dataset:
    train_dir: str  # absolute path (or a remote URL, passed through)
    val_dir: str
    pre_train_dir: str | None = None  # detection/segmentation: class folders or a pre-training checkpoint
    pre_train_epochs: int = 10


@dataclass(frozen=True, kw_only=True)
class Searcher:
    generation_num: int = 20
    pop_size: int = 40
    seed: int | None = None
    algorithm: Literal["nsga2", "random"] = "nsga2"
    crossover_prob: float = 0.9
    mutation_prob: float | None = None  # None: 1 / number of genes with more than one value (search._reset_mutation)
    max_evaluations: int | None = None
    max_duration_s: float | None = None
    bn_calib_batches: int | None = None  # None: enough batches for about 2,000 images
    eval_batches: int | None = None  # None: the whole validation set


@dataclass(frozen=True, kw_only=True)
class Training:
    # Sandwich with in-place distillation: the defaults that the convergence benchmark measured best
    # for a fixed number of epochs (docs/search-space.md#training).
    sampling: Literal["uniform", "sandwich"] = "sandwich"
    distill: bool = True  # the default only with sandwich sampling (rules.py)
    warmup_epochs: int = 0
    # Validation batches the largest and smallest subnets are scored on after every epoch; 0: off
    # (docs/search-space.md#is-the-supernet-trained-enough).
    monitor_batches: int = 20


@dataclass(frozen=True)
class Resource:
    name: str
    gpu_ids: tuple[int, ...] = (0,)  # () means the CPU


@dataclass(frozen=True, kw_only=True)
class Scenario:
    path: Path  # the scen.yaml that was read (absolute)
    workdir: Path  # where user_module.py lives and outputs go (absolute)
    framework: Framework
    batch_size: int
    epochs: int
    constraint: Constraint
    supernet: Supernet
    optimizer: Optimizer
    dataset: Dataset
    searcher: Searcher = field(default_factory=Searcher)
    training: Training = field(default_factory=Training)
    resource: Resource = field(default_factory=lambda: Resource(name="pytorch_standalone"))
    # Where each written key came from: {"file", "line", "column"} or {"file": "--set KEY=VALUE"}.
    places: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, compare=False, repr=False)
    # The --set KEY=VALUE options applied, in order, recorded ones of the run continued included
    # (docs/resume.md#overrides).
    overrides: tuple[str, ...] = field(default=(), compare=False)

    def where(self, key: str) -> dict[str, Any]:
        """UserError location arguments for a dotted key path (its nearest written ancestor)."""
        parts = key.split(".")
        for n in range(len(parts), 0, -1):
            place = self.places.get(".".join(parts[:n]))
            if place is not None:
                return dict(place)
        return {"file": self.path.name}
