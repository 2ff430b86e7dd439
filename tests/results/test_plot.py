"""The Pareto picture."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from matplotlib.text import Text

from dopt.archive import Archive, Candidate
from dopt.costs import Costs
from dopt.results.plot import figure_to_rgb_array, pareto_figure, save_png
from dopt.scenario.model import Constraint
from dopt.space import LayerChoice

ARCH = (LayerChoice(kernel=3, expand=1, out_channels=8),)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("which", ["archive", "empty_archive", "infeasible_archive"])
def test_renders_a_png(tmp_path, request, which):
    archive = request.getfixturevalue(which)
    fig = pareto_figure(archive, cost_label="flops (MACs)", metric_label="accuracy")
    path = tmp_path / "results" / "pareto.png"
    save_png(fig, path)
    data = path.read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) > 1000
    assert [p.name for p in path.parent.iterdir()] == ["pareto.png"]


def test_front_is_labelled_with_n_and_constraint_line_drawn(archive):
    fig = pareto_figure(archive, cost_label="flops")
    ax = fig.axes[0]
    texts = [t.get_text() for t in ax.texts]
    assert [t for t in texts if t.isdigit()] == ["1", "2", "3"]
    assert "constraint" in texts
    labels = ax.get_legend_handles_labels()[1]
    assert {"evaluated", "Pareto front", "constraint", "rejected by cost", "no finite metric"} <= set(labels)
    assert ax.get_xlabel() == "flops" and ax.get_ylabel() == "metric"
    # The front's N labels sit on the front's points, in ascending cost.
    xy = [t.xy for t in ax.texts if t.get_text().isdigit()]
    assert xy == [(archive[i].cost("flops"), archive[i].metric) for i in archive.front()]


def test_empty_front_has_no_labels(infeasible_archive):
    ax = pareto_figure(infeasible_archive, cost_label="flops").axes[0]
    assert not [t for t in ax.texts if t.get_text().isdigit()]


def test_rgb_array(archive):
    img = figure_to_rgb_array(pareto_figure(archive, cost_label="flops"))
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3
    assert img.shape[:2] == (500, 700)
    assert img.min() < 128 < img.max()  # something was drawn


def test_no_pyplot_figures_leak(archive):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    pareto_figure(archive, cost_label="flops")
    assert plt.get_fignums() == before


def _archive(points: list[tuple[float, int]], generations: list[int]) -> Archive:
    """Feasible candidates at (metric, flops) of the given generations."""
    a = Archive(Constraint(application="image_classification", kind="flops", value=20000.0))
    for i, ((metric, flops), gen) in enumerate(zip(points, generations)):
        costs = Costs(size=flops, flops=flops)
        a.add(Candidate(encoding=(i,), arch=ARCH, metric=metric, costs=costs, feasible=True, generation=gen))
    return a


@pytest.mark.parametrize(
    ("last", "ticks"), [(1, [1]), (3, [1, 2, 3]), (20, [1, 5, 10, 15, 20]), (150, [1, 50, 100, 150])]
)
def test_generation_colour_bar_starts_at_1(last, ticks):
    # Generations are 1-based in pareto.json, pareto.csv and the log; so is the colour bar.
    gens = sorted({1, (1 + last) // 2, last})
    fig = pareto_figure(_archive([(0.1 * g, 10 * g) for g in range(1, len(gens) + 1)], gens), cost_label="flops")
    bar = fig.axes[1]
    assert bar.get_ylabel() == "generation"
    assert bar.get_ylim() == (1, max(2, last))
    assert list(bar.get_yticks()) == ticks


def test_metric_label_names_the_y_axis(archive):
    assert pareto_figure(archive, cost_label="flops", metric_label="top1").axes[0].get_ylabel() == "top1"


def test_labels_of_a_dense_front_do_not_overlap():
    # 15 front points within 1 % of each other in cost and metric, and two far-off ones that
    # stretch the axes, so that the 15 crowd into a few pixels.
    dense = [(0.9 + 0.0006 * i, 10000 + 7 * i) for i in range(15)]
    archive = _archive([(0.1, 5), (0.2, 2000)] + dense, [1, 1] + [1 + i // 5 for i in range(15)])
    assert len(archive.front()) == 17
    fig = pareto_figure(archive, cost_label="flops")
    ax = fig.axes[0]
    fig.canvas.draw()  # positions the labels as in the saved picture
    renderer = fig.canvas.get_renderer()
    labels = [t for t in ax.texts if t.get_text().isdigit()]
    assert [t.get_text() for t in labels] == [str(n) for n in range(1, 18)]
    assert [t.xy for t in labels] == [(archive[i].cost("flops"), archive[i].metric) for i in archive.front()]
    boxes = [Text.get_window_extent(t, renderer) for t in labels]  # the text alone, not its leader line
    for (a, box_a), (b, box_b) in itertools.combinations(zip(labels, boxes), 2):
        assert not box_a.overlaps(box_b), (a.get_text(), b.get_text())
    inside = ax.bbox
    assert all(inside.x0 <= b.x0 and b.x1 <= inside.x1 and inside.y0 <= b.y0 and b.y1 <= inside.y1 for b in boxes)
