"""Data loaders built from the user's ``dataset_define`` (docs/user-module.md#pytorch), and moving batches to a device."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, IterableDataset, Subset

from dopt.errors import UserError
from dopt.evaluation import calibration_indices

__all__ = [
    "to_device",
    "collate_of",
    "first_batch",
    "train_loader",
    "eval_loader",
    "calibration_batches",
    "check_batch",
]


def to_device(obj: Any, device: torch.device) -> Any:
    """Move tensors in nested lists/tuples/dicts to ``device``."""
    if isinstance(obj, torch.Tensor):
        return obj.to(device, non_blocking=True)
    if isinstance(obj, Mapping):
        return type(obj)({k: to_device(v, device) for k, v in obj.items()})  # type: ignore[call-arg]
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):  # namedtuple
        return type(obj)(*(to_device(v, device) for v in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(to_device(v, device) for v in obj)
    return obj


def collate_of(dataset: Dataset) -> Callable[[list[Any]], Any] | None:
    """The dataset's own ``collate_fn`` attribute, used by every loader dopt builds on it (labels
    of different sizes per sample, as boxes are: docs/user-module.md#labels-of-different-sizes);
    None for torch's default batching."""
    while isinstance(dataset, Subset):
        dataset = dataset.dataset
    fn = getattr(dataset, "collate_fn", None)
    return fn if callable(fn) else None


def first_batch(dataset: Dataset, batch_size: int, what: str) -> Any:
    """The first batch of ``dataset`` as the loaders will batch it. Torch's default batching of
    labels that differ in size per sample is the user's mistake: exit 2 with the fix."""
    collate = collate_of(dataset)
    try:
        return next(iter(DataLoader(dataset, batch_size=batch_size, collate_fn=collate)))
    except (RuntimeError, TypeError) as e:
        if collate is not None or "size" not in str(e):
            raise
        raise UserError(
            f"{what}: torch's default batching could not stack {batch_size} samples into a batch "
            f"({type(e).__name__}: {e}); labels of different sizes per sample (boxes) need batching of your own",
            key="UserModule.dataset_define",
            fix="give the Dataset a collate_fn(self, samples) method returning (inputs, labels), e.g. stacked "
            "inputs and a list of per-image box tensors, or pad the labels to one shape",
        ) from None


def check_dataset(dataset: Any, what: str) -> Dataset:
    if isinstance(dataset, IterableDataset):
        raise UserError(
            f"{what} returned an IterableDataset; dopt shuffles, subsets and re-reads the data, which needs indexing",
            key="UserModule.dataset_define",
            fix="return a map-style Dataset with __getitem__ and __len__ (e.g. TensorDataset)",
        )
    if not isinstance(dataset, Dataset) or not hasattr(dataset, "__len__"):
        raise UserError(
            f"{what} returned {type(dataset).__name__}, not a torch.utils.data.Dataset with __len__",
            key=f"UserModule.{what.split('(')[0]}",
            fix="return a map-style Dataset (e.g. torch.utils.data.TensorDataset(inputs, labels))",
        )
    if len(dataset) == 0:
        raise UserError(
            f"{what} returned an empty dataset",
            key="UserModule.dataset_define",
            fix="check the dataset directory in scen.yaml",
        )
    return dataset


