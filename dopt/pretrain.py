"""Pre-training PreNet and the skeleton before a detection or segmentation supernet trains (docs/tasks.md#pre-training).

``pre_train_dir`` means one of two things:

- a folder written by dopt's own pre-training (it holds ``pretrain.json``): its weights are loaded
  into PreNet and the skeleton, after checking that they were trained for this PreNet and skeleton;
- a classification dataset: dopt pre-trains PreNet + the largest subnet of the skeleton with a
  temporary pooled linear head for ``pre_train_epochs`` epochs, writes ``pretrained/`` into the
  working directory (which a later run's ``pre_train_dir`` can name), then trains the supernet
  from those weights.

The dataset is the user module's ``pretrain_dataset_define`` / ``build_dataset_pretrain`` when it
defines one, else one sub-folder of images per class (:class:`ClassFolders`). Pre-training is a
stage like supernet training: a checkpoint per epoch, ``--resume`` continues it. This module is
framework-free; the backend supplies the :class:`dopt.backends.base.Pretrainer`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dopt.atomic import atomic_write_text
from dopt.errors import UserError

if TYPE_CHECKING:
    from dopt.scenario import Scenario

__all__ = [
    "MANIFEST",
    "OUTPUT_DIR",
    "Source",
    "source",
    "ClassFolders",
    "skeleton_identity",
    "write_manifest",
    "check_manifest",
    "epoch_checkpoints",
    "Pretraining",
    "check",
    "pretrain_stage",
]

log = logging.getLogger(__name__)

MANIFEST = "pretrain.json"  # what marks a folder as dopt's pre-training output
OUTPUT_DIR = "pretrained"  # in the working directory; not removed by --overwrite, so later runs can name it
_KEY = "scenario.strategy.dataset.pre_train_dir"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


@dataclass(frozen=True)
class Source:
    """What ``pre_train_dir`` holds."""

    path: Path
    checkpoint: bool  # dopt's pre-training output; else a dataset to pre-train on


def source(sc: Scenario) -> Source | None:
    """What the scenario's ``pre_train_dir`` is; None when it has none (classification).

    Raises:
        UserError: it is not a folder, or an empty one.
    """
    raw = sc.dataset.pre_train_dir
    if raw is None:
        return None
    path = Path(raw)
    if not path.is_dir():
        raise UserError(
            f"pre_train_dir {raw} is a file, not a folder",
            key=_KEY,
            fix="name a folder of class sub-folders of images, or a folder written by dopt's pre-training "
            f"(it holds {MANIFEST})",
        )
    if (path / MANIFEST).is_file():
        return Source(path, True)
    if not any(path.iterdir()):
        raise UserError(
            f"pre_train_dir {raw} is empty",
            key=_KEY,
            fix="put one sub-folder of images per class in it, or name a folder written by dopt's pre-training "
            f"(it holds {MANIFEST}), e.g. pre_train_dir: {OUTPUT_DIR}",
        )
    return Source(path, False)


class ClassFolders:
    """One sub-folder of images per class, sorted by name (class i is the i-th folder), each image
    resized to the input's height and width and converted to its channels (1: grayscale, 3: RGB),
    scaled to [0, 1] as float32. Images are read when asked for, so the set need not fit in memory;
    every file is opened once here (headers only) so that an unreadable one is reported before
    anything trains. Reading images is Pillow's; nothing here is framework-specific.
    """

    def __init__(self, root: Path, chw: tuple[int, int, int]) -> None:
        self.root, (self.channels, self.height, self.width) = root, chw
        if self.channels not in (1, 3):
            raise UserError(
                f"pre_train_dir {root} holds image folders, which dopt reads as 1 or 3 channels, but input_shape "
                f"has {self.channels}",
                key=_KEY,
                fix="define pretrain_dataset_define(dataset_dir) (PyTorch) or build_dataset_pretrain(dataset_dir) "
                "(TensorFlow) in user_module.py to read them yourself",
            )
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        self.classes = [p.name for p in folders]
        self.files: list[Path] = []
        labels: list[int] = []
        for label, folder in enumerate(folders):
            images = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            self.files += images
            labels += [label] * len(images)
        self.labels = np.asarray(labels, dtype=np.int64)
        with_images = sorted({self.classes[i] for i in set(labels)})
        if len(with_images) < 2:
            found = f"1 class ({with_images[0]})" if with_images else "no class folder with images"
            raise UserError(
                f"pre_train_dir {root} holds {found}; pre-training classifies, so it needs at least 2 classes",
                key=_KEY,
                fix="put one sub-folder of images per class in it (e.g. cat/, dog/), at least two",
            )
        self._check_readable()

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as float32 in [0, 1], shaped (height, width, channels)."""
        from PIL import Image

        with Image.open(self.files[i]) as img:
            mode = "L" if self.channels == 1 else "RGB"
            resized = img.convert(mode).resize((self.width, self.height), Image.Resampling.BILINEAR)
            pixels = np.asarray(resized, dtype=np.float32) / 255.0
        return pixels[..., None] if self.channels == 1 else pixels

    def _check_readable(self) -> None:
        from PIL import Image, UnidentifiedImageError

        for path in self.files:
            try:
                with Image.open(path) as img:
                    img.verify()
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
                raise UserError(
                    f"{path} is not a readable image ({type(exc).__name__}: {exc})",
                    key=_KEY,
                    fix="remove or replace that file",
                ) from None


