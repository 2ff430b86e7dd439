"""Result scripts for TensorFlow: a standalone tf.keras model file plus its inherited weights,
verified (docs/outputs.md#working-directory-layout)."""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import tensorflow as tf

from dopt.backends import scripts
from dopt.backends.tf import static
from dopt.backends.tf.profile import count_macs, count_params
from dopt.costs import Costs
from dopt.store.atomic import atomic_write_bytes

__all__ = ["render_script", "write_and_verify", "save_weights"]

_MAIN_BEGIN = '''

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
'''

_MAIN_END = """    export(model, os.getcwd())
    print(f"wrote {NAME}_saved_model/ (SavedModel), {NAME}.pb (frozen graph) and log_{NAME}/ (TensorBoard graph) "
          f"in {os.getcwd()}")
    if args.latency or MEASURE_LATENCY:
        threads = tf.config.threading.get_intra_op_parallelism_threads()
        print(f"latency at batch 1 ({threads or 'default'} intra-op thread(s), traced inference): "
              f"{measure_latency(model):.4g} ms, the fastest of {ROUNDS * REPEATS} timed calls as dopt measures it "
              "(compare with latency_ms in the header)")


if __name__ == "__main__":
    main()
"""

# TensorFlow's parts of every result script; main()'s start is shared with PyTorch's (scripts.main_start).
_PARTS = scripts.ScriptParts(
    exports="{name}_saved_model/ (SavedModel), {name}.pb (frozen graph) and a TensorBoard graph log",
    imports="\nimport keras\nimport numpy as np\nimport tensorflow as tf\n",
    static_source=scripts.static_source(static, "import keras\n"),
    body=_MAIN_BEGIN + scripts.main_start(".weights.h5", "model.load_weights(weights)") + _MAIN_END,
)


def render_script(spec: scripts.ScriptSpec, *, data_format: str) -> str:
    """The text of a TensorFlow result script (``dopt.backends.scripts.render``); ``spec.input_shape``
    is in ``data_format``'s layout, ``spec.latency_threads`` intra-op threads (docs/latency.md)."""
    layout = "H, W, C" if data_format == "channels_last" else "C, H, W"
    constants = {
        "INPUT_SHAPE": (tuple(spec.input_shape), layout),
        "DATA_FORMAT": data_format,
        "USER_MODULE_SHA256": spec.user_sha256,
        "MEASURE_LATENCY": (spec.measure_latency, "print the latency after exporting (the run constrained latency)"),
        "LATENCY_THREADS": (spec.latency_threads, "intra-op threads of the latency measurement"),
    }
    return scripts.render(_PARTS, spec, constants)


def save_weights(model: Any, path: Path) -> None:
    """``model.save_weights`` (HDF5, loaded without executing code), written atomically."""
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch) / path.name  # Keras wants the name to end in .weights.h5
        model.save_weights(str(tmp))
        atomic_write_bytes(path, tmp.read_bytes())


def write_and_verify(static_model: Any, script_text: str, script: Path, example: np.ndarray) -> tuple[Costs, Any]:
    """Write ``script`` and the HDF5 weights of ``static_model`` (``dopt.backends.scripts.write_script``),
    rebuild the model from them, export it once (quietly) and compare its inference outputs with
    ``static_model``'s (docs/outputs.md#working-directory-layout).

    Returns:
        Parameters and MACs counted on the rebuilt model, and that model.

    Raises:
        RuntimeError: the two models' outputs differ beyond the tolerance.
    """
    module, weights = scripts.write_script(
        script, script_text, ".weights.h5", lambda path: save_weights(static_model, path)
    )
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
    scripts.check_outputs(script, diff, scale)
    return Costs(size=count_params(model), flops=count_macs(model, example)), model
