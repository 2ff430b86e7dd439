"""dopt's Keras/TensorFlow supernet over the shared space (runs in the project venv).

The space of shared_space.py, channels_last. The supernet step is dopt's own (backends/tf: an eager
GradientTape over the supernet, whose blocks are traced once per (expansion, residual, training),
and the traced optimizer update), with an SGD(1e-3, momentum 0.9) optimizer.

The static network is the extracted Keras model that dopt writes for results (``Supernet.extract``,
backends/tf/static.py), trained the way a Keras user would: ``compile`` (same SGD, sparse
cross-entropy from logits) and ``train_on_batch``, which runs Keras' traced train step; its eval
forward is ``predict_on_batch`` (traced too). The notes add the ratios against the same model run
eagerly (a ``GradientTape`` step with the same traced update, as ``dopt train`` does it, and
``model(x, training=False)``), the other way a user might run it.
"""

from __future__ import annotations

import argparse
import os
import sys
import traceback

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from shared_space import SPACE, add_common_args  # noqa: E402
from timing import Row, emit, interleave, median  # noqa: E402

HWC = (*SPACE["input"][1:], SPACE["input"][0])


def _build():  # type: ignore[no-untyped-def]
    import keras

    from dopt.backends.tf.supernet import Supernet
    from dopt.scenario.model import SearchSpaceChoices
    from dopt.scenario.model import Supernet as SupernetConfig
    from dopt.space import SearchSpace

    class PreNet(keras.layers.Layer):
        def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(**kwargs)
            self.conv = keras.layers.Conv2D(SPACE["stem"], 3, padding="same", use_bias=False)
            self.bn = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)

        def call(self, x, training=False):  # type: ignore[no-untyped-def]
            return keras.ops.relu(self.bn(self.conv(x), training=training))

    class PostNet(keras.layers.Layer):
        def __init__(self, **kwargs):  # type: ignore[no-untyped-def]
            super().__init__(**kwargs)
            self.pool = keras.layers.GlobalAveragePooling2D()
            self.dense = keras.layers.Dense(SPACE["classes"])

        def call(self, x, training=False):  # type: ignore[no-untyped-def]
            return self.dense(self.pool(x))

    cfg = SupernetConfig(
        input_shape=HWC,
        data_format="channels_last",
        filters=SPACE["filters"],
        strides=SPACE["strides"],
        search_space=SearchSpaceChoices(
            kernel_sizes=SPACE["kernels"], expand_ratios=SPACE["expands"], width_ratios=SPACE["widths"], skip=False
        ),
    )
    space = SearchSpace(cfg, in_channels=SPACE["stem"])
    pre, post = PreNet(), PostNet()
    h = HWC[0] // 4
    pre(np.zeros((1, *HWC), np.float32))
    post(np.zeros((1, h, h, SPACE["filters"][-1]), np.float32))
    supernet = Supernet(pre, post, space, (), HWC, "channels_last")
    supernet.set_active(space.decode(space.largest()))
    supernet(np.zeros((1, *HWC), np.float32))
    return supernet, space


class _EagerStep:
    """One training step as dopt's TFTrainer runs it: eager tape, traced optimizer update."""

    def __init__(self, model, lr: float) -> None:  # type: ignore[no-untyped-def]
        import keras

        from dopt.backends.tf.train import traced_apply

        self.model = model
        self.optimizer = keras.optimizers.SGD(lr, momentum=0.9)
        self.variables = model.trainable_variables
        self.optimizer.build(self.variables)
        self.apply = traced_apply(self.optimizer, self.variables)

    def __call__(self, x, y) -> None:  # type: ignore[no-untyped-def]
        import keras
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = keras.losses.sparse_categorical_crossentropy(y, self.model(x, training=True), from_logits=True)
            loss = tf.reduce_mean(loss)
        grads = tape.gradient(loss, self.variables)
        self.apply([tf.zeros_like(v) if g is None else g for g, v in zip(grads, self.variables)])


def _compiled(net):  # type: ignore[no-untyped-def]
    import keras

    net.compile(
        optimizer=keras.optimizers.SGD(1e-3, momentum=0.9),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    return net


def measure(args: argparse.Namespace) -> Row:
    import keras

    keras.utils.set_random_seed(args.seed)
    rng = np.random.default_rng(args.seed)
    x = rng.standard_normal((args.batch, *HWC)).astype(np.float32)
    y = rng.integers(0, SPACE["classes"], args.batch).astype(np.int32)
    supernet, space = _build()

    def sample():  # type: ignore[no-untyped-def]
        return space.decode(space.sample(rng))

    warm = _EagerStep(supernet, 0.05)
    for _ in range(10):
        supernet.set_active(sample())
        warm(x, y)
    step_super = _EagerStep(supernet, 1e-3)
    ratios: dict[str, list[float]] = {"train": [], "eval": [], "train_eager": [], "eval_eager": []}
    for _ in range(args.subnets):
        arch = sample()
        supernet.set_active(arch)
        static = _compiled(supernet.extract())
        step_static = _EagerStep(supernet.extract(), 1e-3)

        def run(fn):  # type: ignore[no-untyped-def]
            return lambda: [fn() for _ in range(args.steps)]

        timers = {
            "ts": run(lambda: step_super(x, y)),
            "tt": run(lambda: static.train_on_batch(x, y)),
            "te": run(lambda: step_static(x, y)),
            "es": run(lambda: supernet(x, training=False)),
            "et": run(lambda: static.predict_on_batch(x)),
            "ee": run(lambda: static(x, training=False)),
        }
        m = interleave(timers, args.rounds)
        ratios["train"].append(m["ts"] / m["tt"])
        ratios["eval"].append(m["es"] / m["et"])
        ratios["train_eager"].append(m["ts"] / m["te"])
        ratios["eval_eager"].append(m["es"] / m["ee"])
    worst = 0.0
    for _ in range(args.exact):
        supernet.set_active(sample())
        net = supernet.extract()
        diff = np.abs(np.asarray(supernet(x, training=False)) - np.asarray(net(x, training=False)))
        worst = max(worst, float(diff.max()))
    med = {k: median(v) or 0.0 for k, v in ratios.items()}
    return Row(
        "dopt (Keras/TF)",
        "project venv",
        train=med["train"],
        eval=med["eval"],
        exact=worst,
        subnets=len(ratios["train"]),
        own=True,
        notes=f"static via train_on_batch/predict_on_batch; vs the same model eager: (a) {med['train_eager']:.2f}, "
        f"(b) {med['eval_eager']:.2f}",
        detail=med,
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_args(parser)
    args = parser.parse_args()
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.threads)
    tf.config.threading.set_inter_op_parallelism_threads(args.threads)
    try:
        row = measure(args)
    except Exception as exc:
        traceback.print_exc()
        row = Row("dopt (Keras/TF)", "project venv", own=True, error=f"{type(exc).__name__}: {exc}")
    emit([row])
    return 0


if __name__ == "__main__":
    sys.exit(main())
