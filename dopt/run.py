"""One whole run (SPEC 1): check everything, train the supernet, search, write results."""

from __future__ import annotations

import logging
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
from dopt.archive import Archive, Candidate
from dopt.atomic import atomic_write_text
from dopt.backends.base import Backend, Probe, StepLog, get_backend
from dopt.costs import CostModel, Costs
from dopt.errors import UserError
from dopt.log import Progress, add_file, current_stage, remove_file, stage
from dopt.results import write_csv, write_json
from dopt.scenario import Scenario
from dopt.search import SearchResult, run_search
from dopt.space import Arch, SearchSpace
from dopt.user_module import load_user_module

__all__ = ["Prepared", "prepare", "run", "RunSummary", "OUTPUTS"]

log = logging.getLogger(__name__)

OUTPUTS = ("results", "checkpoints", "log_*")  # what a new run would replace (SPEC 2 --overwrite)
_COST_NAMES = {"size": "parameters", "flops": "MACs", "latency": "ms"}


@dataclass
class Prepared:
    """Everything checked before anything is trained or written."""

    scenario: Scenario
    backend: Backend
    probe: Probe
    space: SearchSpace
    costs: CostModel
    seed: int
    cost_range: tuple[int, int]
    rehearsal: list[str]  # one line per rehearsed subnet (smallest, largest)


@dataclass(frozen=True)
class RunSummary:
    results_dir: Path
    log_dir: Path
    archive: Archive
    front: list[int]
    search: SearchResult
    seed: int


def prepare(scenario: Scenario) -> Prepared:
    """Import and check the user module, read a batch, dry-run PreNet/PostNet, size the space.

    Raises:
        UserError: any mistake the user can fix, before anything is trained or written.
    """
    if scenario.constraint.kind == "latency":
        raise UserError("constraint_type latency is not available in this version of dopt",
                        key="scenario.strategy.constraint.constraint_type", fix="use size or flops for now")
    if scenario.constraint.application != "image_classification":
        raise UserError(f"application_type {scenario.constraint.application} is not available in this version of dopt",
                        key="scenario.strategy.constraint.application_type", fix="use image_classification for now")
    with stage("checking the user module"):
        module = load_user_module(scenario.workdir, scenario.framework)
        backend = get_backend(scenario.framework)
        backend.check_user_module(module)
    seed = scenario.searcher.seed if scenario.searcher.seed is not None else secrets.randbelow(2**31)
    with stage("reading the first batch and dry-running PreNet/PostNet"):
        probe = backend.setup(scenario, module, seed)
    space = SearchSpace(scenario.supernet, probe.in_channels)
    costs = CostModel(space, probe.in_hw, Costs(probe.fixed_size, probe.fixed_flops))
    kind, value = scenario.constraint.kind, scenario.constraint.value
    lo, hi = costs.cost_range(kind)
    if lo > value:
        raise UserError(
            f"constraint_value {_num(value)} is below the smallest subnet's {kind} ({lo} {_COST_NAMES[kind]}, "
            "PreNet and PostNet included): no subnet can meet it",
            key="scenario.strategy.constraint.constraint_value",
            fix=f"set constraint_value ≥ {lo}, or shrink filters / PreNet / PostNet",
            **scenario.where("scenario.strategy.constraint.constraint_value"),
        )
    if scenario.searcher.pop_size > space.size():
        log.warning("pop_size %d exceeds the %d distinct subnets of the space: the search will stop once it has "
                    "seen them all", scenario.searcher.pop_size, space.size())
    with stage("rehearsing one step of the smallest and the largest subnet"):
        backend.build_supernet(space)
        rehearsal = backend.rehearse([space.decode(space.smallest()), space.decode(space.largest())])
    return Prepared(scenario, backend, probe, space, costs, seed, (lo, hi), rehearsal)


def describe(p: Prepared) -> list[str]:
    """Lines about the space and the constraint, for the log and `dopt validate`."""
    kind, value = p.scenario.constraint.kind, p.scenario.constraint.value
    lo, hi = p.cost_range
    return [
        f"search space: {len(p.space.layers)} layers, {p.space.size():,} distinct subnets, "
        f"PreNet output {p.probe.in_channels}x{p.probe.in_hw[0]}x{p.probe.in_hw[1]}",
        f"{kind}: smallest subnet {lo:,}, largest {hi:,} {_COST_NAMES[kind]}; constraint {_num(value)} "
        + ("(every subnet fits)" if hi <= value else f"({_fraction_note(lo, hi, value)})"),
    ]


