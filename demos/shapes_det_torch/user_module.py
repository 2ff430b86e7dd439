"""dopt demo: object detection of synthetic shapes, PyTorch, with a CenterNet-style head.

Scenes of squares, disks and triangles (32x32 RGB, up to 3 objects) are drawn by
``dopt.datasets.shapes`` from the size and seed in ``data/{train,val}/scenes.json``, so the demo runs
offline. ``data/pretrain`` holds one folder of images per shape class, on which dopt pre-trains
PreNet and the skeleton. PostNet predicts, on a 16x16 grid, a heatmap of object centres per class
and each object's width and height; the metric is mAP at IoU 0.5 over the validation set.
"""

import json
import os

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from dopt.datasets import shapes

SIZE, STRIDE = 32, 2
N_OBJECT_CLASSES = len(shapes.CLASSES) - 1  # square, disk, triangle


class UserModule:
    metric_name = "mAP50"

    def __init__(self, epoch, batch_size):
        self.epoch = epoch
        self.batch_size = batch_size

    def dataset_define(self, dataset_dir, is_training):
        with open(os.path.join(dataset_dir, "scenes.json")) as f:
            spec = json.load(f)
        s = shapes.scenes(spec["n"], size=SIZE, seed=spec["seed"])
        images = torch.from_numpy(s.images).permute(0, 3, 1, 2).contiguous()  # N, 3, 32, 32 in [0, 1]
        return torch.utils.data.TensorDataset(images, torch.from_numpy(s.boxes))  # boxes: N, 3, 5 (padded: -1)

    def scheduler_define(self, optimizer, steps_per_epoch):
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optimizer.param_groups[0]["lr"], total_steps=self.epoch * steps_per_epoch
        )

    def metrics_func(self, eval_dataloader, eval_function):
        detections, truth = [], []
        for inputs, boxes in eval_dataloader:
            outputs = eval_function(inputs)
            heat = torch.sigmoid(outputs[:, :N_OBJECT_CLASSES]).numpy()
            detections += shapes.centernet_decode(heat, outputs[:, N_OBJECT_CLASSES:].numpy(), stride=STRIDE)
            truth.append(boxes.numpy())
        return shapes.average_precision_50(detections, np.concatenate(truth))

    def loss_func(self, labels, logits):
        heat, sizes, mask = (
            torch.from_numpy(t).to(logits.device) for t in shapes.centernet_targets(labels.cpu().numpy(), SIZE, STRIDE)
        )
        return focal_loss(logits[:, :N_OBJECT_CLASSES], heat) + 0.1 * size_loss(
            logits[:, N_OBJECT_CLASSES:], sizes, mask
        )


def focal_loss(logits, target, alpha=2.0, beta=4.0):
    """CenterNet's penalty-reduced focal loss, averaged over the objects."""
    p = torch.sigmoid(logits).clamp(1e-4, 1 - 1e-4)
    centre = target.eq(1).float()
    positive = -torch.log(p) * (1 - p) ** alpha * centre
    negative = -torch.log(1 - p) * p**alpha * (1 - target) ** beta * (1 - centre)
    return (positive.sum() + negative.sum()) / centre.sum().clamp(min=1)


def size_loss(predicted, target, mask):
    return (F.l1_loss(predicted, target, reduction="none") * mask).sum() / mask.sum().clamp(min=1)


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
    """An FPN on layers 0 (16 ch, 16x16), 2 (32 ch, 8x8) and the last (48 ch, 4x4), then CenterNet heads
    at 16x16: 3 centre-heatmap logits and 2 box sizes (pixels) per cell, as one (N, 5, 16, 16) tensor."""

    def __init__(self):
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(c, 32, 1) for c in (16, 32, 48))
        self.heat = nn.Sequential(conv_bn(32, 32), nn.Conv2d(32, N_OBJECT_CLASSES, 1))
        self.size = nn.Sequential(conv_bn(32, 32), nn.Conv2d(32, 2, 1))
        nn.init.constant_(self.heat[-1].bias, -2.19)  # CenterNet's prior: sigmoid(-2.19) = 0.1

    def forward(self, inputs):
        c1, c2, c3 = inputs
        p = self.lateral[2](c3)
        p = self.lateral[1](c2) + F.interpolate(p, size=c2.shape[-2:], mode="nearest")
        p = self.lateral[0](c1) + F.interpolate(p, size=c1.shape[-2:], mode="nearest")
        return torch.cat([self.heat(p), F.relu(self.size(p)) * 4.0], dim=1)
