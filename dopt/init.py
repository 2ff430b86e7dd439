"""`dopt init`: a commented user module, a scenario and a small offline dataset to start from (docs/cli.md#commands)."""

from __future__ import annotations

import io
from importlib import resources
from pathlib import Path

import numpy as np

from dopt.errors import UserError

__all__ = ["init", "FRAMEWORKS", "TASKS"]

FRAMEWORKS = ("pytorch", "tensorflow")
TASKS = ("classification", "detection", "segmentation")


def init(target: Path, framework: str, task: str) -> list[Path]:
    """Write ``user_module.py``, ``scen.yaml`` and ``data/`` into ``target``; return what was written.

    Raises:
        UserError: a task without a template in this version, or any of those paths exists
            already (nothing is written then).
    """
    if task != "classification":
        raise UserError(
            f"--task {task}: this version of dopt searches image classification only",
            fix="use --task classification (detection and segmentation are not available yet in this version)",
        )
    template = resources.files("dopt") / "templates" / framework / task
    if not template.is_dir():
        raise UserError(
            f"--framework {framework}: no template in this installation of dopt",
            fix=f"use --framework {' or '.join(f for f in FRAMEWORKS if f != framework)}",
        )
    names = ("user_module.py", "scen.yaml", "data")
    taken = [n for n in names if (target / n).exists()]
    if taken:
        raise UserError(
            f"{', '.join(taken)} already exist(s) in {target}; dopt init never overwrites",
            fix="run dopt init in an empty directory, or move those files away",
        )
    target.mkdir(parents=True, exist_ok=True)
    written = []
    for name in names[:2]:
        (target / name).write_text((template / name).read_text(encoding="utf-8"), encoding="utf-8")
        written.append(target / name)
    written.append(_write_digits(target / "data"))
    return written


def _write_digits(data: Path) -> Path:
    """The digits shipped with dopt (scikit-learn's load_digits, 8x8 grey, 10 classes) as PNG files
    in one folder per class, ``data/train/<class>/`` and ``data/val/<class>/``: the ImageFolder
    layout most image datasets come in."""
    from PIL import Image  # Pillow comes with matplotlib, a dopt dependency

    for split in ("train", "val"):
        with (resources.files("dopt") / "templates" / "data" / f"digits_{split}.npz").open("rb") as f:
            arrays = np.load(io.BytesIO(f.read()), allow_pickle=False)
            images, labels = arrays["images"], arrays["labels"]
        counts: dict[int, int] = {}
        for image, label in zip(images, labels):
            folder = data / split / str(int(label))
            folder.mkdir(parents=True, exist_ok=True)
            n = counts[int(label)] = counts.get(int(label), 0) + 1
            grey = (image.astype(np.uint16) * 255 // 16).astype(np.uint8)  # 0..16 -> 0..255
            Image.fromarray(grey).save(folder / f"{n:04d}.png")
    return data
