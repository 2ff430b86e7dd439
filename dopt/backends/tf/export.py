"""Result scripts for TensorFlow: a standalone tf.keras model file plus its inherited weights,
verified (docs/outputs.md#working-directory-layout)."""

from __future__ import annotations

import contextlib
import inspect
import io
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from dopt.backends.scripts import ScriptParts, check_outputs, load_script, render
from dopt.backends.tf import static
from dopt.backends.tf.profile import count_macs, count_params
from dopt.costs import Costs
from dopt.store.atomic import atomic_write_bytes, atomic_write_text

__all__ = ["render_script", "write_and_verify", "load_script", "save_weights"]

_MAIN = '''

def build_model() -> Net:
    model = Net(PreNet(), PostNet(), LAYERS, FEATURE_LAYERS, DATA_FORMAT)
    model(np.zeros((1, *INPUT_SHAPE), np.float32), training=False)  # creates the variables
    return model


def export(model: keras.Model, directory: str = ".") -> list:
    """Write NAME_saved_model/ (SavedModel), NAME.pb (frozen graph, batch 1) and log_NAME/
    (TensorBoard graph) into ``directory``; all of the inference graph (training=False)."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    paths = [os.path.join(directory, NAME + "_saved_model"), os.path.join(directory, NAME + ".pb"),
             os.path.join(directory, "log_" + NAME)]
    model.export(paths[0], format="tf_saved_model", verbose=False,
                 input_signature=[tf.TensorSpec((None, *INPUT_SHAPE), tf.float32, name="input")])
    inference = tf.function(lambda x: model(x, training=False), autograph=False)
    concrete = inference.get_concrete_function(tf.TensorSpec((1, *INPUT_SHAPE), tf.float32, name="input"))
    frozen = convert_variables_to_constants_v2(concrete)
    tf.io.write_graph(frozen.graph.as_graph_def(), directory, NAME + ".pb", as_text=False)
    writer = tf.summary.create_file_writer(paths[2])
    with writer.as_default():
        tf.summary.graph(frozen.graph)
    writer.close()
    return paths


def measure_latency(model: keras.Model) -> float:
    """Milliseconds of one inference at batch 1 (a traced function of model(x, training=False)),
    timed as dopt timed latency_ms; main() sets LATENCY_THREADS intra-op threads first."""
    example = tf.zeros((1, *INPUT_SHAPE))
    concrete = tf.function(lambda x: model(x, training=False), autograph=False).get_concrete_function(
        tf.TensorSpec(example.shape, example.dtype))
    if tf.config.list_logical_devices("GPU"):  # a GPU's work is done once its output is read back
        return measure_ms([lambda: tf.nest.map_structure(lambda t: t.numpy(), concrete(example))])[0]
    return measure_ms([lambda: concrete(example)])[0]


def main() -> None:
    args = _arguments()
    if args.latency or MEASURE_LATENCY:
        try:  # TensorFlow fixes its thread pools when it first runs an op
            tf.config.threading.set_intra_op_parallelism_threads(LATENCY_THREADS)
        except RuntimeError:
            print("warning: TensorFlow was already running; the latency is measured with its default threads")
    _check_user_module()
    if args.train:
        _train(args)
    model = build_model()
    trained = os.path.join(_HERE, NAME + ".trained.weights.h5")
    weights = trained if os.path.exists(trained) else os.path.join(_HERE, NAME + ".weights.h5")
    if os.path.exists(weights):
        model.load_weights(weights)
        what = "trained weights" if weights == trained else "inherited weights (BN recalibrated)"
        print(f"loaded {what} from {weights}")
    else:
        print(f"no {NAME}.weights.h5 beside this file: weights are freshly initialised")
    export(model, os.getcwd())
    print(f"wrote {NAME}_saved_model/ (SavedModel), {NAME}.pb (frozen graph) and log_{NAME}/ (TensorBoard graph) "
          f"in {os.getcwd()}")
    if args.latency or MEASURE_LATENCY:
        threads = tf.config.threading.get_intra_op_parallelism_threads()
        print(f"latency at batch 1 ({threads or 'default'} intra-op thread(s), traced inference): "
              f"{measure_latency(model):.4g} ms, the fastest of {ROUNDS * REPEATS} timed calls as dopt measures it "
              "(compare with latency_ms in the header)")


if __name__ == "__main__":
    main()
'''


def _static_source() -> str:
    source = inspect.getsource(static)
    body = source.split("import keras\n", 1)[1]  # classes only; imports are in the header
    return body.strip("\n")


def render_script(
    *,
    name: str,
    header: dict[str, Any],
    rows: Sequence[tuple[int, ...]],
    features: tuple[int, ...],
    input_shape: tuple[int, int, int],
    data_format: str,
    user_sha256: str,
    latency: tuple[bool, int] = (False, 1),
) -> str:
    """The text of a TensorFlow result script (``dopt.backends.scripts.render``).

    ``latency``: (measure it when run, intra-op threads), docs/latency.md.
    """
    layout = "H, W, C" if data_format == "channels_last" else "C, H, W"
    parts = ScriptParts(
        exports="{name}_saved_model/ (SavedModel), {name}.pb (frozen graph) and a TensorBoard graph log",
        imports="\nimport keras\nimport numpy as np\nimport tensorflow as tf\n",
        static_source=_static_source(),
        body=_MAIN,
    )
    constants = {
        "INPUT_SHAPE": (tuple(input_shape), layout),
        "DATA_FORMAT": data_format,
        "USER_MODULE_SHA256": user_sha256,
        "MEASURE_LATENCY": (latency[0], "print the latency after exporting (the run constrained latency)"),
        "LATENCY_THREADS": (latency[1], "intra-op threads of the latency measurement"),
    }
    return render(parts, name=name, header=header, constants=constants, rows=rows, features=features)


def save_weights(model: Any, path: Path) -> None:
    """``model.save_weights`` (HDF5, loaded without executing code), written atomically."""
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch) / path.name  # Keras wants the name to end in .weights.h5
        model.save_weights(str(tmp))
        atomic_write_bytes(path, tmp.read_bytes())


def write_and_verify(static_model: Any, script_text: str, script: Path, example: np.ndarray) -> tuple[Costs, Any]:
    """Write ``script`` and the weights of ``static_model`` beside it, then rebuild the model from
    the written file, run its exports once, and check its outputs against ``static_model`` (docs/outputs.md#working-directory-layout).

    Returns:
        Params and MACs of the rebuilt model (what the user's exported model has), and that model.

    Raises:
        RuntimeError: the rebuilt model's outputs differ from ``static_model``'s.
    """
    atomic_write_text(script, script_text)
    weights = script.with_name(script.stem + ".weights.h5")
    save_weights(static_model, weights)
    module = load_script(script)
    with contextlib.redirect_stdout(io.StringIO()):
        model = module.build_model()
        model.load_weights(str(weights))
        with tempfile.TemporaryDirectory() as scratch:  # the user's exports must work: run them once
            module.export(model, scratch)
    probe = np.random.default_rng(0).standard_normal((2, *example.shape[1:])).astype(np.float32)
    expected, got = static_model(probe, training=False), model(probe, training=False)
    diff = max(
        (float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(tf.nest.flatten(expected), tf.nest.flatten(got))),
        default=0.0,
    )
    scale = max((float(tf.reduce_max(tf.abs(a))) for a in tf.nest.flatten(expected)), default=0.0)
    check_outputs(script, diff, scale)
    return Costs(size=count_params(model), flops=count_macs(model, example)), model
