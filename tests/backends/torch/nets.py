"""Tiny PreNet/PostNet pairs for backend tests."""

from __future__ import annotations

from typing import List

import torch
from torch import nn


class PreNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.stem(inputs)


class PostNet(nn.Module):
    def __init__(self, channels: int = 32) -> None:
        super().__init__()
        self.fc = nn.Linear(channels, 10)

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        return self.fc(inputs.mean(dim=(2, 3)))


class ListPostNet(nn.Module):
    """Takes feature_choose outputs: [layer-1 output (16 ch, 8x8), last output (32 ch, 4x4)]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(16 + 32, 10)

    def forward(self, inputs: List[torch.Tensor]) -> torch.Tensor:
        return self.fc(torch.cat([t.mean(dim=(2, 3)) for t in inputs], dim=1))


class DictPostNet(PostNet):
    """Returns a dict and uses a generator expression, which TorchScript cannot compile: traced."""

    def forward(self, inputs):  # type: ignore[override]
        pooled = sum(t for t in [inputs.mean(dim=(2, 3))])
        return {"logits": self.fc(pooled)}
