"""What weight sharing costs: supernet vs extracted static subnet, measured side by side.

For a few randomly sampled subnets, interleaving the two sides in one run (so machine noise hits
both alike), it prints:

  (a) training step of the supernet with the subnet active / training step of the static subnet
  (b) one candidate evaluation (activate + BN recalibration + validation forward through the
      user's metric) / (BN recalibration + validation forward of the static subnet)

Targets: (a) <= 1.15, (b) <= 1.15. Run: python benchmarks/supernet_overhead.py [--device cuda]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from dopt.backends.torch.bn_calib import recalibrate
from dopt.backends.torch.evaluate import evaluate
from dopt.backends.torch.supernet import Supernet
from dopt.scenario.model import Supernet as SupernetConfig
from dopt.space import SearchSpace


class PreNet(nn.Module):
    def __init__(self, width: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 16 * width, 3, padding=1, bias=False), nn.BatchNorm2d(16 * width), nn.ReLU()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.stem(x)


class PostNet(nn.Module):
    def __init__(self, width: int = 1) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64 * width, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def accuracy(loader: DataLoader, eval_function) -> float:  # type: ignore[no-untyped-def]
    correct = total = 0
    for inputs, labels in loader:
        correct += int((eval_function(inputs).argmax(1) == labels).sum())
        total += len(labels)
    return correct / total


def _time(fn, repeat: int) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--subnets", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds per subnet; medians are reported")
    parser.add_argument("--steps", type=int, default=4, help="training steps per timing")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=32, help="input height and width")
    parser.add_argument("--width", type=int, default=1, help="multiplies every layer's filters (and PreNet/PostNet)")
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    sync = (lambda: torch.cuda.synchronize(device)) if device.type == "cuda" else (lambda: None)

    w, b, hw = args.width, args.batch, args.size
    cfg = SupernetConfig(
        input_shape=(3, hw, hw),
        data_format="channels_first",
        filters=tuple(f * w for f in (16, 24, 24, 32, 32, 64)),
        strides=(1, 2, 1, 2, 1, 1),
    )
    space = SearchSpace(cfg, in_channels=16 * w)
    supernet = Supernet(PreNet(w), PostNet(w), space, ()).to(device)
    x = torch.randn(b, 3, hw, hw, device=device)
    y = torch.randint(0, 10, (b,), device=device)
    calib = [torch.randn(b, 3, hw, hw, device=device) for _ in range(8)]
    val = DataLoader(TensorDataset(torch.randn(8 * b, 3, hw, hw), torch.randint(0, 10, (8 * b,))), batch_size=b)
    rng = np.random.default_rng(0)

    print(
        f"device {device}, threads {torch.get_num_threads()}, space of {space.size():,} subnets, "
        f"input 3x{hw}x{hw}, batch {b}, width x{w}, {args.subnets} sampled subnets x {args.rounds} interleaved rounds"
    )
    print(
        f"{'subnet':>6}  {'params':>8}  {'train super/static (ms)':>24}  {'(a)':>5}  {'eval super/static (ms)':>23}  {'(b)':>5}"
    )
    ratios_a, ratios_b = [], []
    for k in range(args.subnets):
        arch = space.decode(rng.integers(np.array(space.xl), np.array(space.xu) + 1).tolist())
        supernet.set_active(arch)
        static = supernet.extract()
        opt_super = torch.optim.SGD(supernet.parameters(), lr=1e-3, momentum=0.9)
        opt_static = torch.optim.SGD(static.parameters(), lr=1e-3, momentum=0.9)

        def train(model: nn.Module, opt: torch.optim.Optimizer) -> None:
            model.train()
            for _ in range(args.steps):
                opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(model(x), y).backward()
                opt.step()
            sync()

        def eval_super() -> None:  # what dopt does per candidate: extract, recalibrate, metric
            supernet.set_active(arch)
            candidate = supernet.extract()
            recalibrate(candidate, calib)
            evaluate(candidate, accuracy, val, device)
            sync()

        def eval_static() -> None:
            recalibrate(static, calib)
            static.eval()

            def forward(inputs: torch.Tensor) -> torch.Tensor:
                with torch.no_grad():
                    return static(inputs.to(device)).cpu()

            accuracy(val, forward)
            sync()

        t = {"ts": [], "tt": [], "es": [], "et": []}
        for _ in range(args.rounds):
            t["ts"].append(_time(lambda: train(supernet, opt_super), 1))
            t["tt"].append(_time(lambda: train(static, opt_static), 1))
            t["es"].append(_time(eval_super, 1))
            t["et"].append(_time(eval_static, 1))
        m = {key: statistics.median(v) for key, v in t.items()}
        a, b = m["ts"] / m["tt"], m["es"] / m["et"]
        ratios_a.append(a)
        ratios_b.append(b)
        params = sum(p.numel() for p in static.parameters())
        print(
            f"{k + 1:>6}  {params:>8,}  {1e3 * m['ts'] / args.steps:>11.2f} / {1e3 * m['tt'] / args.steps:<10.2f}  "
            f"{a:>5.2f}  {1e3 * m['es']:>10.1f} / {1e3 * m['et']:<10.1f}  {b:>5.2f}"
        )
    a, b = statistics.median(ratios_a), statistics.median(ratios_b)
    print(f"(a) training step, supernet / static: median {a:.2f} (target <= 1.15) {'OK' if a <= 1.15 else 'OVER'}")
    print(
        f"(b) candidate evaluation / (BN recalibration + validation forward of static): median {b:.2f} "
        f"(target <= 1.15) {'OK' if b <= 1.15 else 'OVER'}"
    )


if __name__ == "__main__":
    main()
