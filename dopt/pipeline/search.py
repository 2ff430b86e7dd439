"""Searching the trained supernet (docs/search.md): NSGA-II over the journaled evaluator, a
generation's figures and state saved as it ends.

Every evaluation is journaled as it finishes; a resumed search replays the seeded algorithm from
the start and takes each candidate already in the journal from there. pymoo's choices depend only
on its seed and the objectives it is told, so the replay rebuilds its population and RNG exactly,
as data, without pickling pymoo (docs/resume.md#the-journal)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from dopt import costs as cost_kinds
from dopt.archive import Archive, Candidate
from dopt.costs import Costs
from dopt.evaluation import Evaluated, JournaledEvaluator
from dopt.evolution import SearchHooks, SearchResult, run_search
from dopt.log import Progress
from dopt.parallel.sharded_eval import ShardedEvaluation
from dopt.pipeline.inputs import Prepared, StageInput
from dopt.scenario import Scenario
from dopt.store import search_state
from dopt.store.journal import Journal, evaluation_key
from dopt.store.workdir import JOURNAL, SEARCH_STATE

__all__ = ["search", "save_state", "cost_label"]

log = logging.getLogger(__name__)


def search(s: StageInput) -> tuple[Archive, SearchResult]:
    """NSGA-II over the trained supernet, resumed from its journal where one was started."""
    p, ctx, sc = s.prepared, s.ctx, s.prepared.scenario
    archive = Archive(sc.constraint)
    key = evaluation_key(p.identity, sc.searcher.bn_calib_batches, sc.searcher.eval_batches)
    journal = Journal(s.plan.search_dir / JOURNAL, key)
    elapsed = max((float(r.get("elapsed_s", 0.0)) for r in journal), default=0.0)
    sharded = None
    if ctx.world_size > 1:
        sharded = ShardedEvaluation(ctx.comm, p.space, s.evaluator, journal, sc.constraint)
    clock = sharded.clock if sharded is not None else time.monotonic
    evaluate = _journaled(p, JournaledEvaluator(s.evaluator, journal, ctx.write), clock() - elapsed, sharded, clock)
    state = s.plan.search_dir / SEARCH_STATE
    before = search_state.read_state(state)
    if before.get("finished"):  # the plan let it through: these settings take it further
        log.info(
            "extending the finished search: %d generations done (stopped by %s), now up to %d",
            before.get("generations", 0),
            before.get("stopped_by"),
            sc.searcher.generation_num,
        )
    if not state.exists():  # records the search's --set options before its first generation ends
        ctx.write(save_state, s, archive, 0, None)
    progress = Progress(sc.searcher.generation_num * sc.searcher.pop_size, "searching", "candidates")

    def on_candidate(c: Candidate) -> None:
        best = archive.best_metric()
        feasible = sum(c.feasible for c in archive)
        progress.update(1, distinct=len(archive), feasible=feasible, best="n/a" if best is None else best)

    def on_generation(g: int, a: Archive) -> None:
        if sharded is not None:
            sharded.end_generation()
        if ctx.is_main:  # figures and TensorBoard: rank 0's
            _report_generation(p, s.writer, g, a)
        ctx.write(save_state, s, a, g + 1, None)

    with progress:
        hooks = SearchHooks(
            on_generation=on_generation,
            on_candidate=on_candidate,
            prefetch=sharded.prefetch if sharded else None,
            clock=clock,
        )
        result = run_search(p.space, sc.searcher, p.seed, archive, evaluate, hooks, elapsed_s=elapsed)
    return archive, result


def _journaled(
    p: Prepared,
    journaled: JournaledEvaluator,
    t_start: float,
    sharded: ShardedEvaluation | None,
    clock: Callable[[], float],
) -> Callable[[tuple[int, ...], int], Candidate]:
    """The search's evaluation of a new encoding: from the journal where an earlier (interrupted)
    run evaluated it, else from what the ranks evaluated side by side (``sharded``), else costs
    first, the metric only when feasible; journaled at once."""
    constraint = p.scenario.constraint

    def evaluate(encoding: tuple[int, ...], generation: int) -> Candidate:
        arch = p.space.decode(encoding)
        done = journaled.journaled(encoding, constraint)
        if done is None:
            shared = sharded.take(encoding) if sharded is not None else None
            done = journaled.evaluate(arch, constraint) if shared is None else Evaluated(Costs(shared[0]), *shared[1:])
            journaled.record(encoding, done, elapsed_s=clock() - t_start)
        feasible = done.costs[constraint.kind] <= constraint.value
        return Candidate(
            encoding=encoding,
            arch=arch,
            metric=done.metric,
            costs=done.costs,
            feasible=feasible,
            generation=generation + 1,
            eval_seconds=done.seconds,
        )

    return evaluate


def cost_label(sc: Scenario) -> str:
    return f"{sc.constraint.kind} ({cost_kinds.get(sc.constraint.kind).unit})"


def _report_generation(p: Prepared, writer: Any, g: int, a: Archive) -> None:
    from dopt.results.plot import figure_to_rgb_array, pareto_figure

    hv, best, front = a.hypervolume(), a.best_metric(), a.front()
    step = g + 1  # generations are 1-based everywhere: log, JSON, CSV, plot, TensorBoard
    writer.add_scalar("search/hypervolume", hv, step)
    if best is not None:
        writer.add_scalar("search/best_metric", best, step)
    writer.add_scalar("search/front_size", len(front), step)
    fig = pareto_figure(a, cost_label=cost_label(p.scenario), metric_label=p.metric_name)
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


def save_state(s: StageInput, archive: Archive, generations: int, result: SearchResult | None) -> None:
    """The search state after ``generations``; ``result`` given: the search finished."""
    p = s.prepared
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
    search_state.write_state(s.plan.search_dir / SEARCH_STATE, state)
