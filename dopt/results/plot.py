"""The Pareto picture: every evaluated candidate, the numbered front and the constraint line."""

from __future__ import annotations

import io
import itertools
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from dopt.archive import Archive, Candidate
from dopt.store.atomic import atomic_write_bytes

__all__ = ["pareto_figure", "save_png", "figure_to_rgb_array"]

# Figure() with its own Agg canvas instead of pyplot: no global backend switch, no figure
# registry to leak, safe from threads (the search logs a picture every generation).

# Light grey (first generation) to near black (last); plain "Greys" starts at white.
_GREYS = ListedColormap(matplotlib.colormaps["Greys"](np.linspace(0.3, 0.9, 256)), name="dopt_greys")

# Offsets tried for a front label, nearest first: rings around the point (in points), each starting
# up and to the left, where the step line (leaving a point rightwards, arriving from below) never runs.
_RINGS = tuple(range(9, 136, 7))
_ANGLES = sorted(range(0, 360, 30), key=lambda a: (abs((a - 135 + 180) % 360 - 180), a))
_OFFSETS = np.array([(r * math.cos(math.radians(a)), r * math.sin(math.radians(a))) for r in _RINGS for a in _ANGLES])


def pareto_figure(
    archive: Archive, *, cost_label: str, metric_label: str = "metric", remeasured: Sequence[float] | None = None
) -> Figure:
    """Draw the archive and its Pareto front, cost on x and metric on y.

    Feasible candidates are dots coloured by generation; the front is a step line with large
    markers labelled N (as in ``pareto.json`` and the result files); the constraint is a
    dashed vertical line. Candidates without a usable metric (infeasible, or NaN) sit on the
    bottom edge as small crosses, so rejections by cost stay visible.

    Args:
        archive: every evaluated candidate.
        cost_label: x-axis label, e.g. ``"flops (MACs)"``.
        metric_label: y-axis label, e.g. ``"accuracy"``.
        remeasured: the cost of each front member measured again on its exported model (latency,
            docs/latency.md#verification-of-the-results), drawn as open markers, red when over the
            constraint.

    Returns:
        A figure attached to an Agg canvas; works with an empty archive or front.
    """
    kind, limit = archive.constraint.kind, float(archive.constraint.value)
    fig = Figure(figsize=(7.0, 5.0), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    metrics = [_metric(c) for c in archive if c.feasible and c.has_metric]
    lo, hi = (min(metrics), max(metrics)) if metrics else (0.0, 1.0)
    pad = 0.08 * (hi - lo) if hi > lo else 0.05
    _draw_evaluated(fig, ax, archive, kind, bottom=lo - pad)
    front = [archive[i] for i in archive.front()]
    _draw_front(ax, front, kind)
    if remeasured is not None:
        _draw_remeasured(ax, front, remeasured, limit)
    _draw_constraint(ax, limit)
    ax.set_ylim(lo - 2 * pad, hi + pad)
    ax.set_xlabel(cost_label)
    ax.set_ylabel(metric_label)
    ax.set_title(f"{len(front)} Pareto architectures of {len(archive)} evaluated")
    ax.grid(True, alpha=0.3)
    if len(archive):
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    # Labels go last: their placement is measured on the final layout.
    _label_front(fig, ax, [c.cost(kind) for c in front], [_metric(c) for c in front])
    return fig


def _draw_remeasured(ax: Any, front: list[Candidate], remeasured: Sequence[float], limit: float) -> None:
    ys = [_metric(c) for c in front]
    ok = [(x, y) for x, y in zip(remeasured, ys) if x <= limit]
    over = [(x, y) for x, y in zip(remeasured, ys) if x > limit]
    if ok:
        ax.scatter(
            *zip(*ok),
            s=60,
            facecolors="none",
            edgecolors="black",
            linewidths=1.0,
            zorder=4,
            label="result re-measured as exported",
        )
    if over:
        ax.scatter(
            *zip(*over),
            s=90,
            marker="X",
            color="red",
            zorder=5,
            label=f"over the constraint when re-measured ({len(over)})",
        )


def _draw_evaluated(fig: Figure, ax: Any, archive: Archive, kind: str, bottom: float) -> None:
    """Scored candidates as dots coloured by generation; the others as crosses at ``bottom``."""
    scored = [c for c in archive if c.feasible and c.has_metric]
    unscored = [c for c in archive if not (c.feasible and c.has_metric)]
    if scored:
        # Generations count from 1, as in pareto.json, pareto.csv and the log.
        last = max(c.generation for c in scored)
        dots = ax.scatter(
            [c.cost(kind) for c in scored],
            [_metric(c) for c in scored],
            c=[c.generation for c in scored],
            cmap=_GREYS,
            vmin=1,
            vmax=max(2, last),  # one generation still gets a bar, not a single colour
            s=14,
            alpha=0.8,
            edgecolors="none",
            label="evaluated",
        )
        fig.colorbar(dots, ax=ax, label="generation", ticks=_generation_ticks(last))
    for group, color, label in (
        ([c for c in unscored if not c.feasible], "tab:red", "rejected by cost"),
        ([c for c in unscored if c.feasible], "tab:orange", "no finite metric"),
    ):
        xs = [x for x in (_cost(c, kind) for c in group) if x is not None]
        if xs:
            ax.scatter(xs, [bottom] * len(xs), marker="x", s=12, linewidths=0.8, color=color, alpha=0.6, label=label)


def _generation_ticks(last: int) -> list[int]:
    """Colour-bar ticks: 1, then round generations up to ``last`` (1 2 3, 1 5 10 15, 1 20 40 ...)."""
    step = next(s for s in _round_steps() if last // s <= 6)
    return [1] + [g for g in range(step, last + 1, step) if g - 1 > step / 2]


def _round_steps() -> Iterator[int]:
    yield from (1, 5)
    for e in itertools.count(1):
        yield from (10**e, 2 * 10**e, 5 * 10**e)


def _draw_front(ax: Any, front: list[Candidate], kind: str) -> None:
    """The front as a step line with large markers; :func:`_label_front` numbers them."""
    if not front:
        return
    xs = [c.cost(kind) for c in front]
    ys = [_metric(c) for c in front]
    ax.step(xs, ys, where="post", color="tab:blue", linewidth=1.2)
    ax.scatter(xs, ys, s=45, color="tab:blue", zorder=3, label="Pareto front")


def _label_front(fig: Figure, ax: Any, xs: list[float], ys: list[float]) -> None:
    """Label the front's points N = 1, 2, ... (as the result files are numbered), no two labels overlapping.

    Greedy, in front order: each label takes the nearest offset of :data:`_OFFSETS` where its box,
    in display coordinates, meets no label already placed, no front marker and no other text, and
    stays inside the axes; a label away from its point gets a thin leader line. Hand-written, as
    matplotlib places no labels and a dependency (adjustText) for one picture is not worth it.
    """
    renderer = _canvas(fig).get_renderer()
    pixels = fig.dpi / 72  # per point
    half = 4 * pixels  # half the side of a front marker (s=45 points^2 is about 6.7 points across)
    points = ax.transData.transform(np.column_stack([xs, ys])) if xs else np.empty((0, 2))
    texts = [t.get_window_extent(renderer).extents for t in ax.texts]
    taken = np.vstack([np.reshape(texts, (-1, 4)), np.hstack([points - half, points + half])])
    x0, y0, x1, y1 = ax.bbox.extents
    shifts = np.tile(_OFFSETS * pixels, 2)  # (x0, y0, x1, y1) of a box moved by each offset
    style = {"textcoords": "offset points", "ha": "center", "va": "center", "fontsize": 8}
    for n, (x, y) in enumerate(zip(xs, ys), start=1):
        probe = ax.annotate(str(n), (x, y), xytext=(0, 0), **style)
        boxes = probe.get_window_extent(renderer).padded(pixels).extents + shifts  # one row per offset
        probe.remove()
        overlaps = (
            (boxes[:, None, 0] < taken[None, :, 2])
            & (taken[None, :, 0] < boxes[:, None, 2])
            & (boxes[:, None, 1] < taken[None, :, 3])
            & (taken[None, :, 1] < boxes[:, None, 3])
        ).any(axis=1)
        inside = (boxes[:, 0] >= x0) & (boxes[:, 1] >= y0) & (boxes[:, 2] <= x1) & (boxes[:, 3] <= y1)
        # The nearest free offset inside the axes, else the nearest free one, else the first.
        choice = next((int(np.argmax(ok)) for ok in (~overlaps & inside, ~overlaps) if ok.any()), 0)
        dx, dy = _OFFSETS[choice]
        leader = None
        if math.hypot(dx, dy) > _RINGS[0] + 1:
            leader = {"arrowstyle": "-", "color": "tab:blue", "linewidth": 0.5, "alpha": 0.6, "shrinkB": 4}
        ax.annotate(str(n), (x, y), xytext=(float(dx), float(dy)), arrowprops=leader, **style)
        taken = np.vstack([taken, boxes[choice]])


def _draw_constraint(ax: Any, limit: float) -> None:
    ax.axvline(limit, color="black", linestyle="--", linewidth=1.0, label="constraint")
    ax.annotate(
        "constraint",
        (limit, 1.0),
        xycoords=("data", "axes fraction"),
        xytext=(-3, -3),
        textcoords="offset points",
        rotation=90,
        ha="right",
        va="top",
        fontsize=8,
    )


def save_png(fig: Figure, path: str | os.PathLike[str]) -> None:
    """Save ``fig`` as a PNG, atomically.

    Args:
        fig: the figure, e.g. from :func:`pareto_figure`.
        path: destination, usually ``results/pareto.png``.
    """
    buf = io.BytesIO()
    _canvas(fig).print_png(buf)
    atomic_write_bytes(path, buf.getvalue())


def figure_to_rgb_array(fig: Figure) -> np.ndarray:
    """Render ``fig`` to an ``H x W x 3`` uint8 array (for TensorBoard image logging)."""
    canvas = _canvas(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _canvas(fig: Figure) -> FigureCanvasAgg:
    if isinstance(fig.canvas, FigureCanvasAgg):
        return fig.canvas
    return FigureCanvasAgg(fig)


def _metric(c: Candidate) -> float:
    return math.nan if c.metric is None else c.metric


def _cost(c: Candidate, kind: str) -> float | None:
    try:
        x = c.cost(kind)
    except ValueError:  # latency not measured: nowhere to put it on the x axis
        return None
    return x if math.isfinite(x) else None
