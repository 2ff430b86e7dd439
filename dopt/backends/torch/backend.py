"""The PyTorch backend: setup of a torch user module, and the supernet session whose primitives the
core's training loop and evaluator drive (docs/architecture.md#call-order)."""

from __future__ import annotations

import logging
from collections.abc import Sized
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, cast

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from dopt.backends.base import Probe
from dopt.backends.scripts import ScriptSpec, measures_latency
from dopt.backends.torch import data, probe
from dopt.backends.torch.bn_calib import recalibrate
from dopt.backends.torch.device import cpu_threads, pick_device, seed_everything
from dopt.backends.torch.evaluate import evaluate
from dopt.backends.torch.export import render_script, write_and_verify
from dopt.backends.torch.latency import TorchLatencyMeter
from dopt.backends.torch.pretrain import TorchPretrainer, load_pretrained
from dopt.backends.torch.profile import count_macs, count_params
from dopt.backends.torch.supernet import Supernet
from dopt.backends.torch.train import TorchTrainer, save_atomic
from dopt.costs import Costs
from dopt.errors import UserError
from dopt.evaluation import metric_value
from dopt.parallel.comm import Comm, SingleProcess
from dopt.parallel.launcher import Launch
from dopt.scenario import Scenario
from dopt.space import Arch, SearchSpace
from dopt.user_module import file_sha256

__all__ = ["TorchBackend", "TorchSetup", "TorchSession"]

log = logging.getLogger(__name__)


class TorchBackend:
    framework = "pytorch"

    def check_user_module(self, module: ModuleType) -> None:
        for name in ("PreNet", "PostNet"):
            if not issubclass(getattr(module, name), nn.Module):
                raise UserError(
                    f"{name} must subclass torch.nn.Module",
                    key=name,
                    fix=f"class {name}(torch.nn.Module): ... with forward(self, inputs)",
                )

    def gpu_count(self) -> int:
        return torch.cuda.device_count() if torch.cuda.is_available() else 0

    def connect(self, scenario: Scenario, launch: Launch) -> Comm:
        """Join the other processes of ``launch`` (docs/distributed.md#launching)."""
        from dopt.backends.torch.comm import connect

        device = pick_device(scenario.resource.gpu_ids, launch.local_rank, launch.local_size)
        return connect(launch, device)

    def setup(self, scenario: Scenario, module: ModuleType, seed: int, comm: Comm | None = None) -> TorchSetup:
        comm = comm or SingleProcess()
        device = comm.device or pick_device(scenario.resource.gpu_ids)
        torch.set_num_threads(cpu_threads())
        log.info("torch %s, %d CPU threads, device %s", torch.__version__, torch.get_num_threads(), device)
        seed_everything(seed, device)
        user = module.UserModule(epoch=scenario.epochs, batch_size=scenario.batch_size)
        sc, bs = scenario, scenario.batch_size
        train_ds = data.check_dataset(
            user.dataset_define(sc.dataset.train_dir, True), "dataset_define(train_dir, True)"
        )
        val_ds = data.check_dataset(user.dataset_define(sc.dataset.val_dir, False), "dataset_define(val_dir, False)")
        train_loader = data.train_loader(train_ds, bs, seed, device, comm.rank, comm.world_size)
        eval_loader = data.eval_loader(val_ds, bs, device, sc.searcher.eval_batches)
        first = data.first_batch(train_ds, bs, "dataset_define(train_dir, True)")
        data.check_batch(first, sc.supernet.chw, "training dataset")
        val_first = data.first_batch(val_ds, bs, "dataset_define(val_dir, False)")
        data.check_batch(val_first, sc.supernet.chw, "validation dataset")
        seed_everything(seed, device)  # PreNet/PostNet weights independent of the batches read above
        pre, post = module.PreNet(), module.PostNet()
        example = torch.zeros(1, *sc.supernet.chw)
        channels, hw = probe.prenet_output(pre, example)
        sn = sc.supernet
        post_in = probe.postnet_input(sn.filters, sn.strides, sn.feature_choose, hw)
        post_flops = probe.check_postnet(post, post_in, sn.filters[-1])
        # Counted after the dry runs, which materialise lazy layers (nn.LazyLinear).
        fixed = Costs(size=count_params(pre) + count_params(post), flops=count_macs(pre, example) + post_flops)
        return TorchSetup(
            scenario=scenario,
            seed=seed,
            comm=comm,
            user=user,
            device=device,
            user_sha256=file_sha256(Path(module.__file__ or "")),  # the file as imported, not as later edited
            train_ds=train_ds,
            val_ds=val_ds,
            train_loader=train_loader,
            eval_loader=eval_loader,
            first=first,
            pre=pre,
            post=post,
            example=example,
            probe=Probe(
                in_channels=channels, in_hw=hw, fixed=fixed, steps_per_epoch=len(train_loader), device=str(device)
            ),
        )


