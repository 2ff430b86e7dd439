"""The search space: genes, the integer encoding, readable architectures and the space size.

Encoding (docs/search-space.md#genes). Every skeleton layer ``i`` owns four consecutive integer genes::

    encoding[4*i + 0]  kernel gene  -> kernel_sizes[gene]
    encoding[4*i + 1]  expand gene  -> expand_ratios[gene]
    encoding[4*i + 2]  width gene   -> width_ratios[gene]      (fixed for full-width layers)
    encoding[4*i + 3]  skip gene    -> 1 skips the layer       (fixed 0 where it cannot be skipped)

Output channels are ``min(filters, max(8, round_half_up(filters * ratio / 8) * 8))``: a multiple
of 8 that is at least 8, never wider than ``filters`` (a layer narrower than 8 keeps its width).
A layer may be skipped (identity) only if its stride is 1, its widest input equals its
``filters`` (so the identity's output fits the next layer), and it is neither the last layer nor
named in ``feature_choose``; those layers also keep their full width so that PostNet receives the
channel counts it was written for. Because skipped layers ignore their other genes and rounding
can merge widths, several encodings may describe one network: :meth:`SearchSpace.canonical` maps
each to one representative, and the space size counts distinct networks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from math import prod
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from dopt.scenario.model import Supernet


__all__ = ["GENES_PER_LAYER", "LayerSpec", "LayerChoice", "LayerPlan", "Arch", "SearchSpace", "round_width"]

GENES_PER_LAYER = 4


def round_width(filters: int, ratio: float) -> int:
    """Output channels for a width ratio: a multiple of 8, at least 8, at most ``filters``."""
    if filters <= 8:
        return filters
    return min(filters, max(8, int(filters * ratio / 8 + 0.5) * 8))


@dataclass(frozen=True, kw_only=True)
class LayerSpec:
    """What a skeleton layer can be, fixed by the scenario and the PreNet's output."""

    index: int
    max_in: int
    max_out: int
    stride: int
    fixed_width: bool
    skippable: bool


@dataclass(frozen=True, kw_only=True)
class LayerChoice:
    """One layer of one candidate. A skipped layer is ``LayerChoice(kernel=0, expand=0, out_channels=0, skip=True)``."""

    kernel: int
    expand: int
    out_channels: int
    skip: bool = False

    def to_dict(self) -> dict[str, Any]:
        if self.skip:
            return {"skip": True}
        return {"kernel": self.kernel, "expand": self.expand, "out_channels": self.out_channels}


Arch = tuple[LayerChoice, ...]

_SKIPPED = LayerChoice(kernel=0, expand=0, out_channels=0, skip=True)


@dataclass(frozen=True, kw_only=True)
class LayerPlan:
    """A layer as built for one candidate: its actual input width and whether it adds a residual."""

    spec: LayerSpec
    choice: LayerChoice
    in_channels: int
    hidden: int
    residual: bool


