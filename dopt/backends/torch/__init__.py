"""PyTorch backend: supernet, training, evaluation, costs and result scripts for torch user modules."""

from __future__ import annotations

import copy
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch import nn

from dopt.backends.base import Probe, StepLog
from dopt.backends.torch import data
from dopt.backends.torch.bn_calib import recalibrate
from dopt.backends.torch.evaluate import evaluate as _evaluate
from dopt.backends.torch.export import render_script, write_result
from dopt.backends.torch.profile import count_macs, count_params
from dopt.backends.torch.supernet import Supernet
from dopt.backends.torch.train import _State, make_optimizer, train_epoch
from dopt.costs import Costs
from dopt.errors import UserError
from dopt.scenario import Scenario
from dopt.space import Arch, SearchSpace
from dopt.user_module import file_sha256

__all__ = ["TorchBackend"]

log = logging.getLogger(__name__)


def _device(gpu_ids: tuple[int, ...]) -> torch.device:
    if not gpu_ids:
        return torch.device("cpu")
    if not torch.cuda.is_available() or gpu_ids[0] >= torch.cuda.device_count():
        log.warning("gpu_id %s: no such CUDA device here; running one process on the CPU", ",".join(map(str, gpu_ids)))
        return torch.device("cpu")
    if len(gpu_ids) > 1:
        log.warning("gpu_id lists %d GPUs; multi-process runs come in a later version, using cuda:%d", len(gpu_ids), gpu_ids[0])
    return torch.device(f"cuda:{gpu_ids[0]}")


