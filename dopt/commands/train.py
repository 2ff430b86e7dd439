"""`dopt train` and `model_arch_result_N.py --train`: train a result's static model fully
(docs/training-a-result.md).

The supernet's metric for a subnet is a proxy; the real one comes from training the chosen
network on its own. This trains the static model a result script builds, with the user module's
dataset, loss and schedule and the scenario's optimizer, from the inherited weights (or from
scratch), through the same training loop as the supernet (:func:`dopt.training.train`), with
per-epoch checkpoints that ``--resume`` continues. The trained weights are saved beside the
script, which then loads them in place of the inherited ones.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dopt import __version__
from dopt.backends import get_backend
from dopt.backends.base import CorruptCheckpoint
from dopt.backends.scripts import load_script
from dopt.errors import UserError
from dopt.log import Progress, remove_file, stage
from dopt.parallel.context import RunContext
from dopt.results.header import read_header
from dopt.scenario import Scenario
from dopt.store.atomic import atomic_write_text
from dopt.store.epochs import EpochCheckpoints
from dopt.store.identity import RunRecord
from dopt.store.results_folder import check_inside
from dopt.store.workdir import WorkDir
from dopt.text import rel
from dopt.training import StepLog, TrainHooks, TrainState, train
from dopt.user_module import file_sha256, load_user_module

__all__ = ["TrainSummary", "TrainOptions", "train_command", "result_script", "train_result", "TRAINED"]

log = logging.getLogger(__name__)

TRAINED = ".trained"  # model_arch_result_N.trained.weights.pth (or .h5) and .trained.json


@dataclass(frozen=True, kw_only=True)
class TrainSummary:
    script: Path
    epochs: int
    from_scratch: bool
    metric_name: str
    header_metric: float | None
    before: float
    after: float
    weights: Path
    record: Path
    log_dir: Path


@dataclass(frozen=True, kw_only=True)
class _Training:
    """One result's training, as checked and set up."""

    script: Path
    epochs: int
    from_scratch: bool
    seed: int
    header: dict[str, Any]
    identity: dict[str, Any]
    out: Path  # checkpoints/train_<script stem>/
    trainer: Any  # the backend's ResultTrainer
    steps_per_epoch: int
    weights_suffix: str
    arch: Any

    @property
    def metric_name(self) -> str:
        return next(iter(self.header), "accuracy")


def train_command(scenario: Scenario, record: RunRecord | None, args: argparse.Namespace) -> int:
    """Train the result ``args`` name and print how it went; the exit code."""
    if args.script:
        script = Path(args.script).resolve()
        if not script.is_file():
            raise UserError(f"--script {args.script}: no such file", fix="pass the path of a model_arch_result_N.py")
    else:
        results = Path(args.results) if args.results else None
        if results is not None and not results.is_absolute():
            results = scenario.workdir / results
        script = result_script(scenario.workdir, args.result, results)
    if args.resume and args.overwrite:
        raise UserError("--resume and --overwrite contradict each other", fix="pass one of them")
    check_inside(  # the trained weights go beside the script, under this working directory's lock
        script.resolve().parent,
        scenario.workdir.resolve(),
        f"{script.name} in {script.parent}",
        "train a result of this working directory, or run dopt train in the working directory that holds it",
    )
    options = TrainOptions(
        epochs=args.epochs, from_scratch=args.from_scratch, resume=args.resume, overwrite=args.overwrite
    )
    summary = train_result(scenario, script, options, record=record)
    here = Path.cwd()
    if summary is None:
        print(f"dopt: nothing to resume: the training of {script.name} finished")
        return 0
    header = "n/a" if summary.header_metric is None else f"{summary.header_metric:.4f}"
    verdict = "raised" if summary.after > summary.before else "did NOT raise"
    print(
        f"\n{script.name}: {summary.metric_name} {summary.after:.4f} after {summary.epochs} epochs "
        f"({'from scratch' if summary.from_scratch else 'from inherited weights'}; before {summary.before:.4f}, "
        f"header {header}): training {verdict} it"
    )
    print(f"trained weights: {rel(summary.weights, here)} (the script loads them from now on)")
    print(f"record:          {rel(summary.record, here)}")
    print(f"logs:            tensorboard --logdir {rel(summary.log_dir, here)}")
    return 0