class SearchSpace:
    """Genes of a skeleton described by the scenario's ``supernet`` section.

    Args:
        supernet: the validated ``supernet`` section.
        in_channels: channels PreNet produces (found by the backend's dry run).
    """

    def __init__(self, supernet: Supernet, in_channels: int) -> None:
        choices = supernet.search_space
        self.kernel_sizes = tuple(choices.kernel_sizes)
        self.expand_ratios = tuple(choices.expand_ratios)
        self.width_ratios = tuple(choices.width_ratios)
        self.in_channels = in_channels
        n = len(supernet.filters)
        pinned = set(supernet.feature_choose) | {n - 1}
        specs = []
        max_in = in_channels
        for i, (filters, stride) in enumerate(zip(supernet.filters, supernet.strides)):
            specs.append(
                LayerSpec(
                    index=i,
                    max_in=max_in,
                    max_out=filters,
                    stride=stride,
                    fixed_width=i in pinned,
                    skippable=choices.skip and stride == 1 and max_in == filters and i not in pinned,
                )
            )
            max_in = filters
        self.layers: tuple[LayerSpec, ...] = tuple(specs)
        full = self.width_ratios.index(max(self.width_ratios))
        xl: list[int] = []
        xu: list[int] = []
        for spec in self.layers:
            w_lo, w_hi = (full, full) if spec.fixed_width else (0, len(self.width_ratios) - 1)
            xl += [0, 0, w_lo, 0]
            xu += [len(self.kernel_sizes) - 1, len(self.expand_ratios) - 1, w_hi, int(spec.skippable)]
        self.xl: tuple[int, ...] = tuple(xl)
        self.xu: tuple[int, ...] = tuple(xu)

    @property
    def n_var(self) -> int:
        return len(self.xl)

    def out_channels(self, spec: LayerSpec, width_gene: int) -> int:
        if spec.fixed_width:
            return spec.max_out
        return round_width(spec.max_out, self.width_ratios[width_gene])

    def decode(self, encoding: Sequence[int]) -> Arch:
        """The readable architecture of an encoding (see the module docstring)."""
        self._check(encoding)
        arch = []
        for spec in self.layers:
            k, e, w, s = (int(g) for g in encoding[GENES_PER_LAYER * spec.index :][:GENES_PER_LAYER])
            if s:
                arch.append(_SKIPPED)
            else:
                arch.append(
                    LayerChoice(
                        kernel=self.kernel_sizes[k],
                        expand=self.expand_ratios[e],
                        out_channels=self.out_channels(spec, w),
                    )
                )
        return tuple(arch)

    def encode(self, arch: Arch) -> tuple[int, ...]:
        """The canonical encoding of an architecture."""
        genes: list[int] = []
        for spec, choice in zip(self.layers, arch):
            if choice.skip:
                genes += [0, 0, self.xl[GENES_PER_LAYER * spec.index + 2], 1]
                continue
            w = next(
                i
                for i in range(len(self.width_ratios))
                if self.xl[GENES_PER_LAYER * spec.index + 2] <= i and self.out_channels(spec, i) == choice.out_channels
            )
            genes += [self.kernel_sizes.index(choice.kernel), self.expand_ratios.index(choice.expand), w, 0]
        return tuple(genes)

    def canonical(self, encoding: Sequence[int]) -> tuple[int, ...]:
        """One representative encoding per distinct network (used for caching and counting)."""
        return self.encode(self.decode(encoding))

    def plan(self, arch: Arch) -> list[LayerPlan]:
        """Input widths, hidden widths and residuals of each kept layer, in order."""
        plans = []
        cin = self.in_channels
        for spec, choice in zip(self.layers, arch):
            if choice.skip:
                continue
            hidden = cin * choice.expand
            residual = spec.stride == 1 and cin == choice.out_channels
            plans.append(LayerPlan(spec=spec, choice=choice, in_channels=cin, hidden=hidden, residual=residual))
            cin = choice.out_channels
        return plans

    def layer_rows(self, arch: Arch) -> list[tuple[int, int, int, int, int]]:
        """The kept layers of ``arch`` as (in, out, kernel, stride, expand) rows, as result scripts list them."""
        return [
            (p.in_channels, p.choice.out_channels, p.choice.kernel, p.spec.stride, p.choice.expand)
            for p in self.plan(arch)
        ]

    def kept_positions(self, arch: Arch, feature_choose: Sequence[int]) -> tuple[int, ...]:
        """``feature_choose`` as positions among the kept layers of ``arch`` (chosen layers are never skipped)."""
        kept = [p.spec.index for p in self.plan(arch)]
        return tuple(kept.index(i) for i in feature_choose)

    def sample(self, rng: np.random.Generator) -> list[int]:
        """A uniformly random encoding (each gene uniform within its bounds)."""
        return rng.integers(np.array(self.xl), np.array(self.xu) + 1).tolist()

    def largest(self) -> tuple[int, ...]:
        """Widest, deepest, largest-kernel subnet."""
        k = self.kernel_sizes.index(max(self.kernel_sizes))
        e = self.expand_ratios.index(max(self.expand_ratios))
        genes: list[int] = []
        for spec in self.layers:
            genes += [k, e, self.xu[GENES_PER_LAYER * spec.index + 2], 0]
        return self.canonical(genes)

    def smallest(self) -> tuple[int, ...]:
        """Narrowest, shallowest, smallest-kernel subnet (sandwich rule's lower bound)."""
        k = self.kernel_sizes.index(min(self.kernel_sizes))
        e = self.expand_ratios.index(min(self.expand_ratios))
        w = self.width_ratios.index(min(self.width_ratios))
        genes: list[int] = []
        for spec in self.layers:
            lo = self.xl[GENES_PER_LAYER * spec.index + 2]
            genes += [k, e, w if not spec.fixed_width else lo, int(spec.skippable)]
        return self.canonical(genes)

    def layer_options(self, spec: LayerSpec) -> list[LayerChoice]:
        """Distinct choices of one layer (skip included where allowed)."""
        lo = self.xl[GENES_PER_LAYER * spec.index + 2]
        hi = self.xu[GENES_PER_LAYER * spec.index + 2]
        widths = sorted({self.out_channels(spec, w) for w in range(lo, hi + 1)})
        options = [
            LayerChoice(kernel=k, expand=e, out_channels=c)
            for k in self.kernel_sizes
            for e in self.expand_ratios
            for c in widths
        ]
        if spec.skippable:
            options.append(_SKIPPED)
        return options

    def size(self) -> int:
        """Number of distinct sub-networks."""
        return prod(len(self.layer_options(spec)) for spec in self.layers)

    def _check(self, encoding: Sequence[int]) -> None:
        if len(encoding) != self.n_var:
            raise ValueError(f"encoding has {len(encoding)} genes, the space has {self.n_var}")
        for i, (g, lo, hi) in enumerate(zip(encoding, self.xl, self.xu)):
            if not lo <= int(g) <= hi:
                raise ValueError(f"gene {i} = {g} outside [{lo}, {hi}]")


def arch_to_json(arch: Arch) -> list[dict[str, Any]]:
    return [c.to_dict() for c in arch]
