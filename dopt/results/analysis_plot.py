"""The search-space analysis picture (docs/analysis.md#the-picture): one EDF panel per dimension,
and the sampled subnets' metric against cost with their Pareto front."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

__all__ = ["analysis_figure"]

_COLUMNS = 4


def analysis_figure(
    result: dict[str, Any],
    metrics: Sequence[float],
    costs: Sequence[float],
    *,
    cost_label: str,
    metric_label: str,
) -> Figure:
    """Metric vs cost first, then an EDF panel (share of subnets with error ≤ x) for each
    dimension of ``result["edf"]``, pooled dimensions before per-layer ones; each line is one
    choice, labelled with its value and count. The panel title of a dimension that clearly
    matters carries its effect."""
    edfs: dict[str, dict[str, list[float]]] = result["edf"]
    effects = {e["dimension"]: e for e in result["effects"]}
    panels = 1 + len(edfs)
    rows = math.ceil(panels / _COLUMNS)
    fig = Figure(figsize=(3.4 * _COLUMNS, 2.8 * rows), dpi=90)
    FigureCanvasAgg(fig)
    axes = fig.subplots(rows, _COLUMNS, squeeze=False).ravel()
    _metric_vs_cost(axes[0], np.asarray(metrics, float), np.asarray(costs, float), cost_label, metric_label)
    for ax, (name, groups) in zip(axes[1:], edfs.items()):
        for choice, errs in groups.items():
            y = np.arange(1, len(errs) + 1) / len(errs)
            ax.step(errs, y, where="post", label=f"{choice} (n={len(errs)})", linewidth=1.2)
        effect = effects.get(name)
        title = (
            name
            if effect is None or not effect["clear"]
            else f"{name}: {effect['best']} best, Δ {effect['difference']:.3f}"
        )
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(f"error ({result['error']})", fontsize=8)
        ax.set_ylabel("share of subnets", fontsize=8)
        ax.set_ylim(0, 1.02)
        ax.tick_params(labelsize=7)
        ax.legend(fontsize=7, loc="lower right")
        ax.grid(alpha=0.3)
    for ax in axes[panels:]:
        ax.set_visible(False)
    fig.suptitle(f"search-space analysis: {result['samples']} subnets drawn uniformly", fontsize=11)
    fig.tight_layout()
    return fig


def _metric_vs_cost(ax: Any, metrics: np.ndarray, costs: np.ndarray, cost_label: str, metric_label: str) -> None:
    ax.scatter(costs, metrics, s=8, color="0.5", label="sampled")
    order = np.lexsort((-metrics, costs))
    front_x, front_y, best = [], [], -math.inf
    for i in order:  # by ascending cost: a subnet is on the front when it beats every cheaper one
        if metrics[i] > best:
            best = metrics[i]
            front_x.append(costs[i])
            front_y.append(metrics[i])
    ax.step(front_x, front_y, where="post", color="C3", linewidth=1.5, label="front of the samples")
    ax.set_xlabel(cost_label, fontsize=8)
    ax.set_ylabel(metric_label, fontsize=8)
    ax.set_title("metric vs cost", fontsize=9)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
