"""user_module.py for dopt, PyTorch semantic segmentation (the NASEA PyTorch interface).

dopt imports this file from the working directory and drives it:

    um = UserModule(epoch=<epochs>, batch_size=<batch_size>)
    train = um.dataset_define(<train_dir>, True)     # a torch Dataset of (image, mask) pairs
    val = um.dataset_define(<val_dir>, False)
    scheduler = um.scheduler_define(optimizer, steps_per_epoch)   # stepped after every optimizer step
    loss = um.loss_func(masks, logits)               # scalar tensor
    metric = um.metrics_func(val_loader, eval_function)  # mean IoU over the whole validation set, higher is better

The searched network is PreNet -> searched layers -> PostNet. PreNet and PostNet are yours and
fixed; dopt searches the layers in between (kernel 3/5/7, expansion 3/6, width, depth). With
`feature_choose: [0, 2]` in scen.yaml PostNet receives a list: the outputs of searched layers 0
and 2, then the last layer's. Those layers always run at full width (`filters[i]` channels), so
PostNet sees the same shapes whatever subnet is active; here a small feature pyramid (FPN) merges
them into per-pixel class scores (docs/tasks.md).

Before the search, dopt pre-trains PreNet and the searched layers as a classifier on
`pre_train_dir` (one folder of images per class), read as RGB in [0, 1] at `input_shape`: the
images below are scaled the same way. Normalise differently and define `pretrain_dataset_define`
too (docs/tasks.md#the-pre-training-dataset).

The data is read with Pillow (which dopt already installs) from this layout:

    data/train/images/0000.png   an image (any size: resized to IMAGE_SIZE)
    data/train/masks/0000.png    its mask, same name: an 8-bit grey PNG whose pixels are class ids
                                 (0 = background; IGNORE for pixels nobody labelled)
    data/val/...                 the same
    data/pretrain/<class>/*.png  the pre-training class folders

`dopt init` writes synthetic scenes (squares, disks and triangles, 32x32) in that layout, so
`dopt -c scen.yaml` runs at once. For your own data: put it in this layout (or change
`SegmentationFolder`), set the constants below, and `input_shape` (and perhaps `filters`) in
scen.yaml.
"""

import os

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F

IMAGE_SIZE = (32, 32)  # (H, W): keep equal to input_shape in scen.yaml, which is (C, H, W)
CLASSES = ("background", "square", "disk", "triangle")  # class id = index; masks hold the ids
IGNORE = 255  # mask value of unlabelled pixels: no loss, not scored (PASCAL VOC's "void")
FEATURE_CHANNELS = (16, 32, 48)  # scen.yaml's filters[i] for feature_choose [0, 2], then filters[-1]


class SegmentationFolder(torch.utils.data.Dataset):
    """(image float32 3×H×W in [0, 1], mask int64 H×W of class ids) for every dataset_dir/images/<name>
    with a dataset_dir/masks/<name>.png."""

    def __init__(self, dataset_dir, augment):
        self.dataset_dir, self.augment = dataset_dir, augment
        self.names = sorted(os.listdir(os.path.join(dataset_dir, "images")))
        missing = [n for n in self.names if not os.path.exists(self._mask_path(n))]
        if missing:
            raise FileNotFoundError(f"no mask for {len(missing)} image(s), e.g. {self._mask_path(missing[0])}")

    def _mask_path(self, name):
        return os.path.join(self.dataset_dir, "masks", os.path.splitext(name)[0] + ".png")

    def __len__(self):
        return len(self.names)

    def __getitem__(self, index):
        name = self.names[index]
        size = IMAGE_SIZE[::-1]  # Pillow wants (W, H)
        with Image.open(os.path.join(self.dataset_dir, "images", name)) as image:
            image = np.asarray(image.convert("RGB").resize(size, Image.Resampling.BILINEAR), np.float32) / 255.0
        with Image.open(self._mask_path(name)) as mask:
            # Nearest neighbour: a resized mask must keep class ids, not blend them.
            mask = np.asarray(mask.resize(size, Image.Resampling.NEAREST), np.int64)
        image = torch.from_numpy(image).permute(2, 0, 1).contiguous()
        mask = torch.from_numpy(mask.copy())
        if self.augment and torch.rand(()) < 0.5:
            # Augment here, the image and its mask alike (training only). dopt reseeds torch every
            # epoch, so a resumed run replays these draws.
            image, mask = image.flip(-1), mask.flip(-1)
        return image, mask


class UserModule:
    metric_name = "mIoU"  # the name of the metric in the results (docs/user-module.md#naming-the-metric)

    def __init__(self, epoch, batch_size):
        self.epoch = epoch
        self.batch_size = batch_size

    def dataset_define(self, dataset_dir, is_training):
        # dataset_dir is train_dir when is_training is True, else val_dir (absolute paths).
        return SegmentationFolder(dataset_dir, augment=is_training)

    def scheduler_define(self, optimizer, steps_per_epoch):
        # Stepped after every optimizer step: total steps = epochs * steps_per_epoch. One cycle: warm
        # up to the scenario's learning rate, then anneal, which suits the short runs of a search.
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optimizer.param_groups[0]["lr"], total_steps=self.epoch * steps_per_epoch
        )

    def metrics_func(self, eval_dataloader, eval_function):
        # eval_function runs the candidate network in eval mode without gradients. Accumulate a
        # confusion matrix over the batches, not the outputs: the mIoU is exact, memory bounded.
        n = len(CLASSES)
        confusion = np.zeros((n, n), np.int64)
        for inputs, masks in eval_dataloader:
            predicted = eval_function(inputs).argmax(dim=1).numpy().ravel()
            truth = masks.numpy().ravel()
            scored = truth != IGNORE
            confusion += np.bincount(n * truth[scored] + predicted[scored], minlength=n * n).reshape(n, n)
        intersection = np.diag(confusion)
        union = confusion.sum(0) + confusion.sum(1) - intersection
        present = union > 0  # classes in neither the masks nor the predictions do not count
        return float(np.mean(intersection[present] / union[present]))

    def loss_func(self, labels, logits):
        # labels: the masks (N, H, W); logits: what PostNet returns, (N, classes, H, W).
        return F.cross_entropy(logits, labels, ignore_index=IGNORE)


def conv_bn(c_in, c_out, k=3, stride=1):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class PreNet(nn.Module):
    """The fixed stem: 32x32 -> 16x16, 16 channels (dopt finds both by a dry run)."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 16, stride=2)

    def forward(self, inputs):
        return self.stem(inputs)


class PostNet(nn.Module):
    """The fixed head, a small FPN: the chosen feature maps (16x16, 8x8, 4x4 here) are projected to 32
    channels, merged top-down at the finest one, and turned into per-pixel class scores upsampled to
    the input size: (N, classes, H, W) logits."""

    def __init__(self):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, 32, 1) for c in FEATURE_CHANNELS)
        self.head = nn.Sequential(conv_bn(32, 32), nn.Conv2d(32, len(CLASSES), 1))

    def forward(self, inputs):
        *features, top = inputs  # finest first, as feature_choose lists them, then the last layer
        p = self.lateral[-1](top)
        for lateral, feature in zip(reversed(self.lateral[:-1]), reversed(features)):
            p = lateral(feature) + F.interpolate(p, size=feature.shape[-2:], mode="nearest")
        return F.interpolate(self.head(p), size=IMAGE_SIZE, mode="bilinear", align_corners=False)
