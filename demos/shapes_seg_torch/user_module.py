"""dopt demo: semantic segmentation of synthetic shapes, PyTorch.

Scenes of squares, disks and triangles (32x32 RGB, 4 classes with the background) are drawn by
``dopt.datasets.shapes`` from the size and seed in ``data/{train,val}/scenes.json``, so the demo runs
offline. ``data/pretrain`` holds one folder of images per shape class, on which dopt pre-trains
PreNet and the skeleton. The metric is the mean IoU over the 4 classes, exact over the whole
validation set (a confusion matrix is accumulated batch by batch).
"""

import json
import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dopt.datasets import shapes

N_CLASSES = len(shapes.CLASSES)  # background, square, disk, triangle


class UserModule:
    metric_name = "mIoU"

    def __init__(self, epoch, batch_size):
        self.epoch = epoch
        self.batch_size = batch_size

    def dataset_define(self, dataset_dir, is_training):
        with open(os.path.join(dataset_dir, "scenes.json")) as f:
            spec = json.load(f)
        s = shapes.scenes(spec["n"], size=32, seed=spec["seed"])
        images = torch.from_numpy(s.images).permute(0, 3, 1, 2).contiguous()  # N, 3, 32, 32 in [0, 1]
        return torch.utils.data.TensorDataset(images, torch.from_numpy(s.masks))

    def scheduler_define(self, optimizer, steps_per_epoch):
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optimizer.param_groups[0]["lr"], total_steps=self.epoch * steps_per_epoch
        )

    def metrics_func(self, eval_dataloader, eval_function):
        confusion = np.zeros((N_CLASSES, N_CLASSES), np.int64)
        for inputs, masks in eval_dataloader:
            predicted = eval_function(inputs).argmax(dim=1).numpy().ravel()
            truth = masks.numpy().ravel()
            confusion += np.bincount(N_CLASSES * truth + predicted, minlength=N_CLASSES**2).reshape(N_CLASSES, -1)
        intersection = np.diag(confusion)
        union = confusion.sum(0) + confusion.sum(1) - intersection
        present = union > 0
        return float(np.mean(intersection[present] / union[present]))

    def loss_func(self, labels, logits):
        return F.cross_entropy(logits, labels)


def conv_bn(c_in, c_out, k=3, stride=1):
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, k, stride, k // 2, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True)
    )


class PreNet(nn.Module):
    """32x32 -> 16x16, 16 channels."""

    def __init__(self):
        super().__init__()
        self.stem = conv_bn(3, 16, stride=2)

    def forward(self, inputs):
        return self.stem(inputs)


class PostNet(nn.Module):
    """A small FPN: layers 0 (16 ch, 16x16), 2 (32 ch, 8x8) and the last (48 ch, 4x4), merged top-down
    at 16x16, then per-pixel class scores upsampled to 32x32."""

    def __init__(self):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, 32, 1) for c in (16, 32, 48))
        self.head = nn.Sequential(conv_bn(32, 32), nn.Conv2d(32, N_CLASSES, 1))

    def forward(self, inputs):
        c1, c2, c3 = inputs
        p = self.lateral[2](c3)
        p = self.lateral[1](c2) + F.interpolate(p, size=c2.shape[-2:], mode="nearest")
        p = self.lateral[0](c1) + F.interpolate(p, size=c1.shape[-2:], mode="nearest")
        return F.interpolate(self.head(p), scale_factor=2.0, mode="bilinear", align_corners=False)
