"""Does dopt's NSGA-II beat random search? Both run on one trained supernet with the same budget.

On the digits workload of search_fidelity.py (8x8 images, 500 training / 1,297 validation images,
PreNet 8 channels, filters 8-16-16-32-32: ~118k distinct subnets of 5k-48k parameters), it:

  1. trains dopt's supernet once (dopt's own training loop through `dopt.pipeline.prepare.prepare`, as
     `dopt -c` does; sandwich sampling with in-place distillation, dopt's default);
  2. sets a size constraint at the median size of uniformly drawn subnets (dopt's fixed-seed draw
     of 2,000, docs/search.md#a-tiny-feasible-region), so half of the space is over it;
  3. for each seed, runs dopt's search (`dopt.evolution.run_search`, unchanged) twice, with
     `algorithm: nsga2` and `algorithm: random`, dopt's defaults otherwise, each stopped by
     `max_evaluations`: the same number of metric evaluations (new feasible subnets scored;
     infeasible and repeated ones are free, as in dopt). Candidates are scored as dopt scores them:
     dopt's Evaluator (extraction, BatchNorm recalibration on a fixed subset, the user's metric);
  4. records the hypervolume of the search's archive after every evaluation and every generation.

Hypervolume is dopt's own (`Archive.hypervolume`, docs/search.md#hypervolume): points
(-accuracy, size / constraint), reference (0, 1), the same fixed reference for both algorithms
and all seeds, so values compare directly; its maximum is 1.

An evaluation depends only on the supernet's weights, the architecture and the calibration subset,
all fixed here, so it is memoised by encoding across seeds and algorithms; the script checks
first that evaluating subnets twice, re-extracted, gives identical metrics, and stops if not.

Printed: the median hypervolume (and range over seeds) after every `pop_size` evaluations (one
generation's worth); then per seed the final hypervolumes, the winner, the evaluations NSGA-II
needed to reach random search's final hypervolume, and the evaluations and generations each search
used (a search proposing only candidates it has already seen spends no budget: the cap of
20 x budget / pop generations then ends it, and its curve keeps its last value); last, the
summary. A plot of hypervolume against evaluations (median and range over seeds) and results.json
go to --out.

With --benchmark nas-bench-graph:DATASET the same two searches run on an offline table instead of
a supernet: NAS-Bench-Graph (Qin et al., NeurIPS 2022; `pip install nas-bench-graph==1.4.0`, whose
wheel ships the "light" table of all 26,206 graph networks on each of nine datasets), validation
accuracy against parameters, constrained at the same quantile. Its space (a 4-node DAG: one of 9
link patterns, 9 operations a node) is handed to dopt's `run_search` as five integer genes, with
isomorphic encodings mapped to one canonical encoding. The table is exhaustive, so the hypervolume
of its whole front, the most any search can reach, is printed beside the searches'.

Run: python benchmarks/search_efficiency.py [--framework pytorch|tensorflow] [--seeds 0 1 2 3 4]
     [--pop 16] [--budget 128] [--epochs 10] [--quantile 0.5] [--out DIR]
     python benchmarks/search_efficiency.py --benchmark nas-bench-graph:cora  (a few seconds)
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import math
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any

import numpy as np
from _digits import Setting, train_supernet, workdir

from dopt.archive import Archive, Candidate
from dopt.costs import Costs
from dopt.evaluation import Evaluator
from dopt.evolution import SearchHooks, run_search
from dopt.pipeline.inputs import Prepared
from dopt.scenario.model import Constraint, Searcher

# search_fidelity.py's workload: subnets differ by several points of accuracy there, where the
# 16x16 digits bring them all within a point of each other.
SETTING = Setting(upscale=1, stem=8, filters=(8, 16, 16, 32, 32), strides=(1, 2, 1, 2, 1), train_images=500)
ALGORITHMS = ("nsga2", "random")
GRAPH_DATASETS = ("cora", "citeseer", "pubmed", "cs", "physics", "photo", "computers", "arxiv", "proteins")


class Memo:
    """dopt's evaluation of a candidate (dopt/run.py `_journaled` without the journal): costs
    measured on the extracted subnet, the metric only within the constraint, each encoding once."""

    def __init__(self, p: Prepared, evaluator: Evaluator, limit: float) -> None:
        self.p, self.evaluator, self.limit = p, evaluator, limit
        self.known: dict[tuple[int, ...], tuple[Any, float | None]] = {}
        self.computed = 0

    def __call__(self, encoding: tuple[int, ...], generation: int) -> Candidate:
        arch = self.p.space.decode(encoding)
        if encoding not in self.known:
            costs = self.evaluator.measure(arch)
            metric = self.evaluator.evaluate(arch) if costs["size"] <= self.limit else None
            if metric is not None and not math.isfinite(metric):
                raise ValueError(f"metric of {list(encoding)} is {metric}")
            self.known[encoding] = costs, metric
            self.computed += metric is not None
        costs, metric = self.known[encoding]
        return Candidate(
            encoding=encoding,
            arch=arch,
            metric=metric,
            costs=costs,
            feasible=metric is not None,
            generation=generation + 1,
        )


def check_deterministic(p: Prepared, evaluator: Evaluator, n: int = 3) -> list[float]:
    """Evaluate ``n`` random subnets, then again in reverse order, each re-extracted from the
    supernet; the metrics, which must be identical for the memo to be valid."""
    rng = np.random.default_rng(99)
    archs = [p.space.decode(p.space.canonical(p.space.sample(rng))) for _ in range(n)]
    first = []
    for a in archs:
        evaluator.reset()
        first.append(evaluator.evaluate(a))
    for a, m in zip(reversed(archs), reversed(first)):
        evaluator.reset()
        again = evaluator.evaluate(a)
        if again != m:
            raise RuntimeError(f"evaluating {a} twice gave {m!r} then {again!r}: memoising evaluations is not valid")
    evaluator.reset()
    return first


def search(
    space: Any, searcher: Searcher, constraint: Constraint, evaluate: Any, algorithm: str, seed: int, budget: int
) -> dict[str, Any]:
    """One dopt search stopped by ``budget`` metric evaluations; the hypervolume after each metric
    evaluation (index k: after k + 1) and after each generation."""
    archive = Archive(constraint)
    cfg = dataclasses.replace(
        searcher,
        algorithm=algorithm,
        # Generous: the evaluation budget is what stops both, whatever share of a generation is
        # infeasible or already seen.
        generation_num=20 * math.ceil(budget / searcher.pop_size),
        max_evaluations=budget,
    )
    by_evaluation: list[float] = []
    by_generation: list[tuple[int, float]] = []

    fresh: set[tuple[int, ...]] = set()  # evaluated now, not taken from the archive

    def evaluated(encoding: tuple[int, ...], generation: int) -> Candidate:
        fresh.add(encoding)
        return evaluate(encoding, generation)

    def on_candidate(c: Candidate) -> None:
        if c.encoding in fresh and c.metric is not None:
            fresh.discard(c.encoding)
            by_evaluation.append(archive.hypervolume())

    def on_generation(g: int, a: Archive) -> None:
        by_generation.append((len(by_evaluation), a.hypervolume()))

    result = run_search(
        space, cfg, seed, archive, evaluated, SearchHooks(on_generation=on_generation, on_candidate=on_candidate)
    )
    return {
        "hv": by_evaluation,
        "curve": padded(by_evaluation, budget),
        "generations": by_generation,
        "stopped_by": result.stopped_by,
        "evaluations": result.evaluations,
        "distinct": len(archive),
        "front": [archive[i] for i in archive.front()],
    }


def padded(hv: list[float], budget: int) -> np.ndarray:
    """Hypervolume after 1..budget evaluations; a search that stopped early keeps its last value."""
    return np.array([hv[min(k, len(hv) - 1)] if hv else 0.0 for k in range(budget)])


def reach(nsga2: np.ndarray, target: float) -> int | None:
    """Evaluations NSGA-II needed to reach ``target``, None if it never did."""
    hits = np.nonzero(nsga2 >= target)[0]
    return int(hits[0]) + 1 if len(hits) else None


class GraphSpace:
    """NAS-Bench-Graph's space (Qin et al., NeurIPS 2022) as dopt's search sees a space: five
    integer genes, the DAG (one of its nine link patterns) and the operation of each of four nodes
    (nine each); ``canonical`` maps isomorphic encodings, which the table stores once, to the
    smallest encoding of their class, as dopt's SearchSpace maps equivalent encodings."""

    def __init__(self, bench: dict[int, dict[str, Any]]) -> None:
        from nas_bench_graph import Arch, gnn_list, link_list

        self.n_var, self.xl, self.xu = 5, (0,) * 5, (len(link_list) - 1,) + (len(gnn_list) - 1,) * 4
        self.hash: dict[tuple[int, ...], int | None] = {}
        first: dict[int, tuple[int, ...]] = {}
        for e in itertools.product(*(range(u + 1) for u in self.xu)):  # lexicographic order
            h = Arch(list(link_list[e[0]]), [gnn_list[g] for g in e[1:]]).valid_hash()
            self.hash[e] = h if h in bench else None  # four skip connections: not in the table
            first.setdefault(h, e)
        self._canonical = {e: first[h] if h is not None else e for e, h in self.hash.items()}

    def canonical(self, encoding: Any) -> tuple[int, ...]:
        return self._canonical[tuple(int(g) for g in encoding)]

    def sample(self, rng: np.random.Generator) -> list[int]:
        return rng.integers(np.array(self.xl), np.array(self.xu) + 1).tolist()