def train_loader(
    dataset: Dataset, batch_size: int, seed: int, device: torch.device, rank: int = 0, world_size: int = 1
) -> DataLoader:
    """Shuffled with a seeded generator; ``drop_last`` so BatchNorm never sees a 1-sample batch.

    Workers are not persistent: each epoch's workers are seeded from the generator, which the
    backend reseeds per epoch, so a resumed epoch reads and augments exactly as it did. With
    several processes each reads its own shard of every epoch (torch's DistributedSampler, seeded
    from the run's seed and the epoch), all shards of one length (docs/distributed.md).
    """
    n = len(dataset)  # type: ignore[arg-type]
    per_process = n // world_size
    if per_process < batch_size:
        what = (
            f"each process's shard of the training set ({per_process} of {n} samples, {world_size} processes)"
            if world_size > 1
            else f"the training set ({n} samples)"
        )
        raise UserError(
            f"batch_size {batch_size} is larger than {what}, so an epoch has no step",
            key="scenario.strategy.batch_size",
            fix=f"use batch_size ≤ {per_process}" + (" (batch_size is per process)" if world_size > 1 else ""),
        )
    generator = torch.Generator().manual_seed(seed)
    workers = _workers(device)
    sampler: DistributedSampler | None = None
    if world_size > 1:
        sampler = DistributedSampler(
            dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True
        )
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        drop_last=True,
        generator=generator,
        collate_fn=collate_of(dataset),
        num_workers=workers,
        pin_memory=device.type == "cuda",
    )


def eval_loader(dataset: Dataset, batch_size: int, device: torch.device, max_batches: int | None) -> DataLoader:
    """In order, no drop_last, at most ``max_batches`` batches (docs/user-module.md#pytorch)."""
    if max_batches is not None:
        n = min(len(dataset), max_batches * batch_size)  # type: ignore[arg-type]
        dataset = Subset(dataset, range(n))
    workers = _workers(device)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        drop_last=False,
        collate_fn=collate_of(dataset),
        num_workers=workers,
        persistent_workers=workers > 0,
        pin_memory=device.type == "cuda",
    )


def _workers(device: torch.device) -> int:
    """No worker processes on the CPU (they would compete with the model for the same cores); on
    a GPU a few, so that reading data overlaps the GPU's work. Workers draw their seeds from the
    loader's seeded generator, so data order and augmentations stay reproducible."""
    if device.type == "cpu":
        return 0
    from dopt.backends.torch.device import available_cpus

    return max(0, min(4, available_cpus() // 2))


def calibration_batches(
    dataset: Dataset, batch_size: int, n_batches: int | None, rng: np.random.Generator, device: torch.device
) -> list[Any]:
    """The BN-calibration subset (``dopt.evaluation.calibration_indices``), materialised on ``device``."""
    indices = calibration_indices(len(dataset), batch_size, n_batches, rng)  # type: ignore[arg-type]
    subset = Subset(dataset, indices.tolist())
    loader = DataLoader(subset, batch_size=batch_size, shuffle=False, drop_last=False, collate_fn=collate_of(dataset))
    return [to_device(batch[0], device) for batch in loader]


def check_batch(batch: Any, chw: tuple[int, int, int], what: str) -> None:
    """A first batch must be (inputs, labels), tensor inputs float32 at ``input_shape``."""
    if not isinstance(batch, Sequence) or isinstance(batch, str) or len(batch) != 2:
        got = f"a {type(batch).__name__}" + (f" of {len(batch)} items" if isinstance(batch, Sequence) else "")
        raise UserError(
            f"the {what} yields {got}; dopt needs (inputs, labels) pairs",
            key="UserModule.dataset_define",
            fix="make Dataset.__getitem__ return (input_tensor, label)",
        )
    inputs = batch[0]
    if isinstance(inputs, torch.Tensor) and inputs.dtype != torch.float32:
        raise UserError(
            f"the {what} yields {inputs.dtype} inputs; the model's weights are float32",
            key="UserModule.dataset_define",
            fix="convert the inputs in the dataset, e.g. torch.from_numpy(images).float() / 255",
        )
    if isinstance(inputs, torch.Tensor) and tuple(inputs.shape[1:]) != tuple(chw):
        raise UserError(
            f"the {what} yields inputs of shape {tuple(inputs.shape[1:])} per sample but input_shape is {tuple(chw)} (CHW)",
            key="UserModule.dataset_define",
            fix="make the dataset produce CHW tensors of input_shape, or correct supernet.input_shape in scen.yaml",
        )
