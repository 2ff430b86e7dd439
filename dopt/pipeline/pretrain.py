"""Pre-training PreNet and the skeleton before a detection or segmentation supernet trains (docs/tasks.md#pre-training).

``pre_train_dir`` means one of two things (:mod:`dopt.store.pretrained` tells which):

- a folder written by dopt's own pre-training (it holds ``pretrain.json``): its weights are loaded
  into PreNet and the skeleton while the run is prepared, after checking that they were trained
  for this PreNet and skeleton (:func:`dopt.pipeline.prepare.check_pretraining`);
- a classification dataset: this stage pre-trains PreNet + the largest subnet of the skeleton with
  a temporary pooled linear head for ``pre_train_epochs`` epochs, writes ``pretrained/`` into the
  working directory (which a later run's ``pre_train_dir`` can name), then the supernet trains
  from those weights.

The dataset is the user module's ``pretrain_dataset_define`` / ``build_dataset_pretrain`` when it
defines one, else one sub-folder of images per class (:class:`dopt.datasets.class_folders.ClassFolders`).
Pre-training is a stage like supernet training: a checkpoint per epoch, ``--resume`` continues it.
This module is framework-free; the backend supplies the :class:`dopt.backends.base.Pretrainer`.
"""

from __future__ import annotations

import logging

from dopt.log import Progress
from dopt.pipeline.inputs import StageInput
from dopt.store.epochs import EpochCheckpoints
from dopt.store.pretrained import OUTPUT_DIR, write_manifest
from dopt.training import StepLog, TrainHooks, TrainState, train

__all__ = ["pretrain"]

log = logging.getLogger(__name__)


def pretrain(s: StageInput) -> None:
    """Before supernet training: run (or resume) the pre-training that preparing the run set up.

    A resumed run whose supernet training has a checkpoint needs no pre-trained weights: that
    checkpoint holds every weight.
    """
    p, ctx, resume = s.prepared, s.ctx, s.plan.resume
    sc, pre = p.scenario, p.pretraining
    if pre is None:
        return
    suffix = p.session.checkpoint_suffix
    folder = s.plan.workdir.checkpoints
    supernet = EpochCheckpoints(folder, "supernet_", suffix)
    if resume and (supernet.final.exists() or supernet.found()):
        log.info("pre-training: not needed, supernet training resumes from its own checkpoint")
        return
    src, trainer = pre.source, pre.trainer
    if trainer is None:
        log.info("PreNet and skeleton start from the pre-trained weights in %s; no pre-training", src.path)
        return
    epochs = sc.dataset.pre_train_epochs
    checkpoints = EpochCheckpoints(folder, "pretrain_", suffix)
    start, state = 0, TrainState()
    found = checkpoints.newest(trainer.load, (Exception,)) if resume else None  # CorruptCheckpoint, or worse
    if found is not None:
        start, state = min(found[0], epochs), TrainState(step=found[1])
        log.info("resuming pre-training after epoch %d of %d (%s)", start, epochs, checkpoints.path(found[0]).name)
    log.info(
        "pre-training PreNet + the largest skeleton on %s: %d classes, %d epochs of %d steps",
        src.path,
        trainer.classes,
        epochs,
        trainer.steps_per_epoch,
    )
    progress = Progress((epochs - start) * trainer.steps_per_epoch, "pre-training", "steps")

    def log_step(step: StepLog) -> None:
        s.writer.add_scalar("pretrain/loss", step.loss, step.step)
        s.writer.add_scalar("pretrain/lr", step.lr, step.step)
        s.writer.add_scalar("pretrain/images_per_s", step.images_per_s, step.step)
        progress.update(1, epoch=step.epoch + 1, loss=step.loss)

    def on_epoch_end(epoch: int) -> None:
        ctx.write(checkpoints.save, epoch, lambda path: trainer.save(path, state.step))

    largest = p.space.decode(p.space.largest())
    with progress:
        train(trainer, lambda epoch: [largest], range(start, epochs), state, TrainHooks(log_step, on_epoch_end))
    _save(s, trainer, epochs)


def _save(s: StageInput, trainer: object, epochs: int) -> None:
    """The pre-trained weights and their manifest, in the working directory's ``pretrained/``."""
    sc, pre, ctx = s.prepared.scenario, s.prepared.pretraining, s.ctx
    assert pre is not None and pre.trainer is not None
    out = s.plan.workdir.pretrained
    name = f"pretrained{s.prepared.session.checkpoint_suffix}"
    if ctx.is_main:
        out.mkdir(exist_ok=True)
        pre.trainer.save_pretrained(out / name)
        write_manifest(out, sc, name, pre.trainer.classes, pre.source.path, epochs)
    ctx.comm.barrier()
    log.info(
        "pre-trained weights saved in %s; set pre_train_dir: %s to start from them next time without pre-training",
        out,
        OUTPUT_DIR,
    )
