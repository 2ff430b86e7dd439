"""Pre-training PreNet + the largest skeleton with a temporary pooled linear head, in PyTorch
(docs/tasks.md#pre-training). The stage's policy (when, resume, where it is written) is
``dopt/pipeline/pretrain.py``'s and the step loop is ``dopt/training.py``'s; this file supplies the
primitives and the weight files."""

from __future__ import annotations

from collections.abc import Iterator, Sized
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from dopt.backends.torch import data
from dopt.backends.torch.device import seed_everything
from dopt.backends.torch.train import TorchTrainer, save_atomic
from dopt.datasets.class_folders import ClassFolders
from dopt.errors import UserError
from dopt.training import Forward, cosine

if TYPE_CHECKING:
    from dopt.backends.torch.backend import TorchSetup
    from dopt.backends.torch.supernet import Supernet

__all__ = ["TorchPretrainer", "load_pretrained"]

_USER_FN = "pretrain_dataset_define"


class _Folders(Dataset):
    """Class folders as (CHW float32 tensor, label) samples."""

    def __init__(self, folders: ClassFolders) -> None:
        self.folders = folders

    def __len__(self) -> int:
        return len(self.folders)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return torch.from_numpy(self.folders.image(i)).permute(2, 0, 1).contiguous(), int(self.folders.labels[i])


def _dataset(setup: TorchSetup, folder: Path) -> tuple[Dataset, int]:
    """The pre-training samples and their number of classes: the user's ``pretrain_dataset_define``
    when the module has one, else the class folders."""
    fn = getattr(setup.user, _USER_FN, None)
    if fn is None:
        folders = ClassFolders(folder, setup.scenario.supernet.chw)
        return _Folders(folders), len(folders.classes)
    what = f"{_USER_FN}(pre_train_dir)"
    ds = data.check_dataset(fn(str(folder)), what)
    first = data.first_batch(ds, 2, what)
    data.check_batch(first, setup.scenario.supernet.chw, f"pre-training dataset of {what}")
    return ds, _classes(ds, what)


def _classes(ds: Dataset, what: str) -> int:
    """1 + the largest label; labels are read from the dataset's tensors when it has them (a
    TensorDataset, torchvision's ``targets``), else sample by sample (each sample is read once)."""
    tensors = getattr(ds, "tensors", None)
    if tensors is not None and len(tensors) >= 2:
        labels = tensors[1]
    elif getattr(ds, "targets", None) is not None:
        labels = torch.as_tensor(ds.targets)  # type: ignore[attr-defined]
    else:
        labels = torch.as_tensor([int(ds[i][1]) for i in range(len(cast(Sized, ds)))])
    if labels.dtype.is_floating_point or labels.dim() != 1 or int(labels.min()) < 0:
        raise UserError(
            f"{what} yields labels of {labels.dtype} and shape {tuple(labels.shape)}; pre-training needs one "
            "integer class id >= 0 per sample",
            key=f"UserModule.{_USER_FN}",
            fix="return (input, class_id) samples, e.g. TensorDataset(images, torch.as_tensor(ids, dtype=torch.long))",
        )
    n = int(labels.max()) + 1
    if n < 2:
        raise UserError(
            f"{what} yields 1 class; pre-training classifies, so it needs at least 2",
            key=f"UserModule.{_USER_FN}",
            fix="return samples of at least two classes",
        )
    return n


class _PretrainNet(nn.Module):
    """PreNet and the supernet's layers (shared, not copied) under a pooled linear head."""

    def __init__(self, supernet: Supernet, classes: int, example: torch.Tensor) -> None:
        super().__init__()
        self.pre, self.blocks = supernet.pre, supernet.blocks
        self._supernet = (supernet,)  # not a submodule: PostNet takes no part
        with torch.no_grad():
            channels = supernet.backbone(example).shape[1]
        self.head = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self._supernet[0].backbone(x).mean(dim=(2, 3)))


