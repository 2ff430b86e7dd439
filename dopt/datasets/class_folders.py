"""A classification dataset as one sub-folder of images per class, for pre-training
(docs/tasks.md#pre-training). Reading images is Pillow's; nothing here is framework-specific."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from dopt.errors import UserError

__all__ = ["ClassFolders", "IMAGE_SUFFIXES"]

_KEY = "scenario.strategy.dataset.pre_train_dir"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm"})


class ClassFolders:
    """One sub-folder of images per class, sorted by name (class i is the i-th folder), each image
    resized to the input's height and width and converted to its channels (1: grayscale, 3: RGB),
    scaled to [0, 1] as float32. Images are read when asked for, so the set need not fit in memory;
    every file is opened once here (headers only) so that an unreadable one is reported before
    anything trains. Reading images is Pillow's; nothing here is framework-specific.
    """

    def __init__(self, root: Path, chw: tuple[int, int, int]) -> None:
        self.root, (self.channels, self.height, self.width) = root, chw
        if self.channels not in (1, 3):
            raise UserError(
                f"pre_train_dir {root} holds image folders, which dopt reads as 1 or 3 channels, but input_shape "
                f"has {self.channels}",
                key=_KEY,
                fix="define pretrain_dataset_define(dataset_dir) (PyTorch) or build_dataset_pretrain(dataset_dir) "
                "(TensorFlow) in user_module.py to read them yourself",
            )
        folders = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        self.classes = [p.name for p in folders]
        self.files: list[Path] = []
        labels: list[int] = []
        for label, folder in enumerate(folders):
            images = sorted(f for f in folder.iterdir() if f.suffix.lower() in IMAGE_SUFFIXES)
            self.files += images
            labels += [label] * len(images)
        self.labels = np.asarray(labels, dtype=np.int64)
        with_images = sorted({self.classes[i] for i in set(labels)})
        if len(with_images) < 2:
            found = f"1 class ({with_images[0]})" if with_images else "no class folder with images"
            raise UserError(
                f"pre_train_dir {root} holds {found}; pre-training classifies, so it needs at least 2 classes",
                key=_KEY,
                fix="put one sub-folder of images per class in it (e.g. cat/, dog/), at least two",
            )
        self._check_readable()

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as float32 in [0, 1], shaped (height, width, channels)."""
        from PIL import Image

        with Image.open(self.files[i]) as img:
            mode = "L" if self.channels == 1 else "RGB"
            resized = img.convert(mode).resize((self.width, self.height), Image.Resampling.BILINEAR)
            pixels = np.asarray(resized, dtype=np.float32) / 255.0
        return pixels[..., None] if self.channels == 1 else pixels

    def _check_readable(self) -> None:
        from PIL import Image, UnidentifiedImageError

        for path in self.files:
            try:
                with Image.open(path) as img:
                    img.verify()
            except (OSError, UnidentifiedImageError, SyntaxError, ValueError) as exc:
                raise UserError(
                    f"{path} is not a readable image ({type(exc).__name__}: {exc})",
                    key=_KEY,
                    fix="remove or replace that file",
                ) from None