def nas_bench_graph(dataset: str, args: argparse.Namespace) -> tuple[dict[int, dict[str, Any]], str, int, float]:
    """dopt's search on NAS-Bench-Graph's table of ``dataset``: validation accuracy against
    parameters, constrained at the ``--quantile`` of uniformly drawn architectures' parameters."""
    try:
        from nas_bench_graph import light_read
    except ImportError:
        raise SystemExit("--benchmark nas-bench-graph needs the package: pip install nas-bench-graph==1.4.0") from None
    bench = light_read(dataset)
    space = GraphSpace(bench)
    rng = np.random.default_rng(0)
    drawn = [space.hash[space.canonical(space.sample(rng))] for _ in range(2000)]
    limit = float(np.quantile([bench[h]["para"] for h in drawn if h is not None], args.quantile))
    constraint = Constraint(application="image_classification", kind="size", value=limit)
    worst = 10 * max(float(v["para"]) for v in bench.values())  # cost of the all-skip encodings
    looked_up: set[int] = set()

    def evaluate(encoding: tuple[int, ...], generation: int) -> Candidate:
        h = space.hash[encoding]
        size = worst if h is None else float(bench[h]["para"])
        metric = float(bench[h]["valid_perf"]) if h is not None and size <= limit else None
        if metric is not None:
            looked_up.add(h)
        return Candidate(
            encoding=encoding,
            arch=encoding,
            metric=metric,
            costs=Costs({"size": size}),
            feasible=metric is not None,
            generation=generation + 1,
        )

    print(
        f"NAS-Bench-Graph {dataset}: {len(bench):,} architectures of {min(v['para'] for v in bench.values()):.3f}-"
        f"{max(v['para'] for v in bench.values()):.3f} M parameters; constraint parameters <= {limit:.3f} M "
        f"({args.quantile:.0%} of random architectures meet it); metric: validation accuracy from the table",
        flush=True,
    )
    # The table is exhaustive: the best hypervolume any search can reach is that of all of it.
    whole = Archive(constraint)
    for e, h in space.hash.items():
        if h is not None and space.canonical(e) == e and float(bench[h]["para"]) <= limit:
            whole.add(
                Candidate(
                    encoding=e,
                    arch=e,
                    metric=float(bench[h]["valid_perf"]),
                    costs=Costs({"size": float(bench[h]["para"])}),
                    feasible=True,
                    generation=1,
                )
            )
    optimum = whole.hypervolume()
    print(f"hypervolume of the whole table's front (the most any search can reach): {optimum:.4f}")
    searcher = Searcher(pop_size=args.pop)
    runs = {
        s: {a: search(space, searcher, constraint, evaluate, a, s, args.budget) for a in ALGORITHMS} for s in args.seeds
    }
    title = f"NAS-Bench-Graph {dataset}, parameters <= {limit:.3f} M"
    return runs, f"{title} (table's best {optimum:.4f})", len(looked_up), optimum


