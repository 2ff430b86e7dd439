"""A generation's candidates evaluated side by side by the processes of a run
(docs/distributed.md#sharded-evaluation).

Every rank runs the same NSGA-II. Before a generation's candidates are asked for one by one, the
new ones are split across the ranks in two rounds: costs (extracting a subnet and counting it is
cheap, and decides feasibility), then the metric of the feasible ones the budget still allows,
each evaluated in full by one rank, round robin. Results are gathered on every rank, so each
builds the same archive and tells NSGA-II the same objectives; rank 0 journals them as the search
takes them, exactly as a single process would have evaluated them.
"""

from __future__ import annotations

import time
from typing import Any

from dopt.costs import Costs
from dopt.evaluation import Evaluator
from dopt.parallel.comm import Comm, RanksDiverged
from dopt.scenario.model import Constraint
from dopt.space import SearchSpace
from dopt.store.journal import Journal, complete

__all__ = ["ShardedEvaluation", "Shared"]

# (costs as a dict, metric or None, seconds the metric took)
Shared = tuple[dict[str, float], float | None, float]


class ShardedEvaluation:
    def __init__(
        self, comm: Comm, space: SearchSpace, evaluator: Evaluator, journal: Journal, constraint: Constraint
    ) -> None:
        self.comm, self.space, self.evaluator, self.journal, self.constraint = (
            comm,
            space,
            evaluator,
            journal,
            constraint,
        )
        self.done: dict[tuple[int, ...], Shared] = {}
        # The budget's clock is rank 0's, shared at every gather, so that every rank stops a search
        # for max_duration_s at the same candidate. While a generation's candidates are taken it
        # reads the time the generation started: what was evaluated side by side is kept, as one
        # process keeps what it evaluated before the time ran out; at the generation's end
        # (end_generation) it moves on to the time the evaluations ended.
        self._now = self._ended = self.comm.broadcast(time.monotonic())

    def clock(self) -> float:
        return self._now

    def end_generation(self) -> None:
        self._now = self._ended

    def take(self, encoding: tuple[int, ...]) -> Shared | None:
        """What the ranks evaluated for ``encoding`` in this generation; None if nothing."""
        return self.done.pop(encoding, None)

    def prefetch(self, encodings: list[tuple[int, ...]], generation: int, remaining: int | None) -> None:
        """Evaluate, across the ranks, the new ``encodings`` of one generation that the journal does
        not already hold; ``remaining``: metric evaluations the budget still allows (None: no limit)."""
        rank, world = self.comm.rank, self.comm.world_size
        self._now = self._ended
        journaled = {e: self.journal.get(e) for e in encodings}
        todo = [e for e in encodings if not complete(journaled[e], self.constraint)]
        costs = self._gather(
            {e: dict(self.evaluator.measure(self.space.decode(e))) for e in todo[rank::world]}, todo, generation
        )
        # The metric only where a single process would compute it: feasible, and within the budget
        # of evaluations counted in order over the generation (journaled ones included).
        kind, value = self.constraint.kind, self.constraint.value
        feasible = {e for e in todo if Costs(costs[e])[kind] <= value}
        wanted, left = [], remaining
        for e in encodings:
            if left is not None and left <= 0:
                break
            entry = journaled[e]
            counts = e in feasible if e in costs else entry is not None and entry.get("metric") is not None
            if e in feasible:
                wanted.append(e)
            if left is not None and counts:
                left -= 1
        metrics = self._gather({e: self._metric(e) for e in wanted[rank::world]}, wanted, generation)
        for e in todo:
            if e not in feasible:
                self.done[e] = (costs[e], None, 0.0)
            elif e in metrics:
                self.done[e] = (costs[e], *metrics[e])
            # a feasible one beyond the budget: the search stops before asking for it

    def _metric(self, encoding: tuple[int, ...]) -> tuple[float, float]:
        t0 = time.perf_counter()
        metric = self.evaluator.evaluate(self.space.decode(encoding))
        return metric, time.perf_counter() - t0

    def _gather(self, mine: dict[tuple[int, ...], Any], expected: list[tuple[int, ...]], generation: int) -> dict:
        parts = self.comm.allgather((mine, len(expected), time.monotonic()))
        if len({n for _, n, _ in parts}) > 1:
            raise RanksDiverged(
                f"generation {generation + 1}: the processes of this run have different candidates to evaluate "
                f"({', '.join(str(n) for _, n, _ in parts)}); every rank must see the same working directory "
                "(journal included) and run the same dopt"
            )
        self._ended = parts[0][2]
        merged: dict[tuple[int, ...], Any] = {}
        for part, _, _ in parts:
            merged.update(part)
        return merged
