"""The Pareto picture."""

from __future__ import annotations

import numpy as np
import pytest

from dopt.results.plot import figure_to_rgb_array, pareto_figure, save_png

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
