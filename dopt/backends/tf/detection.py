"""Object detection's data and metric in TensorFlow (docs/user-module.md#tensorflow-object-detection): NASEA's generators.

A detection user module does not return a ``tf.data.Dataset``: ``build_dataset_search(dir, True,
is_shuffle)`` gives ``(train_generator, train_dataset_size)`` and ``(dir, False, False)`` gives
``(val_generator, val_dataset, val_dataset_size)``, where a generator yields ``(images, labels)``
batches and ``val_dataset`` is the user's own (ground truth, say). Boxes rarely batch into one
tensor, so dopt does not look into the labels; and the metric (mAP) is the user's to compute from
the validation images it picks, so ``metrics_op`` gets a model to call instead of its outputs.

A generator is *indexed* (a ``keras.utils.PyDataset`` / ``Sequence`` or anything with ``__len__``
and ``__getitem__``: batches 0..len-1 every epoch) or a *stream* (any other iterable, possibly
infinite: ``ceil(size / batch_size)`` successive batches per epoch, built again when it ends).
"""

from __future__ import annotations

import inspect
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import tensorflow as tf

from dopt.backends.tf.data import DatasetFn, first_leaf, image_count, shard_steps
from dopt.backends.tf.traced import traced_call
from dopt.errors import UserError
from dopt.evaluation import calibration_indices
from dopt.parallel.comm import Comm
from dopt.scenario import Scenario

__all__ = [
    "METRIC_ARGS",
    "dataset_fn",
    "DetectionData",
    "datasets",
    "Batches",
    "GeneratorEpochs",
    "Validation",
    "as_tensors",
    "check_batch",
    "calibration_batches",
    "inference",
]

log = logging.getLogger(__name__)

_KEY = "UserModule.build_dataset_search"
_METRIC = "UserModule.metrics_op"
METRIC_ARGS = "([valid_dir, model], [data_generator, proxy_val_image_ids, data_size])"
_DOC = "docs/user-module.md#tensorflow-object-detection"


def dataset_fn(user: Any) -> DatasetFn:
    """``build_dataset_search``, which must take ``is_shuffle`` in a detection scenario.

    Raises:
        UserError: it takes two arguments (the classification contract).
    """
    method = user.build_dataset_search
    try:
        params = list(inspect.signature(method).parameters.values())
    except (TypeError, ValueError):  # a builtin or C callable: let the call decide
        params = []
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    if params and len(positional) < 3 and not any(p.kind == p.VAR_POSITIONAL for p in params):
        raise UserError(
            f"build_dataset_search{inspect.signature(method)} takes no is_shuffle; an object_detection scenario "
            "calls it with (dataset_dir, is_training, is_shuffle)",
            key=_KEY,
            fix="def build_dataset_search(self, dataset_dir, is_training, is_shuffle): returning (train_generator, "
            f"train_dataset_size) for is_training=True, (val_generator, val_dataset, val_dataset_size) otherwise ({_DOC})",
        )
    return lambda dataset_dir, is_training, is_shuffle: method(dataset_dir, is_training, is_shuffle)


@dataclass(frozen=True, kw_only=True)
class DetectionData:
    """The generators of an object-detection run and how a model is scored on them: ``metrics_op``
    gets a model to call (:data:`METRIC_ARGS`) and ``Validation.ids`` picks the images of an evaluation."""

    scenario: Scenario
    make: DatasetFn
    train: Batches  # this process's shard
    val: Validation
    first: Any  # the first training batch, for the rehearsal

    def rehearsal_metric(self, model: Any, metrics_op: Any) -> Any:
        return self.val.rehearse(model, metrics_op)

    def calibration_set(self, rng: np.random.Generator) -> list[Any]:
        sc = self.scenario
        return calibration_batches(self.make, sc.dataset.train_dir, sc.batch_size, sc.searcher.bn_calib_batches, rng)

    def metric(self, model: Any, metrics_op: Any, max_batches: int | None = None) -> Any:
        limits = [n for n in (self.scenario.searcher.eval_batches, max_batches) if n is not None]
        return self.val.metric(model, metrics_op, min(limits) if limits else None)

    def whole_metric(self, model: Any, metrics_op: Any) -> Any:
        return self.val.metric(model, metrics_op, None)


