"""Does `dopt analyze` tell the truth? Its effect of one dimension against a direct experiment.

`dopt analyze` estimates how much a choice matters from subnets drawn uniformly, where every
other gene varies too. The direct experiment holds everything else fixed: it draws P base
subnets in which the dimension applies, evaluates each twice, once with the analysis' best
choice and once with its worst (every other gene unchanged), and reports the mean paired
difference of error with its standard error. Both use the same trained supernet and evaluator.

Run in a working directory where `dopt -c scen.yaml` and `dopt analyze -c scen.yaml` have run:

    python benchmarks/space_analysis_check.py -c scen.yaml [--dimension kernel@1] [--pairs 40]

Without --dimension, the dimension of the largest clear per-layer effect in
results/space_analysis.json is checked.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dopt.evaluation import Evaluator  # noqa: E402
from dopt.log import configure  # noqa: E402
from dopt.pipeline.plan import trained  # noqa: E402
from dopt.pipeline.prepare import prepare  # noqa: E402
from dopt.pipeline.train import load_final  # noqa: E402
from dopt.results.space_analysis import dimensions  # noqa: E402
from dopt.scenario import load  # noqa: E402
from dopt.space import GENES_PER_LAYER  # noqa: E402

_GENE = {"kernel": 0, "expand": 1, "width": 2, "skip": 3}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--config", default="scen.yaml")
    ap.add_argument("--dimension", help="a per-layer dimension, e.g. kernel@1 (default: the largest clear effect)")
    ap.add_argument("--pairs", type=int, default=40)
    args = ap.parse_args()
    configure(-1)
    work = Path.cwd()
    report = json.loads((work / "results" / "space_analysis.json").read_text())
    effects = {e["dimension"]: e for e in report["effects"]}
    name = args.dimension or next(e["dimension"] for e in report["effects"] if "@" in e["dimension"] and e["clear"])
    effect = effects[name]
    gene, layer = name.split("@")
    sc = load(work / args.config, workdir=work)
    seed = trained(sc, "check")
    p = prepare(sc, seed=seed)
    evaluator = Evaluator(p.session, p.costs, np.random.default_rng([seed, 1]))
    load_final(p, work / "checkpoints")
    evaluator.reset()
    space = p.space
    values = {"kernel": space.kernel_sizes, "expand": space.expand_ratios, "width": space.width_ratios}
    best, worst = (_gene_index(gene, values, effect[k]) for k in ("best", "worst"))
    position = GENES_PER_LAYER * int(layer) + _GENE[gene]
    rng = np.random.default_rng([seed, 5])
    diffs = []
    while len(diffs) < args.pairs:
        base = space.sample(rng)
        pair = []
        for choice in (best, worst):
            encoding = list(base)
            encoding[position] = choice
            pair.append(space.canonical(encoding))
        if pair[0] == pair[1] or not all(name in dimensions(space, e) for e in pair):
            continue  # the dimension does not apply to this base (layer skipped, width fixed)
        best_metric, worst_metric = (evaluator.evaluate(space.decode(e)) for e in pair)
        diffs.append(best_metric - worst_metric)  # the worst choice's error minus the best's, either definition
    mean = float(np.mean(diffs))
    stderr = float(np.std(diffs, ddof=1) / math.sqrt(len(diffs)))
    agrees = (mean > 0) == (effect["difference"] > 0) and (not effect["clear"] or mean > 2 * stderr)
    print(f"dimension {name}: {effect['best']} (best) vs {effect['worst']} (worst), {args.pairs} pairs\n")
    print(f"{'':32}{'difference of mean error':>26}{'spread':>10}{'clear':>7}")
    print(
        f"{'dopt analyze (uniform draws)':32}{effect['difference']:>26.4f}{effect['spread']:>10.4f}"
        f"{str(effect['clear']):>7}"
    )
    print(f"{'direct (other genes fixed)':32}{mean:>26.4f}{stderr:>10.4f}{str(mean > 2 * stderr):>7}")
    print(f"\nthe analysis {'agrees with' if agrees else 'DISAGREES with'} the direct experiment")


def _gene_index(gene: str, values: dict[str, tuple], choice: object) -> int:
    if gene == "skip":
        return int(choice == "skipped")
    return list(values[gene]).index(choice)


if __name__ == "__main__":
    main()
