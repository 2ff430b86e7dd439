"""The TensorFlow (tf.keras, Keras 3) backend: setup of a TF user module, and the supernet session
whose primitives the core's training loop and evaluator drive (docs/architecture.md#call-order)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from dopt.backends.base import Probe
from dopt.backends.cpus import available_cpus
from dopt.backends.scripts import ScriptSpec, measures_latency
from dopt.backends.tf import data, detection, probe
from dopt.backends.tf.bn_calib import recalibrate
from dopt.backends.tf.device import check_data_format, pick_device, seed_everything, set_threads
from dopt.backends.tf.export import render_script, save_weights, write_and_verify
from dopt.backends.tf.latency import TFLatencyMeter
from dopt.backends.tf.pretrain import TFPretrainer, load_pretrained
from dopt.backends.tf.profile import count_macs, count_params
from dopt.backends.tf.supernet import Supernet
from dopt.backends.tf.train import TFTrainer, lr_value
from dopt.costs import Costs
from dopt.evaluation import metric_value
from dopt.parallel.comm import Comm, SingleProcess
from dopt.parallel.launcher import Launch
from dopt.scenario import Scenario
from dopt.space import Arch, SearchSpace
from dopt.user_module import file_sha256

__all__ = ["TFBackend", "TFSetup", "TFSession"]

log = logging.getLogger(__name__)


class TFBackend:
    framework = "tensorflow"

    def check_user_module(self, module: ModuleType) -> None:
        probe.check_classes(module)

    def gpu_count(self) -> int:
        return len(tf.config.list_physical_devices("GPU"))

    def connect(self, scenario: Scenario, launch: Launch) -> Comm:
        """Join the other processes of ``launch`` through Horovod (docs/distributed.md#launching)."""
        from dopt.backends.tf.comm import connect

        # Devices and thread pools before Horovod's first collective starts TensorFlow's runtime.
        device = pick_device(scenario.resource.gpu_ids, launch.local_rank, launch.local_size)
        _threads(scenario)
        return connect(launch, device)

    def setup(self, scenario: Scenario, module: ModuleType, seed: int, comm: Comm | None = None) -> TFSetup:
        comm = comm or SingleProcess()
        sn = scenario.supernet
        if comm.world_size > 1:  # set by connect()
            device = comm.device
            threads = tf.config.threading.get_intra_op_parallelism_threads()
        else:
            device = pick_device(scenario.resource.gpu_ids)
            threads = _threads(scenario)
        check_data_format(sn.data_format, device)
        log.info(
            "tensorflow %s, keras %s, %d CPU threads, device %s", tf.__version__, keras.__version__, threads, device
        )
        seed_everything(seed)
        user = module.UserModule(epoch=scenario.epochs, batch_size=scenario.batch_size)
        # Object detection reads NASEA's generators (docs/user-module.md#tensorflow-object-detection); others tf.data.
        read = detection.datasets if scenario.constraint.application == "object_detection" else data.datasets
        ds = read(scenario, user, comm)
        shape = sn.input_shape
        seed_everything(seed)  # PreNet/PostNet weights independent of the batches read above
        pre, post = module.PreNet(), module.PostNet()
        example = np.zeros((1, *shape), np.float32)
        channels, hw = probe.prenet_output(pre, example, sn.data_format)
        post_in = probe.postnet_input(sn.filters, sn.strides, sn.feature_choose, hw, sn.data_format)
        post_flops = probe.check_postnet(post, post_in, sn.filters[-1])
        fixed = Costs(size=count_params(pre) + count_params(post), flops=count_macs(pre, example) + post_flops)
        return TFSetup(
            scenario=scenario,
            seed=seed,
            comm=comm,
            user=user,
            device=device,
            user_sha256=file_sha256(Path(module.__file__ or "")),  # the file as imported, not as later edited
            data=ds,
            pre=pre,
            post=post,
            example=example,
            probe=Probe(in_channels=channels, in_hw=hw, fixed=fixed, steps_per_epoch=ds.train.steps, device=device),
        )


def _threads(scenario: Scenario) -> int:
    # TensorFlow's thread pools are fixed once it starts: a latency run times with, and therefore
    # also trains with, latency_threads intra-op threads (docs/latency.md#threads).
    latency = scenario.constraint.kind == "latency"
    return set_threads(scenario.constraint.threads if latency else None)


@dataclass(frozen=True, kw_only=True)
class TFSetup:
    """The user module instantiated, its datasets built and checked, PreNet/PostNet dry-run."""

    scenario: Scenario
    seed: int
    comm: Comm
    user: Any
    device: str
    user_sha256: str
    data: data.TaskData  # the datasets and how a model is scored on them, chosen by the task
    pre: Any
    post: Any
    example: np.ndarray  # a zero input at batch 1
    probe: Probe

    def build_supernet(self, space: SearchSpace) -> TFSession:
        return TFSession(self, space)

    def latency_meter(self) -> TFLatencyMeter:
        """Timing in this run's runtime; TensorFlow's intra-op threads were fixed at start (docs/latency.md#threads)."""
        sn = self.scenario.supernet
        post_in = probe.postnet_input(sn.filters, sn.strides, sn.feature_choose, self.probe.in_hw, sn.data_format)
        # 0 is TensorFlow's default: one thread per core.
        threads = tf.config.threading.get_intra_op_parallelism_threads() or available_cpus()
        if threads != self.scenario.constraint.threads:
            log.warning(
                "TensorFlow was already running with %d intra-op threads: latency is measured with %d, not "
                "latency_threads %d (docs/latency.md#threads)",
                threads,
                threads,
                self.scenario.constraint.threads,
            )
        return TFLatencyMeter(
            type(self.pre), type(self.post), self.example, post_in, self.device, threads, sn.data_format
        )

    result_weights_suffix = ".weights.h5"

    def build_result(self, script: Any, weights: Path | None) -> TFResultTrainer:
        """The static model of a result script (its ``build_model()``), with ``weights`` loaded, or
        freshly initialised from the run's seed when None, ready to train (docs/training-a-result.md)."""
        seed_everything(self.seed)
        model = script.build_model()
        if weights is not None:
            model.load_weights(str(weights))
        return TFResultTrainer(self, model)


class TFSession(TFTrainer):
    """One supernet: the trainer's primitives plus ``dopt.evaluation.EvalOps``."""

    def __init__(self, setup: TFSetup, space: SearchSpace) -> None:
        seed_everything(setup.seed)
        sn = setup.scenario.supernet
        self.supernet = Supernet(setup.pre, setup.post, space, sn.feature_choose, sn.input_shape, sn.data_format)
        super().__init__(setup, self.supernet)

    def _activate(self, arch: Arch) -> None:
        self.supernet.set_active(arch)

    # -- pre-training (dopt.pipeline.pretrain) -------------------------------------------------------------
    def pretrainer(self, folder: Path, epochs: int) -> TFPretrainer:
        """Pre-training of PreNet + the largest skeleton on ``folder`` (docs/tasks.md#pre-training)."""
        return TFPretrainer(self.setup, self.supernet, folder, epochs)

    def load_pretrained(self, weights: Path, folder: Path) -> None:
        """PreNet's and the layers' weights from a pre-training output; UserError when they do not fit."""
        load_pretrained(self.supernet, weights, folder)

    def rehearse(self, archs: list[Arch]) -> list[str]:
        """One forward/backward per arch on the first training batch (inference mode: no BN
        statistics change, no optimizer step) and the metric of the first on one validation
        batch, so contract mistakes surface before training."""
        s = self.setup
        inputs, labels = s.data.first
        lines = []
        for arch in archs:
            self.supernet.set_active(arch)
            with tf.GradientTape() as tape:
                outputs = self.supernet(inputs, training=False)
                loss = s.user.loss_op(labels, outputs)
            probe.check_loss(loss, tape.gradient(loss, self.variables) if isinstance(loss, tf.Tensor) else [])
            lines.append(f"loss {float(tf.reshape(loss, [])):.4g}")
        probe.check_distillable(outputs, s.scenario.training.distill)
        lr_value(s.user.lr_scheduler, self.lr_init, 0)
        model = self.extract(archs[0])
        metric = metric_value(s.data.rehearsal_metric(model, s.user.metrics_op), self.metric_function)
        lines[0] += f", metric on one validation batch {metric:.4g} (untrained)"
        return lines

    # -- evaluation primitives (dopt.evaluation.EvalOps) -----------------------------------------
    def calibration_set(self, rng: np.random.Generator) -> list[Any]:
        """The calibration subset from a freshly built training dataset, under the run's seed: the
        same subset however often the dataset was iterated before (training, resume, --stage search)."""
        seed_everything(self.setup.seed)
        return self.setup.data.calibration_set(rng)

    def extract(self, arch: Arch) -> Any:
        self.supernet.set_active(arch)
        return self.supernet.extract()

    def recalibrate(self, model: Any, calibration: list[Any]) -> None:
        recalibrate(model, calibration)

    def metric(self, model: Any, max_batches: int | None = None) -> Any:
        return self.setup.data.metric(model, self.setup.user.metrics_op, max_batches)

    def count(self, model: Any) -> Costs:
        return Costs(size=count_params(model), flops=count_macs(model, self.setup.example))

    def write_result(self, model: Any, arch: Arch, script: Path, header: dict[str, Any]) -> tuple[Costs, Any]:
        """Write script + weights (BN recalibrated for ``arch``); rebuild, export and verify them."""
        s = self.setup
        sn = s.scenario.supernet
        spec = ScriptSpec(
            name=script.stem,
            header=header,
            rows=self.supernet.layer_rows(arch),
            features=self.supernet.static_features(arch),
            input_shape=sn.input_shape,
            user_sha256=s.user_sha256,
            measure_latency=measures_latency(s.scenario, s.user),
            latency_threads=tf.config.threading.get_intra_op_parallelism_threads() or available_cpus(),
        )
        return write_and_verify(model, render_script(spec, data_format=sn.data_format), script, s.example)


class TFResultTrainer(TFTrainer):
    """A result's static model trained on its own (``dopt train``)."""

    def evaluate(self) -> float:
        """The user's metric of the model over the whole validation set, BatchNorm as trained."""
        return metric_value(self.setup.data.whole_metric(self.net, self.setup.user.metrics_op), self.metric_function)

    def save_weights(self, path: Path) -> None:
        """The weights as the result script loads them (``model.load_weights``)."""
        save_weights(self.net, path)
