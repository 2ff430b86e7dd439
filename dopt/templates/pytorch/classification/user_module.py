"""user_module.py for dopt, PyTorch image classification (the NASEA PyTorch interface).

dopt imports this file from the working directory and drives it:

    um = UserModule(epoch=<epochs>, batch_size=<batch_size>)
    train = um.dataset_define(<train_dir>, True)     # a torch Dataset of (inputs, labels)
    val = um.dataset_define(<val_dir>, False)
    scheduler = um.scheduler_define(optimizer, steps_per_epoch)   # stepped after every optimizer step
    loss = um.loss_func(labels, logits)              # scalar tensor
    metric = um.metrics_func(val_loader, eval_function)  # float, higher is better

The searched network is PreNet -> searched layers -> PostNet. PreNet and PostNet are yours and
fixed; dopt searches the layers in between (kernel 3/5/7, expansion 3/6, width, depth) and
finds PreNet's output channels by a dry run. PostNet receives the last searched layer's output,
which always has `filters[-1]` channels (scen.yaml), so size its first layer for that.

This template reads images from one sub-folder per class (data/train/<class>/*.png, the layout
of torchvision's ImageFolder) with Pillow, which dopt's plotting already installs. `dopt init`
writes such folders of 8x8 grey handwritten digits (scikit-learn's digits), so
`dopt -c scen.yaml` runs at once; for your own images change the four constants below and
input_shape / filters in scen.yaml.
"""

import os

import numpy as np
import torch
from PIL import Image
from torch import nn

IMAGE_SIZE = (8, 8)  # (H, W): keep equal to input_shape in scen.yaml, which is (C, H, W)
CHANNELS = 1  # 1 for grey images, 3 for RGB
NUM_CLASSES = 10
LAST_FILTERS = 48  # scen.yaml's filters[-1]: the channels PostNet receives


class ImageFolderDataset(torch.utils.data.Dataset):
    """(image tensor C×H×W in [-1, 1], class index) for every image under dataset_dir/<class>/."""

    def __init__(self, dataset_dir, augment):
        self.classes = sorted(d for d in os.listdir(dataset_dir) if os.path.isdir(os.path.join(dataset_dir, d)))
        self.samples = [
            (os.path.join(dataset_dir, c, f), i)
            for i, c in enumerate(self.classes)
            for f in sorted(os.listdir(os.path.join(dataset_dir, c)))
        ]
        self.augment = augment

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        image = Image.open(path).convert("L" if CHANNELS == 1 else "RGB").resize(IMAGE_SIZE[::-1])
        array = np.asarray(image, dtype=np.float32) / 127.5 - 1.0
        tensor = torch.from_numpy(array.reshape(IMAGE_SIZE + (CHANNELS,))).permute(2, 0, 1).contiguous()
        if self.augment:
            # Augment here (training only). dopt reseeds torch, numpy and random every epoch, so
            # random augmentations are reproducible and a resumed run replays them. Digits must
            # not be flipped; for photos, e.g.: if torch.rand(()) < 0.5: tensor = tensor.flip(-1)
            pass
        return tensor, label


class UserModule:
    def __init__(self, epoch, batch_size):
        self.epoch = epoch
        self.batch_size = batch_size

    def dataset_define(self, dataset_dir, is_training):
        # dataset_dir is train_dir when is_training is True, else val_dir (absolute paths).
        return ImageFolderDataset(dataset_dir, augment=is_training)

    def scheduler_define(self, optimizer, steps_per_epoch):
        # Stepped after every optimizer step: total steps = epochs * steps_per_epoch.
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=self.epoch * steps_per_epoch)

    def metrics_func(self, eval_dataloader, eval_function):
        # eval_function runs the candidate network in eval mode without gradients.
        correct = total = 0
        for inputs, labels in eval_dataloader:
            predictions = eval_function(inputs).argmax(dim=1)
            correct += int((predictions == labels).sum())
            total += len(labels)
        return correct / total

    def loss_func(self, labels, logits):
        return nn.functional.cross_entropy(logits, labels)


class PreNet(nn.Module):
    """The fixed stem: its output channels become the first searched layer's input."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(CHANNELS, 16, 3, stride=1, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True)
        )

    def forward(self, inputs):
        return self.stem(inputs)


class PostNet(nn.Module):
    """The fixed head: global average pooling and a linear classifier."""

    def __init__(self):
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(LAST_FILTERS, NUM_CLASSES)

    def forward(self, inputs):
        return self.classifier(torch.flatten(self.pool(inputs), 1))
