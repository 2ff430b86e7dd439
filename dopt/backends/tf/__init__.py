"""TensorFlow (tf.keras, Keras 3) backend: supernet, training, evaluation, costs and result scripts."""

from __future__ import annotations

import io
import logging
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import keras
import numpy as np
import tensorflow as tf

from dopt.atomic import atomic_write_bytes
from dopt.backends.base import CorruptCheckpoint, Probe, StepLog, epoch_seed
from dopt.backends.tf import data, probe
from dopt.backends.tf.bn_calib import recalibrate
from dopt.backends.tf.device import check_data_format, pick_device, seed_everything, set_threads
from dopt.backends.tf.evaluate import evaluate as _evaluate
from dopt.backends.tf.export import render_script, write_and_verify
from dopt.backends.tf.profile import count_macs, count_params
from dopt.backends.tf.supernet import Supernet
from dopt.backends.tf.train import TrainState, brief, lr_value, make_optimizer, train_epoch
from dopt.costs import Costs
from dopt.scenario import Scenario
from dopt.space import Arch, SearchSpace
from dopt.user_module import file_sha256

__all__ = ["TFBackend"]

log = logging.getLogger(__name__)


class TFBackend:
    framework = "tensorflow"
    checkpoint_suffix = ".weights.npz"

    def __init__(self) -> None:
        self.supernet: Supernet | None = None
        self._calib: list[Any] = []
        self._last: tuple[Arch, Any] | None = None  # the last extracted subnet
        self._state = TrainState()

    # -- setup ---------------------------------------------------------------------------------
    def check_user_module(self, module: ModuleType) -> None:
        probe.check_classes(module)

    def setup(self, scenario: Scenario, module: ModuleType, seed: int) -> Probe:
        self.scenario, self.module, self.seed = scenario, module, seed
        self.user_sha256 = file_sha256(Path(module.__file__ or ""))  # the file as imported, not as later edited
        sn = scenario.supernet
        self.device = pick_device(scenario.resource.gpu_ids)
        threads = set_threads()
        check_data_format(sn.data_format, self.device)
        log.info("tensorflow %s, keras %s, %d CPU threads, device %s", tf.__version__, keras.__version__, threads,
                 self.device)
        seed_everything(seed)
        self.user = module.UserModule(epoch=scenario.epochs, batch_size=scenario.batch_size)
        self._make_dataset = data.dataset_fn(self.user)
        self._read_datasets()
        seed_everything(seed)  # PreNet/PostNet weights independent of the batches read above
        self.pre, self.post = module.PreNet(), module.PostNet()
        self.example = np.zeros((1, *sn.input_shape), np.float32)
        channels, hw = probe.prenet_output(self.pre, self.example, sn.data_format)
        post_in = probe.postnet_input(sn.filters, sn.strides, sn.feature_choose, hw, sn.data_format)
        post_flops = probe.check_postnet(self.post, post_in, sn.filters[-1])
        fixed_size = count_params(self.pre) + count_params(self.post)
        fixed_flops = count_macs(self.pre, self.example) + post_flops
        return Probe(channels, hw, fixed_size, fixed_flops, self.train_data.steps, self.device)

    def _read_datasets(self) -> None:
        sc, bs, shape = self.scenario, self.scenario.batch_size, self.scenario.supernet.input_shape
        self.train_data = data.Data(self._make_dataset(sc.dataset.train_dir, True, True),
                               "build_dataset_search(train_dir, True)", shape, bs, True)
        self.val_data = data.Data(self._make_dataset(sc.dataset.val_dir, False, False),
                             "build_dataset_search(val_dir, False)", shape, bs, False)
        n_eval = sc.searcher.eval_batches
        self.val_batches = self.val_data.dataset.take(n_eval) if n_eval is not None else self.val_data.dataset
        self._first = self.train_data.first()
        data.check_batch(self._first, sc.supernet.input_shape, "training dataset")
        self._first_val = self.val_data.first()
        data.check_batch(self._first_val, sc.supernet.input_shape, "validation dataset")
        self._epochs = data.TrainEpochs(self.train_data)

    # -- supernet --------------------------------------------------------------------------------
    def build_supernet(self, space: SearchSpace) -> None:
        seed_everything(self.seed)
        sn = self.scenario.supernet
        self.supernet = Supernet(self.pre, self.post, space, sn.feature_choose, sn.input_shape, sn.data_format)
        opt = self.scenario.optimizer
        self.optimizer = make_optimizer(opt.type, opt.learning_rate, opt.betas, opt.momentum)
        self.optimizer.build(self.supernet.trainable_variables)
        self.lr_init = opt.learning_rate

    def rehearse(self, archs: list[Arch]) -> list[str]:
        """One forward/backward per arch on the first training batch (inference mode: no BN
        statistics change, no optimizer step) and the metric of the first on one validation
        batch, so contract mistakes surface before training."""
        assert self.supernet is not None
        inputs, labels = self._first
        variables = self.supernet.trainable_variables
        lines = []
        for arch in archs:
            self.supernet.set_active(arch)
            with tf.GradientTape() as tape:
                outputs = self.supernet(inputs, training=False)
                loss = self.user.loss_op(labels, outputs)
            probe.check_loss(loss, tape.gradient(loss, variables) if isinstance(loss, tf.Tensor) else [])
            lines.append(f"loss {float(tf.reshape(loss, [])):.4g}")
        probe.check_distillable(outputs, self.scenario.training.distill)
        lr_value(self.user.lr_scheduler, self.lr_init, 0)
        metric = _evaluate(self._extracted(archs[0]), self.user.metrics_op, [self._first_val])
        lines[0] += f", metric on one validation batch {metric:.4g} (untrained)"
        self._last = None
        return lines

    def train(self, sample: Callable[[int], list[Arch]], epochs: int, log_step: Callable[[StepLog], None],
              on_epoch_end: Callable[[int], None] | None = None, start_epoch: int = 0) -> None:
        assert self.supernet is not None
        self._last = None
        for epoch in range(start_epoch, epochs):
            # Every RNG from (seed, epoch): a run resumed at this epoch draws what an uninterrupted
            # one does; the data order comes from the dataset's own iteration count (data.TrainEpochs).
            seed_everything(epoch_seed(self.seed, epoch))
            train_epoch(self.supernet, self._epochs.batches(epoch), self.optimizer, self.user.lr_scheduler,
                        self.lr_init, self.user.loss_op, lambda: sample(epoch), epoch, self._state,
                        self.scenario.training.distill, log_step)
            if on_epoch_end is not None:
                on_epoch_end(epoch)

    def save_supernet(self, path: Path) -> None:
        """Every variable of the supernet (weights, BN statistics, dropout seed states) and of the
        optimizer (its step count included), plus dopt's step counter, as one .npz."""
        assert self.supernet is not None
        arrays = {f"model/{i:05d}": v.numpy() for i, v in enumerate(self.supernet.variables)}
        arrays.update({f"optimizer/{i:05d}": v.numpy() for i, v in enumerate(self.optimizer.variables)})
        arrays["step"] = np.array(self._state.step, np.int64)
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        atomic_write_bytes(path, buffer.getvalue())

    def load_supernet(self, path: Path) -> None:
        assert self.supernet is not None
        try:
            with np.load(path, allow_pickle=False) as archive:  # arrays only: no code runs
                for prefix, variables in (("model", self.supernet.variables), ("optimizer", self.optimizer.variables)):
                    keys = sorted(k for k in archive.files if k.startswith(prefix + "/"))
                    if len(keys) != len(variables):
                        raise ValueError(f"{len(keys)} {prefix} variables in the file, {len(variables)} in this supernet")
                    values = [archive[k] for k in keys]
                    for v, value in zip(variables, values):
                        if tuple(value.shape) != tuple(v.shape):
                            raise ValueError(f"{v.path}: shape {tuple(value.shape)} in the file, {tuple(v.shape)} here")
                    for v, value in zip(variables, values):
                        v.assign(value)
                self._state.step = int(archive["step"])
        except (OSError, KeyError, ValueError, EOFError, TypeError, zipfile.BadZipFile, zlib.error) as exc:
            raise CorruptCheckpoint(f"{path.name}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}") from exc
        self._state.bad_in_row = 0
        self._last = None

    # -- candidates --------------------------------------------------------------------------------
    def prepare_evaluation(self, rng: np.random.Generator) -> None:
        """The calibration subset from a freshly built training dataset, unshuffled where the user's
        function takes ``is_shuffle`` (SPEC 4.2), under the run's seed: the same subset however
        often the dataset was iterated before (training, resume, --stage search)."""
        sc = self.scenario
        seed_everything(self.seed)
        fresh = data.Data(self._make_dataset(sc.dataset.train_dir, True, False),
                          "build_dataset_search(train_dir, True, False)", sc.supernet.input_shape,
                          sc.batch_size, True)
        self._calib = data.calibration_batches(fresh, sc.batch_size, sc.searcher.bn_calib_batches, rng)

    def evaluate(self, arch: Arch) -> float:
        return _evaluate(self._calibrated(arch), self.user.metrics_op, self.val_batches)

    def measure(self, arch: Arch) -> Costs:
        static = self._extracted(arch)
        return Costs(count_params(static), count_macs(static, self.example))

    def _extracted(self, arch: Arch) -> Any:
        """The static model of ``arch``; the last one is kept, as measure() and evaluate() follow
        each other. Only BN statistics of the kept copy change (recalibration), never its shape."""
        assert self.supernet is not None
        if self._last is None or self._last[0] != arch:
            self.supernet.set_active(arch)
            try:
                self._last = (arch, self.supernet.extract())
            except Exception as exc:
                if hasattr(exc, "add_note"):
                    exc.add_note(f"extracting subnet {brief(arch)}")
                raise
        return self._last[1]

    def _calibrated(self, arch: Arch) -> Any:
        """``arch`` with inherited weights and recalibrated BatchNorm (SPEC 5.4). Recalibrating the
        extracted copy leaves the supernet untouched: an evaluation is a pure function of
        (weights, architecture), and the model measured is exactly the model exported."""
        static = self._extracted(arch)
        recalibrate(static, self._calib)
        return static

    def write_result(self, arch: Arch, script: Path, header: dict[str, Any]) -> Costs:
        """Write script + weights (BN recalibrated for ``arch``); rebuild, export and verify them."""
        assert self.supernet is not None
        sn = self.scenario.supernet
        text = render_script(
            name=script.stem, header=header, rows=self.supernet.layer_rows(arch),
            features=self.supernet.static_features(arch), input_shape=sn.input_shape,
            data_format=sn.data_format, user_sha256=self.user_sha256,
        )
        return write_and_verify(self._calibrated(arch), text, script, self.example)
