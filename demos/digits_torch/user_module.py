"""dopt demo: handwritten digits (scikit-learn's load_digits, 8x8 grey images, 10 classes).

data/train.npz and data/val.npz hold a stratified 80/20 split of the 1,797 digits
(`images`: uint8 0..16, `labels`: int64), so the demo runs offline with torch alone.
"""

import numpy as np
import torch
from torch import nn


class UserModule:
    def __init__(self, epoch, batch_size):
        self.epoch = epoch
        self.batch_size = batch_size

    def dataset_define(self, dataset_dir, is_training):
        data = np.load(dataset_dir)
        images = torch.from_numpy(data["images"]).float().div(16.0).unsqueeze(1)  # N, 1, 8, 8 in [0, 1]
        images = (images - 0.3) / 0.4
        return torch.utils.data.TensorDataset(images, torch.from_numpy(data["labels"]))

    def scheduler_define(self, optimizer, steps_per_epoch):
        return torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=optimizer.param_groups[0]["lr"], total_steps=self.epoch * steps_per_epoch
        )

    def metrics_func(self, eval_dataloader, eval_function):
        correct = total = 0
        for inputs, labels in eval_dataloader:
            predictions = eval_function(inputs).argmax(dim=1)
            correct += int((predictions == labels).sum())
            total += len(labels)
        return correct / total

    def loss_func(self, labels, logits):
        return nn.functional.cross_entropy(logits, labels)


class PreNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))

    def forward(self, inputs):
        return self.stem(inputs)


class PostNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(48, 10)

    def forward(self, inputs):
        return self.classifier(torch.flatten(self.pool(inputs), 1))
