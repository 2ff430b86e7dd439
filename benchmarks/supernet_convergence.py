"""Does the supernet train its subnets as well as training them alone would? Measured side by side.

For each framework and each budget E (epochs), on handwritten digits upscaled to 16x16 with a
typical user recipe (PreNet conv+BN+ReLU, PostNet pool+linear, Adam 3e-3 decayed linearly to 0,
batch 64), it:

  1. trains dopt's supernet for E epochs with the scenario's `training` settings (dopt's own
     training loop, through `dopt.run.prepare`, as `dopt -c scen.yaml` does);
  2. evaluates the largest, the smallest and N fixed random subnets with inherited weights and BN
     recalibration (dopt's evaluator);
  3. trains each of those architectures alone, from scratch, for the same E epochs with the same
     recipe, and evaluates it;

and prints, per subnet, inherited / stand-alone accuracy, their mean ratio and Kendall's tau
between the two rankings. Scenario keys can be changed for a variant with --set, as for dopt.

Run: python benchmarks/supernet_convergence.py [--framework pytorch tensorflow] [--epochs 6 20]
     [--subnets 8] [--set scenario.strategy.training.sampling=uniform ...]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dopt.evaluation import Evaluator, metric_value  # noqa: E402
from dopt.run import prepare  # noqa: E402
from dopt.scenario import load  # noqa: E402
from dopt.space import Arch  # noqa: E402
from dopt.training import TrainState, sampler, train  # noqa: E402
from dopt.user_module import load_user_module  # noqa: E402

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
      filters: [16, 24, 24, 48, 48]
      strides: [1, 2, 1, 2, 1]
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
        images = torch.from_numpy(data["images"]).unsqueeze(1)  # N, 1, 16, 16
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
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU())

    def forward(self, inputs):
        return self.stem(inputs)


class PostNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(48, 10))

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
        images = data["images"][..., None]  # N, 16, 16, 1
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
        self.conv = tf.keras.layers.Conv2D(16, 3, padding="same", use_bias=False)
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


def _write_workdir(path: Path, framework: str, epochs: int) -> None:
    """The user module, the scenario, and the shipped digits upscaled to 16x16, normalised."""
    (path / "data").mkdir(parents=True)
    for split in ("train", "val"):
        raw = np.load(ROOT / "dopt" / "templates" / "data" / f"digits_{split}.npz")
        images = np.kron(raw["images"].astype(np.float32) / 16.0, np.ones((2, 2), np.float32))
        np.savez(path / "data" / f"{split}.npz", images=((images - 0.3) / 0.4).astype(np.float32), labels=raw["labels"])
    torch = framework == "pytorch"
    (path / "user_module.py").write_text(TORCH_MODULE if torch else TF_MODULE)
    (path / "scen.yaml").write_text(
        SCENARIO.format(
            framework="PyTorch" if torch else "TensorFlow",
            epochs=epochs,
            input_shape="(1, 16, 16)" if torch else "(16, 16, 1)",
            data_format="channels_first" if torch else "channels_last",
            resource="pytorch_standalone" if torch else "Tensorflow_standalone",
        )
    )


def _alone_torch(p: Any, module: Any, arch: Arch, epochs: int, seed: int) -> float:
    """``arch`` as a plain static network, freshly initialised and trained by itself."""
    import torch

    from dopt.backends.torch.evaluate import evaluate
    from dopt.backends.torch.static import Net

    setup = p.session.setup
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


def _alone_tf(p: Any, module: Any, arch: Arch, epochs: int, seed: int) -> float:
    """``arch`` as a plain static network, freshly initialised and trained by itself."""
    import keras
    import tensorflow as tf

    from dopt.backends.tf.evaluate import evaluate
    from dopt.backends.tf.static import Net
    from dopt.backends.tf.train import lr_value

    setup = p.session.setup
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


def _kendall_tau(a: list[float], b: list[float]) -> float:
    from scipy.stats import kendalltau

    return float(kendalltau(a, b).statistic)


def measure(framework: str, epochs: int, subnets: int, overrides: list[str], cache: Path | None) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        _write_workdir(work, framework, epochs)
        cwd = os.getcwd()
        os.chdir(work)  # dataset paths are relative to the working directory, as for dopt
        try:
            scenario = load(work / "scen.yaml", workdir=work, overrides=overrides)
            p = prepare(scenario)
            t0 = time.perf_counter()
            train(
                p.session,
                sampler(p.space, scenario.training, p.seed),
                range(epochs),
                TrainState(),
                scenario.training.distill,
                lambda s: None,
            )
            supernet_s = time.perf_counter() - t0
            evaluator = Evaluator(p.session, p.costs, np.random.default_rng([p.seed, 1]))
            rng = np.random.default_rng(123)
            archs = [p.space.decode(p.space.largest()), p.space.decode(p.space.smallest())]
            archs += [p.space.decode(p.space.sample(rng)) for _ in range(subnets)]
            inherited = [evaluator.evaluate(a) for a in archs]
            module = load_user_module(work, framework)
            alone_fn = _alone_torch if framework == "pytorch" else _alone_tf
            t0 = time.perf_counter()
            # Stand-alone results depend only on (framework, E, architecture, seed): a cache file
            # lets variants of the supernet's settings be compared without retraining them.
            known = json.loads(cache.read_text()) if cache is not None and cache.exists() else {}
            alone = []
            for k, a in enumerate(archs):
                key = f"{framework} {epochs} {1000 + k} {p.space.layer_rows(a)}"
                if key not in known:
                    known[key] = alone_fn(p, module, a, epochs, 1000 + k)
                alone.append(known[key])
            if cache is not None:
                cache.write_text(json.dumps(known, indent=1))
            alone_s = (time.perf_counter() - t0) / len(archs)
            sizes = [p.costs.cost("size", a) for a in archs]
        finally:
            os.chdir(cwd)
    return {
        "archs": archs,
        "sizes": sizes,
        "inherited": inherited,
        "alone": alone,
        "supernet_s": supernet_s,
        "alone_s": alone_s,
        "space_size": p.space.size(),
    }


def report(framework: str, epochs: int, r: dict[str, Any]) -> float:
    print(
        f"\n{framework}, E = {epochs} epochs, {r['space_size']:,} distinct subnets; supernet training "
        f"{r['supernet_s']:.0f} s, one subnet alone {r['alone_s']:.0f} s"
    )
    print(f"  {'subnet':>8}  {'params':>8}  {'inherited':>9}  {'alone':>7}  {'ratio':>6}")
    ratios = []
    for k, (size, a, b) in enumerate(zip(r["sizes"], r["inherited"], r["alone"])):
        name = "largest" if k == 0 else "smallest" if k == 1 else f"random{k - 1}"
        ratio = a / b if b > 0 else float("nan")
        ratios.append(ratio)
        print(f"  {name:>8}  {size:>8,.0f}  {a:>9.4f}  {b:>7.4f}  {ratio:>6.3f}")
    mean = statistics.fmean(ratios)
    tau = _kendall_tau(r["inherited"], r["alone"])
    print(f"  mean ratio {mean:.3f}, Kendall tau {tau:.2f}")
    return mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--framework", nargs="+", default=["pytorch", "tensorflow"], choices=["pytorch", "tensorflow"])
    parser.add_argument("--epochs", nargs="+", type=int, default=[6, 20])
    parser.add_argument("--subnets", type=int, default=8, help="random subnets besides the largest and smallest")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--cache", type=Path, help="JSON file keeping stand-alone results between runs")
    args = parser.parse_args()
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    print(f"settings: {' '.join(args.overrides) or 'defaults'}")
    summary = []
    for framework in args.framework:
        for epochs in args.epochs:
            mean = report(framework, epochs, measure(framework, epochs, args.subnets, args.overrides, args.cache))
            summary.append(f"{framework} E={epochs}: mean ratio {mean:.3f}")
    print("\n" + "\n".join(summary))


if __name__ == "__main__":
    main()
