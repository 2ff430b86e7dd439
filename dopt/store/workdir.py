"""Every path dopt reads or writes under a working directory, named in one place
(docs/outputs.md, docs/resume.md#resuming-a-run).

Layout::

    user_module.py  scen.yaml            the user's
    .dopt.lock                           held while a writing command runs (dopt/store/lock.py)
    checkpoints/run.json                 the run record (dopt/store/identity.py)
    checkpoints/supernet_epoch_N<suffix> checkpoints/supernet_final<suffix>   supernet training
    checkpoints/pretrain_epoch_N<suffix> pre-training
    checkpoints/latency_table.json       the table a latency run predicted with
    checkpoints/<results>/journal.jsonl, search_state.json   each search's journal and state
    checkpoints/space_analysis/journal.jsonl                 `dopt analyze`'s journal
    results/ (or results_<kind>_<value>/ of a --stage search)   the Pareto front
    log_<time>/, log_analyze_<time>/, log_train_<result>_<time>/  logs and TensorBoard
    pretrained/                          the output of pre-training
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from dopt.text import plain

__all__ = ["WorkDir", "OUTPUTS", "RUN_FILE", "JOURNAL", "SEARCH_STATE", "ANALYSIS_DIR", "PRETRAINED_DIR"]

OUTPUTS = ("results", "checkpoints", "log_*")  # what a new run would replace (docs/resume.md#overwriting)
RUN_FILE = "run.json"
JOURNAL = "journal.jsonl"
SEARCH_STATE = "search_state.json"
ANALYSIS_DIR = "space_analysis"  # checkpoints/space_analysis/journal.jsonl
PRETRAINED_DIR = "pretrained"  # not removed by --overwrite, so later runs can name it


@dataclass(frozen=True)
class WorkDir:
    """The working directory of a run and the name of everything under it."""

    root: Path

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def run_file(self) -> Path:
        return self.checkpoints / RUN_FILE

    @property
    def results(self) -> Path:
        """The results folder of a whole run."""
        return self.root / "results"

    @property
    def user_module(self) -> Path:
        return self.root / "user_module.py"

    @property
    def pretrained(self) -> Path:
        return self.root / PRETRAINED_DIR

    @property
    def analysis_journal(self) -> Path:
        return self.checkpoints / ANALYSIS_DIR / JOURNAL

    def search_results(self, kind: str, value: float) -> Path:
        """The default results folder of a ``--stage search`` under another constraint."""
        return self.root / f"results_{kind}_{plain(value)}"

    def search_dir(self, results_dir: Path) -> Path:
        """Journal and search state of the search writing ``results_dir``: checkpoints/ followed by
        its path in the working directory (``results_small`` -> ``checkpoints/results_small``,
        ``mine/small`` -> ``checkpoints/mine/small``), so two folders of one name never share one."""
        root = self.root.resolve()
        folder = results_dir.resolve()
        if root in folder.parents:
            return self.checkpoints.joinpath(*folder.relative_to(root).parts)
        return self.checkpoints / results_dir.name

    def outputs(self) -> list[Path]:
        """The folders of an earlier run that a new run would replace."""
        return sorted({p for pattern in OUTPUTS for p in self.root.glob(pattern) if p.is_dir()})

    def log_dir(self, kind: str = "") -> Path:
        """A new log folder: ``log_<time>`` for a run, ``log_<kind>_<time>`` for another command."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        return self.root / (f"log_{kind}_{stamp}" if kind else f"log_{stamp}")