def skeleton_identity(sc: Scenario) -> dict[str, Any]:
    """What pre-trained weights depend on: the framework, the input, and the skeleton at its largest."""
    sn, space = sc.supernet, sc.supernet.search_space
    return {
        "framework": sc.framework,
        "input_shape": list(sn.input_shape),
        "data_format": sn.data_format,
        "filters": list(sn.filters),
        "strides": list(sn.strides),
        "max_kernel_size": max(space.kernel_sizes),
        "max_expand_ratio": max(space.expand_ratios),
    }


def write_manifest(folder: Path, sc: Scenario, weights: str, classes: int, data: Path, epochs: int) -> None:
    """Mark ``folder`` as dopt's pre-training output for this skeleton (written last, atomically)."""
    record = {
        "skeleton": skeleton_identity(sc),
        "weights": weights,
        "classes": classes,
        "dataset": str(data),
        "epochs": epochs,
    }
    atomic_write_text(folder / MANIFEST, json.dumps(record, indent=1))


def check_manifest(folder: Path, sc: Scenario) -> Path:
    """The weights file of a pre-training output that fits this scenario's skeleton.

    Raises:
        UserError: the manifest is unreadable, names no weights, or another skeleton.
    """
    path = folder / MANIFEST
    try:
        record = json.loads(path.read_text())
        skeleton, weights = record["skeleton"], folder / record["weights"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{path} is not a dopt pre-training record ({type(exc).__name__}: {exc})",
            key=_KEY,
            fix="name a folder written by dopt's pre-training, or a folder of class sub-folders to pre-train on",
        ) from None
    here = skeleton_identity(sc)
    differ = [f"{k} {skeleton.get(k)} there, {v} here" for k, v in here.items() if skeleton.get(k) != v]
    if differ:
        raise UserError(
            f"pre_train_dir {folder} was pre-trained for another skeleton: {'; '.join(differ)}",
            key=_KEY,
            fix="name the class folders instead to pre-train this skeleton, or restore the scenario it was trained for",
        )
    if not weights.is_file():
        raise UserError(
            f"pre_train_dir {folder}: {weights.name}, named in {MANIFEST}, is missing",
            key=_KEY,
            fix="name a complete pre-training folder, or the class folders to pre-train again",
        )
    return weights


def epoch_checkpoints(ckpt_dir: Path, suffix: str) -> list[tuple[int, Path]]:
    """(epochs done, path) of the pre-training checkpoints in ``ckpt_dir``, newest first."""
    found = []
    for path in ckpt_dir.glob(f"pretrain_epoch_*{suffix}"):
        middle = path.name[len("pretrain_epoch_") : -len(suffix)]
        if middle.isdigit():
            found.append((int(middle), path))
    return sorted(found, reverse=True)


def cosine(base: float, total_steps: int) -> Callable[[int], float]:
    """The pre-training schedule: ``base`` decayed to 0 along a half cosine over ``total_steps``."""

    def rate(step: int) -> float:
        return float(base * 0.5 * (1 + np.cos(np.pi * min(step, total_steps) / max(1, total_steps))))

    return rate


@dataclass(frozen=True)
class Pretraining:
    """What :func:`check` found: pre-trained weights already loaded (``trainer`` None), or the
    backend's pre-training of the dataset, ready to run."""

    source: Source
    trainer: Any = None


