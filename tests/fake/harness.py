"""dopt in-process on the fake backend: the backend installed under framework ``pytorch``,
TensorBoard replaced by a recording writer, the latency table cache in a folder of the caller's;
``run_dopt`` calls ``dopt.cli.main`` and returns its exit code and output."""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from dopt.backends import register, unregister
from dopt.cli import main
from dopt.parallel.context import RunContext
from dopt.results import analysis_plot, plot
from tests.fake.backend import FakeBackend
from tests.fake.control import Control

__all__ = ["installed", "run_dopt", "Ran"]


@contextlib.contextmanager
def installed(cache_dir: Path) -> Iterator[Control]:
    """The fake backend serves ``framework: PyTorch`` until the block ends.

    Figures are blank: matplotlib's layout of a real one takes about half a second, five of them
    a run, which would be most of a test's time (tests/results test the drawing). Their calls
    are recorded in ``Control.figures``.
    """
    control = Control()
    previous = register("pytorch", lambda: FakeBackend(control))
    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(RunContext, "summary_writer", lambda ctx, log_dir: control.writer(log_dir))
            mp.setattr(plot, "pareto_figure", _blank(control, "pareto"))
            mp.setattr(analysis_plot, "analysis_figure", _blank(control, "analysis"))
            mp.setenv("DOPT_CACHE_DIR", str(cache_dir))
            yield control
    finally:
        unregister("pytorch", previous)


def _blank(control: Control, name: str) -> Callable[..., Figure]:
    def figure(*args: Any, **kwargs: Any) -> Figure:
        control.figures.append((name, kwargs))
        fig = Figure(figsize=(1, 1), dpi=10)
        FigureCanvasAgg(fig)
        return fig

    return figure


class Ran(NamedTuple):
    code: int
    out: str
    err: str


def run_dopt(workdir: Path, *args: str) -> Ran:
    """``dopt ARGS`` run in ``workdir``, in this process."""
    out, err = io.StringIO(), io.StringIO()
    here = os.getcwd()
    os.chdir(workdir)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(list(args))
    finally:
        os.chdir(here)
    return Ran(code, out.getvalue(), err.getvalue())