def result_script(workdir: Path, result: int, results: Path | None = None) -> Path:
    """``results/model_arch_result_N.py`` (or in ``results``).

    Raises:
        UserError: no such result, naming those there are.
    """
    folder = results if results is not None else WorkDir(workdir).results
    script = folder / f"model_arch_result_{result}.py"
    if not script.is_file():
        found = sorted(int(p.stem.rsplit("_", 1)[1]) for p in folder.glob("model_arch_result_*.py"))
        there = f"results {', '.join(map(str, found))} exist" if found else "it holds no result script"
        raise UserError(
            f"--result {result}: no {script.name} in {folder} ({there})",
            fix="pick N from the summary of the run (or pareto.json's front), or finish the run first",
        )
    return script


@dataclass(frozen=True, kw_only=True)
class TrainOptions:
    """What the command line asks of a result's training."""

    epochs: int | None = None  # None: the scenario's
    from_scratch: bool = False
    resume: bool = False
    overwrite: bool = False


def train_result(
    sc: Scenario,
    script: Path,
    options: TrainOptions = TrainOptions(),  # noqa: B008  (immutable)
    ctx: RunContext | None = None,
    record: RunRecord | None = None,
) -> TrainSummary | None:
    """Train the model of ``script`` for ``options.epochs`` (default: the scenario's); None when
    ``options.resume`` finds the training finished. ``record``: the working directory's run
    record, whose seed is the training's when the scenario has none.

    Raises:
        UserError: a script written for another user module, missing inherited weights, earlier
            training in the way (without --resume / --overwrite), or nothing to resume.
    """
    ctx = ctx or RunContext()
    epochs = options.epochs if options.epochs is not None else sc.epochs
    if epochs < 1:
        raise UserError(f"--epochs {epochs}: expected at least 1", fix="e.g. --epochs 20")
    sc = dataclasses.replace(sc, epochs=epochs)  # the user's schedule is built for these epochs
    t = _set_up(sc, script, options, ctx, record)
    if t is None:
        return None
    checkpoints = EpochCheckpoints(t.out, "", t.trainer.checkpoint_suffix)
    found = checkpoints.newest(t.trainer.load, (CorruptCheckpoint,)) if options.resume else None
    done, state = (found[0], TrainState(step=found[1])) if found is not None else (0, TrainState())
    saved = json.loads((t.out / "train.json").read_text())
    per_epoch: list[float] = list(saved.get("per_epoch", []))[:done]
    if done:
        log.info("resuming the training of %s after epoch %d of %d", script.name, done, epochs)
    log_dir = WorkDir(sc.workdir).log_dir(f"train_{script.stem}")
    file_log = ctx.file_log(log_dir / "dopt.log")
    writer = ctx.summary_writer(log_dir)
    try:
        before = _before(t, saved, done)
        with stage(f"training {script.name}"):
            _train_epochs(t, ctx, writer, (done, state, before, per_epoch))
        after = per_epoch[-1] if per_epoch else t.trainer.evaluate()
        with stage("saving the trained weights"):
            weights, trained = _save(t, ctx, before, after, per_epoch)
        _report(t, before, after, weights)
    finally:
        writer.close()
        if file_log is not None:
            remove_file(file_log)
    return TrainSummary(
        script=script,
        epochs=epochs,
        from_scratch=t.from_scratch,
        metric_name=t.metric_name,
        header_metric=t.header.get(t.metric_name),
        before=before,
        after=after,
        weights=weights,
        record=trained,
        log_dir=log_dir,
    )


