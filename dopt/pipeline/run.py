"""One whole run after preparation, the stages in call order (docs/architecture.md#call-order):
record the run, pre-train, train the supernet (or load it), search, write results."""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from dopt import __version__
from dopt.archive import Archive
from dopt.evaluation import Evaluator
from dopt.latency.source import write_run_copy
from dopt.log import current_stage, remove_file, stage
from dopt.parallel.comm import learning_rate
from dopt.parallel.context import RunContext
from dopt.pipeline.inputs import Prepared, StageInput
from dopt.pipeline.plan import Plan
from dopt.pipeline.prepare import describe
from dopt.pipeline.pretrain import pretrain
from dopt.pipeline.results import empty_front, finish
from dopt.pipeline.search import search
from dopt.pipeline.train import load_final, train_supernet
from dopt.store.identity import check_identity, write_record
from dopt.text import grouped

__all__ = ["run", "RunSummary"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class RunSummary:
    results_dir: Path
    log_dir: Path
    archive: Archive
    front: list[int]
    seed: int
    smallest: float  # the smallest subnet's cost of the constraint's kind
    metric_name: str
    latency: dict[str, Any] | None = None  # pareto.json's latency section (docs/latency.md)


def run(p: Prepared, plan: Plan, ctx: RunContext | None = None) -> RunSummary:
    """Train (or resume training, or load the trained supernet), search and write results.

    Every file is written through ``ctx`` (one process when omitted).
    """
    ctx = ctx or RunContext()
    _record(p, plan, ctx)
    log_dir = plan.workdir.log_dir()
    file_log = ctx.file_log(log_dir / "dopt.log")
    writer = ctx.summary_writer(log_dir)
    _log_start(p, plan, ctx)
    if p.latency is not None and p.latency.table is not None:
        ctx.write(write_run_copy, p.latency.table, plan.workdir.checkpoints)
    try:
        with stage("drawing the BN-calibration subset"):
            user_latency = p.latency.user if p.latency else None
            evaluator = Evaluator(p.session, p.costs, np.random.default_rng([p.seed, 1]), user_latency)
        s = StageInput(prepared=p, plan=plan, ctx=ctx, writer=writer, evaluator=evaluator)
        archive, front = _stages(s)
    except BaseException as exc:
        # The plain-text log keeps the traceback of a failed run; the console gets cli.py's report.
        if file_log is not None:
            record = log.makeRecord(
                log.name,
                logging.ERROR,
                __file__,
                0,
                "failed while %s",
                (current_stage(),),
                (type(exc), exc, exc.__traceback__),
            )
            file_log.handle(record)
        raise
    finally:
        writer.close()
        if file_log is not None:
            remove_file(file_log)
    latency = _read_latency(plan.results_dir) if p.latency is not None else None
    return RunSummary(
        results_dir=plan.results_dir,
        log_dir=log_dir,
        archive=archive,
        front=front,
        seed=p.seed,
        smallest=p.cost_range[0],
        metric_name=p.metric_name,
        latency=latency,
    )


def _stages(s: StageInput) -> tuple[Archive, list[int]]:
    """Pre-training, training, search and results, each under its stage name for error reports."""
    p, plan = s.prepared, s.plan
    if plan.stage == "all" and p.scenario.dataset.pre_train_dir is not None:
        loading = p.pretraining is not None and p.pretraining.trainer is None
        with stage("loading the pre-trained weights" if loading else "pre-training"):
            pretrain(s)
    with stage("training the supernet" if plan.stage == "all" else "loading the trained supernet"):
        if plan.stage == "all":
            train_supernet(s)
        else:
            load_final(p, plan.workdir.checkpoints)
        s.evaluator.reset()
    with stage("searching"):
        archive, result = search(s)
    with stage("writing results"):
        front = finish(s, archive, result)
    feasible = sum(c.feasible for c in archive)
    log.info(
        "finished: %d distinct candidates, %d within the constraint (evaluated), %d on the front; results in %s",
        len(archive),
        feasible,
        len(front),
        plan.results_dir,
    )
    if not front:
        for line in empty_front(archive, p.cost_range[0]):
            log.warning("%s", line)
    return archive, front


def _record(p: Prepared, plan: Plan, ctx: RunContext) -> None:
    """Clear what --overwrite replaces, then write (or check) the run record; the other processes
    read nothing before rank 0 has done both."""
    sc = p.scenario
    run_file = plan.workdir.run_file
    if plan.stage != "all" or plan.resume:  # checked before --overwrite removes anything
        assert plan.record is not None  # the plan checked there is one
        check_identity(plan.record, p.identity, "resume" if plan.resume else "search again", _threads())
    if plan.overwrite:
        ctx.write(_clear, plan)
    if plan.stage == "all":  # a new run's record; a resumed run keeps the --set options it now runs with
        ctx.write(write_record, run_file, p.identity, _threads(), sc.overrides)
    ctx.comm.barrier()


def _clear(plan: Plan) -> None:
    """--overwrite: remove what the new run or search replaces (only after every check passed)."""
    if plan.stage == "all":
        doomed = plan.workdir.outputs()
    else:
        doomed = [q for q in (plan.results_dir, plan.search_dir) if q.exists()]
    for path in doomed:
        log.info("--overwrite: removing %s", path)
        shutil.rmtree(path)


def _log_start(p: Prepared, plan: Plan, ctx: RunContext) -> None:
    sc = p.scenario
    log.info("dopt %s, seed %d, device %s%s", __version__, p.seed, p.probe.device, ", resuming" if plan.resume else "")
    for line in describe(p):
        log.info("%s", line)
    if sc.overrides:
        log.info("overrides: %s", " ".join(f"--set {t}" for t in sc.overrides))
    if ctx.world_size > 1:
        opt = sc.optimizer
        log.info(
            "%d processes (%s): batch_size %d per process, %d in all; learning rate %s%s",
            ctx.world_size,
            ctx.comm.engine,
            sc.batch_size,
            sc.batch_size * ctx.world_size,
            grouped(learning_rate(opt, ctx.world_size)),
            f" (learning_rate {grouped(opt.learning_rate)} × {ctx.world_size} processes; scale_lr: false keeps it)"
            if opt.scale_lr
            else " (scale_lr: false)",
        )


def _read_latency(results_dir: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads((results_dir / "pareto.json").read_text()).get("latency")
    except (OSError, ValueError):
        return None


def _threads() -> int | None:
    """The CPU threads this process trains with, as the backends set them (docs/resume.md#determinism-and-threads)."""
    from dopt.backends.cpus import cpu_threads

    return cpu_threads()
