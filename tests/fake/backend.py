"""A numpy backend for tests of everything that is about the search, resume, overrides and outputs
rather than the framework (STYLE.md#tests). It implements dopt/backends/base.py whole: a real
(tiny) weight-sharing supernet trained by backpropagation, evaluation with BatchNorm
recalibration, costs counted on the extracted model's arrays, .npz checkpoints, result scripts.

Its user module is plain Python (tests/fake/workdir.py): the PyTorch contract's names, numpy
arrays for tensors, ``dataset_define`` returning an ``(inputs, labels)`` pair of arrays, and
PreNet/PostNet exposing ``parameters()``. PreNet and PostNet are frozen; PostNet must be affine in
its input (the fake backpropagates through the matrix it measures on it). Each 2-D array of
PreNet/PostNet counts as a dense layer applied once per sample in their MACs.
"""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from dopt.backends.base import CorruptCheckpoint, Probe, epoch_seed
from dopt.costs import Costs
from dopt.errors import UserError
from dopt.evaluation import calibration_indices, metric_value
from dopt.parallel.comm import Comm
from dopt.scenario import Scenario
from dopt.space import Arch, SearchSpace
from dopt.training import Forward
from dopt.user_module import file_sha256
from tests.fake.control import Control
from tests.fake.export import WEIGHTS_SUFFIX, render_script, save_arrays, write_and_verify
from tests.fake.latency import FakeLatencyMeter
from tests.fake.probe import (
    affine,
    dataset,
    fixed_macs,
    layer_macs,
    loss_value,
    param_count,
    softmax,
    spatial,
)
from tests.fake.static import Net
from tests.fake.supernet import Optimizer, Supernet

__all__ = ["FakeBackend", "FakeSetup", "FakeSession"]


