"""Inherited weights vs from scratch: `dopt train` on results of a finished run, side by side.

For each result asked for, trains it twice for the same epochs with `dopt train` (from the
inherited weights, then --from-scratch), prints the metric per epoch and writes a figure of both
curves, with the supernet's figure from the header as a dashed line. The trained weights of the
last training of each result stay beside its script, as `dopt train` leaves them.

Run in a working directory after `dopt -c scen.yaml`:

    python benchmarks/train_from_inherited.py --results 1 3 --epochs 5 [--out train_from_inherited.png]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-c", "--config", default="scen.yaml")
    ap.add_argument("--results", type=int, nargs="+", default=[1])
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--out", default="train_from_inherited.png")
    args = ap.parse_args()
    curves: dict[int, dict[str, dict]] = {}
    for n in args.results:
        for mode in ("inherited", "from scratch"):
            extra = ["--from-scratch"] if mode == "from scratch" else []
            cmd = ["train", "-q", "-c", args.config, "--result", str(n), "--epochs", str(args.epochs), "--overwrite"]
            subprocess.run([sys.executable, "-m", "dopt", *cmd, *extra], check=True, stdout=subprocess.DEVNULL)
            record = json.loads(Path(f"results/model_arch_result_{n}.trained.json").read_text())
            curves.setdefault(n, {})[mode] = record
            per_epoch = ", ".join(f"{m:.4f}" for m in record["per_epoch"])
            print(f"result {n} {mode:>12}: start {record['before']:.4f}, per epoch {per_epoch}")
    fig = Figure(figsize=(4.2 * len(curves), 3.2), dpi=100)
    FigureCanvasAgg(fig)
    for ax, (n, modes) in zip(fig.subplots(1, len(curves), squeeze=False)[0], curves.items()):
        for mode, record in modes.items():
            ax.plot(
                range(len(record["per_epoch"]) + 1), [record["before"], *record["per_epoch"]], marker="o", label=mode
            )
        header = modes["inherited"]["header_metric"]
        if header is not None:
            ax.axhline(header, color="0.4", linestyle="--", linewidth=1, label="supernet (header)")
        ax.set_title(f"model_arch_result_{n}", fontsize=10)
        ax.set_xlabel("epoch")
        ax.set_ylabel(modes["inherited"]["metric_name"])
        ax.set_ylim(max(0.0, min(min(r["per_epoch"]) for r in modes.values()) - 0.05), 1.0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
