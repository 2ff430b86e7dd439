"""`dopt init`: a commented user module, a scenario and a small offline dataset to start from (docs/cli.md#dopt-init)."""

from __future__ import annotations

import argparse
import io
import json
from importlib import resources
from pathlib import Path

import numpy as np

from dopt.errors import UserError
from dopt.text import rel

__all__ = ["init", "init_command", "FRAMEWORKS", "TASKS"]

FRAMEWORKS = ("pytorch", "tensorflow")
TASKS = ("classification", "detection", "segmentation")

# The synthetic scenes written for detection and segmentation: enough to learn from in a few
# minutes on a laptop's CPU, few enough to write in about a second.
_SCENES = {"train": (400, 1), "val": (100, 2)}  # split: (images, seed)
_PRETRAIN = (60, 3)  # images per class, seed
_SIZE = 32


def init_command(args: argparse.Namespace) -> int:
    """Write the files ``args`` ask for and say what to run next; the exit code."""
    target = Path(args.dir).resolve()
    written = init(target, args.framework, args.task)
    here = Path.cwd()
    for path in written:
        print(f"wrote {rel(path, here)}{'/' if path.is_dir() else ''}")
    cd = "" if target == here else f"cd {rel(target, here)} && "
    print(f"next: {cd}dopt validate -c scen.yaml && dopt -c scen.yaml   (then adapt both files to your data)")
    return 0


def init(target: Path, framework: str, task: str) -> list[Path]:
    """Write ``user_module.py``, ``scen.yaml`` and ``data/`` into ``target``; return what was written.

    Raises:
        UserError: no template for this framework and task in this installation, or any of those
            paths exists already (nothing is written then).
    """
    template = resources.files("dopt") / "templates" / framework / task
    if not template.is_dir():
        raise UserError(
            f"--framework {framework} --task {task}: no template in this installation of dopt",
            fix="reinstall dopt: its templates are package data (dopt/templates)",
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
    data = target / "data"
    if task == "classification":
        written.append(_write_digits(data))
    else:
        written.append(_write_shapes(data, task))
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


def _write_shapes(data: Path, task: str) -> Path:
    """Synthetic scenes (``dopt.datasets.shapes``: squares, disks and triangles, 32x32 RGB) as files in
    the layouts such datasets usually come in, which the templates read:

    - ``<split>/images/0000.png``, and for segmentation ``<split>/masks/0000.png`` (8-bit, each
      pixel's class id, 0 = background), for detection ``<split>/boxes.json``
      (``{"classes": [...], "0000.png": [[class_id, x0, y0, x1, y1], ...], ...}``, class ids index
      ``classes``, pixel corners with x1, y1 exclusive);
    - ``pretrain/<class>/*.png``: one shape per image, the class folders dopt pre-trains on.
    """
    from PIL import Image  # Pillow comes with matplotlib, a dopt dependency

    from dopt.datasets import shapes

    for split, (n, seed) in _SCENES.items():
        scenes = shapes.scenes(n, size=_SIZE, seed=seed)
        images = data / split / "images"
        images.mkdir(parents=True)
        if task == "segmentation":
            (data / split / "masks").mkdir()
        boxes: dict[str, list] = {"classes": list(shapes.CLASSES[1:])}
        for i in range(n):
            name = f"{i:04d}.png"
            pixels = np.round(scenes.images[i] * 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(images / name)
            if task == "segmentation":
                Image.fromarray(scenes.masks[i].astype(np.uint8), "L").save(data / split / "masks" / name)
            else:
                rows = scenes.boxes[i][scenes.boxes[i][:, 0] > 0]
                # shapes counts the background as class 0; the file's ids index "classes" from 0.
                boxes[name] = [[int(c) - 1, *(int(v) for v in corners)] for c, *corners in rows.tolist()]
        if task == "detection":
            # One line per image: readable, and diffable when the user edits it.
            lines = [f"  {json.dumps(key)}: {json.dumps(value)}" for key, value in boxes.items()]
            (data / split / "boxes.json").write_text("{\n" + ",\n".join(lines) + "\n}\n", encoding="utf-8")
    per_class, seed = _PRETRAIN
    shapes.class_folders(data / "pretrain", per_class=per_class, size=_SIZE, seed=seed)
    return data
