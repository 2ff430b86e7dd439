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

import dataclasses
import json
import logging
import re
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from dopt import __version__
from dopt.atomic import atomic_write_text
from dopt.backends import get_backend
from dopt.backends.base import CorruptCheckpoint
from dopt.backends.scripts import load_script
from dopt.checkpoints import read_seed
from dopt.context import RunContext
from dopt.errors import UserError
from dopt.log import Progress, remove_file, stage
from dopt.scenario import Scenario
from dopt.training import StepLog, TrainState, train
from dopt.user_module import file_sha256, load_user_module

__all__ = ["TrainSummary", "result_script", "read_header", "train_result", "TRAINED"]

log = logging.getLogger(__name__)

TRAINED = ".trained"  # model_arch_result_N.trained.weights.pth (or .h5) and .trained.json


@dataclass(frozen=True)
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


def result_script(workdir: Path, result: int, results: Path | None = None) -> Path:
    """``results/model_arch_result_N.py`` (or in ``results``).

    Raises:
        UserError: no such result, naming those there are.
    """
    folder = results if results is not None else workdir / "results"
    script = folder / f"model_arch_result_{result}.py"
    if not script.is_file():
        found = sorted(int(p.stem.rsplit("_", 1)[1]) for p in folder.glob("model_arch_result_*.py"))
        there = f"results {', '.join(map(str, found))} exist" if found else "it holds no result script"
        raise UserError(
            f"--result {result}: no {script.name} in {folder} ({there})",
            fix="pick N from the summary of the run (or pareto.json's front), or finish the run first",
        )
    return script