def check(sc: Scenario, session: Any) -> Pretraining | None:
    """Read ``pre_train_dir`` before anything is written: load a pre-training output into the
    supernet ``session`` (checked against PreNet and the skeleton), or build the pre-training of a
    dataset (its folders checked). None for a scenario without pre-training.

    Raises:
        UserError: ``pre_train_dir`` is empty, of another skeleton, or an unusable dataset.
    """
    try:
        src = source(sc)
        if src is None:
            return None
        if src.checkpoint:
            session.load_pretrained(check_manifest(src.path, sc), src.path)
            if "scenario.strategy.dataset.pre_train_epochs" in sc.places:
                log.warning(
                    "pre_train_epochs is ignored: pre_train_dir %s holds pre-trained weights, so nothing is "
                    "pre-trained (name the class folders to pre-train again)",
                    src.path,
                )
            return Pretraining(src)
        return Pretraining(src, session.pretrainer(src.path, sc.dataset.pre_train_epochs))
    except UserError as exc:
        # A scenario key's mistake names where scen.yaml (or --set) wrote it, as the scenario's own
        # checks do (docs/cli.md#error-messages).
        if exc.file is None and exc.key and exc.key.startswith("scenario."):
            place = sc.where(exc.key)
            exc.file, exc.line, exc.column = place.get("file"), place.get("line"), place.get("column")
        raise


def pretrain_stage(p: Any, ctx: Any, writer: Any, ckpt_dir: Path, resume: bool) -> None:
    """Before supernet training: run (or resume) the pre-training that :func:`check` prepared.

    ``p`` is the run's :class:`dopt.run.Prepared`, ``ctx`` its :class:`dopt.context.RunContext`.
    A resumed run whose supernet training has a checkpoint needs no pre-trained weights: that
    checkpoint holds every weight.
    """
    from dopt.checkpoints import epoch_checkpoints as supernet_checkpoints
    from dopt.checkpoints import final_checkpoint
    from dopt.log import Progress
    from dopt.training import StepLog, TrainState, train

    sc, pre = p.scenario, p.pretraining
    if pre is None:
        return
    suffix = p.session.checkpoint_suffix
    if resume and (final_checkpoint(ckpt_dir, suffix).exists() or supernet_checkpoints(ckpt_dir, suffix)):
        log.info("pre-training: not needed, supernet training resumes from its own checkpoint")
        return
    src, trainer = pre.source, pre.trainer
    if trainer is None:
        log.info("PreNet and skeleton start from the pre-trained weights in %s; no pre-training", src.path)
        return
    epochs = sc.dataset.pre_train_epochs
    start, state = 0, TrainState()
    for done, path in epoch_checkpoints(ckpt_dir, suffix) if resume else []:
        try:
            state = TrainState(step=trainer.load(path))
        except Exception as exc:  # CorruptCheckpoint: fall back to the one before
            log.warning("%s is unreadable (%s); falling back to the previous checkpoint", path.name, exc)
            continue
        start = min(done, epochs)
        log.info("resuming pre-training after epoch %d of %d (%s)", start, epochs, path.name)
        break
    log.info(
        "pre-training PreNet + the largest skeleton on %s: %d classes, %d epochs of %d steps",
        src.path,
        trainer.classes,
        epochs,
        trainer.steps_per_epoch,
    )
    progress = Progress((epochs - start) * trainer.steps_per_epoch, "pre-training", "steps")

    def log_step(s: StepLog) -> None:
        writer.add_scalar("pretrain/loss", s.loss, s.step)
        writer.add_scalar("pretrain/lr", s.lr, s.step)
        writer.add_scalar("pretrain/images_per_s", s.images_per_s, s.step)
        progress.update(1, epoch=s.epoch + 1, loss=s.loss)

    def on_epoch_end(epoch: int) -> None:
        ctx.write(trainer.save, ckpt_dir / f"pretrain_epoch_{epoch + 1}{suffix}", state.step)
        stale = ckpt_dir / f"pretrain_epoch_{epoch - 1}{suffix}"  # keep the last two epochs
        if stale.exists():
            ctx.write(stale.unlink)

    largest = p.space.decode(p.space.largest())
    with progress:
        train(trainer, lambda epoch: [largest], range(start, epochs), state, False, log_step, on_epoch_end)
    out = sc.workdir / OUTPUT_DIR
    name = f"pretrained{suffix}"
    if ctx.is_main:
        out.mkdir(exist_ok=True)
        trainer.save_pretrained(out / name)
        write_manifest(out, sc, name, trainer.classes, src.path, epochs)
    ctx.comm.barrier()
    log.info(
        "pre-trained weights saved in %s; set pre_train_dir: %s to start from them next time without pre-training",
        out,
        OUTPUT_DIR,
    )
