"""The digits workload shared by the supernet benchmarks: a working directory as a dopt user would
write it (scenario, user module, data), dopt's supernet trained through `dopt.pipeline.prepare.prepare` as
`dopt -c` trains it, and a subnet trained alone from scratch with the same recipe.

The recipe is a typical user's: PreNet conv+BN+ReLU, PostNet pool+linear, Adam 3e-3 decayed linearly
to 0, batch 64. The images are the shipped 8x8 digits, upscaled by an integer factor.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dopt.evaluation import metric_value  # noqa: E402
from dopt.pipeline.inputs import Prepared  # noqa: E402
from dopt.pipeline.prepare import prepare  # noqa: E402
from dopt.scenario import load  # noqa: E402
from dopt.space import Arch  # noqa: E402
from dopt.training import TrainHooks, TrainState, sampler, train  # noqa: E402

__all__ = ["Setting", "CONVERGENCE", "workdir", "train_supernet", "alone", "kendall_tau"]

SCENARIO = """\
scenario:
  strategy:
    name: NASEA
    framework: {framework}
    batch_size: 64
    epochs: {epochs}
    constraint:
      application_type: image_classification
      constraint_type: size
      constraint_value: 1000000
    supernet:
      input_shape: {input_shape}
      data_format: {data_format}
      filters: {filters}
      strides: {strides}
    optimizer:
      weights_optimizer:
        type: Adam
        learning_rate: 0.003
    dataset:
      train_dir: data/train.npz
      val_dir: data/val.npz
    searcher:
      seed: 0
  resource:
    name: {resource}
    gpu_id: cpu
"""

TORCH_MODULE = """
import numpy as np
import torch
from torch import nn


class UserModule:
    def __init__(self, epoch, batch_size):
        self.epoch, self.batch_size = epoch, batch_size

    def dataset_define(self, dataset_dir, is_training):
        data = np.load(dataset_dir)
        images = torch.from_numpy(data["images"]).unsqueeze(1)  # N, 1, H, W
        return torch.utils.data.TensorDataset(images, torch.from_numpy(data["labels"]))

    def scheduler_define(self, optimizer, steps_per_epoch):
        total = self.epoch * steps_per_epoch
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1 - step / total))

    def metrics_func(self, eval_dataloader, eval_function):
        correct = total = 0
        for inputs, labels in eval_dataloader:
            correct += int((eval_function(inputs).argmax(dim=1) == labels).sum())
            total += len(labels)
        return correct / total

    def loss_func(self, labels, logits):
        return nn.functional.cross_entropy(logits, labels)


class PreNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, {stem}, 3, padding=1, bias=False), nn.BatchNorm2d({stem}), nn.ReLU())

    def forward(self, inputs):
        return self.stem(inputs)


class PostNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear({last}, 10))

    def forward(self, inputs):
        return self.head(inputs)
"""

TF_MODULE = """
import numpy as np
import tensorflow as tf


class UserModule:
    def __init__(self, epoch, batch_size):
        self.epoch, self.batch_size = epoch, batch_size

    def build_dataset_search(self, dataset_dir, is_training):
        data = np.load(dataset_dir)
        images = data["images"][..., None]  # N, H, W, 1
        dataset = tf.data.Dataset.from_tensor_slices((images, data["labels"]))
        if is_training:
            self.steps_per_epoch = len(images) // self.batch_size
            dataset = dataset.shuffle(len(images), seed=0, reshuffle_each_iteration=True)
        return dataset.batch(self.batch_size, drop_remainder=is_training), len(images)

    def lr_scheduler(self, lr_init, global_step):
        return lr_init * max(0.0, 1 - global_step / (self.epoch * self.steps_per_epoch))

    def metrics_op(self, labels, outputs):
        predictions = tf.argmax(outputs, axis=1, output_type=tf.int64)
        return float(tf.reduce_mean(tf.cast(tf.equal(predictions, tf.cast(labels, tf.int64)), tf.float32)))

    def loss_op(self, labels, logits):
        return tf.reduce_mean(tf.keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))


class PreNet(tf.keras.layers.Layer):
    def __init__(self):
        super().__init__()
        self.conv = tf.keras.layers.Conv2D({stem}, 3, padding="same", use_bias=False)
        self.bn = tf.keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)

    def call(self, inputs, training=True):
        return tf.nn.relu(self.bn(self.conv(inputs), training=training))


class PostNet(tf.keras.layers.Layer):
    def __init__(self):
        super().__init__()
        self.pool = tf.keras.layers.GlobalAveragePooling2D()
        self.classifier = tf.keras.layers.Dense(10)

    def call(self, inputs, training=True):
        return self.classifier(self.pool(inputs))
