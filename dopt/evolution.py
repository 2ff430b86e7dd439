"""NSGA-II (pymoo, driven with ask/tell) or random search over the encoding, with budgets (docs/search.md#nsga-ii)."""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dopt.archive import Archive, Candidate
from dopt.scenario.model import Constraint, Searcher
from dopt.space import SearchSpace

__all__ = ["SearchResult", "SearchHooks", "run_search", "WORST"]

log = logging.getLogger(__name__)

# Objective of a candidate without a usable metric (infeasible, or NaN from user code): a finite
# sentinel, because pymoo's non-dominated sorting misorders NaN.
WORST = 1e18


@dataclass(frozen=True)
class SearchResult:
    generations: int
    evaluations: int  # metric evaluations (feasible candidates evaluated)
    stopped_by: str  # "generations", "max_evaluations", "max_duration_s" or "space_exhausted"


class _Budget:
    def __init__(self, cfg: Searcher, elapsed_s: float, clock: Callable[[], float]) -> None:
        self.cfg, self.clock = cfg, clock
        self.start = clock() - elapsed_s
        self.evaluations = 0

    def exhausted(self) -> str | None:
        if self.cfg.max_evaluations is not None and self.evaluations >= self.cfg.max_evaluations:
            return "max_evaluations"
        if self.cfg.max_duration_s is not None and self.clock() - self.start >= self.cfg.max_duration_s:
            return "max_duration_s"
        return None

    def remaining_evaluations(self) -> int | None:
        if self.cfg.max_evaluations is None:
            return None
        return max(0, self.cfg.max_evaluations - self.evaluations)


@dataclass(frozen=True, kw_only=True)
class SearchHooks:
    """What the caller is told during a search."""

    on_generation: Callable[[int, Archive], None] = lambda generation, archive: None  # 0-based index
    on_candidate: Callable[[Candidate], None] = lambda candidate: None  # new or taken from the archive
    # Several processes: told a generation's new encodings (in order, each once) and how many metric
    # evaluations the budget still allows, before ``evaluate`` is asked for any of them, so that they
    # can be evaluated side by side (docs/distributed.md#sharded-evaluation).
    prefetch: Callable[[list[tuple[int, ...]], int, int | None], None] | None = None
    # The time the budget's max_duration_s is counted in (several processes: rank 0's, shared).
    clock: Callable[[], float] = time.monotonic


def run_search(
    space: SearchSpace,
    cfg: Searcher,
    seed: int,
    archive: Archive,
    evaluate: Callable[[tuple[int, ...], int], Candidate],
    hooks: SearchHooks = SearchHooks(),  # noqa: B008  (immutable)
    elapsed_s: float = 0.0,
) -> SearchResult:
    """Search until ``generation_num`` generations or a budget runs out.

    Args:
        archive: where candidates go; its constraint is the search's.
        evaluate: builds the Candidate of a canonical encoding first seen in a generation (costs
            first; the metric only when feasible). Candidates already in ``archive`` are reused.
        hooks: called after each generation, and for every candidate of a generation.
        elapsed_s: search time already spent before this call (a resumed search), counted
            against ``max_duration_s``.
    """
    budget = _Budget(cfg, elapsed_s, hooks.clock)
    stepper = _nsga2(space, cfg, seed) if cfg.algorithm == "nsga2" else _random(space, cfg, seed)
    generation = 0
    stopped_by = "generations"
    for X, tell in stepper:
        if hooks.prefetch is not None:
            fresh = [space.canonical([int(g) for g in x]) for x in X]
            fresh = [e for e in dict.fromkeys(fresh) if archive.get(e) is None]
            if not budget.exhausted():
                hooks.prefetch(fresh, generation, budget.remaining_evaluations())
        F, G, cut_by = _generation(space, archive, X, evaluate, hooks, budget, generation)
        if cut_by is None:
            tell(F, G)
        hooks.on_generation(generation, archive)  # a generation cut short by a budget still reports
        generation += 1
        stopped = cut_by or budget.exhausted()
        if stopped and (cut_by or generation < cfg.generation_num):
            stopped_by = stopped
            break
    if stopped_by == "generations" and generation < cfg.generation_num:
        stopped_by = "space_exhausted"
    if stopped_by != "generations":
        log.info("search stopped by %s after %d generations", stopped_by, generation)
    return SearchResult(generation, budget.evaluations, stopped_by)


