from __future__ import annotations

import json

from dopt.archive import Archive, Candidate
from dopt.costs import Costs
from dopt.evolution import SearchHooks, run_search
from dopt.scenario.model import Constraint, Searcher
from tests.spaces import make_space


def fake_run(cfg: Searcher, seed: int = 3, value: float = 1500.0):
    """Search a real space with a cheap deterministic 'metric' (bigger networks score higher)."""
    space = make_space(filters=(16, 16, 24, 24), strides=(1, 1, 2, 1))
    constraint = Constraint(application="image_classification", kind="size", value=value)
    archive = Archive(constraint)
    evaluated: list[tuple[int, ...]] = []
    generations: list[int] = []

    def evaluate(encoding, generation):
        arch = space.decode(encoding)
        size = sum(0 if c.skip else c.kernel * c.out_channels * c.expand for c in arch)
        feasible = size <= value
        if feasible:
            evaluated.append(encoding)
        metric = 1 - 1 / (1 + size / 500) if feasible else None
        return Candidate(
            encoding=encoding,
            arch=arch,
            metric=metric,
            costs=Costs(size=size, flops=size * 10),
            feasible=feasible,
            generation=generation,
        )

    result = run_search(
        space, cfg, seed, archive, evaluate, SearchHooks(on_generation=lambda g, a: generations.append(g))
    )
    return archive, evaluated, generations, result


def test_reproducible_with_a_seed():
    a1, *_ = fake_run(Searcher(generation_num=4, pop_size=8))
    a2, *_ = fake_run(Searcher(generation_num=4, pop_size=8))
    assert json.dumps(a1.to_records()) == json.dumps(a2.to_records())
    a3, *_ = fake_run(Searcher(generation_num=4, pop_size=8), seed=4)
    assert json.dumps(a1.to_records()) != json.dumps(a3.to_records())


def test_no_candidate_evaluated_twice_and_infeasible_never_evaluated():
    archive, evaluated, generations, result = fake_run(Searcher(generation_num=5, pop_size=10))
    assert len(evaluated) == len(set(evaluated))
    assert all(c.metric is None for c in archive if not c.feasible)
    assert any(not c.feasible for c in archive)
    assert generations == [0, 1, 2, 3, 4] and result.stopped_by == "generations"
    assert all(archive[i].cost("size") <= 1500 for i in archive.front())


def test_max_evaluations_budget_stops_early():
    archive, evaluated, generations, result = fake_run(Searcher(generation_num=10, pop_size=10, max_evaluations=12))
    assert result.stopped_by == "max_evaluations"
    assert len(evaluated) == 12


def test_random_algorithm_runs_and_is_seeded():
    a1, *_ = fake_run(Searcher(generation_num=3, pop_size=6, algorithm="random"))
    a2, *_ = fake_run(Searcher(generation_num=3, pop_size=6, algorithm="random"))
    assert [c.encoding for c in a1] == [c.encoding for c in a2]


def test_a_space_smaller_than_the_population_is_searched_exhaustively():
    from tests.spaces import make_space

    space = make_space(filters=(32,), strides=(2,))
    assert space.size() == 9
    constraint = Constraint(application="image_classification", kind="size", value=1e9)
    archive = Archive(constraint)

    def evaluate(encoding, generation):
        arch = space.decode(encoding)
        return Candidate(
            encoding=encoding,
            arch=arch,
            metric=arch[0].kernel / 10,
            costs=Costs(size=arch[0].expand, flops=1),
            feasible=True,
            generation=generation,
        )

    result = run_search(space, Searcher(generation_num=5, pop_size=40), 0, archive, evaluate)
    assert len(archive) == 9
    assert result.stopped_by in {"space_exhausted", "generations"}