@dataclass(frozen=True, kw_only=True)
class TorchSetup:
    """The user module instantiated, its datasets read and checked, PreNet/PostNet dry-run."""

    scenario: Scenario
    seed: int
    comm: Comm
    user: Any
    device: torch.device
    user_sha256: str
    train_ds: Dataset
    val_ds: Dataset
    train_loader: DataLoader
    eval_loader: DataLoader
    first: Any  # the first training batch, for the rehearsal
    pre: nn.Module
    post: nn.Module
    example: torch.Tensor  # a zero input at batch 1, on the CPU
    probe: Probe

    def build_supernet(self, space: SearchSpace) -> TorchSession:
        return TorchSession(self, space)

    def latency_meter(self) -> TorchLatencyMeter:
        """Timing in this run's runtime with the scenario's latency_threads (docs/latency.md)."""
        sn = self.scenario.supernet
        post_in = probe.postnet_input(sn.filters, sn.strides, sn.feature_choose, self.probe.in_hw)
        return TorchLatencyMeter(
            self.pre, self.post, self.example, post_in, self.device, self.scenario.constraint.threads
        )

    result_weights_suffix = ".weights.pth"

    def build_result(self, script: Any, weights: Path | None) -> TorchResultTrainer:
        """The static model of a result script (its ``build_model()``), with ``weights`` loaded, or
        freshly initialised from the run's seed when None, ready to train (docs/training-a-result.md)."""
        seed_everything(self.seed, self.device)
        model = script.build_model()
        if weights is not None:
            model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
        return TorchResultTrainer(self, model)


