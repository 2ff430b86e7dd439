"""One whole run (docs/architecture.md#call-order): check everything, train the supernet, search,
write results."""

from __future__ import annotations

import logging
import math
import secrets
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from dopt import __version__
from dopt import costs as cost_kinds
from dopt.archive import Archive, Candidate
from dopt.atomic import atomic_write_text
from dopt.backends import get_backend
from dopt.backends.base import CorruptCheckpoint, Probe, Session
from dopt.checkpoints import (
    Journal,
    check_identity,
    epoch_checkpoints,
    evaluation_key,
    final_checkpoint,
    journal_entry,
    training_identity,
    write_identity,
)
from dopt.context import RunContext
from dopt.convergence import ConvergenceCheck
from dopt.costs import CostModel, Costs
from dopt.distributed import Comm, SampleCheck, SingleProcess, learning_rate
from dopt.errors import UserError
from dopt.evaluation import Evaluator
from dopt.latency.source import LatencySource, latency_source, write_run_copy
from dopt.log import Progress, current_stage, remove_file, stage
from dopt.plan import OUTPUTS, Plan, search_state
from dopt.pretrain import Pretraining, pretrain_stage
from dopt.pretrain import check as check_pretraining
from dopt.results import write_csv, write_json
from dopt.scenario import Scenario
from dopt.search import SearchHooks, SearchResult, run_search
from dopt.sharded_eval import ShardedEvaluation
from dopt.space import SearchSpace
from dopt.training import StepLog, TrainState, sampler, train
from dopt.user_module import file_sha256, load_user_module, metric_name

__all__ = ["Prepared", "prepare", "run", "RunSummary", "load_final", "describe", "empty_front", "format_number"]

log = logging.getLogger(__name__)

# Below this share of random subnets meeting the constraint, a run and `dopt validate` warn
# (docs/search.md#a-tiny-feasible-region).
TINY_FEASIBLE = 0.05


@dataclass(frozen=True)
class Prepared:
    """Everything checked before anything is trained or written."""

    scenario: Scenario
    session: Session  # the backend's supernet, optimizer and schedule
    probe: Probe
    space: SearchSpace
    costs: CostModel
    seed: int
    cost_range: tuple[float, float]
    feasible_share: float | None  # of subnets drawn uniformly, as NSGA-II's first population is; None: unknown
    rehearsal: list[str]  # one line per rehearsed subnet (smallest, largest)
    user_sha256: str  # of user_module.py as imported
    metric_name: str  # UserModule.metric_name, or "accuracy"
    latency: LatencySource | None = None  # when the constraint is latency (docs/latency.md)
    pretraining: Pretraining | None = None  # detection/segmentation (docs/tasks.md#pre-training)

    @property
    def identity(self) -> dict[str, Any]:
        return training_identity(self.scenario, self.seed, self.user_sha256)


@dataclass(frozen=True)
class RunSummary:
    results_dir: Path
    log_dir: Path
    archive: Archive
    front: list[int]
    search: SearchResult
    seed: int
    smallest: float  # the smallest subnet's cost of the constraint's kind
    metric_name: str
    latency: dict[str, Any] | None = None  # pareto.json's latency section (docs/latency.md)


