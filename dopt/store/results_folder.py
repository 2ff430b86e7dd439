"""Which folder a search may write its results into, and which one ``--overwrite`` may remove
(docs/resume.md#searching-again).

A results folder lives inside the working directory, so the working directory's lock
(dopt/store/lock.py) guards it: two runs never write one results folder at once. ``--overwrite``
removes a folder only when everything in it is something dopt writes there (its front, result
scripts, their weights and exports); anything else is the user's, and the command stops before
deleting anything.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path

from dopt.errors import UserError
from dopt.store.lock import LOCK_NAME
from dopt.store.workdir import ANALYSIS_DIR, RUN_FILE, WorkDir
from dopt.text import rel

__all__ = ["check_results_folder", "check_inside", "foreign_entries", "foreign_files", "listed"]

# What dopt writes into a results folder: the front (pareto.*), dopt analyze's space_analysis.*,
# the result scripts with their weights and training records (model_arch_result_N.*), what a
# script exports when run there
# (model_arch_result_N.onnx/.pt/_saved_model/.pb, log_model_arch_result_N/), and the hidden
# temporary files of atomic writes (dopt/store/atomic.py).
_OURS = re.compile(
    r"(pareto\.(json|csv|png)|space_analysis\.(json|png)|model_arch_result_\d+[._].*|log_model_arch_result_\d+"
    r"|\..+\.tmp)"
)

# What dopt writes anywhere under checkpoints/: the run record, the latency table a run predicted
# with, journals and search states, epoch and final checkpoints (supernet_, pretrain_, and a result's
# training in train_<script>/ with its train.json) with their .sha256 digests, temporary files.
_CHECKPOINT_FILES = re.compile(
    r"(run\.json|latency_table\.json|journal\.jsonl|search_state\.json|train\.json"
    r"|((supernet|pretrain)_)?(epoch_\d+|final)\..+|\..+\.tmp(\..+)?)"
)
# What dopt writes into a log_* folder: its log and TensorBoard's event files.
_LOG_FILES = re.compile(r"(dopt\.log|events\.out\.tfevents\..+|\..+\.tmp)")

# Folder names that checkpoints/ uses for other things than a --stage search's journal.
_RESERVED = {"results": "the whole run's results folder", ANALYSIS_DIR: "dopt analyze's journal"}


def foreign_entries(folder: Path) -> list[str]:
    """The names in ``folder`` that dopt does not write into a results folder, sorted."""
    return sorted(p.name for p in folder.iterdir() if not _OURS.fullmatch(p.name))


def foreign_files(folder: Path) -> list[str]:
    """The files under ``folder`` (checkpoints/ or a log_* folder of a run, at any depth) that dopt
    does not write there, as paths relative to it, sorted."""
    ours = _CHECKPOINT_FILES if folder.name == "checkpoints" else _LOG_FILES
    return sorted(
        p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir() and not ours.fullmatch(p.name)
    )


def listed(names: list[str], most: int = 4) -> str:
    """``names`` for a message: the first ``most``, then "..."."""
    return ", ".join(names[:most]) + (", ..." if len(names) > most else "")


def check_results_folder(folder: Path, work: WorkDir, protected: Iterable[Path], *, overwrite: bool) -> None:
    """Refuse a ``--results`` folder a search must not write into or ``--overwrite`` must not
    remove, before anything is written or deleted.

    Args:
        folder: the resolved results folder of a ``--stage search``.
        work: the working directory.
        protected: paths the folder may neither be, lie in, nor contain (the datasets).
        overwrite: whether ``--overwrite`` would remove the folder.

    Raises:
        UserError: the folder is outside the working directory, is or holds something dopt must
            keep, names a checkpoint folder used otherwise, or (with ``overwrite``) holds files
            dopt did not write.
    """
    root = work.root.resolve()
    shown = rel(folder, root)
    fix = "pass --results with a new folder inside the working directory, e.g. --results results_small"
    check_inside(folder, root, f"--results {shown}", fix)
    keep = [
        (work.checkpoints, "dopt's checkpoints"),
        (work.pretrained, "the pre-training output"),
        (work.user_module, "the user module"),
        *((p, "a dataset of the scenario") for p in protected),
    ]
    for path, what in ((p.resolve(), w) for p, w in keep):
        if folder == path or path in folder.parents or folder in path.parents:
            raise UserError(
                f"--results {shown}: it is, holds or lies in {rel(path, root)} ({what}), which a search must leave "
                "as it is",
                fix=fix,
            )
    # Its journal goes to checkpoints/ followed by its path (WorkDir.search_dir): no part of that
    # path may name something checkpoints/ holds otherwise.
    for part in folder.relative_to(root).parts:
        if part in _RESERVED or part.startswith(("train_", "log_")) or _CHECKPOINT_FILES.fullmatch(part):
            what = _RESERVED.get(part, "dopt's own checkpoints or logs")
            raise UserError(f"--results {shown}: the name {part} is taken by {what}", fix=fix)
    if overwrite and folder.is_dir():
        foreign = foreign_entries(folder)
        if foreign:
            raise UserError(
                f"--overwrite would remove {shown}/, which holds files dopt did not write ({listed(foreign)})",
                fix="move those files elsewhere, or pass --results with a new folder",
            )


def check_inside(folder: Path, root: Path, what: str, fix: str) -> None:
    """Refuse to write into ``folder`` unless it lies inside the working directory ``root`` and in
    no other working directory nested there: only then does ``root``'s lock guard it.

    Raises:
        UserError: naming ``what`` (e.g. ``--results DIR``) and ``fix``.
    """
    if folder == root or root not in folder.parents:
        raise UserError(f"{what}: not a folder inside the working directory {root}", fix=fix)
    for inner in (folder, *folder.parents):
        if inner == root:
            return
        if (inner / LOCK_NAME).exists() or (inner / "checkpoints" / RUN_FILE).exists():
            raise UserError(f"{what}: it lies in another working directory, {rel(inner, root)}", fix=fix)
