"""How well dopt's latency table predicts subnets it was not calibrated on (docs/latency.md).

For each framework: builds the latency table of one space as a run does (every block, PreNet,
PostNet and whole subnets, all timed in one interleaved measurement; 20 subnets fit the
calibration), with N held-out subnets instead of a run's 20, and reports the prediction error on
them. Then it measures the same N subnets again, later, in a measurement of their own, and reports
the error against that too: the difference between the two lines is the machine's drift between
measurements (a run's verification of its results is such a later measurement). Prints, per
framework: the table's size and build time, the share of held-out subnets within ±5 % and ±10 %,
the mean and median absolute error and Kendall's τ, and the machine's speed change between the
two measurements. The published figures of nn-Meter and LitePred are printed beside them.

    python benchmarks/latency_predictor.py                       # both frameworks, 32x32x3 input
    python benchmarks/latency_predictor.py --framework pytorch --subnets 200 --input 8

Run it alone on the machine: any other busy process shows up in the figures.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dopt.latency.build import Job, Subnets, build, table_key  # noqa: E402
from dopt.latency.table import accuracy  # noqa: E402
from dopt.scenario.model import SearchSpaceChoices, Supernet  # noqa: E402
from dopt.space import SearchSpace  # noqa: E402

PUBLISHED = [
    ("nn-Meter (mobile CPU, MobiSys 2021)", "99.0 %", "-"),
    ("LitePred (14 platform/framework pairs, NSDI 2024)", "98.6-100 %", "-"),
]


def torch_meter(input_hw: int, filters: tuple[int, ...], threads: int):
    import torch
    from torch import nn

    from dopt.backends.torch.latency import TorchLatencyMeter

    class PreNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())

        def forward(self, x):
            return self.stem(x)

    class PostNet(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(filters[-1], 10)

        def forward(self, x):
            return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))

    example = torch.zeros(1, 3, input_hw, input_hw)
    out_hw = _out_hw(input_hw, len(filters))
    post_in = torch.zeros(1, filters[-1], out_hw, out_hw)
    return TorchLatencyMeter(PreNet(), PostNet(), example, post_in, torch.device("cpu"), threads)


def tf_meter(input_hw: int, filters: tuple[int, ...], threads: int):
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(threads)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    tf.config.set_visible_devices([], "GPU")
    from dopt.backends.tf.latency import TFLatencyMeter

    class PreNet(tf.keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.conv = tf.keras.layers.Conv2D(16, 3, padding="same", use_bias=False)
            self.bn = tf.keras.layers.BatchNormalization()

        def call(self, x, training=False):
            return tf.nn.relu(self.bn(self.conv(x), training=training))

    class PostNet(tf.keras.layers.Layer):
        def __init__(self):
            super().__init__()
            self.pool = tf.keras.layers.GlobalAveragePooling2D()
            self.fc = tf.keras.layers.Dense(10)

        def call(self, x, training=False):
            return self.fc(self.pool(x))

    example = np.zeros((1, input_hw, input_hw, 3), np.float32)
    out_hw = _out_hw(input_hw, len(filters))
    post_in = tf.zeros((1, out_hw, out_hw, filters[-1]))
    return TFLatencyMeter(PreNet, PostNet, example, post_in, "/CPU:0", threads, "channels_last")


STRIDES = (1, 2, 2, 2, 1)


def _out_hw(hw: int, n: int) -> int:
    for s in STRIDES[:n]:
        hw = (hw - 1) // s + 1
    return hw


def run(framework: str, input_hw: int, filters: tuple[int, ...], subnets: int, threads: int, seed: int) -> dict:
    meter = (torch_meter if framework == "pytorch" else tf_meter)(input_hw, filters, threads)
    chw = (3, input_hw, input_hw)
    cfg = Supernet(
        input_shape=chw,
        data_format="channels_first",
        filters=filters,
        strides=STRIDES[: len(filters)],
        search_space=SearchSpaceChoices(),
    )
    space = SearchSpace(cfg, 16)
    key = table_key(meter.key(), space, (input_hw, input_hw), chw)
    t0 = time.perf_counter()
    table = build(meter, space, (input_hw, input_hw), key, drawn=Subnets(fit=20, held_out=subnets, seed=seed))
    build_s = time.perf_counter() - t0
    encodings = list(table.calibration_ms)[20:]  # the held-out subnets, in the order they were drawn
    held = [space.decode([int(g) for g in e.split()]) for e in encodings]
    first = [table.calibration_ms[e] for e in encodings]
    predicted = [table.predict(space, (input_hw, input_hw), a) for a in held]
    t0 = time.perf_counter()
    later = meter.measure([Job(kind="subnet", rows=tuple(space.layer_rows(a))) for a in held])
    measure_s = time.perf_counter() - t0
    return {
        "framework": framework,
        "blocks": len(table.entries),
        "build_s": build_s,
        "measure_s": measure_s,
        "same_session": accuracy(predicted, first),
        "later": accuracy(predicted, later),
        "repeat": accuracy(later, first),
        "speed": float(np.median(np.array(later) / np.array(first))),
        "range": (min(first), max(first)),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--framework", choices=["pytorch", "tensorflow", "both"], default="both")
    parser.add_argument("--input", type=int, default=32, help="input height = width (3 channels)")
    parser.add_argument("--filters", default="16,24,32,64,96", help="widest output of each searched layer")
    parser.add_argument("--subnets", type=int, default=100, help="held-out subnets (at least 100 for the README)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    filters = tuple(int(f) for f in args.filters.split(","))
    frameworks = ["pytorch", "tensorflow"] if args.framework == "both" else [args.framework]
    rows = []
    for fw in frameworks:
        r = run(fw, args.input, filters, args.subnets, args.threads, args.seed)
        print(
            f"{fw}: table of {r['blocks']} blocks + {20 + args.subnets} subnets measured in {r['build_s']:.1f} s; "
            f"held-out subnets {r['range'][0]:.3f}-{r['range'][1]:.3f} ms, measured again in {r['measure_s']:.1f} s "
            f"(median later/first {r['speed']:.3f})",
            flush=True,
        )
        rows.append(r)
    print(
        f"\nlatency prediction on held-out subnets, input {args.input}x{args.input}x3, filters {list(filters)}, "
        f"batch 1, {args.threads} thread(s), CPU\n"
    )
    print(f"{'predictor':54} {'±10 %':>8} {'±5 %':>8} {'MAPE':>7} {'median':>7} {'τ (95 % CI)':>18}")
    for r in rows:
        for name, acc in (
            (f"dopt {r['framework']}: predicted vs measured with the table", r["same_session"]),
            (f"dopt {r['framework']}: predicted vs measured later", r["later"]),
            (f"  {r['framework']}: measured later vs measured first", r["repeat"]),
        ):
            lo, hi = acc.tau_ci95
            print(
                f"{name:54} {acc.within_10:>8.1%} {acc.within_5:>8.1%} {acc.mape:>6.1f}% {acc.median_ape:>6.1f}% "
                f"{acc.kendall_tau:>6.2f} ({lo:.2f}-{hi:.2f})"
            )
    for name, within_10, within_5 in PUBLISHED:
        print(f"{name:54} {within_10:>8} {within_5:>8}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