def prepare(
    scenario: Scenario, seed: int | None = None, continuing: bool = False, comm: Comm | None = None
) -> Prepared:
    """Import and check the user module, read a batch, dry-run PreNet/PostNet, size the space.

    ``seed`` (that of a checkpointed run being continued) takes the place of a scenario without one.
    ``continuing``: a resumed run or another search of a trained supernet, which predicts latency
    with the table it was started with. ``comm``: the processes of a distributed run, which all
    take rank 0's seed and latency table (docs/distributed.md).

    Raises:
        UserError: any mistake the user can fix, before anything is trained or written.
    """
    with stage("checking the user module"):
        module = load_user_module(scenario.workdir, scenario.framework)
        user_sha256 = file_sha256(Path(module.__file__ or ""))
        metric = metric_name(module)
        taken = {k.header for k in cost_kinds.kinds() if k.header} | {"encoding"}
        if metric in taken:
            raise UserError(
                f"metric_name {metric!r} is also a key of every result header",
                key="UserModule.metric_name",
                fix="name the metric after what it measures, e.g. top1_accuracy",
            )
        backend = get_backend(scenario.framework)
        backend.check_user_module(module)
    if scenario.searcher.seed is not None:
        seed = scenario.searcher.seed
    elif seed is None:
        seed = secrets.randbelow(2**31)
    comm = comm or SingleProcess()
    seed = comm.broadcast(seed)  # every rank samples the same subnets (docs/distributed.md)
    if comm.world_size > 1:
        _check_same_inputs(comm, scenario, user_sha256, seed)
    with stage("reading the first batch and dry-running PreNet/PostNet"):
        setup = backend.setup(scenario, module, seed, comm)
    probe = setup.probe
    space = SearchSpace(scenario.supernet, probe.in_channels)
    with stage("building the supernet"):
        session = setup.build_supernet(space)
    pretraining = None
    if scenario.dataset.pre_train_dir is not None:
        with stage("reading pre_train_dir"):
            pretraining = check_pretraining(scenario, session)
    kind, value = scenario.constraint.kind, scenario.constraint.value
    latency = None
    if kind == "latency":
        with stage("measuring latency"):
            shared_table = comm.world_size > 1 and getattr(setup.user, "latency_func", None) is None
            if comm.rank == 0 or not shared_table:
                latency = latency_source(
                    scenario, setup.user, setup.latency_meter, session.extract, space, probe.in_hw, continuing
                )
            if shared_table:  # rank 0's table, measured once: every rank predicts the same costs
                obtained = comm.broadcast(latency.obtained if latency is not None else None)
                if comm.rank != 0:
                    latency = LatencySource(obtained=obtained)
    costs = CostModel(space, probe.in_hw, probe.fixed, **(latency.cost_model_args() if latency else {}))
    if latency is not None and latency.user_range is not None:
        lo, hi = latency.user_range  # measured on the smallest and largest subnets only
    else:
        lo, hi = costs.cost_range(kind)
    if lo > value:
        what = f"smallest subnet's {kind}"
        if kind == "latency":
            measured = latency is not None and latency.user is not None
            what = (
                "smallest subnet's latency measured by latency_func"
                if measured
                else "fastest subnet's predicted latency"
            )
        raise UserError(
            f"constraint_value {format_number(value)} is below the {what} ({_plain(_rounded(lo))} "
            f"{cost_kinds.get(kind).unit}, PreNet and PostNet included): no subnet can meet it",
            key="scenario.strategy.constraint.constraint_value",
            fix=f"set constraint_value ≥ {_plain(_rounded(lo, up=True))}, or shrink filters / PreNet / PostNet",
            **scenario.where("scenario.strategy.constraint.constraint_value"),
        )
    share = None
    if latency is None or latency.user is None:  # latency_func is too slow to call 2000 times
        share = float(np.mean(costs.sampled(kind) <= value))
        if share < TINY_FEASIBLE:
            log.warning("%s", _tiny_feasible(scenario, costs, share))
    if scenario.searcher.pop_size > space.size():
        log.warning(
            "pop_size %d exceeds the %d distinct subnets of the space: the search will stop once it has seen them all",
            scenario.searcher.pop_size,
            space.size(),
        )
    with stage("rehearsing one step of the smallest and the largest subnet"):
        rehearsal = session.rehearse([space.decode(space.smallest()), space.decode(space.largest())])
    return Prepared(
        scenario,
        session,
        probe,
        space,
        costs,
        seed,
        (lo, hi),
        share,
        rehearsal,
        user_sha256,
        metric,
        latency,
        pretraining,
    )


def _check_same_inputs(comm: Comm, scenario: Scenario, user_sha256: str, seed: int) -> None:
    """Every process must read the same scenario and user module: the machines of a run share its
    working directory (docs/distributed.md#several-machines)."""
    mine = (user_sha256, training_identity(scenario, seed, user_sha256))
    seen = comm.allgather(mine)
    odd = [r for r, other in enumerate(seen) if other != seen[0]]
    if odd:
        what = "user_module.py" if any(seen[r][0] != seen[0][0] for r in odd) else "scen.yaml (or its --set options)"
        raise UserError(
            f"process{'es' if len(odd) > 1 else ''} {', '.join(map(str, odd))} of this run read another {what} "
            "than process 0",
            fix="give every machine the same working directory (a shared file system, or identical copies) and "
            "the same command line",
        )