class TorchPretrainer(TorchTrainer):
    """The trainer's primitives and checkpoints over PreNet and the largest skeleton under a pooled
    linear head, with the cross-entropy for loss and a cosine schedule instead of the user's."""

    loss_function = "the pre-training cross-entropy"

    def __init__(self, setup: TorchSetup, supernet: Supernet, folder: Path, epochs: int) -> None:
        s = setup
        self.supernet = supernet
        ds, self.classes = _dataset(s, folder)
        loader = data.train_loader(ds, s.scenario.batch_size, s.seed, s.device, s.comm.rank, s.comm.world_size)
        self.steps_per_epoch = len(loader)
        self._total_steps = epochs * self.steps_per_epoch
        self._largest = supernet.space.decode(supernet.space.largest())
        supernet.set_active(self._largest)
        seed_everything(s.seed, s.device)
        super().__init__(s, _PretrainNet(supernet, self.classes, s.example.to(s.device)), loader)

    def _schedule(self) -> None:
        # Cosine decay from the scenario's learning rate over every pre-training step (docs/tasks.md#pre-training).
        self._rate = cosine(self.base_lr, self._total_steps)
        self._step = 0

    def begin_epoch(self, epoch: int) -> Iterator[Any]:
        self.supernet.set_active(self._largest)
        return super().begin_epoch(epoch)

    def start_step(self) -> float:
        super().start_step()
        lr = self._rate(self._step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        return lr

    def forward(self, batch: Any, arch: Any, teacher: Any) -> Forward:
        inputs, labels = batch
        loss = F.cross_entropy(self.net(inputs), labels.long())
        return Forward(float(loss.detach()), loss)

    def apply(self) -> None:
        self.optimizer.step()
        self._step += 1

    def discard(self) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        self._step += 1

    def _checkpoint(self, step: int) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "optimizer": self.optimizer.state_dict(), "step": step}

    def _load_schedule(self, state: dict[str, Any]) -> int:
        self._step = int(state["step"])
        return self._step

    def save_pretrained(self, path: Path) -> None:
        """PreNet's and the layers' weights (the head is dropped), as :func:`load_pretrained` reads them."""
        save_atomic({k: v.detach().cpu() for k, v in self.net.state_dict().items() if not k.startswith("head.")}, path)


def load_pretrained(supernet: Supernet, path: Path, folder: Path) -> None:
    """Load PreNet's and the layers' pre-trained weights into ``supernet``.

    Raises:
        UserError: the file does not fit this PreNet and skeleton (names the first differences).
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        assert isinstance(state, dict)
    except Exception as exc:  # torn file, pickle error: what torch raises varies
        raise UserError(
            f"{path} cannot be read ({type(exc).__name__})",
            key="scenario.strategy.dataset.pre_train_dir",
            fix="pre-train again: name the class folders in pre_train_dir",
        ) from None
    mine = {f"pre.{k}": v for k, v in supernet.pre.state_dict().items()}
    mine.update({f"blocks.{k}": v for k, v in supernet.blocks.state_dict().items()})
    differ = [f"{k} missing there" for k in mine if k not in state]
    differ += [f"{k} not in this PreNet/skeleton" for k in state if k not in mine]
    differ += [
        f"{k} is {tuple(state[k].shape)} there, {tuple(v.shape)} here"
        for k, v in mine.items()
        if k in state and tuple(state[k].shape) != tuple(v.shape)
    ]
    if differ:
        more = f" (and {len(differ) - 3} more)" if len(differ) > 3 else ""
        raise UserError(
            f"pre_train_dir {folder} does not fit this PreNet and skeleton: {'; '.join(differ[:3])}{more}",
            key="scenario.strategy.dataset.pre_train_dir",
            fix="name the class folders instead to pre-train this PreNet and skeleton",
        )
    supernet.pre.load_state_dict({k[4:]: v for k, v in state.items() if k.startswith("pre.")})
    supernet.blocks.load_state_dict({k[7:]: v for k, v in state.items() if k.startswith("blocks.")})
