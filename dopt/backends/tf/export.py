"""Result scripts for TensorFlow: a standalone tf.keras model file plus its inherited weights,
verified (SPEC 8)."""

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

from dopt.atomic import atomic_write_bytes, atomic_write_text
from dopt.backends.scripts import header_value, load_script
from dopt.backends.tf import static
from dopt.backends.tf.profile import count_macs, count_params
from dopt.costs import Costs

__all__ = ["render_script", "write_and_verify", "load_script", "save_weights"]

_TABLE = '''NAME = {name!r}
INPUT_SHAPE = {input_shape!r}  # {layout}
DATA_FORMAT = {data_format!r}
USER_MODULE_SHA256 = {sha!r}
# One row per searched layer: (in_channels, out_channels, kernel_size, stride, expand_ratio)
LAYERS = [
{rows}]
FEATURE_LAYERS = {features!r}  # positions in LAYERS whose outputs PostNet also receives
'''

_MAIN = '''

def build_model() -> Net:
    model = Net(PreNet(), PostNet(), LAYERS, FEATURE_LAYERS, DATA_FORMAT)
    model(np.zeros((1, *INPUT_SHAPE), np.float32), training=False)  # creates the variables
    return model


def _check_user_module() -> None:
    import hashlib
    import user_module

    with open(user_module.__file__, "rb") as f:
        if hashlib.sha256(f.read()).hexdigest() != USER_MODULE_SHA256:
            print(f"warning: {user_module.__file__} differs from the user_module.py this file was generated with")


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


def main() -> None:
    _check_user_module()
    model = build_model()
    weights = os.path.join(_HERE, NAME + ".weights.h5")
    if os.path.exists(weights):
        model.load_weights(weights)
        print(f"loaded inherited weights (BN recalibrated) from {weights}")
    else:
        print(f"no {NAME}.weights.h5 beside this file: weights are freshly initialised")
    export(model, os.getcwd())
    print(f"wrote {NAME}_saved_model/ (SavedModel), {NAME}.pb (frozen graph) and log_{NAME}/ (TensorBoard graph) "
          f"in {os.getcwd()}")


if __name__ == "__main__":
    main()
'''


def _static_source() -> str:
    source = inspect.getsource(static)
    body = source.split("import keras\n", 1)[1]  # classes only; imports are in the header
    return body.strip("\n")


def render_script(
    *, name: str, header: dict[str, Any], rows: Sequence[tuple[int, ...]], features: tuple[int, ...],
    input_shape: tuple[int, int, int], data_format: str, user_sha256: str,
) -> str:
    """The text of a result script. Every value is written with ``repr`` (safe literals)."""
    lines = [f"# {key}: {header_value(value)}" for key, value in header.items()]
    doc = (
        f'"""{name}: a network found by dopt, PreNet and PostNet from user_module.py.\n\n'
        "Copy it next to user_module.py (or leave it in results/) and run `python3 "
        f'{name}.py`: it builds\nthe model, loads the inherited weights saved beside it and writes '
        f"{name}_saved_model/ (SavedModel),\n{name}.pb (frozen graph) and a TensorBoard graph log into the current "
        'directory.\n"""'
    )
    imports = (
        "import os\nimport sys\n\nimport keras\nimport numpy as np\nimport tensorflow as tf\n\n"
        "_HERE = os.path.dirname(os.path.abspath(__file__))\n"
        "for _path in (os.path.dirname(_HERE), _HERE):  # its own directory first, then the parent\n"
        "    if _path not in sys.path:\n        sys.path.insert(0, _path)\n"
        "from user_module import PostNet, PreNet  # noqa: E402\n"
    )
    table = _TABLE.format(
        name=name, input_shape=tuple(input_shape), data_format=data_format, sha=user_sha256,
        layout="H, W, C" if data_format == "channels_last" else "C, H, W",
        rows="".join(f"    {tuple(r)!r},\n" for r in rows), features=tuple(features),
    )
    code = (imports, table, _static_source(), _MAIN)
    return "\n".join(lines) + "\n" + doc + "\n\n" + "\n\n\n".join(part.strip("\n") for part in code) + "\n"


def save_weights(model: Any, path: Path) -> None:
    """``model.save_weights`` (HDF5, loaded without executing code), written atomically."""
    with tempfile.TemporaryDirectory() as scratch:
        tmp = Path(scratch) / path.name  # Keras wants the name to end in .weights.h5
        model.save_weights(str(tmp))
        atomic_write_bytes(path, tmp.read_bytes())


def write_and_verify(static_model: Any, script_text: str, script: Path, example: np.ndarray) -> Costs:
    """Write ``script`` and the weights of ``static_model`` beside it, then rebuild the model from
    the written file, run its exports once, and check its outputs against ``static_model`` (SPEC 8).

    Returns:
        Params and MACs of the rebuilt model: what the user's exported model has.

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
    diff = max((float(tf.reduce_max(tf.abs(a - b))) for a, b in zip(tf.nest.flatten(expected), tf.nest.flatten(got))),
               default=0.0)
    scale = max((float(tf.reduce_max(tf.abs(a))) for a in tf.nest.flatten(expected)), default=0.0)
    if diff > 1e-5 * max(1.0, scale):
        raise RuntimeError(f"{script.name}: the rebuilt model's outputs differ from the searched subnet's by {diff:g}")
    return Costs(count_params(model), count_macs(model, example))