def datasets(scenario: Scenario, user: Any, comm: Comm) -> DetectionData:
    """The training generator (this process's shard) and the validation set, each checked on its first batch."""
    sc, bs, shape = scenario, scenario.batch_size, scenario.supernet.input_shape
    make = dataset_fn(user)
    train = Batches(lambda: make(sc.dataset.train_dir, True, True), "build_dataset_search(train_dir, True, True)", bs)
    if comm.world_size > 1:  # this process's shard of every epoch (docs/distributed.md)
        train.shard(comm.rank, comm.world_size)
    val = Validation(lambda: make(sc.dataset.val_dir, False, False), sc.dataset.val_dir, bs)
    first = train.first()
    check_batch(first, shape, "training generator")
    check_batch(val.first, shape, "validation generator")
    return DetectionData(scenario=sc, make=make, train=train, val=val, first=as_tensors(first))


def _generator(result: Any, what: str, is_training: bool) -> tuple[Any, int]:
    """(generator, size) from what ``build_dataset_search`` returned, its shape checked."""
    expected = (
        "(train_generator, train_dataset_size)" if is_training else "(val_generator, val_dataset, val_dataset_size)"
    )
    n = 2 if is_training else 3
    if not isinstance(result, (tuple, list)) or len(result) != n:
        got = f"{len(result)} items" if isinstance(result, (tuple, list)) else type(result).__name__
        raise UserError(
            f"{what} returned {got}; in an object_detection scenario it returns {expected}",
            key=_KEY,
            fix=f"return {expected} ({_DOC})",
        )
    generator, size = result[0], result[-1]
    if isinstance(generator, tf.data.Dataset):
        raise UserError(
            f"{what} returned a tf.data.Dataset (the classification contract); in an object_detection scenario it "
            f"returns {expected} with a generator of (images, labels) batches",
            key=_KEY,
            fix=f"return a keras.utils.PyDataset subclass or a Python generator of batches ({_DOC})",
        )
    if not hasattr(generator, "__getitem__") and not hasattr(generator, "__iter__"):
        raise UserError(
            f"{what} returned {type(generator).__name__} as its generator, which cannot be iterated",
            key=_KEY,
            fix="return a keras.utils.PyDataset subclass or a Python generator of (images, labels) batches",
        )
    name = f"{'train' if is_training else 'val'}_dataset_size"
    return generator, image_count(size, what, name, f"return {expected} with the number of images last")


def _batch_count(generator: Any) -> int | None:
    """Batches per epoch of an indexed generator; None for a stream (an infinite PyDataset is one)."""
    if not hasattr(generator, "__getitem__"):
        return None
    try:
        # keras.utils.PyDataset says num_batches (None: infinite), a Sequence or a list __len__.
        count = generator.num_batches if hasattr(type(generator), "num_batches") else len(generator)
    except (NotImplementedError, TypeError):
        return None
    return None if count is None else int(count)


def as_tensors(batch: Any) -> tuple[Any, Any]:
    """``(images, labels)`` with every NumPy array a tensor, as tf.data or Keras' ``fit`` would give
    them to ``loss_op``; anything else in the labels (lists of per-image arrays, dicts) as it was."""
    images, labels = batch[0], batch[1]

    def convert(leaf: Any) -> Any:
        return tf.convert_to_tensor(leaf) if isinstance(leaf, np.ndarray) and leaf.dtype.kind in "biuf" else leaf

    return convert(images), tf.nest.map_structure(convert, labels)


def check_batch(batch: Any, input_shape: tuple[int, ...], what: str) -> None:
    """A first batch: an (images, labels) pair of float32 images of ``input_shape`` per sample."""
    if not isinstance(batch, (tuple, list)) or len(batch) != 2:
        got = f"{len(batch)} items" if isinstance(batch, (tuple, list)) else type(batch).__name__
        raise UserError(
            f"the {what} yields {got} per batch; dopt needs (images, labels) pairs",
            key=_KEY,
            fix="yield (images, labels) from the generator (__getitem__ of a PyDataset returns the pair)",
        )
    images = first_leaf(batch[0])
    if not hasattr(images, "shape") or not hasattr(images, "dtype"):
        raise UserError(
            f"the {what} yields {type(images).__name__} images; dopt needs a float32 array (N, H, W, C)",
            key=_KEY,
            fix="yield the images of a batch as one array, e.g. np.stack(images).astype(np.float32)",
        )
    if images.dtype != tf.float32:
        raise UserError(
            f"the {what} yields {tf.as_dtype(images.dtype).name} images; the model's weights are float32",
            key=_KEY,
            fix="convert them in the generator, e.g. images.astype(np.float32) / 255",
        )
    if tuple(images.shape[1:]) != tuple(input_shape):
        raise UserError(
            f"the {what} yields images of shape {tuple(images.shape)}, not (N, *input_shape) with input_shape "
            f"{tuple(input_shape)}",
            key=_KEY,
            fix="make the generator produce batches of supernet.input_shape images, or correct input_shape in scen.yaml",
        )