def _num(value: float) -> str:
    """12,000 or 0.5: thousands separated, no exponent."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


def _fraction_note(lo: int, hi: int, value: float) -> str:
    return f"{(value - lo) / (hi - lo):.0%} of the cost range is feasible"


def refuse_overwrite(workdir: Path, overwrite: bool) -> None:
    existing = sorted({p for pattern in OUTPUTS for p in workdir.glob(pattern) if p.is_dir()})
    if existing and not overwrite:
        names = ", ".join(p.name + "/" for p in existing[:4]) + (", ..." if len(existing) > 4 else "")
        raise UserError(
            f"{names} from an earlier run exist in {workdir}",
            fix="pass --overwrite to replace them, or run in another working directory (--workdir)",
        )
    for path in existing:
        shutil.rmtree(path)


def run(p: Prepared, *, overwrite: bool = False) -> RunSummary:
    """Train, search and write results for a prepared scenario."""
    sc = p.scenario
    refuse_overwrite(sc.workdir, overwrite)
    run_name = datetime.now().strftime("%Y%m%d-%H%M%S")
    log_dir = sc.workdir / f"log_{run_name}"
    file_log = add_file(log_dir / "dopt.log")
    from tensorboardX import SummaryWriter

    writer = SummaryWriter(str(log_dir))
    log.info("dopt %s, seed %d, device %s", __version__, p.seed, p.probe.device)
    for line in describe(p):
        log.info("%s", line)
    ckpt_dir = sc.workdir / "checkpoints"
    try:
        with stage("training the supernet"):
            _train(p, writer, ckpt_dir)
        with stage("searching"):
            archive, result = _search(p, writer, ckpt_dir)
        with stage("writing results"):
            results_dir = sc.workdir / "results"
            front = _write_results(p, archive, results_dir, result)
            from dopt.results.plot import figure_to_rgb_array, pareto_figure

            fig = pareto_figure(archive, cost_label=_cost_label(sc), metric_label="metric")
            writer.add_image("search/pareto_final", figure_to_rgb_array(fig), result.generations, dataformats="HWC")
        log.info("finished: %d candidates evaluated, %d on the front, results in %s", len(archive), len(front), results_dir)
    except BaseException as exc:
        # The plain-text log keeps the traceback of a failed run; the console gets cli.py's report.
        file_log.handle(log.makeRecord(log.name, logging.ERROR, __file__, 0, "failed while %s", (current_stage(),),
                                       (type(exc), exc, exc.__traceback__)))
        raise
    finally:
        writer.close()
        remove_file(file_log)
    return RunSummary(results_dir, log_dir, archive, front, result, p.seed)


def _cost_label(sc: Scenario) -> str:
    return f"{sc.constraint.kind} ({_COST_NAMES[sc.constraint.kind]})"


def _sampler(p: Prepared, rng: np.random.Generator) -> Callable[[int], list[Arch]]:
    space, training = p.space, p.scenario.training
    largest, smallest = space.decode(space.largest()), space.decode(space.smallest())

    def random_arch() -> Arch:
        return space.decode(space.sample(rng))

    def sample(epoch: int) -> list[Arch]:
        if epoch < training.warmup_epochs:
            return [largest]
        if training.sampling == "sandwich":
            # BigNAS sandwich rule: largest first (the distillation teacher), smallest, two random.
            return [largest, smallest, random_arch(), random_arch()]
        return [random_arch()]

    return sample


def _train(p: Prepared, writer: Any, ckpt_dir: Path) -> None:
    sc = p.scenario
    sample = _sampler(p, np.random.default_rng([p.seed, 0]))
    progress = Progress(sc.epochs * p.probe.steps_per_epoch, "training supernet", "steps")

    def log_step(s: StepLog) -> None:
        writer.add_scalar("train/loss", s.loss, s.step)
        writer.add_scalar("train/lr", s.lr, s.step)
        writer.add_scalar("train/images_per_s", s.images_per_s, s.step)
        progress.update(1, epoch=s.epoch + 1, loss=s.loss, lr=s.lr)

    def on_epoch_end(epoch: int) -> None:
        path = ckpt_dir / f"supernet_epoch_{epoch + 1}.pt"
        p.backend.save_supernet(path)
        stale = ckpt_dir / f"supernet_epoch_{epoch - 1}.pt"  # keep the last two epochs
        if stale.exists():
            stale.unlink()

    with progress:
        p.backend.train(sample, sc.epochs, log_step, on_epoch_end)
    p.backend.save_supernet(ckpt_dir / "supernet_final.pt")
    log.info("supernet trained: %d epochs, %d steps", sc.epochs, sc.epochs * p.probe.steps_per_epoch)


def _search(p: Prepared, writer: Any, ckpt_dir: Path) -> tuple[Archive, SearchResult]:
    sc = p.scenario
    constraint = sc.constraint
    p.backend.prepare_evaluation(np.random.default_rng([p.seed, 1]))
    archive = Archive(constraint)

    def evaluate(encoding: tuple[int, ...], generation: int) -> Candidate:
        arch = p.space.decode(encoding)
        costs = p.backend.measure(arch)
        feasible = costs.get(constraint.kind) <= constraint.value
        t0 = time.perf_counter()
        metric = p.backend.evaluate(arch) if feasible else None  # infeasible: decided by cost alone
        return Candidate(encoding, arch, metric, costs.size, costs.flops, None, feasible, generation + 1,
                         time.perf_counter() - t0 if feasible else 0.0)

    total = sc.searcher.generation_num * sc.searcher.pop_size
    progress = Progress(total, "searching", "candidates")

    def on_candidate(c: Candidate, cached: bool) -> None:
        progress.update(1, distinct=len(archive), best=archive.best_metric() or 0.0)

    def on_generation(g: int, a: Archive) -> None:
        from dopt.results.plot import figure_to_rgb_array, pareto_figure

        hv, best, front = a.hypervolume(), a.best_metric(), a.front()
        writer.add_scalar("search/hypervolume", hv, g)
        if best is not None:
            writer.add_scalar("search/best_metric", best, g)
        writer.add_scalar("search/front_size", len(front), g)
        writer.add_image("search/pareto", figure_to_rgb_array(pareto_figure(a, cost_label=_cost_label(sc))), g,
                         dataformats="HWC")
        writer.flush()
        _save_search_state(ckpt_dir / "search_state.json", a, g, p.seed)
        log.info("generation %d/%d: %d distinct candidates so far, front %d, best metric %s, hypervolume %.4f",
                 g + 1, sc.searcher.generation_num, len(a), len(front), "n/a" if best is None else f"{best:.4f}", hv)

    with progress:
        result = run_search(p.space, constraint, sc.searcher, p.seed, archive, evaluate, on_generation, on_candidate)
    return archive, result


def _save_search_state(path: Path, archive: Archive, generation: int, seed: int) -> None:
    import json

    state = {"generation": generation + 1, "seed": seed, "archive": archive.to_records()}
    atomic_write_text(path, json.dumps(state, indent=1, allow_nan=True))


def _write_results(p: Prepared, archive: Archive, results_dir: Path, result: SearchResult) -> list[int]:
    from dopt.results.plot import pareto_figure, save_png

    sc = p.scenario
    front = archive.front()
    results_dir.mkdir(parents=True, exist_ok=True)
    for n, index in enumerate(front, start=1):
        c = archive[index]
        header = {"model_param_size": c.size, "accuracy": c.metric, "flops": c.flops, "encoding": list(c.encoding)}
        script = results_dir / f"model_arch_result_{n}.py"
        measured = p.backend.write_result(c.arch, script, header)
        if measured != Costs(c.size, c.flops):
            raise RuntimeError(f"{script.name}: header says size {c.size}, flops {c.flops} but the written model has "
                               f"size {measured.size}, flops {measured.flops}")
    extra = {"seed": p.seed, "framework": sc.framework, "space_size": p.space.size(),
             "stopped_by": result.stopped_by, "dopt_version": __version__}
    write_json(results_dir / "pareto.json", archive,
               objective={"metric": "maximise", "cost": sc.constraint.kind}, extra=extra)
    write_csv(results_dir / "pareto.csv", archive)
    save_png(pareto_figure(archive, cost_label=_cost_label(sc)), results_dir / "pareto.png")
    return front
