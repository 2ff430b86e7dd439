"""Result scripts of the fake backend: dopt's own script layout (dopt/backends/scripts.py) around
the numpy blocks of tests/fake/static.py, the weights beside it as .npz, rebuilt and checked."""

from __future__ import annotations

import inspect
import io
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from dopt.backends.scripts import ScriptParts, ScriptSpec, check_outputs, load_script, render
from dopt.costs import Costs
from dopt.store.atomic import atomic_write_bytes, atomic_write_text
from tests.fake import static

__all__ = ["WEIGHTS_SUFFIX", "render_script", "write_and_verify", "save_arrays"]

WEIGHTS_SUFFIX = ".weights.npz"

_MAIN = """

def build_model() -> Net:
    return Net(PreNet(), PostNet(), LAYERS, FEATURE_LAYERS)


def main() -> None:
    _arguments()
    _check_user_module()
    model = build_model()
    weights = os.path.join(_HERE, NAME + ".weights.npz")
    if os.path.exists(weights):
        with np.load(weights, allow_pickle=False) as saved:
            model.load(saved)
        print(f"loaded inherited weights (BN recalibrated) from {weights}")
    else:
        print(f"no {NAME}.weights.npz beside this file: the layers are left at zero")
    size = sum(p.size for layer in model.layers for p in layer.parameters())
    outputs = model.forward(np.zeros((2,) + INPUT_SHAPE))
    print(f"searched layers: {size} parameters; outputs of shape {outputs.shape}")


if __name__ == "__main__":
    main()
"""


def _static_source() -> str:
    return inspect.getsource(static).split("import numpy as np\n", 1)[1].strip("\n")


def render_script(*, name: str, header: dict[str, Any], rows: list, input_shape: tuple, user_sha256: str) -> str:
    parts = ScriptParts(
        exports="nothing (the fake backend's scripts only rebuild the model and print its size)",
        imports="\nimport numpy as np\n",
        static_source=_static_source(),
        body=_MAIN,
    )
    constants = {"INPUT_SHAPE": (tuple(input_shape), "C, H, W"), "USER_MODULE_SHA256": user_sha256}
    spec = ScriptSpec(
        name=name, header=header, rows=rows, features=(), input_shape=tuple(input_shape), user_sha256=user_sha256
    )
    return render(parts, spec, constants)


def save_arrays(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """``arrays`` as an .npz, written atomically (a crash leaves the old file or the new one)."""
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())


def write_and_verify(
    model: static.Net, text: str, script: Path, input_shape: tuple, count: Callable[[static.Net], Costs]
) -> tuple[Costs, static.Net]:
    """Write ``script`` and ``model``'s weights beside it, rebuild the model from the written
    file, check its outputs against ``model``'s; the costs ``count`` finds on the rebuilt model."""
    atomic_write_text(script, text)
    weights = script.with_name(script.stem + WEIGHTS_SUFFIX)
    save_arrays(weights, model.arrays())
    rebuilt = load_script(script).build_model()
    with np.load(weights, allow_pickle=False) as saved:
        rebuilt.load(saved)
    probe = np.random.default_rng(0).normal(size=(2, *input_shape))
    expected, got = model.forward(probe), rebuilt.forward(probe)
    check_outputs(script, float(np.abs(expected - got).max()), float(np.abs(expected).max()))
    return count(rebuilt), rebuilt
