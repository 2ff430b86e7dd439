"""Datasets from the user's ``build_dataset_search`` (docs/user-module.md#tensorflow): checks, batching, epochs, subsets.

The user returns ``(tf.data.Dataset of (inputs, labels), data_num)``, batched (the usual case) or
not: dopt tells them apart from the rank of the inputs' element spec and batches an unbatched one
itself. Steps per epoch are the dataset's cardinality when known, else ``ceil(data_num / batch_size)``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import tensorflow as tf

from dopt.backends.tf.evaluate import evaluate
from dopt.errors import UserError
from dopt.evaluation import calibration_indices
from dopt.parallel.comm import Comm
from dopt.scenario import Scenario

__all__ = [
    "DatasetFn",
    "dataset_fn",
    "TaskData",
    "ClassificationData",
    "datasets",
    "Data",
    "TrainEpochs",
    "calibration_batches",
    "check_batch",
    "first_leaf",
    "image_count",
    "shard_steps",
]

_KEY = "UserModule.build_dataset_search"

DatasetFn = Callable[[str, bool, bool], tuple[Any, int]]


def dataset_fn(user: Any) -> DatasetFn:
    """``build_dataset_search`` called with ``is_shuffle`` where its signature has it (read once)."""
    method = user.build_dataset_search
    try:
        params = [
            p
            for p in inspect.signature(method).parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        takes_shuffle = len(params) >= 3 or any(
            p.kind == p.VAR_POSITIONAL for p in inspect.signature(method).parameters.values()
        )
    except (TypeError, ValueError):
        takes_shuffle = False

    def call(dataset_dir: str, is_training: bool, is_shuffle: bool) -> tuple[Any, int]:
        if takes_shuffle:
            return method(dataset_dir, is_training, is_shuffle)
        return method(dataset_dir, is_training)

    return call


def first_leaf(structure: Any) -> Any:
    return tf.nest.flatten(structure)[0]


def image_count(value: Any, what: str, name: str, fix: str) -> int:
    """``value``, which ``what`` returned as ``name``: the number of images, an integer > 0.

    Raises:
        UserError: it is not.
    """
    try:
        n = int(value)
    except (TypeError, ValueError):
        n = 0
    if n <= 0:
        raise UserError(f"{what} returned {name} {value!r}; dopt needs the number of images, > 0", key=_KEY, fix=fix)
    return n


def shard_steps(steps: int, world_size: int, what: str) -> int:
    """The steps per epoch of each of ``world_size`` processes sharing the ``steps`` batches of the
    ``what``: the same number on every process (docs/distributed.md#data-parallel-training).

    Raises:
        UserError: there are fewer batches than processes.
    """
    share = steps // world_size
    if share == 0:
        raise UserError(
            f"the {what} has {steps} batch(es) per epoch, fewer than the {world_size} processes "
            "that share it, so a process would have no step",
            key="scenario.strategy.batch_size",
            fix="use a smaller batch_size (it is per process) or fewer processes",
        )
    return share


class TaskData(Protocol):
    """What a run reads through ``build_dataset_search`` and how a model is scored on it, per task:
    :class:`ClassificationData` (tf.data) or ``detection.DetectionData`` (NASEA's generators),
    chosen once when the run is set up."""

    @property
    def train(self) -> Any:
        """This process's shard of the training data, with ``steps``, ``first()``, ``epochs()``."""
        ...

    @property
    def first(self) -> Any:
        """The first training batch, for the rehearsal."""
        ...

    def rehearsal_metric(self, model: Any, metrics_op: Any) -> Any:
        """``metrics_op`` on one validation batch, as returned."""
        ...

    def calibration_set(self, rng: np.random.Generator) -> list[Any]:
        """The BN-calibration batches, drawn from ``rng``, from a freshly built training set."""
        ...

    def metric(self, model: Any, metrics_op: Any, max_batches: int | None = None) -> Any:
        """``metrics_op`` over the evaluation batches (at most ``max_batches``), as returned."""
        ...

    def whole_metric(self, model: Any, metrics_op: Any) -> Any:
        """``metrics_op`` over the whole validation set, as returned."""
        ...


@dataclass(frozen=True, kw_only=True)
class ClassificationData:
    """The tf.data datasets of a run (any task but object detection) and how a model is scored on
    them: ``metrics_op(labels, outputs)`` (``dopt.backends.tf.evaluate``)."""

    scenario: Scenario
    make: DatasetFn
    train: Data  # this process's shard
    val: Data
    val_batches: Any  # the validation dataset, at most eval_batches batches
    first: Any  # the first training batch, for the rehearsal
    first_val: Any

    def rehearsal_metric(self, model: Any, metrics_op: Any) -> Any:
        return evaluate(model, metrics_op, [self.first_val])

    def calibration_set(self, rng: np.random.Generator) -> list[Any]:
        """Unshuffled where the user's function takes ``is_shuffle``: the same subset however often
        the dataset was iterated before."""
        sc = self.scenario
        fresh = Data(
            self.make(sc.dataset.train_dir, True, False),
            "build_dataset_search(train_dir, True, False)",
            sc.supernet.input_shape,
            sc.batch_size,
            True,
        )
        return calibration_batches(fresh, sc.batch_size, sc.searcher.bn_calib_batches, rng)

    def metric(self, model: Any, metrics_op: Any, max_batches: int | None = None) -> Any:
        batches = self.val_batches if max_batches is None else self.val_batches.take(max_batches)
        return evaluate(model, metrics_op, batches)

    def whole_metric(self, model: Any, metrics_op: Any) -> Any:
        return evaluate(model, metrics_op, self.val.dataset)


def datasets(scenario: Scenario, user: Any, comm: Comm) -> ClassificationData:
    """The training dataset (this process's shard) and the validation dataset, each checked on its first batch."""
    sc, bs, shape = scenario, scenario.batch_size, scenario.supernet.input_shape
    make = dataset_fn(user)
    train = Data(make(sc.dataset.train_dir, True, True), "build_dataset_search(train_dir, True)", shape, bs, True)
    if comm.world_size > 1:  # this process's shard of every epoch (docs/distributed.md)
        train.shard(comm.rank, comm.world_size)
    val = Data(make(sc.dataset.val_dir, False, False), "build_dataset_search(val_dir, False)", shape, bs, False)
    n_eval = sc.searcher.eval_batches
    val_batches = val.dataset.take(n_eval) if n_eval is not None else val.dataset
    first = train.first()
    check_batch(first, shape, "training dataset")
    first_val = val.first()
    check_batch(first_val, shape, "validation dataset")
    return ClassificationData(
        scenario=sc, make=make, train=train, val=val, val_batches=val_batches, first=first, first_val=first_val
    )


class Data:
    """One dataset the user built, checked, batched, with its steps per epoch.

    Args:
        result: what ``build_dataset_search`` returned.
        what: how to name the call in messages, e.g. "build_dataset_search(train_dir, True)".
        input_shape: one input sample's shape (the scenario's input_shape).
        batch_size: the scenario's batch size, used to batch an unbatched dataset.
        drop_remainder: for an unbatched training dataset (BatchNorm never sees a 1-sample batch).
    """

    def __init__(
        self, result: Any, what: str, input_shape: tuple[int, ...], batch_size: int, drop_remainder: bool
    ) -> None:
        if not isinstance(result, (tuple, list)) or len(result) < 2:
            raise UserError(
                f"{what} returned {type(result).__name__}; dopt needs (dataset, data_num)",
                key=_KEY,
                fix="return (tf.data.Dataset of (inputs, labels) batches, number of images)",
            )
        dataset, data_num = result[0], result[1]
        if not isinstance(dataset, tf.data.Dataset):
            raise UserError(
                f"{what} returned {type(dataset).__name__} as its dataset, not a tf.data.Dataset",
                key=_KEY,
                fix="build it with tf.data, e.g. tf.data.Dataset.from_tensor_slices((images, labels)).batch(batch_size)",
            )
        n = image_count(data_num, what, "data_num", "return (dataset, len(images))")
        spec = dataset.element_spec
        if not isinstance(spec, (tuple, list)) or len(spec) != 2:
            got = f"a {type(spec).__name__}" + (f" of {len(spec)} items" if isinstance(spec, (tuple, list)) else "")
            raise UserError(
                f"the dataset of {what} yields {got}; dopt needs (inputs, labels) pairs",
                key=_KEY,
                fix="map the dataset to (inputs, labels) tuples, e.g. ds.map(lambda d: (d['image'], d['label']))",
            )
        shape = first_leaf(spec[0]).shape
        rank, sample_rank = shape.rank, len(input_shape)
        if rank == sample_rank and shape.is_compatible_with(input_shape):  # one sample per element: dopt batches it
            dataset = dataset.batch(batch_size, drop_remainder=drop_remainder)
        elif rank != sample_rank + 1:
            raise UserError(
                f"the dataset of {what} yields inputs of rank {rank}; images need rank {sample_rank} per sample "
                f"or {sample_rank + 1} per batch",
                key=_KEY,
                fix="yield (N, H, W, C) batches (or single (H, W, C) images) matching supernet.input_shape",
            )
        self.dataset = dataset
        self.data_num = n
        cardinality = int(dataset.cardinality())
        # Samples one pass really yields: fewer than data_num when batches drop a remainder.
        per_batch = first_leaf(dataset.element_spec[0]).shape[0]
        self.samples = min(n, cardinality * per_batch) if cardinality > 0 and per_batch is not None else n
        self.infinite = cardinality == int(tf.data.INFINITE_CARDINALITY)
        self.steps = cardinality if cardinality > 0 else math.ceil(n / batch_size)
        if cardinality == 0:
            raise UserError(f"the dataset of {what} is empty", key=_KEY, fix="check the dataset directory in scen.yaml")

    def first(self) -> Any:
        return next(iter(self.dataset))

    def epochs(self) -> TrainEpochs:
        return TrainEpochs(self)

    def shard(self, rank: int, world_size: int) -> None:
        """Keep this process's shard: every ``world_size``-th batch from the ``rank``-th, the same
        number of steps on every process (docs/distributed.md#data-parallel-training)."""
        steps = shard_steps(self.steps, world_size, "training dataset")
        self.dataset = self.dataset.shard(world_size, rank)
        if not self.infinite:
            self.dataset = self.dataset.take(steps)
        self.steps = steps
        self.samples = self.samples // world_size


class TrainEpochs:
    """The training batches of each epoch, reproducible across a resume (docs/user-module.md#tensorflow).

    A finite dataset is iterated afresh every epoch; a dataset that reshuffles each iteration
    (``shuffle(..., reshuffle_each_iteration=True)``, seeded) draws its k-th order from its k-th
    iterator, so a run resumed at epoch k first creates, and drops, k iterators: the seeds advance
    without reading (or decoding) a single element. A dataset that repeats forever is read through
    one iterator, ``steps`` batches per epoch; resuming skips the batches of the epochs done.
    """

    def __init__(self, data: Data) -> None:
        self.data = data
        self._iterator: Iterator[Any] | None = None
        self._next_epoch = 0

    def batches(self, epoch: int) -> Iterator[Any]:
        ds, steps = self.data.dataset, self.data.steps
        if self.data.infinite:
            if self._iterator is None:
                self._iterator = iter(ds)
            for _ in range((epoch - self._next_epoch) * steps):  # resuming: the batches of skipped epochs
                next(self._iterator)
            self._next_epoch = epoch + 1
            return (next(self._iterator) for _ in range(steps))
        for _ in range(epoch - self._next_epoch):  # resuming: advance the shuffle seeds
            iter(ds)
        self._next_epoch = epoch + 1
        return iter(ds.take(steps)) if int(ds.cardinality()) < 0 else iter(ds)


def check_batch(batch: Any, input_shape: tuple[int, ...], what: str) -> None:
    """A first batch: float32 image inputs of ``input_shape`` per sample."""
    inputs = first_leaf(batch[0])
    if inputs.dtype != tf.float32:
        raise UserError(
            f"the {what} yields {inputs.dtype.name} inputs; the model's weights are float32",
            key=_KEY,
            fix="convert the inputs in the dataset, e.g. ds.map(lambda x, y: (tf.cast(x, tf.float32) / 255, y))",
        )
    if tuple(inputs.shape[1:]) != tuple(input_shape):
        raise UserError(
            f"the {what} yields inputs of shape {tuple(inputs.shape[1:])} per sample but input_shape is {tuple(input_shape)}",
            key=_KEY,
            fix="make the dataset produce images of supernet.input_shape, or correct input_shape in scen.yaml",
        )


def calibration_batches(data: Data, batch_size: int, n_batches: int | None, rng: np.random.Generator) -> list[Any]:
    """The BN-calibration subset: drawn once from ``rng`` and materialised (docs/search-space.md#evaluating-a-candidate).

    ``data`` is a freshly built, unshuffled (or seeded) training dataset; samples are picked by
    index inside the tf.data pipeline, which stops after the last index
    (``dopt.evaluation.calibration_indices``).
    """
    chosen = calibration_indices(data.samples, batch_size, n_batches, rng)
    take = len(chosen)
    wanted = tf.constant(chosen, tf.int64)

    # Plain functions, not lambdas: autograph cannot read a lambda's source in a chained call.
    @tf.autograph.experimental.do_not_convert
    def inputs(x: Any, y: Any) -> Any:
        return x

    @tf.autograph.experimental.do_not_convert
    def is_chosen(i: Any, x: Any) -> Any:
        return tf.reduce_any(tf.equal(i, wanted))

    @tf.autograph.experimental.do_not_convert
    def sample(i: Any, x: Any) -> Any:
        return x

    samples = (
        data.dataset.map(inputs)
        .unbatch()
        .take(int(chosen[-1]) + 1)
        .enumerate()
        .filter(is_chosen)
        .map(sample)
        .batch(batch_size, drop_remainder=take >= batch_size)
    )
    return list(samples)
