"""A working directory of seconds for the fake backend: a numpy user module, a scenario, and a
small synthetic dataset (4 classes of noisy 1x4x4 prototypes)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

__all__ = ["make_workdir", "USER_MODULE", "SCENARIO", "CLASSES"]

CLASSES = 4

USER_MODULE = '''\
"""A dopt user module for the fake backend: the PyTorch contract's names, numpy arrays for tensors
(tests/fake/backend.py)."""

import math

import numpy as np


class UserModule:
    def __init__(self, epoch, batch_size):
        self.epoch = epoch
        self.batch_size = batch_size

    def dataset_define(self, dataset_dir, is_training):
        data = np.load(dataset_dir)
        return data["inputs"], data["labels"]

    def scheduler_define(self, optimizer, steps_per_epoch):
        return CosineSchedule(optimizer, self.epoch * steps_per_epoch)

    def metrics_func(self, eval_dataloader, eval_function):
        correct = total = 0
        for inputs, labels in eval_dataloader:
            correct += int((eval_function(inputs).argmax(axis=1) == labels).sum())
            total += len(labels)
        return correct / total

    def loss_func(self, labels, logits):
        z = logits - logits.max(axis=1, keepdims=True)
        log_probs = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        return -log_probs[np.arange(len(labels)), labels].mean()


class CosineSchedule:
    """The learning rate decayed to 0 along a half cosine, stepped after every optimizer step."""

    def __init__(self, optimizer, total_steps):
        self.optimizer, self.total, self.steps = optimizer, total_steps, 0
        self.base = optimizer.param_groups[0]["lr"]

    def step(self):
        self.steps += 1
        done = min(self.steps, self.total) / self.total
        self.optimizer.param_groups[0]["lr"] = self.base * 0.5 * (1 + math.cos(math.pi * done))

    def state_dict(self):
        return {"steps": self.steps}

    def load_state_dict(self, state):
        self.steps = int(state["steps"])


class PreNet:
    """A frozen dense stem: the flattened image to 8 channels, constant over a 2x2 map."""

    def __init__(self):
        self.weight = np.random.default_rng(1).normal(0, 0.25, (16, 8))

    def parameters(self):
        return [self.weight]

    def forward(self, inputs):
        x = inputs.reshape(len(inputs), -1) @ self.weight
        return np.broadcast_to(x[:, :, None, None], x.shape + (2, 2))


class PostNet:
    """A frozen linear classifier on the pooled output of the last searched layer (filters[-1] = 24)."""

    def __init__(self):
        rng = np.random.default_rng(2)
        self.weight, self.bias = rng.normal(0, 0.3, (4, 24)), np.zeros(4)

    def parameters(self):
        return [self.weight, self.bias]

    def forward(self, inputs):
        return inputs.mean(axis=(2, 3)) @ self.weight.T + self.bias
'''

SCENARIO = """\
scenario:
  strategy:
    name: NASEA
    framework: PyTorch
    batch_size: 32
    epochs: 2
    constraint:
      application_type: image_classification
      constraint_type: {kind}
      constraint_value: {value}
    supernet:
      input_shape: (1, 4, 4)
      filters: [16, 16, 24]
      strides: [1, 1, 2]
    optimizer:
      weights_optimizer:
        type: Adam
        learning_rate: 0.01
    dataset:
      train_dir: data/train.npz
      val_dir: data/val.npz
    searcher:
      generation_num: 3
      pop_size: 6
      seed: 7
      bn_calib_batches: 2
      eval_batches: 2
  resource:
    name: pytorch_standalone
    gpu_id: cpu
"""


def _split(n: int, seed: int) -> dict[str, np.ndarray]:
    prototypes = np.random.default_rng(0).normal(0, 1, (CLASSES, 16))
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, CLASSES, n)
    inputs = prototypes[labels] + rng.normal(0, 1.5, (n, 16))
    return {"inputs": inputs.reshape(n, 1, 4, 4).astype(np.float32), "labels": labels.astype(np.int64)}


def make_workdir(path: Path, kind: str = "size", value: float = 6000) -> Path:
    """user_module.py, scen.yaml (constraint ``kind`` ≤ ``value``) and data/ in ``path``."""
    (path / "data").mkdir(parents=True, exist_ok=True)
    (path / "user_module.py").write_text(USER_MODULE)
    (path / "scen.yaml").write_text(SCENARIO.format(kind=kind, value=value))
    for name, n, seed in (("train", 192, 1), ("val", 64, 2)):
        np.savez(path / "data" / f"{name}.npz", **_split(n, seed))
    return path