def _before(t: _Training, saved: dict[str, Any], done: int) -> float:
    """The metric before training: measured now, or as recorded when resuming."""
    with stage("evaluating before training"):
        before = float(saved["before"]) if done and saved.get("before") is not None else t.trainer.evaluate()
    log.info(
        "%s %s %s: %s %.4g before training (the header says %s)",
        t.script.name,
        "from scratch" if t.from_scratch else "from its inherited weights",
        f"for {t.epochs} epochs",
        t.metric_name,
        before,
        t.header.get(t.metric_name),
    )
    return before


def _set_up(
    sc: Scenario, script: Path, options: TrainOptions, ctx: RunContext, record: RunRecord | None
) -> _Training | None:
    """Check the script against the user module, plan the training (None: it finished), build the trainer."""
    work = WorkDir(sc.workdir)
    header = read_header(script)
    with stage("checking the user module and the result script"):
        module = load_user_module(work.root, sc.framework)
        backend = get_backend(sc.framework)
        backend.check_user_module(module)
        result = load_script(script)
        if getattr(result, "USER_MODULE_SHA256", None) != file_sha256(work.user_module):
            raise UserError(
                f"{script.name} was generated with another user_module.py than the one in {work.root} (their hashes "
                "differ): its PreNet/PostNet, data and loss would not be the ones it was searched with",
                fix="train a result of this working directory's own run, or restore the user_module.py it was "
                "generated with",
            )
    seed = sc.searcher.seed if sc.searcher.seed is not None else _recorded_seed(work, record)
    out = work.checkpoints / f"train_{script.stem}"
    identity = {
        "script_sha256": file_sha256(script),
        "epochs": sc.epochs,
        "from_scratch": options.from_scratch,
        "seed": seed,
        "batch_size": sc.batch_size,
        "optimizer": dataclasses.asdict(sc.optimizer),
        "dataset": dataclasses.asdict(sc.dataset),
    }
    identity = json.loads(json.dumps(identity, default=str))  # as read back from train.json (tuples as lists)
    if not _plan(out, identity, options.resume, options.overwrite, ctx):
        return None
    with stage("reading the first batch"):
        setup = backend.setup(sc, module, seed)
    inherited = script.with_name(script.stem + setup.result_weights_suffix)
    if not options.from_scratch and not inherited.exists():
        raise UserError(
            f"no {inherited.name} beside {script.name}: there are no inherited weights to start from",
            fix="pass --from-scratch, or copy the weights file written with the script next to it",
        )
    return _Training(
        script=script,
        epochs=sc.epochs,
        from_scratch=options.from_scratch,
        seed=seed,
        header=header,
        identity=identity,
        out=out,
        trainer=setup.build_result(result, None if options.from_scratch else inherited),
        steps_per_epoch=setup.probe.steps_per_epoch,
        weights_suffix=setup.result_weights_suffix,
        arch=_arch(result),
    )


def _recorded_seed(work: WorkDir, record: RunRecord | None) -> int:
    """The run's seed from its record (read now if the command did not), 0 without one."""
    from dopt.store.identity import read_record

    if record is None:
        record = read_record(work.run_file)
    return record.seed if record is not None else 0


def _train_epochs(
    t: _Training, ctx: RunContext, writer: Any, start: tuple[int, TrainState, float, list[float]]
) -> None:
    """Train from epoch ``done`` on; ``per_epoch`` gets each epoch's metric."""
    done, state, before, per_epoch = start
    progress = Progress((t.epochs - done) * t.steps_per_epoch, f"training {t.script.stem}", "steps")
    checkpoints = EpochCheckpoints(t.out, "", t.trainer.checkpoint_suffix)

    def log_step(s: StepLog) -> None:
        writer.add_scalar("train/loss", s.loss, s.step)
        writer.add_scalar("train/lr", s.lr, s.step)
        progress.update(1, epoch=s.epoch + 1, loss=s.loss)

    def on_epoch_end(epoch: int) -> None:
        metric = t.trainer.evaluate()
        per_epoch.append(metric)
        writer.add_scalar("val/metric", metric, epoch + 1)
        writer.flush()
        log.info("epoch %d/%d: %s %.4g", epoch + 1, t.epochs, t.metric_name, metric)
        # The metrics first, then the checkpoint: a resume keeps as many metrics as epochs it loads.
        ctx.write(_record_state, t.out, t.identity, before, per_epoch, False)
        ctx.write(checkpoints.save, epoch, lambda path: t.trainer.save(path, state.step))

    with progress:
        train(t.trainer, lambda epoch: [t.arch], range(done, t.epochs), state, TrainHooks(log_step, on_epoch_end))


