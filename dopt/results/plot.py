"""The Pareto picture: every evaluated candidate, the numbered front and the constraint line."""

from __future__ import annotations

import io
import math
import os
from typing import Any

import matplotlib
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from dopt.archive import Archive, Candidate
from dopt.atomic import atomic_write_bytes

__all__ = ["pareto_figure", "save_png", "figure_to_rgb_array"]

# Figure() with its own Agg canvas instead of pyplot: no global backend switch, no figure
# registry to leak, safe from threads (the search logs a picture every generation).

# Light grey (first generation) to near black (last); plain "Greys" starts at white.
_GREYS = ListedColormap(matplotlib.colormaps["Greys"](np.linspace(0.3, 0.9, 256)), name="dopt_greys")


def pareto_figure(archive: Archive, *, cost_label: str, metric_label: str = "metric") -> Figure:
    """Draw the archive and its Pareto front, cost on x and metric on y.

    Feasible candidates are dots coloured by generation; the front is a step line with large
    markers labelled N (as in ``pareto.json`` and the result files); the constraint is a
    dashed vertical line. Candidates without a usable metric (infeasible, or NaN) sit on the
    bottom edge as small crosses, so rejections by cost stay visible.

    Args:
        archive: every evaluated candidate.
        cost_label: x-axis label, e.g. ``"flops (MACs)"``.
        metric_label: y-axis label, e.g. ``"accuracy"``.

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
    _draw_constraint(ax, limit)
    ax.set_ylim(lo - 2 * pad, hi + pad)
    ax.set_xlabel(cost_label)
    ax.set_ylabel(metric_label)
    ax.set_title(f"{len(front)} Pareto architectures of {len(archive)} evaluated")
    ax.grid(True, alpha=0.3)
    if len(archive):
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def _draw_evaluated(fig: Figure, ax: Any, archive: Archive, kind: str, bottom: float) -> None:
    """Scored candidates as dots coloured by generation; the others as crosses at ``bottom``."""
    scored = [c for c in archive if c.feasible and c.has_metric]
    unscored = [c for c in archive if not (c.feasible and c.has_metric)]
    if scored:
        dots = ax.scatter(
            [c.cost(kind) for c in scored],
            [_metric(c) for c in scored],
            c=[c.generation for c in scored],
            cmap=_GREYS,
            vmin=0,
            vmax=max(1, max(c.generation for c in scored)),
            s=14,
            alpha=0.8,
            edgecolors="none",
            label="evaluated",
        )
        bar = fig.colorbar(dots, ax=ax, label="generation")
        bar.ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    for group, color, label in (
        ([c for c in unscored if not c.feasible], "tab:red", "rejected by cost"),
        ([c for c in unscored if c.feasible], "tab:orange", "no finite metric"),
    ):
        xs = [x for x in (_cost(c, kind) for c in group) if x is not None]
        if xs:
            ax.scatter(xs, [bottom] * len(xs), marker="x", s=12, linewidths=0.8, color=color, alpha=0.6, label=label)


def _draw_front(ax: Any, front: list[Candidate], kind: str) -> None:
    """The front as a step line with large markers labelled N, as the result files are numbered."""
    if not front:
        return
    xs = [c.cost(kind) for c in front]
    ys = [_metric(c) for c in front]
    ax.step(xs, ys, where="post", color="tab:blue", linewidth=1.2)
    ax.scatter(xs, ys, s=45, color="tab:blue", zorder=3, label="Pareto front")
    for n, (x, y) in enumerate(zip(xs, ys), start=1):
        ax.annotate(str(n), (x, y), xytext=(4, 4), textcoords="offset points", fontsize=8)


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