def curves_table(curves: dict[str, np.ndarray], pop: int, budget: int) -> list[str]:
    lines = [
        f"hypervolume after every {pop} evaluations (one generation's worth): median [min, max] over seeds",
        f"{'evaluations':>11}  " + "  ".join(f"{a:>26}" for a in ALGORITHMS),
    ]
    for k in [*range(pop, budget, pop), budget]:
        cells = []
        for a in ALGORITHMS:
            v = curves[a][:, k - 1]
            cells.append(f"{np.median(v):.4f} [{v.min():.4f}, {v.max():.4f}]")
        lines.append(f"{k:>11}  " + "  ".join(f"{c:>26}" for c in cells))
    return lines


def summary_table(runs: dict[int, dict[str, Any]], budget: int) -> list[str]:
    lines = [
        f"{'seed':>4}  {'NSGA-II HV':>10}  {'random HV':>10}  {'winner':>7}  "
        f"{'NSGA-II evaluations to random final HV':>38}  {'evaluations / generations used':>30}",
        f"{'':>4}  {'':>10}  {'':>10}  {'':>7}  {'':>38}  {'NSGA-II':>14}  {'random':>14}",
    ]
    wins, fractions, stalled = 0, [], 0
    for seed, r in runs.items():
        final = {a: r[a]["curve"][-1] for a in ALGORITHMS}
        winner = (
            "nsga2" if final["nsga2"] > final["random"] else "random" if final["nsga2"] < final["random"] else "tie"
        )
        wins += winner == "nsga2"
        n = reach(r["nsga2"]["curve"], final["random"])
        fractions.append(math.inf if n is None else n / budget)
        reached = "not reached" if n is None else f"{n} ({n / budget:.2f} of budget)"
        used = {a: f"{r[a]['evaluations']} / {len(r[a]['generations'])}" for a in ALGORITHMS}
        stalled += r["nsga2"]["evaluations"] < budget
        lines.append(
            f"{seed:>4}  {final['nsga2']:>10.4f}  {final['random']:>10.4f}  {winner:>7}  {reached:>38}  "
            f"{used['nsga2']:>14}  {used['random']:>14}"
        )
    if stalled:
        # A search that proposes only candidates it has seen spends no budget: the generation cap ends it.
        lines.append(
            f"NSGA-II ran out of new candidates before its budget in {stalled}/{len(runs)} seeds "
            "(its curve keeps its last value)"
        )
    median = statistics.median(fractions)
    lines.append(
        f"NSGA-II won {wins}/{len(runs)} seeds; median evaluations to reach random search's final "
        f"hypervolume: {'not reached' if math.isinf(median) else f'{median:.2f}'} of the budget of {budget}"
    )
    return lines