class Batches:
    """The training generator, checked, with its steps per epoch (docs/user-module.md#tensorflow-object-detection).

    Args:
        make: builds it (again): ``build_dataset_search(train_dir, True, is_shuffle)``.
        what: how to name that call in messages.
        batch_size: the scenario's, for a stream's steps per epoch.
    """

    def __init__(self, make: Callable[[], Any], what: str, batch_size: int) -> None:
        self._make, self.what = make, what
        self.generator, self.samples = _generator(make(), what, True)
        self.count = _batch_count(self.generator)  # None: a stream
        self.steps = self.count if self.count is not None else math.ceil(self.samples / batch_size)
        if self.steps == 0:
            raise UserError(f"the generator of {what} has no batch", key=_KEY, fix="check train_dir in scen.yaml")
        self.rank, self.world_size = 0, 1
        self.stream: Iterator[Any] | None = None  # a stream's iterator, shared by every epoch

    def rebuild(self) -> Iterator[Any]:
        """A stream that ended, built again: its next pass."""
        self.generator = _generator(self._make(), self.what, True)[0]
        return iter(self.generator)

    def first(self) -> Any:
        """The first batch: read from a stream, which keeps it for the first epoch."""
        if self.count is not None:
            return self.generator[0]
        if self.stream is None:
            self.stream = iter(self.generator)
        try:
            batch = next(self.stream)
        except StopIteration:
            raise UserError(f"the generator of {self.what} yields no batch", key=_KEY, fix="check train_dir") from None
        self.stream = _prepend(batch, self.stream)
        return batch

    def shard(self, rank: int, world_size: int) -> None:
        """Keep every ``world_size``-th batch from the ``rank``-th, the same number of steps on every
        process, as ``dopt.backends.tf.data.Data.shard`` does (docs/distributed.md#data-parallel-training)."""
        steps = shard_steps(self.steps, world_size, "training generator")
        self.rank, self.world_size, self.steps = rank, world_size, steps
        self.samples //= world_size

    def epochs(self) -> GeneratorEpochs:
        return GeneratorEpochs(self)


def _prepend(batch: Any, rest: Iterator[Any]) -> Iterator[Any]:
    yield batch
    yield from rest


class GeneratorEpochs:
    """The training batches of each epoch (``dopt.backends.tf.data.TrainEpochs`` for generators).

    An indexed generator gives batches ``rank, rank + world_size, ...`` every epoch, then its
    ``on_epoch_end()`` (``on_epoch_begin()`` before), as Keras' ``fit`` calls them; a resumed run
    simply starts there. A stream is read through one iterator, ``world_size * steps`` batches per
    epoch, of which this process keeps every ``world_size``-th; when it ends it is built again. A
    run resumed at epoch k first reads and drops the batches of the k epochs done, as for an
    infinite tf.data dataset; which batches those are is the user's generator's business.
    """

    def __init__(self, data: Batches) -> None:
        self.data = data
        self._next_epoch = 0

    def batches(self, epoch: int) -> Iterator[Any]:
        d = self.data
        if d.count is not None:
            return self._indexed()
        for _ in range((epoch - self._next_epoch) * d.steps * d.world_size):  # resuming: the epochs done
            self._read()
        self._next_epoch = epoch + 1
        return (self._take() for _ in range(d.steps))

    def _indexed(self) -> Iterator[Any]:
        g, d = self.data.generator, self.data
        _call(g, "on_epoch_begin")
        for i in range(d.rank, d.steps * d.world_size, d.world_size):
            yield as_tensors(g[i])
        _call(g, "on_epoch_end")

    def _take(self) -> Any:
        """This process's batch of the next ``world_size``."""
        group = [self._read() for _ in range(self.data.world_size)]
        return as_tensors(group[self.data.rank])

    def _read(self) -> Any:
        d = self.data
        if d.stream is None:
            d.stream = iter(d.generator)
        try:
            return next(d.stream)
        except StopIteration:
            log.debug("the training generator ended; building it again")
            d.stream = d.rebuild()
        try:
            return next(d.stream)
        except StopIteration:
            raise UserError(
                f"the generator of {d.what}, built again after it ended, yields no batch",
                key=_KEY,
                fix="make every call of build_dataset_search return a generator of at least one batch",
            ) from None


