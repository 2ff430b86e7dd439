"""The PyTorch side of every torch worker: the space's plain and dopt networks, and the measurement.

The space is shared_space.SPACE; dopt's PyTorch supernet over it is :func:`dopt_contender`.

A contender is anything that can activate a subnet in a supernet and extract it as a static
network (:class:`Contender`); :func:`measure` times all contenders of a process interleaved.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from shared_space import SPACE
from timing import Row, interleave, median
from torch import nn

__all__ = [
    "SPACE",
    "Contender",
    "PlainNet",
    "dopt_contender",
    "measure",
    "stem",
    "head",
    "arch_rows",
    "configure",
]


def stem() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, SPACE["stem"], 3, padding=1, bias=False), nn.BatchNorm2d(SPACE["stem"]), nn.ReLU()
    )


def head() -> nn.Module:
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(SPACE["filters"][-1], SPACE["classes"]))


class PlainBlock(nn.Module):
    """An inverted-residual layer as plain PyTorch: 1x1 expand, kxk depthwise, 1x1 project."""

    def __init__(self, cin: int, hidden: int, cout: int, kernel: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.residual = residual
        # expand
        self.expand = nn.Sequential(nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6())
        # depthwise
        self.depthwise = nn.Sequential(
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU6(),
        )
        # project
        self.project = nn.Sequential(nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.project(self.depthwise(self.expand(x)))
        return x + out if self.residual else out


class PlainNet(nn.Module):
    """Stem, one PlainBlock per (cin, hidden, cout, kernel, stride, residual) row, head; the
    largest network of the space when ``rows`` is None."""

    def __init__(self, rows: list[tuple[int, int, int, int, int, bool]] | None = None) -> None:
        super().__init__()
        if rows is None:
            rows, cin = [], SPACE["stem"]
            e, k = max(SPACE["expands"]), max(SPACE["kernels"])
            for cout, stride in zip(SPACE["filters"], SPACE["strides"]):
                rows.append((cin, cin * e, cout, k, stride, stride == 1 and cin == cout))
                cin = cout
        self.stem = nn.Sequential(
            nn.Conv2d(3, rows[0][0], 3, padding=1, bias=False), nn.BatchNorm2d(rows[0][0]), nn.ReLU()
        )
        self.blocks = nn.ModuleList(PlainBlock(*row) for row in rows)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(rows[-1][2], SPACE["classes"]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for block in self.blocks:
            x = block(x)
        return self.head(x)


@dataclass
class Contender:
    """A supernet under test.

    Args:
        name: the table's name.
        supernet: the module whose ``forward`` runs the active subnet.
        sample: draws a random subnet (any object ``activate`` understands) from a numpy Generator.
        activate: makes a subnet the one ``supernet`` runs.
        extract: the active subnet as a static network sharing nothing with the supernet.
        notes: where its space differs from the shared one.
    """

    name: str
    supernet: nn.Module
    sample: Callable[[np.random.Generator], Any]
    activate: Callable[[Any], None]
    extract: Callable[[], nn.Module]
    notes: str = ""
    own: bool = False
    exact: bool = True  # False: extract() builds a same-shaped network with its own weights; (c) is skipped


def arch_rows(rng: np.random.Generator) -> list[tuple[int, int, int]]:
    """A uniformly random (kernel, expand, out_channels) per layer of the shared space, as dopt
    draws it; peers that can express the same choices use these too."""
    from dopt.space import round_width

    rows = []
    last = len(SPACE["filters"]) - 1
    for i, filters in enumerate(SPACE["filters"]):
        k = SPACE["kernels"][rng.integers(len(SPACE["kernels"]))]
        e = SPACE["expands"][rng.integers(len(SPACE["expands"]))]
        w = 1.0 if i == last else SPACE["widths"][rng.integers(len(SPACE["widths"]))]
        rows.append((int(k), int(e), round_width(filters, w)))
    return rows


def dopt_contender() -> Contender:
    """dopt's PyTorch supernet over the shared space (SearchSpace with skip off)."""
    from dopt.backends.torch.supernet import Supernet
    from dopt.scenario.model import SearchSpaceChoices
    from dopt.scenario.model import Supernet as SupernetConfig
    from dopt.space import LayerChoice, SearchSpace

    cfg = SupernetConfig(
        input_shape=SPACE["input"],
        data_format="channels_first",
        filters=SPACE["filters"],
        strides=SPACE["strides"],
        search_space=SearchSpaceChoices(
            kernel_sizes=SPACE["kernels"], expand_ratios=SPACE["expands"], width_ratios=SPACE["widths"], skip=False
        ),
    )
    space = SearchSpace(cfg, in_channels=SPACE["stem"])
    supernet = Supernet(stem(), head(), space, ())

    def activate(rows: list[tuple[int, int, int]]) -> None:
        supernet.set_active(tuple(LayerChoice(kernel=k, expand=e, out_channels=c) for k, e, c in rows))

    return Contender("dopt (PyTorch)", supernet, arch_rows, activate, supernet.extract, own=True)


def _train_fn(model: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, steps: int):  # type: ignore[no-untyped-def]
    def run() -> None:
        model.train()
        for _ in range(steps):
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()

    return run


