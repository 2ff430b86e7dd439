"""What ``pre_train_dir`` holds, and the record that marks a folder as dopt's pre-training output,
``pretrained/pretrain.json`` (docs/tasks.md#pre-training)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dopt.errors import UserError
from dopt.store.atomic import atomic_write_text
from dopt.store.epochs import sha256
from dopt.store.workdir import PRETRAINED_DIR as OUTPUT_DIR

if TYPE_CHECKING:
    from dopt.scenario import Scenario

__all__ = ["MANIFEST", "OUTPUT_DIR", "Source", "source", "skeleton_identity", "write_manifest", "check_manifest"]

MANIFEST = "pretrain.json"  # what marks a folder as dopt's pre-training output
_KEY = "scenario.strategy.dataset.pre_train_dir"


@dataclass(frozen=True)
class Source:
    """What ``pre_train_dir`` holds."""

    path: Path
    checkpoint: bool  # dopt's pre-training output; else a dataset to pre-train on


def source(sc: Scenario) -> Source | None:
    """What the scenario's ``pre_train_dir`` is; None when it has none (classification).

    Raises:
        UserError: it is not a folder, or an empty one.
    """
    raw = sc.dataset.pre_train_dir
    if raw is None:
        return None
    path = Path(raw)
    if not path.is_dir():
        raise UserError(
            f"pre_train_dir {raw} is a file, not a folder",
            key=_KEY,
            fix="name a folder of class sub-folders of images, or a folder written by dopt's pre-training "
            f"(it holds {MANIFEST})",
        )
    if (path / MANIFEST).is_file():
        return Source(path, True)
    if not any(path.iterdir()):
        raise UserError(
            f"pre_train_dir {raw} is empty",
            key=_KEY,
            fix="put one sub-folder of images per class in it, or name a folder written by dopt's pre-training "
            f"(it holds {MANIFEST}), e.g. pre_train_dir: {OUTPUT_DIR}",
        )
    return Source(path, False)


def skeleton_identity(sc: Scenario) -> dict[str, Any]:
    """What pre-trained weights depend on: the framework, the input, and the skeleton at its largest."""
    sn, space = sc.supernet, sc.supernet.search_space
    return {
        "framework": sc.framework,
        "input_shape": list(sn.input_shape),
        "data_format": sn.data_format,
        "filters": list(sn.filters),
        "strides": list(sn.strides),
        "max_kernel_size": max(space.kernel_sizes),
        "max_expand_ratio": max(space.expand_ratios),
    }


def write_manifest(folder: Path, sc: Scenario, weights: str, classes: int, data: Path, epochs: int) -> None:
    """Mark ``folder`` as dopt's pre-training output for this skeleton (written last, atomically)."""
    record = {
        "skeleton": skeleton_identity(sc),
        "weights": weights,
        "classes": classes,
        "dataset": str(data),
        "epochs": epochs,
        "sha256": sha256(folder / weights),  # checked on loading (docs/resume.md#corrupt-checkpoints)
    }
    atomic_write_text(folder / MANIFEST, json.dumps(record, indent=1))


def check_manifest(folder: Path, sc: Scenario) -> Path:
    """The weights file of a pre-training output that fits this scenario's skeleton.

    Raises:
        UserError: the manifest is unreadable, names no weights, or another skeleton.
    """
    path = folder / MANIFEST
    try:
        record = json.loads(path.read_text())
        skeleton, weights = record["skeleton"], folder / record["weights"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise UserError(
            f"{path} is not a dopt pre-training record ({type(exc).__name__}: {exc})",
            key=_KEY,
            fix="name a folder written by dopt's pre-training, or a folder of class sub-folders to pre-train on",
        ) from None
    here = skeleton_identity(sc)
    differ = [f"{k} {skeleton.get(k)} there, {v} here" for k, v in here.items() if skeleton.get(k) != v]
    if differ:
        raise UserError(
            f"pre_train_dir {folder} was pre-trained for another skeleton: {'; '.join(differ)}",
            key=_KEY,
            fix="name the class folders instead to pre-train this skeleton, or restore the scenario it was trained for",
        )
    if not weights.is_file():
        raise UserError(
            f"pre_train_dir {folder}: {weights.name}, named in {MANIFEST}, is missing",
            key=_KEY,
            fix="name a complete pre-training folder, or the class folders to pre-train again",
        )
    if "sha256" in record and sha256(weights) != record["sha256"]:  # absent: written by an older dopt
        raise UserError(
            f"pre_train_dir {folder}: {weights.name} differs from the SHA-256 recorded in {MANIFEST} when it was written",
            key=_KEY,
            fix="restore the file, or name the class folders to pre-train again",
        )
    return weights
