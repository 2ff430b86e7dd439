"""Latency of Keras models and blocks (docs/latency.md#how-latency-is-measured).

Runtime: ``model(x, training=False)`` traced once into a concrete ``tf.function`` at batch 1 (no
autograph), called with a tensor. TensorFlow fixes its thread pools when it starts, so a latency
run sets the intra-op pool to ``latency_threads`` for the whole process (dopt/backends/tf/device.py).
The same method runs in every result script (dopt/latency/timing.py is copied there).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import tensorflow as tf

from dopt.backends.cpus import cpu_name, source_hash
from dopt.backends.tf import static
from dopt.latency import timing
from dopt.latency.build import Job

__all__ = ["TFLatencyMeter", "RUNTIME", "traced_inference"]

RUNTIME = "tf.function concrete, training=False"


def traced_inference(model: Any, inputs: Any) -> Callable[[], Any]:
    """``model(inputs, training=False)`` as a zero-argument call of one concrete traced function."""
    spec = tf.nest.map_structure(lambda t: tf.TensorSpec(t.shape, t.dtype), inputs)
    concrete = tf.function(lambda x: model(x, training=False), autograph=False).get_concrete_function(spec)
    return lambda: concrete(inputs)


class TFLatencyMeter:
    """Times :class:`dopt.latency.build.Job` s with one TensorFlow runtime.

    Args:
        pre_cls, post_cls: the user's PreNet and PostNet classes (fresh instances are timed).
        example: a zero input at batch 1.
        post_input: what PostNet receives at batch 1 (a tensor, or a list with feature_choose).
        device: "/CPU:0" or "/GPU:0".
        threads: the intra-op thread count the process runs with.
        data_format: of the searched blocks.
    """

    def __init__(
        self,
        pre_cls: type,
        post_cls: type,
        example: np.ndarray,
        post_input: Any,
        device: str,
        threads: int,
        data_format: str,
    ) -> None:
        self.pre_cls, self.post_cls = pre_cls, post_cls
        self.example, self.post_input = tf.constant(example), post_input
        self.device, self.threads, self.data_format = device, threads, data_format

    def key(self) -> dict[str, Any]:
        gpu = "GPU" in self.device
        name = (
            tf.config.experimental.get_device_details(tf.config.list_physical_devices("GPU")[0]).get(
                "device_name", "GPU"
            )
            if gpu
            else cpu_name()
        )
        return {
            "device": f"{'gpu' if gpu else 'cpu'}: {name}",
            "framework": "tensorflow",
            "framework_version": tf.__version__,
            "runtime": RUNTIME,
            "threads": self.threads,
            "fixed_parts": source_hash(self.pre_cls(), self.post_cls()),
        }

    def measure(self, jobs: Sequence[Job], on_round: Callable[[int], None] | None = None) -> list[float]:
        with tf.device(self.device):
            calls = [self._call(job) for job in jobs]
            if "GPU" in self.device:  # a GPU's work is done once its output is read back
                calls = [_read_back(call) for call in calls]
            return timing.measure_ms(
                calls, timing.ROUNDS, timing.REPEATS, on_round=on_round
            )  # read at the call: tests lower them

    def _call(self, job: Job) -> Callable[[], Any]:
        x = self.example
        if job.kind == "empty":
            return traced_inference(_Identity(), x)
        if job.kind == "prenet":
            return traced_inference(self.pre_cls(), x)
        if job.kind == "postnet":
            return traced_inference(self.post_cls(), self.post_input)
        if job.kind == "block":
            assert job.block is not None
            cin, hw = job.block.row[0], job.block.hw
            shape = (1, *hw, cin) if self.data_format == "channels_last" else (1, cin, *hw)
            block = static.InvertedResidual(*job.block.row, data_format=self.data_format)
            return traced_inference(block, tf.random.normal(shape))
        if job.kind == "subnet":
            net = static.Net(self.pre_cls(), self.post_cls(), list(job.rows), job.features, self.data_format)
            net(x, training=False)  # creates the variables
            return traced_inference(net, x)
        if job.kind == "model":
            return traced_inference(job.model, x)
        raise ValueError(f"unknown latency job {job.kind!r}")


def _read_back(call: Callable[[], Any]) -> Callable[[], Any]:
    return lambda: tf.nest.map_structure(lambda t: t.numpy(), call())


class _Identity:
    def __call__(self, x: Any, training: bool = False) -> Any:
        return tf.identity(x)