class FakeBackend:
    """The fake's entry point; every backend a test's factory makes shares that test's ``control``."""

    framework = "pytorch"  # registered under the scenario's framework name (tests/fake/harness.py)

    def __init__(self, control: Control | None = None) -> None:
        self.control = control or Control()

    def check_user_module(self, module: ModuleType) -> None:
        for name in ("PreNet", "PostNet"):
            if not callable(getattr(getattr(module, name), "parameters", None)):
                raise UserError(
                    f"{name} has no parameters() method (the fake backend counts its numpy arrays)",
                    key=name,
                    fix=f"def parameters(self): return [the arrays of {name}]",
                )

    def gpu_count(self) -> int:
        return 0

    def connect(self, scenario: Scenario, launch: Any) -> Comm:
        raise UserError("the fake backend runs in one process", fix="run without a launcher")

    def setup(self, scenario: Scenario, module: ModuleType, seed: int, comm: Comm | None = None) -> FakeSetup:
        sc, bs, chw = scenario, scenario.batch_size, scenario.supernet.chw
        user = module.UserModule(epoch=sc.epochs, batch_size=bs)
        train = dataset(user.dataset_define(sc.dataset.train_dir, True), "dataset_define(train_dir, True)", chw)
        val = dataset(user.dataset_define(sc.dataset.val_dir, False), "dataset_define(val_dir, False)", chw)
        steps = len(train[1]) // bs
        if steps == 0:
            raise UserError(
                f"batch_size {bs} is larger than the training set ({len(train[1])} samples), so an epoch has no step",
                key="scenario.strategy.batch_size",
                fix=f"use batch_size ≤ {len(train[1])}",
            )
        pre, post = module.PreNet(), module.PostNet()
        out = np.asarray(pre.forward(np.zeros((1, *chw))))
        if out.ndim != 4:
            raise UserError(f"PreNet.forward returned shape {out.shape}, not (N, C, H, W)", key="PreNet.forward")
        hw = out.shape[2:]
        for stride in sc.supernet.strides:
            hw = ((hw[0] - 1) // stride + 1, (hw[1] - 1) // stride + 1)
        matrix, _ = affine(post, sc.supernet.filters[-1], hw)
        fixed = Costs(size=param_count(pre) + param_count(post), flops=fixed_macs(pre) + fixed_macs(post))
        return FakeSetup(
            scenario=sc,
            seed=seed,
            control=self.control,
            user=user,
            user_sha256=file_sha256(Path(module.__file__ or "")),
            train=train,
            val=val,
            pre=pre,
            post=post,
            post_hw=hw,
            post_matrix=matrix,
            probe=Probe(
                in_channels=out.shape[1],
                in_hw=(out.shape[2], out.shape[3]),
                fixed=fixed,
                steps_per_epoch=steps,
                device="cpu",
            ),
        )


@dataclass(frozen=True, kw_only=True)
class FakeSetup:
    """The user module instantiated, its datasets read and checked, PreNet/PostNet dry-run."""

    scenario: Scenario
    seed: int
    control: Control
    user: Any
    user_sha256: str
    train: tuple[np.ndarray, np.ndarray]
    val: tuple[np.ndarray, np.ndarray]
    pre: Any
    post: Any
    post_hw: tuple[int, int]  # spatial size of PostNet's input
    post_matrix: np.ndarray  # d logits / d features of PostNet (classes, channels)
    probe: Probe
    result_weights_suffix = WEIGHTS_SUFFIX

    def build_supernet(self, space: SearchSpace) -> FakeSession:
        return FakeSession(self, space)

    def latency_meter(self) -> FakeLatencyMeter:
        def model_macs(model: Net) -> tuple[int, int]:
            return layer_macs(model, self.probe.in_hw), len(model.layers)

        fixed = (fixed_macs(self.pre), fixed_macs(self.post))
        return FakeLatencyMeter(
            self.pre, self.post, fixed, self.probe.in_hw, self.scenario.constraint.threads, model_macs
        )

    def build_result(self, script: Any, weights: Path | None) -> Any:
        raise NotImplementedError("the fake backend does not train results (dopt train)")


class FakeSession:
    """The supernet, its optimizer and the user's schedule: StepOps, EvalOps, checkpoints."""

    checkpoint_suffix = ".fake.npz"
    loss_function = "loss_func"
    metric_function = "metrics_func"

    def __init__(self, setup: FakeSetup, space: SearchSpace) -> None:
        self.setup, self.space = setup, space
        self.supernet = Supernet(space, setup.seed)
        opt = setup.scenario.optimizer
        self.optimizer = Optimizer(self.supernet.weights, opt.type, opt.learning_rate, opt.betas, opt.momentum)
        self.scheduler = setup.user.scheduler_define(self.optimizer, setup.probe.steps_per_epoch)
        if not callable(getattr(self.scheduler, "step", None)):
            raise UserError(
                f"scheduler_define returned {type(self.scheduler).__name__}, which has no step()",
                key="UserModule.scheduler_define",
                fix="return an object whose step() sets optimizer.param_groups[0]['lr']",
            )

    # -- training primitives (dopt.training.StepOps) ---------------------------------------------
    def begin_epoch(self, epoch: int) -> Any:
        s = self.setup
        s.control.tick("epoch", epoch)
        inputs, labels = s.train
        bs = s.scenario.batch_size
        order = np.random.default_rng(epoch_seed(s.seed, epoch)).permutation(len(labels))
        return ((inputs[i], labels[i]) for i in (order[k * bs : (k + 1) * bs] for k in range(s.probe.steps_per_epoch)))

    def start_step(self) -> float:
        self.supernet.zero_grad()
        return float(self.optimizer.param_groups[0]["lr"])

    def forward(self, batch: Any, arch: Arch, teacher: Any) -> Forward:
        s = self.setup
        inputs, labels = batch
        trace = self.supernet.forward(np.asarray(s.pre.forward(inputs)).mean(axis=(2, 3)), arch)
        logits = np.asarray(s.post.forward(spatial(trace.features, s.post_hw)))
        value = loss_value(s.user.loss_func(labels, logits))
        probs = softmax(logits)
        d_logits = probs.copy()
        d_logits[np.arange(len(labels)), labels] -= 1.0
        if teacher is not None:  # in-place distillation: KL(teacher || student), as the torch backend's
            target = softmax(teacher)
            value += float(np.mean(np.sum(target * (np.log(target + 1e-12) - np.log(probs + 1e-12)), axis=1)))
            d_logits += probs - target
        return Forward(value, (trace, d_logits / len(labels) @ s.post_matrix), logits)

    def backward(self, forward: Forward) -> None:
        trace, d_features = forward.handle
        self.supernet.backward(trace, d_features)

    def reduce_step(self, finite: bool) -> bool:
        return finite

    def apply(self) -> None:
        self.optimizer.step(self.supernet.grads)
        self.scheduler.step()

    def discard(self) -> None:
        self.supernet.zero_grad()

    def batch_len(self, batch: Any) -> int:
        return len(batch[1])

    # -- rehearsal, pre-training, checkpoints ----------------------------------------------------
    def rehearse(self, archs: list[Arch]) -> list[str]:
        s = self.setup
        bs = s.scenario.batch_size
        first = (s.train[0][:bs], s.train[1][:bs])
        lines = []
        for arch in archs:
            forward = self.forward(first, arch, None)
            self.backward(forward)
            lines.append(f"loss {forward.value:.4g}")
        self.supernet.zero_grad()
        one_batch = [(s.val[0][:bs], s.val[1][:bs])]
        metric = metric_value(s.user.metrics_func(one_batch, self.extract(archs[0]).forward), self.metric_function)
        lines[0] += f", metric on one validation batch {metric:.4g} (untrained)"
        return lines

    def pretrainer(self, folder: Path, epochs: int) -> Any:
        raise NotImplementedError("the fake backend does not pre-train")

    def load_pretrained(self, weights: Path, folder: Path) -> None:
        raise NotImplementedError("the fake backend does not pre-train")

    def save(self, path: Path, step: int) -> None:
        arrays = {f"w.{k}": v for k, v in self.supernet.weights.items()}
        arrays.update({f"opt.{k}": v for k, v in self.optimizer.state_dict().items()})
        if hasattr(self.scheduler, "state_dict"):
            arrays.update({f"sched.{k}": np.asarray(v) for k, v in self.scheduler.state_dict().items()})
        save_arrays(path, {**arrays, "step": np.asarray(step)})

    def load(self, path: Path) -> int:
        try:
            with np.load(path, allow_pickle=False) as f:
                data = {k: f[k] for k in f.files}
            weights = {k[2:]: v for k, v in data.items() if k.startswith("w.")}
            mine = self.supernet.weights
            if set(weights) != set(mine) or any(v.shape != mine[k].shape for k, v in weights.items()):
                raise ValueError("the weights of another supernet")
            self.optimizer.load_state_dict({k[4:]: v for k, v in data.items() if k.startswith("opt.")})
            step = int(data["step"])
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
            raise CorruptCheckpoint(f"{path.name}: {type(exc).__name__}: {exc}") from exc
        for name, value in weights.items():
            mine[name][...] = value  # in place: the optimizer updates these very arrays
        if hasattr(self.scheduler, "load_state_dict"):
            self.scheduler.load_state_dict({k[6:]: v.item() for k, v in data.items() if k.startswith("sched.")})
        return step

    # -- evaluation primitives (dopt.evaluation.EvalOps) -----------------------------------------
    def calibration_set(self, rng: np.random.Generator) -> np.ndarray:
        s = self.setup
        inputs = s.train[0]
        return inputs[
            calibration_indices(len(inputs), s.scenario.batch_size, s.scenario.searcher.bn_calib_batches, rng)
        ]

    def extract(self, arch: Arch) -> Net:
        return self.supernet.extract(arch, self.setup.pre, self.setup.post)

    def recalibrate(self, model: Net, calibration: np.ndarray) -> None:
        model.forward(calibration, calibrate=True)

    def metric(self, model: Net, max_batches: int | None = None) -> Any:
        s = self.setup
        if max_batches is None:  # a candidate's metric (search, analysis), not the per-epoch monitor
            s.control.tick("metric")
        limit = s.scenario.searcher.eval_batches
        if max_batches is not None:
            limit = min(max_batches, limit or max_batches)
        (inputs, labels), bs = s.val, s.scenario.batch_size
        batches = [(inputs[i : i + bs], labels[i : i + bs]) for i in range(0, len(labels), bs)][:limit]
        return s.user.metrics_func(batches, model.forward)

    def count(self, model: Net) -> Costs:
        searched = sum(p.size for layer in model.layers for p in layer.parameters())
        size = param_count(model.pre) + param_count(model.post) + searched
        return Costs(
            size=size, flops=fixed_macs(model.pre) + fixed_macs(model.post) + layer_macs(model, self.setup.probe.in_hw)
        )

    def write_result(self, model: Net, arch: Arch, script: Path, header: dict[str, Any]) -> tuple[Costs, Net]:
        s = self.setup
        text = render_script(
            name=script.stem,
            header=header,
            rows=self.space.layer_rows(arch),
            input_shape=s.scenario.supernet.chw,
            user_sha256=s.user_sha256,
        )
        return write_and_verify(model, text, script, s.scenario.supernet.chw, self.count)