def _call(generator: Any, hook: str) -> None:
    method = getattr(generator, hook, None)
    if callable(method):
        method()


class Validation:
    """The validation set as ``metrics_op`` receives it: a fresh generator per evaluation, the
    indices of the images to score, and their number.

    Args:
        make: ``build_dataset_search(val_dir, False, False)``.
        val_dir: the scenario's, passed to ``metrics_op`` as ``valid_dir``.
        batch_size: the scenario's; ``n`` batches are the first ``n * batch_size`` images.
    """

    what = "build_dataset_search(val_dir, False, False)"

    def __init__(self, make: Callable[[], Any], val_dir: str, batch_size: int) -> None:
        self._make, self.val_dir, self.batch_size = make, val_dir, batch_size
        generator, self.size = _generator(make(), self.what, False)
        if _batch_count(generator) is not None:
            self.first = generator[0]
        else:
            try:
                self.first = next(iter(generator))
            except StopIteration:
                raise UserError(
                    f"the generator of {self.what} yields no batch", key=_KEY, fix="check val_dir"
                ) from None

    def ids(self, batches: int | None) -> np.ndarray:
        """``proxy_val_image_ids``: the first ``batches * batch_size`` image indices, all when None."""
        n = self.size if batches is None else min(self.size, batches * self.batch_size)
        return np.arange(n, dtype=np.int64)

    def metric(self, model: Any, metrics_op: Any, batches: int | None) -> Any:
        """``metrics_op([valid_dir, model], [data_generator, proxy_val_image_ids, data_size])``, as returned."""
        generator, _ = _generator(self._make(), self.what, False)
        ids = self.ids(batches)
        return metrics_op([self.val_dir, inference(model)], [generator, ids, len(ids)])

    def rehearse(self, model: Any, metrics_op: Any) -> Any:
        """The metric on the first validation batch; a failure is a metric written for another task.

        Raises:
            UserError: ``metrics_op`` raised (a classification metric takes outputs and labels).
        """
        generator, _ = _generator(self._make(), self.what, False)
        ids = self.ids(1)
        try:
            return metrics_op([self.val_dir, inference(model)], [generator, ids, len(ids)])
        except Exception as exc:  # noqa: BLE001 - any failure of user code here means a contract mismatch
            log.debug("metrics_op failed in the rehearsal", exc_info=exc)
            brief = str(exc).splitlines()[0] if str(exc) else ""
            raise UserError(
                f"metrics_op failed on one validation batch ({type(exc).__name__}: {brief:.200}); in an "
                f"object_detection scenario it receives {METRIC_ARGS}, not labels and outputs",
                key=_METRIC,
                fix=f"compute the metric by calling model(images) on data_generator's batches of the images in "
                f"proxy_val_image_ids ({_DOC})",
            ) from None


def inference(model: Any) -> Callable[[Any], Any]:
    """``model`` in inference mode as one traced call: ``images -> outputs`` (any batch size)."""
    infer = traced_call(lambda inputs: model(inputs, training=False))

    def call(images: Any) -> Any:
        return infer(tf.cast(images, tf.float32))

    return call


def calibration_batches(
    make: DatasetFn, train_dir: str, batch_size: int, n_batches: int | None, rng: np.random.Generator
) -> list[Any]:
    """The BN-calibration subset: the images at ``dopt.evaluation.calibration_indices`` of an
    unshuffled training generator (``build_dataset_search(train_dir, True, False)``), read in order
    up to the last index and re-batched by ``batch_size``; labels are dropped."""
    data = Batches(lambda: make(train_dir, True, False), "build_dataset_search(train_dir, True, False)", batch_size)
    chosen = calibration_indices(data.samples, batch_size, n_batches, rng)
    source = (data.generator[i] for i in range(data.count)) if data.count is not None else iter(data.generator)
    picked, start = [], 0
    for batch in source:
        images = np.asarray(first_leaf(batch[0]))
        end = start + len(images)
        rows = chosen[(chosen >= start) & (chosen < end)] - start
        if len(rows):
            picked.append(images[rows])
        start = end
        if start > chosen[-1]:
            break
    if not picked:
        return []
    samples = np.concatenate(picked).astype(np.float32)
    full = len(samples) // batch_size * batch_size if len(samples) >= batch_size else len(samples)
    return [tf.constant(samples[i : i + batch_size]) for i in range(0, full, batch_size)]