def read_header(script: Path) -> dict[str, Any]:
    """The ``# key: value`` lines at the top of a result script, values as literals."""
    import ast

    values: dict[str, Any] = {}
    for line in script.read_text().splitlines():
        if not line.startswith("# ") or ": " not in line:
            break
        key, value = line[2:].split(": ", 1)
        try:
            values[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            values[key] = value
    return values


def train_result(
    sc: Scenario,
    script: Path,
    epochs: int | None = None,
    from_scratch: bool = False,
    resume: bool = False,
    overwrite: bool = False,
    ctx: RunContext | None = None,
) -> TrainSummary | None:
    """Train the model of ``script`` for ``epochs`` (default: the scenario's); None when
    ``resume`` finds the training finished.

    Raises:
        UserError: a script written for another user module, missing inherited weights, earlier
            training in the way (without --resume / --overwrite), or nothing to resume.
    """
    ctx = ctx or RunContext()
    epochs = epochs if epochs is not None else sc.epochs
    if epochs < 1:
        raise UserError(f"--epochs {epochs}: expected at least 1", fix="e.g. --epochs 20")
    sc = dataclasses.replace(sc, epochs=epochs)  # the user's schedule is built for these epochs
    work = sc.workdir
    header = read_header(script)
    with stage("checking the user module and the result script"):
        module = load_user_module(work, sc.framework)
        backend = get_backend(sc.framework)
        backend.check_user_module(module)
        result = load_script(script)
        if getattr(result, "USER_MODULE_SHA256", None) != file_sha256(work / "user_module.py"):
            raise UserError(
                f"{script.name} was generated with another user_module.py than the one in {work} (their hashes "
                "differ): its PreNet/PostNet, data and loss would not be the ones it was searched with",
                fix="train a result of this working directory's own run, or restore the user_module.py it was "
                "generated with",
            )
    ckpt = work / "checkpoints"
    seed = sc.searcher.seed if sc.searcher.seed is not None else (read_seed(ckpt) or 0)
    out = ckpt / f"train_{script.stem}"
    identity = {
        "script_sha256": file_sha256(script),
        "epochs": epochs,
        "from_scratch": from_scratch,
        "seed": seed,
        "batch_size": sc.batch_size,
        "optimizer": dataclasses.asdict(sc.optimizer),
        "dataset": dataclasses.asdict(sc.dataset),
    }
    identity = json.loads(json.dumps(identity, default=str))  # as read back from train.json (tuples as lists)
    if not _plan(out, identity, resume, overwrite, ctx):
        return None
    with stage("reading the first batch"):
        setup = backend.setup(sc, module, seed)
    inherited = script.with_name(script.stem + setup.result_weights_suffix)
    if not from_scratch and not inherited.exists():
        raise UserError(
            f"no {inherited.name} beside {script.name}: there are no inherited weights to start from",
            fix="pass --from-scratch, or copy the weights file written with the script next to it",
        )
    trainer = setup.build_result(result, None if from_scratch else inherited)
    metric_name = next(iter(header), "accuracy")
    done, state = _resume(trainer, out) if resume else (0, TrainState())
    saved = json.loads((out / "train.json").read_text())
    per_epoch: list[float] = list(saved.get("per_epoch", []))[:done]
    if done:
        log.info("resuming the training of %s after epoch %d of %d", script.name, done, epochs)
    log_dir = work / f"log_train_{script.stem}_{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    file_log = ctx.file_log(log_dir / "dopt.log")
    writer = ctx.summary_writer(log_dir)
    try:
        with stage("evaluating before training"):
            before = float(saved["before"]) if done and saved.get("before") is not None else trainer.evaluate()
        log.info(
            "%s %s %s: %s %.4g before training (the header says %s)",
            script.name,
            "from scratch" if from_scratch else "from its inherited weights",
            f"for {epochs} epochs",
            metric_name,
            before,
            header.get(metric_name),
        )
        steps = setup.probe.steps_per_epoch
        progress = Progress((epochs - done) * steps, f"training {script.stem}", "steps")
        arch = _arch(result)

        def log_step(s: StepLog) -> None:
            writer.add_scalar("train/loss", s.loss, s.step)
            writer.add_scalar("train/lr", s.lr, s.step)
            progress.update(1, epoch=s.epoch + 1, loss=s.loss)

        def on_epoch_end(epoch: int) -> None:
            metric = trainer.evaluate()
            per_epoch.append(metric)
            writer.add_scalar("val/metric", metric, epoch + 1)
            writer.flush()
            log.info("epoch %d/%d: %s %.4g", epoch + 1, epochs, metric_name, metric)
            # The metrics first, then the checkpoint: a resume keeps as many metrics as epochs it loads.
            ctx.write(_record_state, out, identity, before, per_epoch, False)
            suffix = trainer.checkpoint_suffix
            ctx.write(trainer.save, out / f"epoch_{epoch + 1}{suffix}", state.step)
            stale = out / f"epoch_{epoch - 1}{suffix}"
            if stale.exists():
                ctx.write(stale.unlink)

        with stage(f"training {script.name}"), progress:
            train(trainer, lambda epoch: [arch], range(done, epochs), state, False, log_step, on_epoch_end)
        after = per_epoch[-1] if per_epoch else trainer.evaluate()
        weights = script.with_name(script.stem + TRAINED + setup.result_weights_suffix)
        record = script.with_name(script.stem + TRAINED + ".json")
        with stage("saving the trained weights"):
            ctx.write(trainer.save_weights, weights)
            ctx.write(
                atomic_write_text,
                record,
                json.dumps(
                    {
                        "script": script.name,
                        "epochs": epochs,
                        "from_scratch": from_scratch,
                        "seed": seed,
                        "metric_name": metric_name,
                        "header_metric": header.get(metric_name),
                        "before": before,
                        "after": after,
                        "per_epoch": per_epoch,
                        "dopt_version": __version__,
                    },
                    indent=1,
                )
                + "\n",
            )
            ctx.write(_record_state, out, identity, before, per_epoch, True)
        verdict = "raised" if after > before else "did not raise"
        if after <= before:
            log.warning(
                "%s scores %.4g after training, not above the %.4g it started from: the script now loads these "
                "weights; delete %s to go back to the inherited ones, or train again (more epochs, or a lower "
                "learning_rate with --set for fine-tuning)",
                script.name,
                after,
                before,
                weights.name,
            )
        log.info(
            "%s: %s %.4g after %d epochs (%.4g before): training %s it; weights in %s",
            script.name,
            metric_name,
            after,
            epochs,
            before,
            verdict,
            weights.name,
        )
    finally:
        writer.close()
        if file_log is not None:
            remove_file(file_log)
    return TrainSummary(
        script, epochs, from_scratch, metric_name, header.get(metric_name), before, after, weights, record, log_dir
    )


def _arch(result: Any) -> Any:
    """What the training loop names the model by in messages: its layer table."""
    from dopt.space import LayerChoice

    return tuple(LayerChoice(k, e, cout) for _, cout, k, _, e in result.LAYERS)


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


def _resume(trainer: Any, out: Path) -> tuple[int, TrainState]:
    """(epochs done, counters) from the newest readable epoch checkpoint in ``out``."""
    suffix = trainer.checkpoint_suffix
    pattern = re.compile(r"epoch_(\d+)" + re.escape(suffix) + "$")
    found = sorted(((int(m.group(1)), p) for p in out.iterdir() if (m := pattern.match(p.name))), reverse=True)
    for done, path in found:
        try:
            return done, TrainState(step=trainer.load(path))
        except CorruptCheckpoint as exc:
            log.warning("%s is unreadable (%s); falling back to the previous checkpoint", path.name, exc)
    return 0, TrainState()


def _record_state(
    out: Path, identity: dict[str, Any], before: float | None, per_epoch: list[float], finished: bool
) -> None:
    out.mkdir(parents=True, exist_ok=True)
    state = {"identity": identity, "before": before, "per_epoch": per_epoch, "finished": finished}
    atomic_write_text(out / "train.json", json.dumps(state, indent=1))
