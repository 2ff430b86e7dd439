"""Pre-training PreNet + the largest skeleton with a temporary pooled linear head, in TensorFlow
(docs/tasks.md#pre-training). The stage's policy is ``dopt/pipeline/pretrain.py``'s and the step loop
``dopt/training.py``'s; this file supplies the primitives and the weight files."""

from __future__ import annotations

import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import keras
import numpy as np
import tensorflow as tf

from dopt.backends.checkpoint_format import save_npz
from dopt.backends.tf import data
from dopt.backends.tf.device import seed_everything
from dopt.backends.tf.train import TFTrainer
from dopt.datasets.class_folders import ClassFolders
from dopt.errors import UserError
from dopt.training import Forward, cosine

if TYPE_CHECKING:
    from dopt.backends.tf.backend import TFSetup
    from dopt.backends.tf.supernet import Supernet

__all__ = ["TFPretrainer", "load_pretrained", "backbone_weights"]

_USER_FN = "build_dataset_pretrain"


def backbone_weights(supernet: Supernet) -> list[Any]:
    """PreNet's and the layers' variables (statistics included), in a fixed order."""
    return list(supernet.pre.weights) + [w for block in supernet.blocks for w in block.weights]


class _FolderEpochs:
    """Class folders in a seeded order per epoch, batched, this process's share of each epoch."""

    def __init__(self, folders: ClassFolders, batch_size: int, seed: int, rank: int, world: int, chw: bool) -> None:
        self.folders, self.batch_size, self.seed, self.rank, self.world = folders, batch_size, seed, rank, world
        self.channels_first = chw
        self.steps = len(folders) // (batch_size * world)
        if self.steps == 0:
            raise UserError(
                f"batch_size {batch_size} is larger than the {len(folders)} pre-training images"
                + (f" shared by {world} processes" if world > 1 else ""),
                key="scenario.strategy.batch_size",
                fix="add pre-training images, or lower batch_size",
            )

    def batches(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        order = np.random.default_rng([self.seed, 3, epoch]).permutation(len(self.folders))
        for step in range(self.steps):
            first = (step * self.world + self.rank) * self.batch_size
            chosen = order[first : first + self.batch_size]
            images = np.stack([self.folders.image(int(i)) for i in chosen])
            if self.channels_first:
                images = images.transpose(0, 3, 1, 2)
            yield tf.constant(images), tf.constant(self.folders.labels[chosen])


class _UserEpochs:
    """The user's ``build_dataset_pretrain`` dataset through the same epoch logic as training's."""

    def __init__(self, result: Any, shape: tuple[int, ...], batch_size: int, rank: int, world: int) -> None:
        what = f"{_USER_FN}(pre_train_dir)"
        self.data = data.Data(result, what, shape, batch_size, True)
        data.check_batch(self.data.first(), shape, f"pre-training dataset of {what}")
        if world > 1:
            self.data.shard(rank, world)
        self.steps = self.data.steps
        self._epochs = data.TrainEpochs(self.data)

    def batches(self, epoch: int) -> Iterator[Any]:
        return self._epochs.batches(epoch)

    def classes(self) -> int:
        top = -1
        for _, labels in self.data.dataset:
            values = np.asarray(labels)
            if values.dtype.kind not in "iu" or values.ndim != 1:
                raise UserError(
                    f"{_USER_FN}(pre_train_dir) yields labels of {values.dtype} and shape {values.shape[1:]} per "
                    "sample; pre-training needs one integer class id per sample",
                    key=f"UserModule.{_USER_FN}",
                    fix="yield (images, class_ids) batches with integer class ids",
                )
            top = max(top, int(values.max()))
        if top < 1:
            raise UserError(
                f"{_USER_FN}(pre_train_dir) yields 1 class; pre-training classifies, so it needs at least 2",
                key=f"UserModule.{_USER_FN}",
                fix="return images of at least two classes",
            )
        return top + 1


class _PretrainNet:
    """PreNet and the supernet's layers (shared, not copied) under a pooled linear head: the
    network a :class:`TFPretrainer` trains, with the variables a ``TFTrainer`` reads."""

    def __init__(self, supernet: Supernet, classes: int, input_shape: tuple[int, ...], data_format: str) -> None:
        self.supernet = supernet
        self.axes = [2, 3] if data_format == "channels_first" else [1, 2]
        self.head = keras.layers.Dense(classes)
        example = np.zeros((1, *input_shape), np.float32)
        channels = supernet.backbone(example, training=False).shape[1 if self.axes == [2, 3] else -1]
        self.head.build((None, int(channels)))

    def __call__(self, inputs: Any, training: bool = False) -> Any:
        return self.head(tf.reduce_mean(self.supernet.backbone(inputs, training=training), axis=self.axes))

    @property
    def trainable_variables(self) -> list[Any]:
        sn = self.supernet
        blocks = [w for block in sn.blocks for w in block.trainable_weights]
        return list(sn.pre.trainable_weights) + blocks + list(self.head.trainable_weights)

    @property
    def variables(self) -> list[Any]:
        """Every variable, statistics included: what a checkpoint holds."""
        return backbone_weights(self.supernet) + list(self.head.weights)


class TFPretrainer(TFTrainer):
    """The trainer's primitives and checkpoints over PreNet and the largest skeleton under a pooled
    linear head, with the cross-entropy for loss and a cosine schedule instead of the user's."""

    loss_function = "the pre-training cross-entropy"
    # A pre-training checkpoint that does not fit reads "N model variables in the file, M here",
    # and each assignment checks its own shape: as pre-training always reported it.
    _here = "here"
    _check_shapes = False

    def __init__(self, setup: TFSetup, supernet: Supernet, folder: Path, epochs: int) -> None:
        s = setup
        sc, comm = s.scenario, s.comm
        self.supernet = supernet
        fn = getattr(s.user, _USER_FN, None)
        source: _FolderEpochs | _UserEpochs
        if fn is None:
            folders = ClassFolders(folder, sc.supernet.chw)
            first = sc.supernet.data_format == "channels_first"
            source = _FolderEpochs(folders, sc.batch_size, s.seed, comm.rank, comm.world_size, first)
            self.classes = len(folders.classes)
        else:
            source = _UserEpochs(fn(str(folder)), sc.supernet.input_shape, sc.batch_size, comm.rank, comm.world_size)
            self.classes = source.classes()
        self.steps_per_epoch = source.steps
        self._largest = supernet.space.decode(supernet.space.largest())
        supernet.set_active(self._largest)
        seed_everything(s.seed)
        net = _PretrainNet(supernet, self.classes, sc.supernet.input_shape, sc.supernet.data_format)
        super().__init__(s, net, source)
        # Cosine decay from the scenario's learning rate over every pre-training step (docs/tasks.md#pre-training).
        self._rate = cosine(self.lr_init, epochs * self.steps_per_epoch)

    def _lr(self, step: int) -> float:
        return self._rate(step)

    def begin_epoch(self, epoch: int) -> Iterator[Any]:
        self.supernet.set_active(self._largest)
        return super().begin_epoch(epoch)

    def forward(self, batch: Any, arch: Any, teacher: Any) -> Forward:
        inputs, labels = batch
        with tf.GradientTape() as tape:
            logits = self.net(inputs, training=True)
            loss = tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
        return Forward(float(loss), (tape, loss))

    def discard(self) -> None:
        super().discard()
        self.optimizer.iterations.assign_add(1)

    def _counters(self, step: int) -> dict[str, int]:
        return {"step": step}

    def save_pretrained(self, path: Path) -> None:
        """PreNet's and the layers' variables (the head is dropped), as :func:`load_pretrained` reads them."""
        save_npz(path, {"": backbone_weights(self.supernet)}, {})


def load_pretrained(supernet: Supernet, path: Path, folder: Path) -> None:
    """Load PreNet's and the layers' pre-trained variables into ``supernet``.

    Raises:
        UserError: the file does not fit this PreNet and skeleton (names the first differences).
    """
    key = "scenario.strategy.dataset.pre_train_dir"
    try:
        with np.load(path, allow_pickle=False) as archive:
            values = [archive[k] for k in sorted(archive.files)]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UserError(
            f"{path} cannot be read ({type(exc).__name__})", key=key, fix="pre-train again: name the class folders"
        ) from None
    mine = backbone_weights(supernet)
    differ = [] if len(values) == len(mine) else [f"{len(values)} variables there, {len(mine)} here"]
    differ += [
        f"{v.path} is {tuple(value.shape)} there, {tuple(v.shape)} here"
        for v, value in zip(mine, values)
        if tuple(value.shape) != tuple(v.shape)
    ]
    if differ:
        more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
        raise UserError(
            f"pre_train_dir {folder} does not fit this PreNet and skeleton: {'; '.join(differ[:3])}{more}",
            key=key,
            fix="name the class folders instead to pre-train this PreNet and skeleton",
        )
    for v, value in zip(mine, values):
        v.assign(value)
