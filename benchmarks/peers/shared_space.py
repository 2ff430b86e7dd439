"""The one space every contender expresses, and the measurement options every worker takes.

3x32x32 input, batch 64, a 3x3 stem conv to 16 channels, five inverted-residual layers of
(filters, stride) = (16, 1) (24, 2) (24, 1) (32, 2) (32, 1), each with kernel {3, 5, 7} x
expansion {3, 6} x width {0.5, 0.75, 1.0} (rounded to multiples of 8, the last layer at full
width: dopt's rule), then average pooling and a linear head to 10 classes. A residual is added
where a subnet's layer has stride 1 and equal widths. Depth (dopt's skip gene) is not searched.
Framework-free, so that the Keras worker shares it without importing torch.
"""

from __future__ import annotations

import argparse

__all__ = ["SPACE", "add_common_args"]

SPACE = {
    "input": (3, 32, 32),  # channels first; the Keras worker reorders it
    "batch": 64,  # the default of --batch
    "stem": 16,
    "filters": (16, 24, 24, 32, 32),
    "strides": (1, 2, 1, 2, 1),
    "kernels": (3, 5, 7),
    "expands": (3, 6),
    "widths": (0.5, 0.75, 1.0),
    "classes": 10,
}


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Options that run.py passes to every worker (its own defaults are the ones that count)."""
    parser.add_argument("--threads", type=int, default=1, help="torch (and TensorFlow) CPU threads")
    parser.add_argument("--subnets", type=int, default=5, help="random subnets timed; medians are reported")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per subnet")
    parser.add_argument("--steps", type=int, default=2, help="training steps (or forwards) per timing")
    parser.add_argument("--exact", type=int, default=50, help="random subnets of the exactness check")
    parser.add_argument(
        "--batch", type=int, default=SPACE["batch"], help="batch size (smaller: closer to overhead-bound)"
    )
    parser.add_argument("--seed", type=int, default=0)