def _eval_fn(model: nn.Module, x: torch.Tensor, steps: int):  # type: ignore[no-untyped-def]
    def run() -> None:
        model.eval()
        with torch.no_grad():
            for _ in range(steps):
                model(x)

    return run


def _warm_up(c: Contender, rng: np.random.Generator, x: torch.Tensor, y: torch.Tensor) -> None:
    """Train a few steps on random subnets so BatchNorm statistics and weights are no longer at
    their initial values (zeros and ones would hide a statistic sliced or copied wrongly)."""
    opt = torch.optim.SGD(c.supernet.parameters(), lr=0.05, momentum=0.9)
    c.supernet.train()
    for _ in range(10):
        c.activate(c.sample(rng))
        opt.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(c.supernet(x), y).backward()
        opt.step()


def _exactness(c: Contender, rng: np.random.Generator, x: torch.Tensor, n: int) -> float:
    worst = 0.0
    for _ in range(n):
        c.activate(c.sample(rng))
        static = c.extract()
        assert static is not c.supernet, "extract() must build a new network"
        c.supernet.eval()
        static.eval()
        with torch.no_grad():
            worst = max(worst, float((c.supernet(x) - static(x)).abs().max()))
    return worst


def measure(contenders: list[Contender], args: Any, process: str) -> list[Row]:
    """(a), (b), (c) for each contender, timings interleaved across contenders and sides.

    A contender that raises gets a row with its error; the others go on.
    """
    torch.manual_seed(args.seed)
    b, shape = args.batch, SPACE["input"]
    x = torch.randn(b, *shape)
    y = torch.randint(0, SPACE["classes"], (b,))
    rows = {c.name: Row(c.name, process, own=c.own, notes=c.notes) for c in contenders}
    live = list(contenders)

    def guard(c: Contender, what: str, fn: Callable[[], Any]) -> Any:
        try:
            return fn()
        except Exception as exc:  # a peer's failure becomes its row, not a crash
            traceback.print_exc()
            rows[c.name].error = f"{what}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            live.remove(c)
            return None

    rngs = {c.name: np.random.default_rng(args.seed) for c in contenders}
    for c in list(live):
        guard(c, "warm-up", lambda: _warm_up(c, rngs[c.name], x, y))
    ratios: dict[str, dict[str, list[float]]] = {c.name: {"train": [], "eval": []} for c in contenders}
    static_ms: dict[str, list[float]] = {c.name: [] for c in contenders}
    for _ in range(args.subnets):
        timers: dict[str, Callable[[], None]] = {}
        for c in list(live):

            def prepare(c: Contender = c) -> None:
                subnet = c.sample(rngs[c.name])
                c.activate(subnet)
                static = c.extract()
                opt_super = torch.optim.SGD(c.supernet.parameters(), lr=1e-3, momentum=0.9)
                opt_static = torch.optim.SGD(static.parameters(), lr=1e-3, momentum=0.9)
                train_super = _train_fn(c.supernet, opt_super, x, y, args.steps)
                eval_super = _eval_fn(c.supernet, x, args.steps)

                def with_active(fn: Callable[[], None]) -> Callable[[], None]:
                    def run() -> None:
                        c.activate(subnet)  # other contenders ran in between: the choice is ours again
                        fn()

                    return run

                timers[f"{c.name}/ts"] = with_active(train_super)
                timers[f"{c.name}/tt"] = _train_fn(static, opt_static, x, y, args.steps)
                timers[f"{c.name}/es"] = with_active(eval_super)
                timers[f"{c.name}/et"] = _eval_fn(static, x, args.steps)

            guard(c, "extract", prepare)
        if not timers:
            break
        m = interleave(timers, args.rounds)
        for c in live:
            ratios[c.name]["train"].append(m[f"{c.name}/ts"] / m[f"{c.name}/tt"])
            ratios[c.name]["eval"].append(m[f"{c.name}/es"] / m[f"{c.name}/et"])
            static_ms[c.name].append(1e3 * m[f"{c.name}/tt"] / args.steps)
    for c in list(live):
        r = rows[c.name]
        r.train, r.eval = median(ratios[c.name]["train"]), median(ratios[c.name]["eval"])
        r.subnets = len(ratios[c.name]["train"])
        r.detail = {"static_train_ms": median(static_ms[c.name]) or 0.0}
        if c.exact:
            r.exact = guard(c, "exactness", lambda: _exactness(c, rngs[c.name], x, args.exact))
    return [rows[c.name] for c in contenders]


def configure(threads: int) -> None:
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(threads)


def worker_main(doc: str, peer: str, process: str, build: Callable[[], Contender], stage: str = "build") -> int:
    """A peer worker's command line: dopt's contender and the peer's, measured in this process.

    A peer that cannot be built here is a row saying why, not a failure of the worker."""
    import argparse

    from shared_space import add_common_args
    from timing import emit

    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    args = parser.parse_args()
    configure(args.threads)
    contenders = [dopt_contender()]
    rows: list[Row] = []
    try:
        contenders.append(build())
    except Exception as exc:
        traceback.print_exc()
        rows.append(Row(peer, process, unavailable=f"{stage}: {type(exc).__name__}: {exc}"))
    emit(measure(contenders, args, process) + rows)
    return 0