def plot(curves: dict[str, np.ndarray], out: Path, title: str, optimum: float | None) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for a, label in zip(ALGORITHMS, ("dopt NSGA-II", "random search")):
        c = curves[a]
        x = np.arange(1, c.shape[1] + 1)
        (line,) = ax.plot(x, np.median(c, axis=0), label=f"{label} (median)")
        ax.fill_between(x, c.min(axis=0), c.max(axis=0), color=line.get_color(), alpha=0.2, label=f"{label} (range)")
    if optimum is not None:
        ax.axhline(optimum, color="k", ls="--", lw=1, label="whole table's front")
    ax.set_xlabel("metric evaluations")
    ax.set_ylabel("hypervolume of (accuracy, size / constraint), ref (0, 1)")
    ax.set_title(textwrap.fill(title, 90), fontsize=9)
    ax.legend()
    ax.grid(alpha=0.3)
    lo = min(float(np.median(c[:, c.shape[1] // 8])) for c in curves.values())
    ax.set_ylim(bottom=lo - 0.02)
    fig.tight_layout()
    path = out / "search_efficiency.png"
    fig.savefig(path, dpi=120)
    return path


def digits(args: argparse.Namespace) -> tuple[dict[int, dict[str, Any]], str, int, float | None]:
    """dopt's search on a digits supernet trained here, scored by dopt's Evaluator."""
    with workdir(args.framework, args.epochs, (), SETTING) as (p, _):
        limit = float(np.quantile(p.costs.sampled("size"), args.quantile))
        lo, hi = p.cost_range
        print(
            f"{args.framework}: {p.space.size():,} distinct subnets of {lo:,.0f}-{hi:,.0f} parameters; "
            f"constraint size <= {limit:,.0f} ({args.quantile:.0%} of random subnets meet it)",
            flush=True,
        )
        t0 = time.perf_counter()
        train_supernet(p)
        train_s = time.perf_counter() - t0
        evaluator = Evaluator(p.session, p.costs, np.random.default_rng([p.seed, 1]))
        metrics = check_deterministic(p, evaluator)
        print(
            f"supernet trained ({args.epochs} epochs, {train_s:.0f} s); evaluation is deterministic: "
            f"{len(metrics)} subnets evaluated twice, re-extracted, identical metrics {metrics}",
            flush=True,
        )
        memo = Memo(p, evaluator, limit)
        constraint = dataclasses.replace(p.scenario.constraint, value=limit)
        searcher = dataclasses.replace(p.scenario.searcher, pop_size=args.pop)
        runs: dict[int, dict[str, Any]] = {}
        for seed in args.seeds:
            runs[seed] = {}
            for algorithm in ALGORITHMS:
                r = search(p.space, searcher, constraint, memo, algorithm, seed, args.budget)
                runs[seed][algorithm] = r
                print(
                    f"  seed {seed} {algorithm:>6}: {r['evaluations']} evaluations in {len(r['generations'])} "
                    f"generations (stopped by {r['stopped_by']}), {r['distinct']} distinct candidates, "
                    f"front {len(r['front'])}, hypervolume {r['curve'][-1]:.4f}",
                    flush=True,
                )
    title = f"{args.framework} digits supernet ({args.epochs} epochs), size <= {limit:,.0f}"
    return runs, title, memo.computed, None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", default="pytorch", choices=["pytorch", "tensorflow"])
    parser.add_argument(
        "--benchmark", metavar="nas-bench-graph:DATASET", help="search NAS-Bench-Graph's table instead of a supernet"
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--pop", type=int, default=16, help="pop_size of both searches")
    parser.add_argument("--budget", type=int, default=128, help="metric evaluations per search (max_evaluations)")
    parser.add_argument("--epochs", type=int, default=10, help="supernet training epochs")
    parser.add_argument(
        "--quantile", type=float, default=0.5, help="constraint: this quantile of random subnets' sizes"
    )
    parser.add_argument("--out", type=Path, help="folder for the plot and results.json (default: a new temporary one)")
    args = parser.parse_args()
    if args.budget < args.pop or not 0 < args.quantile < 1:
        parser.error("--budget must be at least --pop, and --quantile within (0, 1)")
    if args.benchmark is not None:
        name, _, dataset = args.benchmark.partition(":")
        if name != "nas-bench-graph" or dataset not in GRAPH_DATASETS:
            parser.error(
                f"--benchmark: expected nas-bench-graph:DATASET with DATASET one of {', '.join(GRAPH_DATASETS)}"
            )
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = args.out or Path(tempfile.mkdtemp(prefix="search_efficiency_"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    runs, title, evaluated, optimum = digits(args) if args.benchmark is None else nas_bench_graph(dataset, args)
    wall = time.perf_counter() - t0
    curves = {a: np.array([runs[s][a]["curve"] for s in args.seeds]) for a in ALGORITHMS}
    title += f", pop {args.pop}, {args.budget} evaluations, seeds {' '.join(map(str, args.seeds))}"
    saved = {
        "settings": {**vars(args), "out": str(out), "setting": repr(SETTING)},
        "title": title,
        "runs": {
            s: {
                a: {
                    **{k: v for k, v in r.items() if k not in ("curve", "front")},
                    "front": [(c.cost("size"), c.metric, list(c.encoding)) for c in r["front"]],
                }
                for a, r in rs.items()
            }
            for s, rs in runs.items()
        },
        "distinct_evaluations": evaluated,
        "wall_s": wall,
    }
    (out / "results.json").write_text(json.dumps(saved, indent=1, default=str))
    print(f"\nplot and results.json: {plot(curves, out, title, optimum).parent}")
    print(f"wall time {wall:.0f} s ({evaluated} distinct candidates evaluated)\n")
    print("\n".join(curves_table(curves, args.pop, args.budget)) + "\n")
    print(f"{title}; dopt's hypervolume")
    print("\n".join(summary_table(runs, args.budget)))
    failed = [s for s, rs in runs.items() for r in rs.values() if not np.all(np.isfinite(r["curve"]))]
    if failed:
        print(f"failed: non-finite hypervolume for seeds {failed}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
