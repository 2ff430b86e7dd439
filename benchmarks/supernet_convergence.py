"""Does the supernet train its subnets as well as training them alone would? Measured side by side.

For each framework and each budget E (epochs), on handwritten digits upscaled to 16x16 with a
typical user recipe (PreNet conv+BN+ReLU, PostNet pool+linear, Adam 3e-3 decayed linearly to 0,
batch 64), it:

  1. trains dopt's supernet for E epochs with the scenario's `training` settings (dopt's own
     training loop, through `dopt.pipeline.prepare.prepare`, as `dopt -c scen.yaml` does);
  2. evaluates the largest, the smallest and N fixed random subnets with inherited weights and BN
     recalibration (dopt's evaluator);
  3. trains each of those architectures alone, from scratch, for the same E epochs with the same
     recipe, and evaluates it;

and prints, per subnet, inherited / stand-alone accuracy, their mean ratio and Kendall's tau
between the two rankings. Scenario keys can be changed for a variant with --set, as for dopt.

Run: python benchmarks/supernet_convergence.py [--framework pytorch tensorflow] [--epochs 6 20]
     [--subnets 8] [--set scenario.strategy.training.sampling=uniform ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from _digits import alone, kendall_tau, train_supernet, workdir

from dopt.evaluation import Evaluator


def measure(framework: str, epochs: int, subnets: int, overrides: list[str], cache: Path | None) -> dict[str, Any]:
    with workdir(framework, epochs, overrides) as (p, module):
        t0 = time.perf_counter()
        train_supernet(p)
        supernet_s = time.perf_counter() - t0
        evaluator = Evaluator(p.session, p.costs, np.random.default_rng([p.seed, 1]))
        rng = np.random.default_rng(123)
        archs = [p.space.decode(p.space.largest()), p.space.decode(p.space.smallest())]
        archs += [p.space.decode(p.space.sample(rng)) for _ in range(subnets)]
        inherited = [evaluator.evaluate(a) for a in archs]
        t0 = time.perf_counter()
        # Stand-alone results depend only on (framework, E, architecture, seed): a cache file
        # lets variants of the supernet's settings be compared without retraining them.
        known = json.loads(cache.read_text()) if cache is not None and cache.exists() else {}
        results = []
        for k, a in enumerate(archs):
            key = f"{framework} {epochs} {1000 + k} {p.space.layer_rows(a)}"
            if key not in known:
                known[key] = alone(p, module, a, epochs, 1000 + k)
            results.append(known[key])
        if cache is not None:
            cache.write_text(json.dumps(known, indent=1))
        alone_s = (time.perf_counter() - t0) / len(archs)
        sizes = [p.costs.cost("size", a) for a in archs]
    return {
        "archs": archs,
        "sizes": sizes,
        "inherited": inherited,
        "alone": results,
        "supernet_s": supernet_s,
        "alone_s": alone_s,
        "space_size": p.space.size(),
    }


def report(framework: str, epochs: int, r: dict[str, Any]) -> float:
    print(
        f"\n{framework}, E = {epochs} epochs, {r['space_size']:,} distinct subnets; supernet training "
        f"{r['supernet_s']:.0f} s, one subnet alone {r['alone_s']:.0f} s"
    )
    print(f"  {'subnet':>8}  {'params':>8}  {'inherited':>9}  {'alone':>7}  {'ratio':>6}")
    ratios = []
    for k, (size, a, b) in enumerate(zip(r["sizes"], r["inherited"], r["alone"])):
        name = "largest" if k == 0 else "smallest" if k == 1 else f"random{k - 1}"
        ratio = a / b if b > 0 else float("nan")
        ratios.append(ratio)
        print(f"  {name:>8}  {size:>8,.0f}  {a:>9.4f}  {b:>7.4f}  {ratio:>6.3f}")
    mean = statistics.fmean(ratios)
    tau = kendall_tau(r["inherited"], r["alone"])
    print(f"  mean ratio {mean:.3f}, Kendall tau {tau:.2f}")
    return mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", nargs="+", default=["pytorch", "tensorflow"], choices=["pytorch", "tensorflow"])
    parser.add_argument("--epochs", nargs="+", type=int, default=[6, 20])
    parser.add_argument("--subnets", type=int, default=8, help="random subnets besides the largest and smallest")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cache", type=Path, help="JSON file keeping stand-alone results between runs")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"settings: {' '.join(args.overrides) or 'defaults'}")
    summary = []
    for framework in args.framework:
        for epochs in args.epochs:
            mean = report(framework, epochs, measure(framework, epochs, args.subnets, args.overrides, args.cache))
            summary.append(f"{framework} E={epochs}: mean ratio {mean:.3f}")
    print("\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