def _save(t: _Training, ctx: RunContext, before: float, after: float, per_epoch: list[float]) -> tuple[Path, Path]:
    """The trained weights beside the script, and the record of their training."""
    weights = t.script.with_name(t.script.stem + TRAINED + t.weights_suffix)
    trained = t.script.with_name(t.script.stem + TRAINED + ".json")
    ctx.write(t.trainer.save_weights, weights)
    record = {
        "script": t.script.name,
        "epochs": t.epochs,
        "from_scratch": t.from_scratch,
        "seed": t.seed,
        "metric_name": t.metric_name,
        "header_metric": t.header.get(t.metric_name),
        "before": before,
        "after": after,
        "per_epoch": per_epoch,
        "dopt_version": __version__,
    }
    ctx.write(atomic_write_text, trained, json.dumps(record, indent=1) + "\n")
    ctx.write(_record_state, t.out, t.identity, before, per_epoch, True)
    return weights, trained


def _report(t: _Training, before: float, after: float, weights: Path) -> None:
    verdict = "raised" if after > before else "did not raise"
    if after <= before:
        log.warning(
            "%s scores %.4g after training, not above the %.4g it started from: the script now loads these "
            "weights; delete %s to go back to the inherited ones, or train again (more epochs, or a lower "
            "learning_rate with --set for fine-tuning)",
            t.script.name,
            after,
            before,
            weights.name,
        )
    log.info(
        "%s: %s %.4g after %d epochs (%.4g before): training %s it; weights in %s",
        t.script.name,
        t.metric_name,
        after,
        t.epochs,
        before,
        verdict,
        weights.name,
    )


def _arch(result: Any) -> Any:
    """What the training loop names the model by in messages: its layer table."""
    from dopt.space import LayerChoice

    return tuple(LayerChoice(kernel=k, expand=e, out_channels=cout) for _, cout, k, _, e in result.LAYERS)


def _plan(out: Path, identity: dict[str, Any], resume: bool, overwrite: bool, ctx: RunContext) -> bool:
    """Whether to train: checks ``--resume`` against what ``out`` holds (False: it finished), or
    clears the way for a new training."""
    state_file = out / "train.json"
    if resume:
        if not state_file.exists():
            raise UserError(
                f"nothing to resume: {out} holds no training of this result", fix="drop --resume to start it"
            )
        saved = json.loads(state_file.read_text())
        if saved.get("identity") != identity:
            diffs = sorted(k for k in identity if saved.get("identity", {}).get(k) != identity[k])
            raise UserError(
                f"the training in {out} was started with other settings ({', '.join(diffs)} differ)",
                fix="give the same --epochs / --from-scratch as when it started, or pass --overwrite to start again",
            )
        return not saved.get("finished")
    if state_file.exists() and not overwrite:
        raise UserError(
            f"{out} holds an earlier training of this result",
            fix="pass --resume to continue it, or --overwrite to start again",
        )
    if out.exists():
        import shutil

        ctx.write(shutil.rmtree, out)
    ctx.write(_record_state, out, identity, None, [], False)
    return True


def _record_state(
    out: Path, identity: dict[str, Any], before: float | None, per_epoch: list[float], finished: bool
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {"identity": identity, "before": before, "per_epoch": per_epoch, "finished": finished}
    atomic_write_text(out / "train.json", json.dumps(state, indent=1))
