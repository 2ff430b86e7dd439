"""Training the supernet (docs/architecture.md#call-order): resume from the newest epoch checkpoint
that loads, drive the framework-free training loop, checkpoint every epoch, watch the largest and
smallest subnets over the last epochs; or, for another search, load the trained supernet."""

from __future__ import annotations

import logging
from pathlib import Path

from dopt.errors import CorruptCheckpoint, UserError
from dopt.log import Progress
from dopt.parallel.comm import SampleCheck
from dopt.pipeline.convergence import ConvergenceCheck
from dopt.pipeline.inputs import Prepared, StageInput
from dopt.store.epochs import EpochCheckpoints
from dopt.training import StepLog, TrainHooks, TrainState, sampler, train

__all__ = ["train_supernet", "load_final", "supernet_checkpoints"]

log = logging.getLogger(__name__)


def supernet_checkpoints(p: Prepared, folder: Path) -> EpochCheckpoints:
    """``supernet_epoch_N`` and ``supernet_final`` in ``folder`` (the working directory's checkpoints/)."""
    return EpochCheckpoints(folder, "supernet_", p.session.checkpoint_suffix)


def train_supernet(s: StageInput) -> None:
    """Train the supernet for the scenario's epochs (from where ``--resume`` finds it) and save it."""
    p, ctx, sc = s.prepared, s.ctx, s.prepared.scenario
    checkpoints = supernet_checkpoints(p, s.plan.workdir.checkpoints)
    resumed = _resume(p, checkpoints) if s.plan.resume else (0, TrainState())
    if ctx.world_size > 1:  # every rank read the same checkpoint (docs/distributed.md#resuming)
        where = None if resumed is None else (resumed[0], resumed[1].step)
        if len(set(ctx.comm.allgather(where))) > 1:
            raise UserError(
                "the processes of this run resumed from different checkpoints",
                fix="give every machine the same working directory (a shared file system)",
            )
    if resumed is None:
        return
    start, state = resumed
    steps = p.probe.steps_per_epoch
    progress = Progress((sc.epochs - start) * steps, "training supernet", "steps")

    def log_step(step: StepLog) -> None:
        s.writer.add_scalar("train/loss", step.loss, step.step)
        s.writer.add_scalar("train/lr", step.lr, step.step)
        s.writer.add_scalar("train/images_per_s", step.images_per_s, step.step)
        progress.update(1, epoch=step.epoch + 1, loss=step.loss, lr=step.lr)

    ends = (p.space.decode(p.space.largest()), p.space.decode(p.space.smallest()))
    check = ConvergenceCheck(s.evaluator, ends, sc.epochs, sc.training.sampling, s.writer, sc.training.monitor_batches)

    def on_epoch_end(epoch: int) -> None:
        ctx.write(checkpoints.save, epoch, lambda path: p.session.save(path, state.step))
        if ctx.is_main:  # watched and written by rank 0; the others go on to the next epoch
            check.on_epoch_end(epoch, state.step)

    hooks = TrainHooks(log_step, on_epoch_end, SampleCheck(ctx.comm))
    with progress:
        train(
            p.session, sampler(p.space, sc.training, p.seed), range(start, sc.epochs), state, hooks, sc.training.distill
        )
    ctx.write(checkpoints.save_final, lambda path: p.session.save(path, state.step))
    log.info("supernet trained: %d epochs, %d steps", sc.epochs, sc.epochs * steps)
    for warning in check.warnings() if ctx.is_main else []:
        log.warning("%s", warning)


def _resume(p: Prepared, checkpoints: EpochCheckpoints) -> tuple[int, TrainState] | None:
    """(epochs done, counters) from the newest readable checkpoint; None when the final one loads."""
    if checkpoints.final.exists():
        try:
            checkpoints.load_final(p.session.load)
            log.info("supernet already trained: loaded %s", checkpoints.final.name)
            return None
        except CorruptCheckpoint as exc:
            log.warning("%s is unreadable (%s); falling back to the last epoch checkpoint", checkpoints.final.name, exc)
    found = checkpoints.newest(p.session.load, (CorruptCheckpoint,))
    if found is None:
        log.info("no epoch checkpoint: supernet training starts from the beginning")
        return 0, TrainState()
    done, step = found
    start = min(done, p.scenario.epochs)
    log.info(
        "resuming supernet training after epoch %d of %d (%s)", start, p.scenario.epochs, checkpoints.path(done).name
    )
    return start, TrainState(step=step)


def load_final(p: Prepared, folder: Path) -> None:
    """Load the trained supernet from ``folder`` (checkpoints/) for another search or an analysis."""
    checkpoints = supernet_checkpoints(p, folder)
    final = checkpoints.final
    try:
        checkpoints.load_final(p.session.load)
    except CorruptCheckpoint as exc:
        raise UserError(
            f"{final} cannot be loaded ({exc})",
            fix="resume the training run (dopt -c scen.yaml --resume), which rebuilds it from the last "
            "epoch checkpoint",
        ) from None
    log.info("trained supernet loaded from %s; no training step", final.name)
