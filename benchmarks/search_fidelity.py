"""Search fidelity: does the accuracy the supernet reports for a subnet rank subnets the way
training them for real would?

On a small digits space it:

  1. picks K subnets spread over the space, fixed by --seed: the smallest, the largest, and K-2
     random subnets (among 2,000 draws) nearest sizes (parameters) evenly spaced on a log scale
     between them;
  2. trains each alone, from scratch, as a static network with the recipe (PreNet conv+BN+ReLU,
     PostNet pool+linear, Adam 3e-3 decayed linearly to 0, batch 64) for E epochs, once per
     training seed (--seeds, default 3); the stand-alone accuracy is the mean over seeds, and the
     Kendall tau between two seeds' accuracies is the noise ceiling: what one more stand-alone run
     used as a predictor would reach against one seed;
  3. for each training strategy (`uniform` sampling; `sandwich` without distillation; `sandwich`
     with in-place distillation, dopt's default), trains dopt's supernet for the same E epochs
     through dopt's own training loop (as `dopt -c` does; a uniform epoch costs one subnet pass a
     step, a sandwich epoch four), and scores the K subnets as the search would see them: dopt's
     Evaluator (extraction, BatchNorm recalibration, the user's metric on the validation set);

and prints, per strategy, Kendall tau and Spearman rho between supernet-reported and stand-alone
accuracy with 95 % bootstrap confidence intervals over the subnets, tau against single seeds (the
figure to set beside the ceiling), and the mean ratio supernet-reported / stand-alone. A plot of
supernet-reported against stand-alone accuracy goes to --out.

The setting, and why: the 16x16 digits of supernet_convergence.py, with 1,437 training and 360
validation images, bring every subnet to 0.95-0.997 after 20 epochs, within about a point of each
other on a validation set where one image is 0.3 points, so no ranking there is more than noise.
Here the digits stay at their native 8x8 (two stride-2 layers leave 2x2), the 1,797 images are
re-split into 500 for training and 1,297 for validation (one image = 0.08 points), and the space is
narrowed (PreNet 8 channels, filters 8-16-16-32-32): its subnets have 5k-48k parameters. Measured
with 16 subnets and 3 seeds (PyTorch, 7 steps an epoch):

  E = 10: stand-alone 0.86-0.95, seed/seed tau 0.62, but the supernet is far from trained after
          70 steps (supernet-reported / stand-alone 0.48 uniform, 0.74 sandwich+distill);
  E = 20: stand-alone 0.90-0.96, seed/seed tau 0.52; ratio 0.75 uniform, 0.92 sandwich+distill;
  E = 30: stand-alone 0.92-0.96, seed/seed tau 0.50; ratio 0.88 uniform, 0.96 sandwich+distill;
  300 training images, E = 30: seed/seed tau 0.38 (12 subnets, 2 seeds): noisier, not wider.

More epochs bring the small subnets closer to the large ones, fewer lose the supernet its training;
E = 30 is the default: the supernet is trained about as well as the README's convergence table
says a default run is (ratio ~0.96), and the stand-alone ranking is still clearly positive from
seed to seed. With the default 20 subnets (which reach further into the small end) the seed/seed
tau at E = 30 is 0.64 (95 % CI 0.45-0.78). A PyTorch run took 12 minutes on 2 CPU cores shared
with other jobs (5 CPU-minutes, OMP_NUM_THREADS=1; --cache makes reruns ~3 minutes); TensorFlow's
supernet training is several times slower.

Run: python benchmarks/search_fidelity.py [--framework pytorch tensorflow] [--subnets 20]
     [--seeds 3] [--epochs 30] [--strategies uniform sandwich sandwich+distill] [--cache FILE]
     [--out DIR] [--supernet-seed 0]

The bootstrap intervals cover the luck of which subnets were picked, not that of the supernet's
own training: rerun with another --supernet-seed (cheap with --cache) to see that.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
from _digits import Setting, alone, kendall_tau, train_supernet, workdir

from dopt.evaluation import Evaluator
from dopt.pipeline.inputs import Prepared

SETTING = Setting(upscale=1, stem=8, filters=(8, 16, 16, 32, 32), strides=(1, 2, 1, 2, 1), train_images=500)

# Each strategy as (training.sampling, training.distill), and as dopt's --set overrides.
STRATEGY_OF = {"uniform": ("uniform", False), "sandwich": ("sandwich", False), "sandwich+distill": ("sandwich", True)}
STRATEGIES = {
    name: [
        f"scenario.strategy.training.sampling={sampling}",
        f"scenario.strategy.training.distill={str(distill).lower()}",
    ]
    for name, (sampling, distill) in STRATEGY_OF.items()
}
DEFAULT_STRATEGY = "sandwich+distill"  # docs/scenario.md: sampling sandwich, distill true with sandwich


def spread_subnets(p: Prepared, k: int, seed: int, pool: int = 2000) -> list[tuple[int, ...]]:
    """Canonical encodings of the smallest, the largest and ``k - 2`` subnets between them, the
    distinct draw (among ``pool`` random ones) nearest each of ``k - 2`` sizes evenly spaced on a
    log scale: a random sample alone crowds the middle sizes, where accuracies differ least, while
    the search ranks candidates along the whole range of cost."""
    rng = np.random.default_rng(seed)
    size = {}
    for _ in range(pool):
        e = p.space.canonical(p.space.sample(rng))
        size[e] = p.costs.cost("size", p.space.decode(e))
    ends = [p.space.canonical(p.space.smallest()), p.space.canonical(p.space.largest())]
    lo, hi = (p.costs.cost("size", p.space.decode(e)) for e in ends)
    left = sorted(set(size) - set(ends))
    picked = []
    for target in np.geomspace(lo, hi, k)[1:-1]:
        if not left:
            raise ValueError(f"fewer than {k} distinct subnets in {pool} draws; ask for fewer")
        best = min(left, key=lambda e: abs(math.log(size[e] / target)))
        picked.append(best)
        left.remove(best)
    return [ends[0], *sorted(picked, key=lambda e: size[e]), ends[1]]


def _bootstrap(stat: Any, n: int, resamples: int, seed: int) -> tuple[float, float]:
    """95 % percentile interval of ``stat(indices)`` over resamples of the n subnets with
    replacement (as dopt/latency/table.py's accuracy does); resamples whose statistic is undefined
    (all ties) are dropped."""
    rng = np.random.default_rng(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on a resample of tied values, then gives NaN
        values = [stat(rng.integers(0, n, n)) for _ in range(resamples)]
    values = [v for v in values if math.isfinite(v)]
    if not values:
        return math.nan, math.nan
    return float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))


def _spearman(a: Any, b: Any) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def agreement(reported: np.ndarray, alone: np.ndarray, resamples: int = 2000) -> dict[str, Any]:
    """Rank agreement of ``reported`` (one value per subnet) with ``alone`` (subnets x seeds)."""
    mean = alone.mean(axis=1)
    n = len(mean)
    return {
        "tau": kendall_tau(reported, mean),
        "tau_ci": _bootstrap(lambda i: kendall_tau(reported[i], mean[i]), n, resamples, 1),
        "rho": _spearman(reported, mean),
        "rho_ci": _bootstrap(lambda i: _spearman(reported[i], mean[i]), n, resamples, 2),
        "tau_one_seed": float(np.mean([kendall_tau(reported, alone[:, s]) for s in range(alone.shape[1])])),
        "ratio": float(np.mean(reported / mean)),
    }


def difference(a: np.ndarray, b: np.ndarray, alone: np.ndarray, resamples: int = 2000) -> dict[str, Any]:
    """tau(a) - tau(b) against the stand-alone mean, with a paired bootstrap interval (the same
    subnets resampled for both): whether one strategy ranks better than another beyond the luck of
    which subnets were picked."""
    mean = alone.mean(axis=1)

    def delta(i: Any) -> float:
        return kendall_tau(a[i], mean[i]) - kendall_tau(b[i], mean[i])

    return {"delta": delta(slice(None)), "ci": _bootstrap(delta, len(mean), resamples, 3)}


def ceiling(alone: np.ndarray, resamples: int = 2000) -> dict[str, Any]:
    """Seed-to-seed agreement of the stand-alone accuracies: tau and rho averaged over pairs of seeds."""
    pairs = [(s, t) for s in range(alone.shape[1]) for t in range(s + 1, alone.shape[1])]

    def mean_over_pairs(fn: Any, i: Any) -> float:
        return float(np.mean([fn(alone[i, s], alone[i, t]) for s, t in pairs]))

    n = len(alone)
    return {
        "tau": mean_over_pairs(kendall_tau, slice(None)),
        "tau_ci": _bootstrap(lambda i: mean_over_pairs(kendall_tau, i), n, resamples, 1),
        "rho": mean_over_pairs(_spearman, slice(None)),
        "rho_ci": _bootstrap(lambda i: mean_over_pairs(_spearman, i), n, resamples, 2),
    }


def measure(framework: str, args: argparse.Namespace) -> dict[str, Any]:
    """Stand-alone accuracies (subnets x seeds) and, per strategy, the supernet-reported ones."""
    epochs = args.epochs
    with workdir(framework, epochs, (), SETTING) as (p, module):
        training = p.scenario.training
        if STRATEGY_OF[DEFAULT_STRATEGY] != (training.sampling, training.distill):
            raise RuntimeError(f"dopt's default training is now {training}: update DEFAULT_STRATEGY")
        encodings = spread_subnets(p, args.subnets, args.seed)
        archs = [p.space.decode(e) for e in encodings]
        sizes = [p.costs.cost("size", a) for a in archs]
        # Stand-alone results depend only on (framework, setting, E, architecture, seed): a cache
        # file lets reruns and variants of the supernet's training skip them.
        known = json.loads(args.cache.read_text()) if args.cache is not None and args.cache.exists() else {}
        t0, trained = time.perf_counter(), 0
        alone_acc = np.zeros((len(archs), args.seeds))
        for k, a in enumerate(archs):
            for s in range(args.seeds):
                key = f"{framework} {SETTING} E={epochs} seed={1000 + s} {p.space.layer_rows(a)}"
                if key not in known:
                    known[key] = alone(p, module, a, epochs, 1000 + s)
                    trained += 1
                    if args.cache is not None:  # after each, so that an interrupted run keeps them
                        args.cache.with_suffix(".tmp").write_text(json.dumps(known, indent=1))
                        args.cache.with_suffix(".tmp").replace(args.cache)
                alone_acc[k, s] = known[key]
            print(
                f"  stand-alone {k + 1}/{len(archs)}: {sizes[k]:,.0f} params, {np.round(alone_acc[k], 4)}", flush=True
            )
        alone_s = (time.perf_counter() - t0) / max(trained, 1)
        space_size = p.space.size()
    reported, supernet_s = {}, {}
    for name in args.strategies:
        overrides = [*STRATEGIES[name], f"scenario.strategy.searcher.seed={args.supernet_seed}"]
        with workdir(framework, epochs, overrides, SETTING) as (p, _):
            t0 = time.perf_counter()
            train_supernet(p)
            supernet_s[name] = time.perf_counter() - t0
            evaluator = Evaluator(p.session, p.costs, np.random.default_rng([p.seed, 1]))
            reported[name] = np.array([evaluator.evaluate(a) for a in archs])
        print(f"  supernet, {name}: {supernet_s[name]:.0f} s, {np.round(reported[name], 4)}", flush=True)
    return {
        "archs": archs,
        "sizes": sizes,
        "alone": alone_acc,
        "alone_s": alone_s if trained else None,
        "reported": reported,
        "supernet_s": supernet_s,
        "space_size": space_size,
    }


def _ci(lo_hi: tuple[float, float]) -> str:
    return f"[{lo_hi[0]:+.2f}, {lo_hi[1]:+.2f}]"


def details(framework: str, r: dict[str, Any]) -> None:
    names = list(r["reported"])
    print(f"\n{framework}: per subnet (stand-alone = mean over {r['alone'].shape[1]} seeds; supernet-reported)")
    print(f"  {'params':>7}  {'alone':>6}  {'seeds':>13}  " + "  ".join(f"{n:>16}" for n in names))
    for k, size in enumerate(r["sizes"]):
        seeds = " ".join(f"{v:.3f}" for v in r["alone"][k])
        row = "  ".join(f"{r['reported'][n][k]:>16.4f}" for n in names)
        print(f"  {size:>7,.0f}  {r['alone'][k].mean():>6.4f}  {seeds:>13}  {row}")


def table(results: dict[str, dict[str, Any]], args: argparse.Namespace) -> list[str]:
    """The summary table's lines."""
    lines = [
        f"search fidelity: {args.subnets} subnets spread over the space, {args.seeds} stand-alone seeds, "
        f"E = {args.epochs} epochs, supernet seed {args.supernet_seed}, 95 % bootstrap CIs over subnets",
        f"{'framework':<10}  {'supernet training':<26}  {'Kendall tau':>6} {'95 % CI':>15}  "
        f"{'Spearman rho':>6} {'95 % CI':>15}  {'tau/1 seed':>10}  {'tau - default':>13} {'95 % CI':>15}  "
        f"{'ratio':>6}  {'train s':>7}",
    ]
    for framework, r in results.items():
        c = r["ceiling"]
        lines.append(
            f"{framework:<10}  {'ceiling: seed/seed':<26}  {c['tau']:>11.2f} {_ci(c['tau_ci']):>15}  "
            f"{c['rho']:>12.2f} {_ci(c['rho_ci']):>15}  {c['tau']:>10.2f}"
        )
        for name, a in r["agreement"].items():
            label = name + (" (default)" if name == DEFAULT_STRATEGY else "")
            d = a.get("vs_default")
            vs = f"{d['delta']:>+13.2f} {_ci(d['ci']):>15}" if d else f"{'':>13} {'':>15}"
            lines.append(
                f"{'':<10}  {label:<26}  {a['tau']:>11.2f} {_ci(a['tau_ci']):>15}  {a['rho']:>12.2f} "
                f"{_ci(a['rho_ci']):>15}  {a['tau_one_seed']:>10.2f}  {vs}  {a['ratio']:>6.3f}  "
                f"{r['supernet_s'][name]:>7.0f}"
            )
    return lines


def plot(results: dict[str, dict[str, Any]], out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 5), squeeze=False)
    for ax, (framework, r) in zip(axes[0], results.items()):
        x = r["alone"].mean(axis=1)
        span = (r["alone"].min(axis=1), r["alone"].max(axis=1))
        for (name, y), marker in zip(r["reported"].items(), "os^"):
            a = r["agreement"][name]
            ax.errorbar(
                x, y, xerr=[x - span[0], span[1] - x], fmt=marker, alpha=0.75, capsize=2,
                label=f"{name}: tau {a['tau']:.2f}, rho {a['rho']:.2f}",
            )  # fmt: skip
        ax.set_xlabel("stand-alone accuracy (mean over seeds; bar: seed range)")
        ax.set_ylabel("supernet-reported accuracy (inherited weights)")
        ax.set_title(f"{framework}: {len(x)} subnets, E = {r['epochs']}; seed/seed tau {r['ceiling']['tau']:.2f}")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    path = out / "search_fidelity.png"
    fig.savefig(path, dpi=120)
    return path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", nargs="+", default=["pytorch"], choices=["pytorch", "tensorflow"])
    parser.add_argument("--subnets", type=int, default=20, help="K >= 3: smallest, largest and K-2 between")
    parser.add_argument("--seeds", type=int, default=3, help="stand-alone training seeds (>= 2)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES), choices=list(STRATEGIES))
    parser.add_argument("--seed", type=int, default=0, help="picks the subnets")
    parser.add_argument(
        "--supernet-seed",
        type=int,
        default=0,
        help="the supernets' run seed (scenario searcher.seed): their training luck",
    )
    parser.add_argument("--cache", type=Path, help="JSON file keeping stand-alone results between runs")
    parser.add_argument("--out", type=Path, help="folder for the plot and results.json (default: a new temporary one)")
    args = parser.parse_args()
    if args.subnets < 3 or args.seeds < 2:
        parser.error("--subnets must be at least 3 and --seeds at least 2")
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    out = args.out or Path(tempfile.mkdtemp(prefix="search_fidelity_"))
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    results = {}
    for framework in args.framework:
        print(f"{framework}: training {args.subnets} subnets x {args.seeds} seeds alone, then 1 supernet per strategy")
        r = measure(framework, args)
        r["epochs"] = args.epochs
        r["ceiling"] = ceiling(r["alone"])
        r["agreement"] = {name: agreement(y, r["alone"]) for name, y in r["reported"].items()}
        if DEFAULT_STRATEGY in r["reported"]:
            base = r["reported"][DEFAULT_STRATEGY]
            for name, y in r["reported"].items():
                if name != DEFAULT_STRATEGY:
                    r["agreement"][name]["vs_default"] = difference(y, base, r["alone"])
        results[framework] = r
        details(framework, r)
    saved = {
        f: {
            "sizes": r["sizes"],
            "archs": [repr(a) for a in r["archs"]],
            "alone": r["alone"].tolist(),
            "reported": {n: y.tolist() for n, y in r["reported"].items()},
            "ceiling": r["ceiling"],
            "agreement": r["agreement"],
            "supernet_s": r["supernet_s"],
            "alone_s": r["alone_s"],
        }
        for f, r in results.items()
    }
    (out / "results.json").write_text(json.dumps(saved, indent=1))
    print(f"\nplot and results.json: {plot(results, out).parent}")
    spent = time.perf_counter() - t0
    alone_s = ", ".join(f"{f} {r['alone_s']:.1f} s" for f, r in results.items() if r["alone_s"] is not None)
    print(f"wall time {spent:.0f} s; one stand-alone training: {alone_s or 'all cached'}\n")
    print("\n".join(table(results, args)))
    bad = [
        f"{f} {what}"
        for f, r in results.items()
        for what, values in [("stand-alone", r["alone"]), *r["reported"].items()]
        if not np.all(np.isfinite(values))
    ]
    if bad:
        print(f"failed: non-finite accuracies in {', '.join(bad)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