class TorchSession(TorchTrainer):
    """One supernet: the trainer's primitives plus ``dopt.evaluation.EvalOps``."""

    _state_key = "supernet"

    def __init__(self, setup: TorchSetup, space: SearchSpace) -> None:
        # Re-seeded: every DataLoader iterator draws from torch's global RNG, so without this the
        # initial weights would depend on how many checks read a batch before.
        seed_everything(setup.seed, setup.device)
        self.supernet = Supernet(setup.pre, setup.post, space, setup.scenario.supernet.feature_choose)
        super().__init__(setup, self.supernet)

    def _activate(self, arch: Arch) -> None:
        self.supernet.set_active(arch)

    # -- pre-training (dopt.pipeline.pretrain) -------------------------------------------------------------
    def pretrainer(self, folder: Path, epochs: int) -> TorchPretrainer:
        """Pre-training of PreNet + the largest skeleton on ``folder`` (docs/tasks.md#pre-training)."""
        return TorchPretrainer(self.setup, self.supernet, folder, epochs)

    def load_pretrained(self, weights: Path, folder: Path) -> None:
        """PreNet's and the layers' weights from a pre-training output; UserError when they do not fit."""
        load_pretrained(self.supernet, weights, folder)
        self.supernet.to(self.setup.device)

    def rehearse(self, archs: list[Arch]) -> list[str]:
        """One forward/backward per arch on the first training batch and the metric of the first on
        one validation batch, so contract mistakes surface before training. BatchNorm statistics,
        weights and RNG streams are left as they were."""
        s = self.setup
        inputs, labels = data.to_device(s.first, s.device)
        lines = []
        self.supernet.eval()
        for arch in archs:
            self.supernet.set_active(arch)
            outputs = self.supernet(inputs)
            loss = s.user.loss_func(labels, outputs)
            probe.check_loss(loss)
            loss.backward()
            lines.append(f"loss {float(loss.detach()):.4g}")
        probe.check_distillable(outputs, s.scenario.training.distill)
        self.supernet.zero_grad(set_to_none=True)
        bs = s.scenario.batch_size
        n_val = len(cast(Sized, s.val_ds))
        one_batch = data.eval_loader(Subset(s.val_ds, range(min(n_val, bs))), bs, torch.device("cpu"), None)
        metric = metric_value(
            evaluate(self.extract(archs[0]).eval(), s.user.metrics_func, one_batch, s.device), self.metric_function
        )
        lines[0] += f", metric on one validation batch {metric:.4g} (untrained)"
        return lines

    # -- evaluation primitives (dopt.evaluation.EvalOps) -----------------------------------------
    def calibration_set(self, rng: np.random.Generator) -> list[Any]:
        """The calibration subset under the run's seed: random augmentations in the user's dataset
        draw the same values however much training (or none: --stage search) came before."""
        s = self.setup
        seed_everything(s.seed, s.device)
        return data.calibration_batches(
            s.train_ds, s.scenario.batch_size, s.scenario.searcher.bn_calib_batches, rng, s.device
        )

    def extract(self, arch: Arch) -> nn.Module:
        self.supernet.set_active(arch)
        return self.supernet.extract()

    def recalibrate(self, model: nn.Module, calibration: list[Any]) -> None:
        recalibrate(model, calibration)
        model.eval()

    def metric(self, model: nn.Module, max_batches: int | None = None) -> Any:
        s = self.setup
        loader = s.eval_loader
        if max_batches is not None:
            limit = s.scenario.searcher.eval_batches
            loader = data.eval_loader(s.val_ds, s.scenario.batch_size, s.device, min(max_batches, limit or max_batches))
        return evaluate(model, s.user.metrics_func, loader, s.device)

    def count(self, model: nn.Module) -> Costs:
        return Costs(size=count_params(model), flops=count_macs(model, self.setup.example.to(self.setup.device)))

    def write_result(
        self, model: nn.Module, arch: Arch, script: Path, header: dict[str, Any]
    ) -> tuple[Costs, nn.Module]:
        """Write script + weights (BN recalibrated for ``arch``); rebuild, export and verify them."""
        s = self.setup
        spec = ScriptSpec(
            name=script.stem,
            header=header,
            rows=self.supernet.layer_rows(arch),
            features=self.supernet.static_features(arch),
            input_shape=s.scenario.supernet.chw,
            user_sha256=s.user_sha256,
            measure_latency=measures_latency(s.scenario, s.user),
            latency_threads=s.scenario.constraint.threads,
        )
        return write_and_verify(model, render_script(spec, latency_on_gpu=s.device.type == "cuda"), script, s.example)


class TorchResultTrainer(TorchTrainer):
    """A result's static model trained on its own (``dopt train``)."""

    def evaluate(self) -> float:
        """The user's metric of the model over the whole validation set, BatchNorm as trained."""
        s = self.setup
        loader = data.eval_loader(s.val_ds, s.scenario.batch_size, s.device, None)
        return metric_value(evaluate(self.net.eval(), s.user.metrics_func, loader, s.device), self.metric_function)

    def save_weights(self, path: Path) -> None:
        """The weights as the result script loads them: a CPU state dict."""
        save_atomic({k: v.detach().cpu() for k, v in self.net.state_dict().items()}, path)