class TorchBackend:
    framework = "pytorch"

    def __init__(self) -> None:
        self.supernet: Supernet | None = None
        self._calib: list[Any] = []
        self._last: tuple[Arch, nn.Module] | None = None
        self._state = _State()

    # -- setup ---------------------------------------------------------------------------------
    def check_user_module(self, module: ModuleType) -> None:
        for name in ("PreNet", "PostNet"):
            cls = getattr(module, name)
            if not issubclass(cls, nn.Module):
                raise UserError(f"{name} must subclass torch.nn.Module", key=name,
                                fix=f"class {name}(torch.nn.Module): ... with forward(self, inputs)")

    def setup(self, scenario: Scenario, module: ModuleType, seed: int) -> Probe:
        self.scenario, self.module, self.seed = scenario, module, seed
        self.device = _device(scenario.resource.gpu_ids)
        torch.set_num_threads(_cpu_threads())
        log.info("torch %s, %d CPU threads, device %s", torch.__version__, torch.get_num_threads(), self.device)
        _seed_everything(seed, self.device)
        self.user = module.UserModule(epoch=scenario.epochs, batch_size=scenario.batch_size)
        train_ds = data.check_dataset(self.user.dataset_define(scenario.dataset.train_dir, True), "dataset_define(train_dir, True)")
        val_ds = data.check_dataset(self.user.dataset_define(scenario.dataset.val_dir, False), "dataset_define(val_dir, False)")
        self.train_ds = train_ds
        self.train_loader = data.train_loader(train_ds, scenario.batch_size, seed, self.device)
        self.eval_loader = data.eval_loader(val_ds, scenario.batch_size, self.device, scenario.searcher.eval_batches)
        first = next(iter(data.DataLoader(train_ds, batch_size=min(2, len(train_ds)))))  # type: ignore[arg-type]
        data.check_batch(first, scenario.supernet.chw)
        self.pre, self.post = module.PreNet(), module.PostNet()
        self.example = torch.zeros(1, *scenario.supernet.chw)
        try:
            with torch.no_grad():
                self.pre.eval()
                skeleton_in = self.pre(self.example)
        except Exception as exc:
            raise UserError(
                f"PreNet.forward failed on a zero input of input_shape {tuple(self.example.shape[1:])}: "
                f"{type(exc).__name__}: {exc}",
                key="PreNet.forward", fix="make PreNet accept (N, C, H, W) tensors of supernet.input_shape",
            ) from None
        if not isinstance(skeleton_in, torch.Tensor) or skeleton_in.dim() != 4:
            raise UserError(
                f"PreNet.forward returned {type(skeleton_in).__name__}"
                + (f" of shape {tuple(skeleton_in.shape)}" if isinstance(skeleton_in, torch.Tensor) else "")
                + "; the skeleton needs one NCHW tensor",
                key="PreNet.forward", fix="return the feature map (N, C, H, W) that the searched layers start from",
            )
        _, c, h, w = skeleton_in.shape
        self.in_hw = (int(h), int(w))
        fixed_size = count_params(self.pre) + count_params(self.post)
        post_in = self._post_example()
        try:
            post_flops = count_macs(self.post, post_in)
        except Exception as exc:
            shapes = [tuple(t.shape) for t in post_in] if isinstance(post_in, list) else tuple(post_in.shape)
            raise UserError(
                f"PostNet.forward failed on what the skeleton gives it, {shapes}: {type(exc).__name__}: {exc}",
                key="PostNet.forward",
                fix=f"PostNet receives filters[-1] = {self.scenario.supernet.filters[-1]} channels "
                "(and the feature_choose layers' outputs first, as a list): size its first layer for that",
            ) from None
        fixed_flops = count_macs(self.pre, self.example) + post_flops
        return Probe(int(c), self.in_hw, fixed_size, fixed_flops, len(self.train_loader), str(self.device))

    def _post_example(self) -> Any:
        """What PostNet receives at batch 1: the full-width last layer (and feature_choose layers)."""
        sn = self.scenario.supernet
        shapes, (h, w) = [], self.in_hw
        for filters, stride in zip(sn.filters, sn.strides):
            h, w = (h - 1) // stride + 1, (w - 1) // stride + 1
            shapes.append((1, filters, h, w))
        last = torch.zeros(shapes[-1])
        if not sn.feature_choose:
            return last
        return [torch.zeros(shapes[i]) for i in sn.feature_choose] + [last]

    # -- supernet --------------------------------------------------------------------------------
    def build_supernet(self, space: SearchSpace) -> None:
        self.space = space
        self.supernet = Supernet(self.pre, self.post, space, self.scenario.supernet.feature_choose).to(self.device)
        opt = self.scenario.optimizer
        self.optimizer = make_optimizer(self.supernet.parameters(), opt.type, opt.learning_rate, opt.betas, opt.momentum)
        self.scheduler = self.user.scheduler_define(self.optimizer, len(self.train_loader))
        if not hasattr(self.scheduler, "step"):
            raise UserError(f"scheduler_define returned {type(self.scheduler).__name__}, which has no step()",
                            key="UserModule.scheduler_define",
                            fix="return a torch.optim.lr_scheduler object built on the optimizer passed in")

    def train(self, sample: Callable[[int], list[Arch]], epochs: int, log_step: Callable[[StepLog], None],
              on_epoch_end: Callable[[int], None] | None = None) -> None:
        assert self.supernet is not None
        for epoch in range(epochs):
            train_epoch(self.supernet, self.train_loader, self.optimizer, self.scheduler, self.user.loss_func,
                        lambda: sample(epoch), epoch, self._state, self.device,
                        self.scenario.training.distill, log_step)
            if on_epoch_end is not None:
                on_epoch_end(epoch)

    def save_supernet(self, path: Path) -> None:
        import io

        from dopt.atomic import atomic_write_bytes

        assert self.supernet is not None
        buffer = io.BytesIO()
        torch.save({"supernet": self.supernet.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict() if hasattr(self.scheduler, "state_dict") else {},
                    "step": self._state.step}, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    def load_supernet(self, path: Path) -> None:
        assert self.supernet is not None
        state = torch.load(path, map_location=self.device, weights_only=True)
        self.supernet.load_state_dict(state["supernet"])
        self.optimizer.load_state_dict(state["optimizer"])
        if state["scheduler"] and hasattr(self.scheduler, "load_state_dict"):
            self.scheduler.load_state_dict(state["scheduler"])
        self._state.step = int(state["step"])

    # -- candidates --------------------------------------------------------------------------------
    def prepare_evaluation(self, rng: np.random.Generator) -> None:
        self._calib = data.calibration_batches(self.train_ds, self.scenario.batch_size,
                                               self.scenario.searcher.bn_calib_batches, rng, self.device)

    def evaluate(self, arch: Arch) -> float:
        return _evaluate(self._calibrated(arch), self.user.metrics_func, self.eval_loader, self.device)

    def measure(self, arch: Arch) -> Costs:
        static = self._extracted(arch)
        return Costs(count_params(static), count_macs(static, self.example.to(self.device)))

    def _extracted(self, arch: Arch) -> nn.Module:
        """The static model of ``arch``; the last one is kept, as measure() and evaluate() follow each other."""
        assert self.supernet is not None
        if self._last is None or self._last[0] != arch:
            self.supernet.set_active(arch)
            self._last = (arch, self.supernet.extract())
        return self._last[1]

    def _calibrated(self, arch: Arch) -> nn.Module:
        """``arch`` with inherited weights and recalibrated BatchNorm (SPEC 5.4), in eval mode.

        Recalibrating the extracted copy, not the supernet, leaves the supernet untouched: an
        evaluation is a pure function of (weights, architecture), and the model measured is
        exactly the model exported.
        """
        static = self._extracted(arch)
        recalibrate(static, self._calib)
        return static.eval()

    def write_result(self, arch: Arch, script: Path, header: dict[str, Any]) -> Costs:
        """Write script + weights (BN recalibrated for ``arch``), rebuild from the file, verify outputs."""
        assert self.supernet is not None
        static = self._calibrated(arch)
        text = render_script(
            name=script.stem, header=header, rows=self.supernet.layer_rows(), features=self.supernet.static_features(),
            input_shape=self.scenario.supernet.chw, user_sha256=file_sha256(Path(self.module.__file__ or "")),
        )
        costs, rebuilt = write_result(static, text, script, self.example)
        # Compared on the CPU in float32: on a GPU, TF32 convolutions alone differ by ~1e-3.
        reference = copy.deepcopy(static).cpu().eval()
        probe = torch.randn(2, *self.scenario.supernet.chw, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            expected, got = reference(probe), rebuilt(probe)
        diff = _max_abs_diff(expected, got)
        if diff > 1e-5 * max(1.0, _max_abs(expected)):
            raise RuntimeError(f"{script.name}: the rebuilt model's outputs differ from the searched subnet's by {diff:g}")
        return costs

    def smoke(self, archs: list[Arch]) -> Iterator[str]:
        assert self.supernet is not None
        batch = data.to_device(next(iter(self.train_loader)), self.device)
        self.supernet.train()
        for arch in archs:
            self.supernet.set_active(arch)
            loss = self.user.loss_func(batch[1], self.supernet(batch[0]))
            loss.backward()
            yield f"loss {float(loss.detach()):.4g}"
        self.optimizer.zero_grad(set_to_none=True)


def _max_abs(a: Any) -> float:
    if isinstance(a, torch.Tensor):
        return float(a.detach().abs().max()) if a.numel() else 0.0
    if isinstance(a, (list, tuple)):
        return max((_max_abs(x) for x in a), default=0.0)
    if isinstance(a, dict):
        return max((_max_abs(x) for x in a.values()), default=0.0)
    return 0.0


def _max_abs_diff(a: Any, b: Any) -> float:
    if isinstance(a, torch.Tensor):
        return float((a.detach().cpu().float() - b.detach().cpu().float()).abs().max()) if a.numel() else 0.0
    if isinstance(a, (list, tuple)):
        return max((_max_abs_diff(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, dict):
        return max((_max_abs_diff(a[k], b[k]) for k in a), default=0.0)
    return 0.0


def _cpu_threads() -> int:
    """OMP_NUM_THREADS when set, else the cores this process may use. Set explicitly (SPEC 10):
    results are reproducible for one thread count, and on a shared machine fewer threads can be
    much faster than oversubscribed ones."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _seed_everything(seed: int, device: torch.device) -> None:
    import random

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if device.type == "cuda":
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