"""


@dataclass(frozen=True)
class Setting:
    """The workload: image side (8 = the native digits), searched widths and strides, PreNet's
    channels, and how the 1,797 images are split (``train_images`` None: the shipped 1,437/360 split;
    else that many training images drawn with a fixed seed, the rest for validation)."""

    upscale: int = 2
    filters: tuple[int, ...] = (16, 24, 24, 48, 48)
    strides: tuple[int, ...] = (1, 2, 1, 2, 1)
    stem: int = 16
    train_images: int | None = None

    @property
    def side(self) -> int:
        return 8 * self.upscale


# supernet_convergence.py's workload: 16x16, the shipped split.
CONVERGENCE = Setting()


def _split(setting: Setting) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    raw = {s: np.load(ROOT / "dopt" / "templates" / "data" / f"digits_{s}.npz") for s in ("train", "val")}
    if setting.train_images is None:
        return {s: (r["images"], r["labels"]) for s, r in raw.items()}
    images = np.concatenate([raw["train"]["images"], raw["val"]["images"]])
    labels = np.concatenate([raw["train"]["labels"], raw["val"]["labels"]])
    order = np.random.default_rng(0).permutation(len(images))
    n = setting.train_images
    return {"train": (images[order[:n]], labels[order[:n]]), "val": (images[order[n:]], labels[order[n:]])}


def _write(path: Path, framework: str, epochs: int, setting: Setting) -> None:
    """The user module, the scenario, and the digits upscaled and normalised."""
    (path / "data").mkdir(parents=True)
    block = np.ones((setting.upscale, setting.upscale), np.float32)
    for split, (images, labels) in _split(setting).items():
        images = np.kron(images.astype(np.float32) / 16.0, block)
        np.savez(path / "data" / f"{split}.npz", images=((images - 0.3) / 0.4).astype(np.float32), labels=labels)
    torch = framework == "pytorch"
    module = TORCH_MODULE if torch else TF_MODULE
    # str.replace, not format: the modules are full of braces.
    module = module.replace("{stem}", str(setting.stem)).replace("{last}", str(setting.filters[-1]))
    (path / "user_module.py").write_text(module)
    s = setting.side
    (path / "scen.yaml").write_text(
        SCENARIO.format(
            framework="PyTorch" if torch else "TensorFlow",
            epochs=epochs,
            input_shape=f"(1, {s}, {s})" if torch else f"({s}, {s}, 1)",
            data_format="channels_first" if torch else "channels_last",
            filters=list(setting.filters),
            strides=list(setting.strides),
            resource="pytorch_standalone" if torch else "Tensorflow_standalone",
        )
    )


@contextlib.contextmanager
def workdir(
    framework: str, epochs: int, overrides: Sequence[str] = (), setting: Setting = CONVERGENCE
) -> Iterator[tuple[Prepared, Any]]:
    """A prepared run (dopt's checks passed, supernet built, untrained) in a temporary working
    directory, which is the current directory meanwhile (dataset paths are relative to it, as for
    dopt); with it, the imported user module."""
    from dopt.user_module import load_user_module

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _write(work, framework, epochs, setting)
        cwd = os.getcwd()
        os.chdir(work)
        try:
            scenario = load(work / "scen.yaml", workdir=work, overrides=list(overrides))
            yield prepare(scenario), load_user_module(work, framework)
        finally:
            os.chdir(cwd)


def train_supernet(p: Prepared) -> None:
    """The scenario's epochs of dopt's own supernet training, as `dopt -c` runs it
    (dopt.pipeline.train.train_supernet without checkpoints, logs and the per-epoch check)."""
    sc = p.scenario
    hooks = TrainHooks(lambda s: None)
    train(p.session, sampler(p.space, sc.training, p.seed), range(sc.epochs), TrainState(), hooks, sc.training.distill)


def alone(p: Prepared, module: Any, arch: Arch, epochs: int, seed: int) -> float:
    """``arch`` as a plain static network, freshly initialised with ``seed``, trained by itself for
    ``epochs`` with the recipe, and scored by the user's metric on the whole validation set."""
    fn = _alone_torch if p.scenario.framework == "pytorch" else _alone_tf
    return fn(p, module, arch, epochs, seed)


def _alone_torch(p: Prepared, module: Any, arch: Arch, epochs: int, seed: int) -> float:
    import torch

    from dopt.backends.torch.evaluate import evaluate
    from dopt.backends.torch.static import Net

    setup = p.session.setup  # type: ignore[attr-defined]
    torch.manual_seed(seed)
    model = Net(module.PreNet(), module.PostNet(), p.space.layer_rows(arch), ())
    user = module.UserModule(epoch=epochs, batch_size=p.scenario.batch_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=p.scenario.optimizer.learning_rate)
    scheduler = user.scheduler_define(optimizer, len(setup.train_loader))
    setup.train_loader.generator.manual_seed(seed)
    for _ in range(epochs):
        model.train()
        for inputs, labels in setup.train_loader:
            optimizer.zero_grad(set_to_none=True)
            user.loss_func(labels, model(inputs)).backward()
            optimizer.step()
            scheduler.step()
    return metric_value(evaluate(model.eval(), user.metrics_func, setup.eval_loader, setup.device), "metrics_func")


def _alone_tf(p: Prepared, module: Any, arch: Arch, epochs: int, seed: int) -> float:
    import keras
    import tensorflow as tf

    from dopt.backends.tf.evaluate import evaluate
    from dopt.backends.tf.static import Net
    from dopt.backends.tf.train import lr_value

    setup = p.session.setup  # type: ignore[attr-defined]
    keras.utils.set_random_seed(seed)
    shape = p.scenario.supernet.input_shape
    model = Net(module.PreNet(), module.PostNet(), p.space.layer_rows(arch), (), p.scenario.supernet.data_format)
    model(np.zeros((1, *shape), np.float32), training=False)
    user = module.UserModule(epoch=epochs, batch_size=p.scenario.batch_size)
    train_data = user.build_dataset_search(p.scenario.dataset.train_dir, True)[0]
    lr_init = p.scenario.optimizer.learning_rate
    optimizer = keras.optimizers.Adam(lr_init)
    variables = model.trainable_variables

    @tf.function
    def step(inputs: Any, labels: Any) -> None:
        with tf.GradientTape() as tape:
            loss = user.loss_op(labels, model(inputs, training=True))
        optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))

    global_step = 0
    for _ in range(epochs):
        for inputs, labels in train_data:
            optimizer.learning_rate = lr_value(user.lr_scheduler, lr_init, global_step)
            step(inputs, labels)
            global_step += 1
    return metric_value(evaluate(model, user.metrics_op, setup.val_batches), "metrics_op")


def kendall_tau(a: Sequence[float], b: Sequence[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)
