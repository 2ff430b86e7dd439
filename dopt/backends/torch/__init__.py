"""PyTorch backend: supernet, training, evaluation, costs and result scripts for torch user modules."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Sized
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Subset

from dopt.atomic import atomic_write_bytes
from dopt.backends.base import CorruptCheckpoint, Probe, StepLog, epoch_seed
from dopt.backends.torch import data, probe
from dopt.backends.torch.bn_calib import recalibrate
from dopt.backends.torch.device import cpu_threads, pick_device, seed_everything
from dopt.backends.torch.evaluate import evaluate as _evaluate
from dopt.backends.torch.export import render_script, write_and_verify
from dopt.backends.torch.profile import count_macs, count_params
from dopt.backends.torch.supernet import Supernet
from dopt.backends.torch.train import TrainState, make_optimizer, train_epoch
from dopt.costs import Costs
from dopt.errors import UserError
from dopt.scenario import Scenario
from dopt.space import Arch, SearchSpace
from dopt.user_module import file_sha256

__all__ = ["TorchBackend"]

log = logging.getLogger(__name__)


class TorchBackend:
    framework = "pytorch"
    checkpoint_suffix = ".pt"

    def __init__(self) -> None:
        self.supernet: Supernet | None = None
        self._calib: list[Any] = []
        self._last: tuple[Arch, nn.Module] | None = None  # the last extracted subnet
        self._state = TrainState()

    # -- setup ---------------------------------------------------------------------------------
    def check_user_module(self, module: ModuleType) -> None:
        for name in ("PreNet", "PostNet"):
            if not issubclass(getattr(module, name), nn.Module):
                raise UserError(f"{name} must subclass torch.nn.Module", key=name,
                                fix=f"class {name}(torch.nn.Module): ... with forward(self, inputs)")

    def setup(self, scenario: Scenario, module: ModuleType, seed: int) -> Probe:
        self.scenario, self.module, self.seed = scenario, module, seed
        self.user_sha256 = file_sha256(Path(module.__file__ or ""))  # the file as imported, not as later edited
        self.device = pick_device(scenario.resource.gpu_ids)
        torch.set_num_threads(cpu_threads())
        log.info("torch %s, %d CPU threads, device %s", torch.__version__, torch.get_num_threads(), self.device)
        seed_everything(seed, self.device)
        self.user = module.UserModule(epoch=scenario.epochs, batch_size=scenario.batch_size)
        self._read_datasets(seed)
        seed_everything(seed, self.device)  # PreNet/PostNet weights independent of the batches read above
        self.pre, self.post = module.PreNet(), module.PostNet()
        self.example = torch.zeros(1, *scenario.supernet.chw)
        channels, hw = probe.prenet_output(self.pre, self.example)
        sn = scenario.supernet
        post_in = probe.postnet_input(sn.filters, sn.strides, sn.feature_choose, hw)
        post_flops = probe.check_postnet(self.post, post_in, sn.filters[-1])
        # Counted after the dry runs, which materialise lazy layers (nn.LazyLinear).
        fixed_size = count_params(self.pre) + count_params(self.post)
        fixed_flops = count_macs(self.pre, self.example) + post_flops
        return Probe(channels, hw, fixed_size, fixed_flops, len(self.train_loader), str(self.device))

    def _read_datasets(self, seed: int) -> None:
        sc, bs = self.scenario, self.scenario.batch_size
        self.train_ds = data.check_dataset(self.user.dataset_define(sc.dataset.train_dir, True), "dataset_define(train_dir, True)")
        self.val_ds = data.check_dataset(self.user.dataset_define(sc.dataset.val_dir, False), "dataset_define(val_dir, False)")
        self.train_loader = data.train_loader(self.train_ds, bs, seed, self.device)
        self.eval_loader = data.eval_loader(self.val_ds, bs, self.device, sc.searcher.eval_batches)
        self._first = next(iter(DataLoader(self.train_ds, batch_size=bs)))
        data.check_batch(self._first, sc.supernet.chw, "training dataset")
        data.check_batch(next(iter(DataLoader(self.val_ds, batch_size=bs))), sc.supernet.chw, "validation dataset")

    # -- supernet --------------------------------------------------------------------------------
    def build_supernet(self, space: SearchSpace) -> None:
        # Re-seeded: every DataLoader iterator draws from torch's global RNG, so without this the
        # initial weights would depend on how many checks read a batch before.
        seed_everything(self.seed, self.device)
        self.supernet = Supernet(self.pre, self.post, space, self.scenario.supernet.feature_choose).to(self.device)
        opt = self.scenario.optimizer
        self.optimizer = make_optimizer(self.supernet.parameters(), opt.type, opt.learning_rate, opt.betas, opt.momentum)
        self.scheduler = self.user.scheduler_define(self.optimizer, len(self.train_loader))
        probe.check_scheduler(self.scheduler)

    def rehearse(self, archs: list[Arch]) -> list[str]:
        """One forward/backward per arch on the first training batch and the metric of the first on
        one validation batch, so contract mistakes surface before training. BatchNorm statistics,
        weights and RNG streams are left as they were."""
        assert self.supernet is not None
        inputs, labels = data.to_device(self._first, self.device)
        lines = []
        self.supernet.eval()
        for arch in archs:
            self.supernet.set_active(arch)
            outputs = self.supernet(inputs)
            loss = self.user.loss_func(labels, outputs)
            probe.check_loss(loss)
            loss.backward()
            lines.append(f"loss {float(loss.detach()):.4g}")
        probe.check_distillable(outputs, self.scenario.training.distill)
        self.supernet.zero_grad(set_to_none=True)
        n_val = len(cast(Sized, self.val_ds))
        one_batch = data.eval_loader(Subset(self.val_ds, range(min(n_val, self.scenario.batch_size))),
                                     self.scenario.batch_size, torch.device("cpu"), None)
        metric = _evaluate(self._extracted(archs[0]).eval(), self.user.metrics_func, one_batch, self.device)
        lines[0] += f", metric on one validation batch {metric:.4g} (untrained)"
        self._last = None
        return lines

    def train(self, sample: Callable[[int], list[Arch]], epochs: int, log_step: Callable[[StepLog], None],
              on_epoch_end: Callable[[int], None] | None = None, start_epoch: int = 0) -> None:
        assert self.supernet is not None
        self._last = None
        for epoch in range(start_epoch, epochs):
            # Every RNG from (seed, epoch): a run resumed at this epoch draws what an uninterrupted one does.
            seed = epoch_seed(self.seed, epoch)
            seed_everything(seed, self.device)
            cast(torch.Generator, self.train_loader.generator).manual_seed(seed)
            train_epoch(self.supernet, self.train_loader, self.optimizer, self.scheduler, self.user.loss_func,
                        lambda: sample(epoch), epoch, self._state, self.device,
                        self.scenario.training.distill, log_step)
            if on_epoch_end is not None:
                on_epoch_end(epoch)

    def save_supernet(self, path: Path) -> None:
        assert self.supernet is not None
        buffer = io.BytesIO()
        torch.save({"supernet": self.supernet.state_dict(), "optimizer": self.optimizer.state_dict(),
                    "scheduler": self.scheduler.state_dict() if hasattr(self.scheduler, "state_dict") else {},
                    "step": self._state.step}, buffer)
        atomic_write_bytes(path, buffer.getvalue())

    def load_supernet(self, path: Path) -> None:
        assert self.supernet is not None
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
            self.supernet.load_state_dict(state["supernet"])
            self.optimizer.load_state_dict(state["optimizer"])
            if state["scheduler"] and hasattr(self.scheduler, "load_state_dict"):
                self.scheduler.load_state_dict(state["scheduler"])
            self._state.step = int(state["step"])
        except (OSError, RuntimeError, KeyError, ValueError, EOFError, TypeError) as exc:
            raise CorruptCheckpoint(f"{path.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
        self._state.bad_in_row = 0
        self._last = None

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
        """The static model of ``arch``; the last one is kept, as measure() and evaluate() follow
        each other. Only BN statistics of the kept copy change (recalibration), never its shape."""
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
        """Write script + weights (BN recalibrated for ``arch``); rebuild, export and verify them."""
        assert self.supernet is not None
        text = render_script(
            name=script.stem, header=header, rows=self.supernet.layer_rows(arch),
            features=self.supernet.static_features(arch), input_shape=self.scenario.supernet.chw,
            user_sha256=self.user_sha256,
        )
        return write_and_verify(self._calibrated(arch), text, script, self.example)