def _plain(value: float) -> str:
    """6650 or 0.494: as one would type it in scen.yaml."""
    return str(int(value)) if float(value).is_integer() else str(value)


def _rounded(value: float, up: bool = False) -> float:
    """Integers stay; milliseconds get 3 decimals (rounded up for a bound the user should set)."""
    if float(value).is_integer():
        return value
    return math.ceil(value * 1000) / 1000 if up else round(value, 3)


def _tiny_feasible(sc: Scenario, costs: CostModel, share: float) -> str:
    kind, value, pop = sc.constraint.kind, sc.constraint.value, sc.searcher.pop_size
    median = float(np.median(costs.sampled(kind)))
    expected = f"about {share * pop:.1f} of them" if share * pop >= 0.1 else "probably none of them"
    return (
        f"only {share:.1%} of subnets drawn at random meet {kind} ≤ {format_number(value)}: the search's first population "
        f"of {pop} holds {expected}, and the search may end with no feasible subnet. Fix: "
        f"raise constraint_value (half of random subnets have {kind} ≤ {format_number(round(median))}), raise pop_size, or "
        "shrink the space (filters, search_space)"
    )


def describe(p: Prepared) -> list[str]:
    """Lines about the space and the constraint, for the log and `dopt validate`."""
    kind, value = p.scenario.constraint.kind, p.scenario.constraint.value
    lo, hi = (_rounded(v) for v in p.cost_range)
    lines = [
        f"search space: {len(p.space.layers)} layers, {p.space.size():,} distinct subnets, PreNet output {_shape(p)}",
        f"{kind}: smallest subnet {format_number(lo)}, largest {format_number(hi)} {cost_kinds.get(kind).unit}; "
        f"constraint {format_number(value)} {cost_kinds.get(kind).unit} "
        + ("(every subnet fits)" if hi <= value else f"({_fraction_note(lo, hi, value)}; {_share_note(p)})"),
    ]
    if kind == "latency":
        if not (p.latency and p.latency.user):
            lines[1] = (
                lines[1].replace("smallest subnet", "predicted: fastest subnet", 1).replace("largest", "slowest", 1)
            )
        else:
            lines[1] = lines[1].replace("smallest subnet", "by latency_func: smallest subnet", 1)
    return lines + (p.latency.describe() if p.latency else [])


def _share_note(p: Prepared) -> str:
    share = p.feasible_share
    if share is None:
        return "share of random subnets that meet it unknown: latency_func is not called on samples"
    text = f"{share:.1%} of random subnets meet it"
    return text + (" — tiny, see the warning above" if share < TINY_FEASIBLE else "")


def _shape(p: Prepared) -> str:
    """PreNet's output shape in the scenario's data format, as input_shape is written."""
    c, (h, w) = p.probe.in_channels, p.probe.in_hw
    return f"{c}x{h}x{w} (CHW)" if p.scenario.supernet.data_format == "channels_first" else f"{h}x{w}x{c} (HWC)"