def _generation(
    space: SearchSpace,
    archive: Archive,
    X: Sequence[Sequence[int]],
    evaluate: Callable[[tuple[int, ...], int], Candidate],
    hooks: SearchHooks,
    budget: _Budget,
    generation: int,
) -> tuple[np.ndarray, np.ndarray, str | None]:
    """Each candidate of one generation, from the archive or evaluated: the objectives and
    constraint values to tell the algorithm, and the budget that cut the generation short (None)."""
    F = np.empty((len(X), 2))
    G = np.empty((len(X), 1))
    for row, x in enumerate(X):
        stopped = budget.exhausted()
        if stopped:
            return F, G, stopped
        encoding = space.canonical([int(g) for g in x])
        cand = archive.get(encoding)
        if cand is None:
            cand = evaluate(encoding, generation)
            archive.add(cand)
            budget.evaluations += cand.metric is not None
        hooks.on_candidate(cand)
        F[row], G[row] = _objectives(cand, archive.constraint)
    return F, G, None


def _objectives(c: Candidate, constraint: Constraint) -> tuple[Sequence[float], Sequence[float]]:
    metric = c.metric
    f1 = -metric if metric is not None and math.isfinite(metric) else WORST
    cost = c.cost(constraint.kind)
    return (f1, cost), (cost - constraint.value,)


def _nsga2(space: SearchSpace, cfg: Searcher, seed: int):  # type: ignore[no-untyped-def]
    """Yields (X, tell) per generation; pymoo sees integer genes through rounding repairs."""
    from pymoo.algorithms.moo.nsga2 import NSGA2
    from pymoo.core.evaluator import Evaluator
    from pymoo.core.problem import Problem
    from pymoo.operators.crossover.sbx import SBX
    from pymoo.operators.repair.rounding import RoundingRepair
    from pymoo.operators.sampling.rnd import IntegerRandomSampling
    from pymoo.problems.static import StaticProblem

    problem = Problem(
        n_var=space.n_var, n_obj=2, n_ieq_constr=1, xl=np.array(space.xl), xu=np.array(space.xu), vtype=int
    )
    algorithm = NSGA2(
        pop_size=cfg.pop_size,
        sampling=IntegerRandomSampling(),
        crossover=SBX(prob=cfg.crossover_prob, eta=15, vtype=float, repair=RoundingRepair()),
        mutation=_reset_mutation(cfg.mutation_prob),
        eliminate_duplicates=True,
    )
    algorithm.setup(problem, termination=("n_gen", cfg.generation_num), seed=seed % 2**32, verbose=False)
    while algorithm.has_next():
        pop = algorithm.ask()
        if pop is None or len(pop) == 0:  # pymoo found no offspring unlike every earlier one
            return

        def tell(F: np.ndarray, G: np.ndarray, pop=pop) -> None:  # type: ignore[no-untyped-def]
            Evaluator().eval(StaticProblem(problem, F=F, G=G), pop)
            algorithm.tell(infills=pop)

        yield pop.get("X"), tell


def _reset_mutation(per_gene: float | None):  # type: ignore[no-untyped-def]
    """Each gene that has more than one value takes, with probability ``per_gene`` (default 1 / the
    number of such genes), another of its values drawn uniformly (docs/search.md#nsga-ii).

    Hand-written because pymoo's mutations for integers do not fit dopt's genes: polynomial mutation
    with rounding moves a gene of 2-3 values almost never (measured with pymoo 0.6.2 at dopt's
    former η = 20: 0 % of the picks for 2 values, 0.2 % for 3), so once the population converged
    every child was one already evaluated and the search stalled (benchmarks/search_efficiency.py).
    """
    from pymoo.core.mutation import Mutation

    class ResetMutation(Mutation):
        def _do(self, problem, X, *args, random_state=None, **kwargs):  # type: ignore[no-untyped-def]
            X = np.round(np.asarray(X, dtype=float)).astype(int)
            xl, xu = np.asarray(problem.xl, dtype=int), np.asarray(problem.xu, dtype=int)
            span = xu - xl
            free = span > 0
            if not free.any():
                return X.astype(float)
            p = per_gene if per_gene is not None else 1.0 / int(free.sum())
            picked = (random_state.random(X.shape) < p) & free
            # A shift of 1..span places (mod span + 1) reaches every other value with equal probability.
            shift = 1 + (random_state.random(X.shape) * np.maximum(span, 1)).astype(int)
            moved = xl + (X - xl + shift) % (span + 1)
            return np.where(picked, moved, X).astype(float)

    return ResetMutation(prob=1.0)


def _random(space: SearchSpace, cfg: Searcher, seed: int):  # type: ignore[no-untyped-def]
    """Uniform random sampling, ``pop_size`` per generation: the baseline NSGA-II must beat."""
    rng = np.random.default_rng(seed)
    for _ in range(cfg.generation_num):
        yield [space.sample(rng) for _ in range(cfg.pop_size)], lambda F, G: None