def format_number(value: float) -> str:
    """12,000 or 0.5: thousands separated, no exponent."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


def _fraction_note(lo: float, hi: float, value: float) -> str:
    return f"{(value - lo) / (hi - lo):.0%} of the cost range is feasible"


def _clear(p: Prepared, plan: Plan) -> None:
    """--overwrite: remove what the new run or search replaces (only after every check passed)."""
    work = p.scenario.workdir
    if plan.stage == "all":
        doomed = sorted({q for pattern in OUTPUTS for q in work.glob(pattern) if q.is_dir()})
    else:
        doomed = [q for q in (plan.results_dir, plan.search_dir) if q.exists()]
    for path in doomed:
        log.info("--overwrite: removing %s", path)
        shutil.rmtree(path)


def run(p: Prepared, plan: Plan, ctx: RunContext | None = None) -> RunSummary:
    """Train (or resume training, or load the trained supernet), search and write results.

    Every file is written through ``ctx`` (one process when omitted).
    """
    ctx = ctx or RunContext()
    sc = p.scenario
    if plan.overwrite:
        ctx.write(_clear, p, plan)
    ckpt_dir = sc.workdir / "checkpoints"
    if plan.stage == "all" and not plan.resume:
        ctx.write(write_identity, ckpt_dir, p.identity, _threads(), sc.overrides)
    else:
        check_identity(ckpt_dir, p.identity, "resume" if plan.resume else "search again", _threads())
        if plan.stage == "all":  # a resumed run keeps the --set options it now runs with
            ctx.write(write_identity, ckpt_dir, p.identity, _threads(), sc.overrides)
    ctx.comm.barrier()  # the other processes read nothing before rank 0 has cleared and recorded
    log_dir = sc.workdir / f"log_{datetime.now().strftime('%Y%m%d-%H%M%S')}"
    file_log = ctx.file_log(log_dir / "dopt.log")
    writer = ctx.summary_writer(log_dir)
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
            format_number(learning_rate(opt, ctx.world_size)),
            f" (learning_rate {format_number(opt.learning_rate)} × {ctx.world_size} processes; scale_lr: false keeps it)"
            if opt.scale_lr
            else " (scale_lr: false)",
        )
    if p.latency is not None and p.latency.table is not None:
        ctx.write(write_run_copy, p.latency.table, ckpt_dir)
    try:
        with stage("drawing the BN-calibration subset"):
            user_latency = p.latency.user if p.latency else None
            evaluator = Evaluator(p.session, p.costs, np.random.default_rng([p.seed, 1]), user_latency)
        if plan.stage == "all" and sc.dataset.pre_train_dir is not None:
            loading = p.pretraining is not None and p.pretraining.trainer is None
            with stage("loading the pre-trained weights" if loading else "pre-training"):
                pretrain_stage(p, ctx, writer, ckpt_dir, plan.resume)
        with stage("training the supernet" if plan.stage == "all" else "loading the trained supernet"):
            if plan.stage == "all":
                _train(p, ctx, writer, ckpt_dir, plan.resume, evaluator)
            else:
                load_final(p, ckpt_dir)
            evaluator.reset()
        with stage("searching"):
            archive, result = _search(p, ctx, writer, plan, evaluator)
        with stage("writing results"):
            front = _finish(p, ctx, writer, plan, evaluator, archive, result)
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
    except BaseException as exc:
        # The plain-text log keeps the traceback of a failed run; the console gets cli.py's report.
        if file_log is not None:
            file_log.handle(
                log.makeRecord(
                    log.name,
                    logging.ERROR,
                    __file__,
                    0,
                    "failed while %s",
                    (current_stage(),),
                    (type(exc), exc, exc.__traceback__),
                )
            )
        raise
    finally:
        writer.close()
        if file_log is not None:
            remove_file(file_log)
    latency = _read_latency(plan.results_dir) if p.latency is not None else None
    return RunSummary(
        plan.results_dir, log_dir, archive, front, result, p.seed, p.cost_range[0], p.metric_name, latency
    )


def _read_latency(results_dir: Path) -> dict[str, Any] | None:
    import json

    try:
        return json.loads((results_dir / "pareto.json").read_text()).get("latency")
    except (OSError, ValueError):
        return None


def empty_front(archive: Archive, smallest: float) -> list[str]:
    """What to tell the user when no candidate made the front (docs/search.md#an-empty-front)."""
    kind, value = archive.constraint.kind, archive.constraint.value
    unit = cost_kinds.get(kind).unit
    if not len(archive):
        return [
            "the Pareto front is empty: the search stopped (a budget, max_evaluations or max_duration_s) before "
            "its first candidate",
            "Fix: raise or remove that budget under searcher, then: dopt -c scen.yaml --resume",
        ]
    within = [c for c in archive if c.feasible]
    if within:
        return [
            f"the Pareto front is empty: {len(within)} of {len(archive)} candidates met {kind} ≤ {format_number(value)}, but "
            "the metric of every one was NaN or infinite",
            "Fix: check your metric function on a trained model (dopt validate shows one metric), then start a new "
            "run with --overwrite (an edited user_module.py cannot reuse this supernet)",
        ]
    seen = min((c.cost(kind) for c in archive), default=math.nan)
    return [
        f"the Pareto front is empty: none of {len(archive)} candidates met {kind} ≤ {format_number(value)} {unit}; the "
        f"smallest seen had {format_number(seen)} (the smallest subnet of the space has {format_number(smallest)})",
        "Fix: raise constraint_value, or a larger pop_size / generation_num, then search the trained supernet "
        "again without retraining: dopt -c scen.yaml --stage search --set "
        f"scenario.strategy.constraint.constraint_value={format_number(seen).replace(',', '')}",
    ]


def _threads() -> int | None:
    """The CPU threads this process trains with, as the backends set them (docs/resume.md#determinism-and-threads)."""
    from dopt.backends.cpus import cpu_threads

    return cpu_threads()


def _metric_label(p: Prepared) -> str:
    return p.metric_name


def _cost_label(sc: Scenario) -> str:
    return f"{sc.constraint.kind} ({cost_kinds.get(sc.constraint.kind).unit})"


def _resume_training(p: Prepared, ckpt_dir: Path) -> tuple[int, TrainState] | None:
    """(epochs done, counters) from the newest readable checkpoint; None when the final one loads."""
    suffix = p.session.checkpoint_suffix
    final = final_checkpoint(ckpt_dir, suffix)
    if final.exists():
        try:
            p.session.load(final)
            log.info("supernet already trained: loaded %s", final.name)
            return None
        except CorruptCheckpoint as exc:
            log.warning("%s is unreadable (%s); falling back to the last epoch checkpoint", final.name, exc)
    for done, path in epoch_checkpoints(ckpt_dir, suffix):
        try:
            step = p.session.load(path)
        except CorruptCheckpoint as exc:
            log.warning("%s is unreadable (%s); falling back to the previous checkpoint", path.name, exc)
            continue
        start = min(done, p.scenario.epochs)
        log.info("resuming supernet training after epoch %d of %d (%s)", start, p.scenario.epochs, path.name)
        return start, TrainState(step=step)
    log.info("no epoch checkpoint: supernet training starts from the beginning")
    return 0, TrainState()


def _train(p: Prepared, ctx: RunContext, writer: Any, ckpt_dir: Path, resume: bool, evaluator: Evaluator) -> None:
    sc = p.scenario
    suffix = p.session.checkpoint_suffix
    resumed = _resume_training(p, ckpt_dir) if resume else (0, TrainState())
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

    def log_step(s: StepLog) -> None:
        writer.add_scalar("train/loss", s.loss, s.step)
        writer.add_scalar("train/lr", s.lr, s.step)
        writer.add_scalar("train/images_per_s", s.images_per_s, s.step)
        progress.update(1, epoch=s.epoch + 1, loss=s.loss, lr=s.lr)

    ends = (p.space.decode(p.space.largest()), p.space.decode(p.space.smallest()))
    check = ConvergenceCheck(evaluator, ends, sc.epochs, sc.training.sampling, writer, sc.training.monitor_batches)

    def on_epoch_end(epoch: int) -> None:
        ctx.write(p.session.save, ckpt_dir / f"supernet_epoch_{epoch + 1}{suffix}", state.step)
        stale = ckpt_dir / f"supernet_epoch_{epoch - 1}{suffix}"  # keep the last two epochs
        if stale.exists():
            ctx.write(stale.unlink)
        if ctx.is_main:  # watched and written by rank 0; the others go on to the next epoch
            check.on_epoch_end(epoch, state.step)

    with progress:
        train(
            p.session,
            sampler(p.space, sc.training, p.seed),
            range(start, sc.epochs),
            state,
            sc.training.distill,
            log_step,
            on_epoch_end,
            SampleCheck(ctx.comm),
        )
    ctx.write(p.session.save, final_checkpoint(ckpt_dir, suffix), state.step)
    log.info("supernet trained: %d epochs, %d steps", sc.epochs, sc.epochs * steps)
    for warning in check.warnings() if ctx.is_main else []:
        log.warning("%s", warning)


def load_final(p: Prepared, ckpt_dir: Path) -> None:
    final = final_checkpoint(ckpt_dir, p.session.checkpoint_suffix)
    try:
        p.session.load(final)
    except CorruptCheckpoint as exc:
        raise UserError(
            f"{final} cannot be loaded ({exc})",
            fix="resume the training run (dopt -c scen.yaml --resume), which rebuilds it from the last "
            "epoch checkpoint",
        ) from None
    log.info("trained supernet loaded from %s; no training step", final.name)


def _search(
    p: Prepared, ctx: RunContext, writer: Any, plan: Plan, evaluator: Evaluator
) -> tuple[Archive, SearchResult]:
    """NSGA-II over the trained supernet. Every evaluation is journaled as it finishes; a resumed
    search replays the seeded algorithm from the start and takes each candidate already in the
    journal from there. pymoo's choices depend only on its seed and the objectives it is told,
    so the replay rebuilds its population and RNG exactly, as data, without pickling pymoo."""
    sc = p.scenario
    archive = Archive(sc.constraint)
    key = evaluation_key(p.identity, sc.searcher.bn_calib_batches, sc.searcher.eval_batches)
    journal = Journal(plan.search_dir / "journal.jsonl", key)
    elapsed = max((float(r.get("elapsed_s", 0.0)) for r in journal), default=0.0)
    sharded = None
    if ctx.world_size > 1:
        sharded = ShardedEvaluation(ctx.comm, p.space, evaluator, journal, sc.constraint)
    clock = sharded.clock if sharded is not None else time.monotonic
    evaluate = _journaled(p, ctx, evaluator, journal, clock() - elapsed, sharded, clock)
    state = plan.search_dir / "search_state.json"
    before = search_state(plan.search_dir)
    if before.get("finished"):  # the plan let it through: these settings take it further
        log.info(
            "extending the finished search: %d generations done (stopped by %s), now up to %d",
            before.get("generations", 0),
            before.get("stopped_by"),
            sc.searcher.generation_num,
        )
    if not state.exists():  # records the search's --set options before its first generation ends
        ctx.write(_save_search_state, state, p, archive, 0, None)
    progress = Progress(sc.searcher.generation_num * sc.searcher.pop_size, "searching", "candidates")

    def on_candidate(c: Candidate, cached: bool) -> None:
        best = archive.best_metric()
        feasible = sum(c.feasible for c in archive)
        progress.update(1, distinct=len(archive), feasible=feasible, best="n/a" if best is None else best)

    def on_generation(g: int, a: Archive) -> None:
        if sharded is not None:
            sharded.end_generation()
        if ctx.is_main:  # figures and TensorBoard: rank 0's
            _report_generation(p, writer, g, a)
        ctx.write(_save_search_state, plan.search_dir / "search_state.json", p, a, g + 1, None)

    with progress:
        hooks = SearchHooks(on_generation, on_candidate, sharded.prefetch if sharded else None, clock)
        result = run_search(p.space, sc.searcher, p.seed, archive, evaluate, hooks, elapsed_s=elapsed)
    return archive, result


def _journaled(
    p: Prepared,
    ctx: RunContext,
    evaluator: Evaluator,
    journal: Journal,
    t_start: float,
    sharded: ShardedEvaluation | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Callable[[tuple[int, ...], int], Candidate]:
    """The search's evaluation of a new encoding: from the journal where an earlier (interrupted)
    run evaluated it, else from what the ranks evaluated side by side (``sharded``), else costs
    first, the metric only when feasible; journaled at once."""
    constraint = p.scenario.constraint
    kinds = cost_kinds.kinds()

    def evaluate(encoding: tuple[int, ...], generation: int) -> Candidate:
        arch = p.space.decode(encoding)
        done = journal.get(encoding)
        if done is not None:
            costs = Costs({k.name: done.get(k.column) for k in kinds})
            feasible = costs[constraint.kind] <= constraint.value
            if done["metric"] is not None or not feasible:  # evaluated, or needs no evaluation
                return Candidate(
                    encoding,
                    arch,
                    done["metric"] if feasible else None,
                    costs,
                    feasible,
                    generation + 1,
                    done["eval_seconds"] if feasible else 0.0,
                )
        shared = sharded.take(encoding) if sharded is not None else None
        if shared is not None:
            costs, metric, seconds = Costs(shared[0]), shared[1], shared[2]
            feasible = costs[constraint.kind] <= constraint.value
        else:
            costs = evaluator.measure(arch)
            feasible = costs[constraint.kind] <= constraint.value
            t0 = time.perf_counter()
            metric = evaluator.evaluate(arch) if feasible else None  # infeasible: decided by cost alone
            seconds = time.perf_counter() - t0 if feasible else 0.0
        entry = journal_entry(encoding, metric, costs, seconds)
        ctx.write(journal.append, {**entry, "elapsed_s": clock() - t_start})
        return Candidate(encoding, arch, metric, costs, feasible, generation + 1, seconds)

    return evaluate


def _report_generation(p: Prepared, writer: Any, g: int, a: Archive) -> None:
    from dopt.results.plot import figure_to_rgb_array, pareto_figure

    hv, best, front = a.hypervolume(), a.best_metric(), a.front()
    step = g + 1  # generations are 1-based everywhere: log, JSON, CSV, plot, TensorBoard
    writer.add_scalar("search/hypervolume", hv, step)
    if best is not None:
        writer.add_scalar("search/best_metric", best, step)
    writer.add_scalar("search/front_size", len(front), step)
    fig = pareto_figure(a, cost_label=_cost_label(p.scenario), metric_label=_metric_label(p))
    writer.add_image("search/pareto", figure_to_rgb_array(fig), step, dataformats="HWC")
    writer.flush()
    log.info(
        "generation %d/%d: %d distinct candidates so far (%d within the constraint), front %d, best metric %s, "
        "hypervolume %.4f",
        step,
        p.scenario.searcher.generation_num,
        len(a),
        sum(c.feasible for c in a),
        len(front),
        "n/a" if best is None else f"{best:.4f}",
        hv,
    )


def _save_search_state(
    path: Path, p: Prepared, archive: Archive, generations: int, result: SearchResult | None
) -> None:
    """For people, for re-applying the search's ``--set`` options, and for telling a finished
    search apart (``result`` given) and whether more generations or budget extend it; resuming
    reads the journal (docs/resume.md#the-journal)."""
    import json

    state = {
        "generations": generations,
        "seed": p.seed,
        "finished": result is not None,
        "stopped_by": None if result is None else result.stopped_by,
        "evaluations": None if result is None else result.evaluations,
        "budgets": {
            "max_evaluations": p.scenario.searcher.max_evaluations,
            "max_duration_s": p.scenario.searcher.max_duration_s,
        },
        "overrides": list(p.scenario.overrides),
        "archive": archive.to_records(),
    }
    atomic_write_text(path, json.dumps(state, indent=1, allow_nan=True))


def _finish(
    p: Prepared, ctx: RunContext, writer: Any, plan: Plan, evaluator: Evaluator, archive: Archive, result: SearchResult
) -> list[int]:
    """Results, the final Pareto picture, and the search state marked finished."""
    from dopt.results.plot import figure_to_rgb_array, pareto_figure

    front = archive.front()
    ctx.write(_write_results, p, evaluator, archive, plan.results_dir, result)
    if ctx.is_main:
        fig = pareto_figure(archive, cost_label=_cost_label(p.scenario), metric_label=_metric_label(p))
        writer.add_image("search/pareto_final", figure_to_rgb_array(fig), result.generations, dataformats="HWC")
    ctx.write(_save_search_state, plan.search_dir / "search_state.json", p, archive, result.generations, result)
    return front


def _write_results(
    p: Prepared, evaluator: Evaluator, archive: Archive, results_dir: Path, result: SearchResult
) -> None:
    from dopt.results.plot import pareto_figure, save_png

    sc = p.scenario
    results_dir.mkdir(parents=True, exist_ok=True)
    front = archive.front()
    stale = sorted(results_dir.glob("model_arch_result_*"))  # of an earlier end of this search (extended)
    for path in stale:
        path.unlink()
    if front:
        log.info(
            "writing %d result scripts to %s: each is rebuilt, exported and checked against its subnet",
            len(front),
            results_dir.name,
        )
    written: list[tuple[Candidate, Path, Any]] = []
    with Progress(len(front), "writing results", "results") as progress:
        for n, index in enumerate(front, start=1):
            c = archive[index]
            script = results_dir / f"model_arch_result_{n}.py"
            measured, model = evaluator.write_result(c.arch, script, _header(c, p.metric_name))
            wrong = [k.name for k in cost_kinds.kinds() if k.measured and measured.get(k.name) != c.costs.get(k.name)]
            if wrong:
                raise RuntimeError(
                    f"{script.name}: the header says {_costs_text(c.costs, wrong)} but the written model "
                    f"has {_costs_text(measured, wrong)}"
                )
            written.append((c, script, model))
            progress.update(1, last=script.name)
    latency = _verify_latency(p, written) if p.latency is not None else None
    extra: dict[str, Any] = {
        "seed": p.seed,
        "metric_name": p.metric_name,
        "framework": sc.framework,
        "space_size": p.space.size(),
        "stopped_by": result.stopped_by,
        "overrides": list(sc.overrides),
        "dopt_version": __version__,
    }
    if latency is not None:
        extra["latency"] = latency
    write_json(
        results_dir / "pareto.json", archive, objective={"metric": "maximise", "cost": sc.constraint.kind}, extra=extra
    )
    write_csv(results_dir / "pareto.csv", archive)
    remeasured = [r["measured_ms"] for r in latency["results"]] if latency is not None else None
    figure = pareto_figure(archive, cost_label=_cost_label(sc), metric_label=_metric_label(p), remeasured=remeasured)
    save_png(figure, results_dir / "pareto.png")


def _header(c: Candidate, metric_name: str, latency: dict[str, Any] | None = None) -> dict[str, Any]:
    """A result script's header: the metric under its name, every cost kind with a header key
    (latency as re-measured, with its prediction and how it was measured), the encoding."""
    costs = {k.header: c.costs[k.name] for k in cost_kinds.kinds() if k.header and k.name in c.costs}
    if latency is not None:
        costs.pop("latency_ms", None)
        costs.update(latency)
    return {metric_name: c.metric, **costs, "encoding": list(c.encoding)}


def _verify_latency(p: Prepared, written: list[tuple[Candidate, Path, Any]]) -> dict[str, Any]:
    """Measure every written result again, as the exported model, in the runtime of the table (or
    with latency_func); rewrite each header with the measured latency, the prediction and, when the
    measurement exceeds the constraint, a flag (docs/latency.md#verification-of-the-results)."""
    from dopt.backends.scripts import replace_header

    assert p.latency is not None
    value = p.scenario.constraint.value
    with stage("measuring the latency of every result"):
        measured = p.latency.verify([m for _, _, m in written], [c.arch for c, _, _ in written])
    results: list[dict[str, Any]] = []
    for n, ((c, script, _), ms) in enumerate(zip(written, measured), start=1):
        over = ms > value
        predicted = c.costs["latency"]
        extra: dict[str, Any] = {"latency_ms": round(ms, 4), "latency_ms_predicted": round(predicted, 4)}
        if p.latency.user is None:
            key = p.latency.table.key  # type: ignore[union-attr]
            extra.update(latency_threads=key["threads"], latency_device=str(key["device"]))
        if over:
            extra["latency_over_constraint"] = True
            log.warning(
                "%s: measured %.4g ms, over the constraint of %s ms (predicted %.4g ms); flagged in its header, the "
                "summary and the plot",
                script.name,
                ms,
                format_number(value),
                predicted,
            )
        replace_header(script, _header(c, p.metric_name, extra))
        results.append(
            {
                "result": n,
                "encoding": list(c.encoding),
                "predicted_ms": predicted,
                "measured_ms": ms,
                "error_percent": 100 * (predicted - ms) / ms,
                "over_constraint": over,
            }
        )
    if results:
        errors = [abs(float(r["error_percent"])) for r in results]
        log.info(
            "latency of the %d results measured again as exported: prediction within ±10 %% for %d, median error "
            "%.1f %%, %d over the constraint",
            len(results),
            sum(e <= 10 for e in errors),
            float(np.median(errors)),
            sum(r["over_constraint"] for r in results),
        )
    return {**p.latency.as_json(), "constraint_ms": value, "results": results}


def _costs_text(costs: Costs, names: list[str]) -> str:
    return ", ".join(f"{name} {costs.get(name)}" for name in names)
