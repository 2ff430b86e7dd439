"""Framework-free parts of result scripts (docs/outputs.md#result-scripts): what a script is written
from (:class:`ScriptSpec`), the header, the docstring, the layer table, the user-module check,
assembling the text, importing a written script, and the output tolerance of the verification.
Each backend's ``export.py`` adds its framework's parts."""

from __future__ import annotations

import importlib.util
import inspect
import sys
import textwrap
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from dopt.results.header import header_lines
from dopt.store.atomic import atomic_write_text

if TYPE_CHECKING:
    from dopt.scenario import Scenario

__all__ = [
    "load_script",
    "ScriptSpec",
    "ScriptParts",
    "render",
    "static_source",
    "measures_latency",
    "main_start",
    "write_script",
    "check_outputs",
    "TOLERANCE",
]

# Relative tolerance between the searched subnet's outputs and the rebuilt model's (float32, CPU).
TOLERANCE = 1e-5

_CHECK_USER_MODULE = """def _check_user_module() -> None:
    import hashlib
    import user_module

    with open(user_module.__file__, "rb") as f:
        if hashlib.sha256(f.read()).hexdigest() != USER_MODULE_SHA256:
            print(f"warning: {user_module.__file__} differs from the user_module.py this file was generated with")
"""

# Shared by both frameworks' main(): --train hands the model to `dopt train` (docs/training-a-result.md).
_TRAIN = """def _arguments():
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.split("\\n\\n")[0])
    parser.add_argument("--train", type=int, metavar="EPOCHS", help="first train this model fully for EPOCHS epochs "
                        "(needs dopt, and scen.yaml in the working directory)")
    parser.add_argument("--from-scratch", action="store_true", help="with --train: start from fresh weights")
    parser.add_argument("--resume", action="store_true", help="with --train: continue an interrupted training")
    parser.add_argument("--overwrite", action="store_true", help="with --train: replace an earlier training")
    parser.add_argument("-c", "--config", default="scen.yaml", help="with --train: the scenario (default scen.yaml)")
    parser.add_argument("--latency", action="store_true", help="measure the model's latency at batch 1 as dopt does "
                        "(always done when the header has latency_ms)")
    return parser.parse_args()


def _train(args) -> None:
    try:
        from dopt.cli import main as dopt
    except ImportError:
        sys.exit("--train needs dopt: pip install dopt")
    argv = ["train", "-c", args.config, "--script", os.path.abspath(__file__), "--epochs", str(args.train)]
    argv += [flag for flag, on in (("--from-scratch", args.from_scratch), ("--resume", args.resume),
                                   ("--overwrite", args.overwrite)) if on]
    code = dopt(argv)
    if code:
        sys.exit(code)
"""

# The start of both frameworks' main(), after their own set-up: the trained weights when
# `--train` wrote them, else those inherited from the supernet (main_start fills in the framework's parts).
_MAIN_START = """    _check_user_module()
    if args.train:
        _train(args)
    model = build_model()
    trained = os.path.join(_HERE, NAME + ".trained{suffix}")
    weights = trained if os.path.exists(trained) else os.path.join(_HERE, NAME + "{suffix}")
    if os.path.exists(weights):
        {load}
        what = "trained weights" if weights == trained else "inherited weights (BN recalibrated)"
        print(f"loaded {{what}} from {{weights}}")
    else:
        print(f"no {{NAME}}{suffix} beside this file: weights are freshly initialised")
"""

_PATH_SETUP = (
    "_HERE = os.path.dirname(os.path.abspath(__file__))\n"
    "for _path in (os.path.dirname(_HERE), _HERE):  # its own directory first, then the parent\n"
    "    if _path not in sys.path:\n        sys.path.insert(0, _path)\n"
    "from user_module import PostNet, PreNet  # noqa: E402\n"
)


@dataclass(frozen=True, kw_only=True)
class ScriptSpec:
    """What one result script is written from, in either framework.

    Attributes:
        name: the script's file name without ``.py``.
        header: the result's header (``dopt.results.header``), written as comments.
        rows: one (in_channels, out_channels, kernel_size, stride, expand_ratio) row per searched layer.
        features: positions in ``rows`` whose outputs PostNet also receives.
        input_shape: one input sample's shape, in the framework's layout.
        user_sha256: of the user_module.py the run imported.
        measure_latency: the script prints its latency when run (the run constrained latency,
            measured on this machine), docs/latency.md.
        latency_threads: threads of that measurement.
    """

    name: str
    header: dict[str, Any]
    rows: Sequence[tuple[int, ...]]
    features: tuple[int, ...]
    input_shape: tuple[int, int, int]
    user_sha256: str
    measure_latency: bool = False
    latency_threads: int = 1


@dataclass(frozen=True, kw_only=True)
class ScriptParts:
    """A framework's parts of every result script.

    Attributes:
        exports: what running the script writes, for its docstring; ``{name}`` is the script's name.
        imports: the framework's import lines.
        static_source: the framework's static model classes.
        body: ``build_model``, ``export`` and ``main`` in the framework.
    """

    exports: str
    imports: str
    static_source: str
    body: str


def render(parts: ScriptParts, spec: ScriptSpec, constants: dict[str, Any]) -> str:
    """The text of the result script of ``spec``. Every value is written with ``repr`` (safe literals).

    Args:
        constants: module constants written after ``NAME`` (``INPUT_SHAPE``, ...), each as
            ``(value, comment)`` or a bare value.
    """
    name = spec.name
    exports = parts.exports.format(name=name)
    lines = header_lines(spec.header)
    usage = textwrap.fill(
        f"Copy it next to user_module.py (or leave it in results/) and run `python3 {name}.py`: it builds the "
        f"model, loads the inherited weights saved beside it (the trained ones once `--train EPOCHS` has trained it; "
        f"--help lists the options) and writes {exports} into the current directory.",
        width=100,
        break_on_hyphens=False,
        break_long_words=False,
    )
    doc = f'"""{name}: a network found by dopt, PreNet and PostNet from user_module.py.\n\n{usage}\n"""'
    table = [f"NAME = {name!r}"]
    for key, value in constants.items():
        value, comment = (
            value if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], str) else (value, "")
        )
        table.append(f"{key} = {value!r}" + (f"  # {comment}" if comment else ""))
    table += [
        "# One row per searched layer: (in_channels, out_channels, kernel_size, stride, expand_ratio)",
        "LAYERS = [\n" + "".join(f"    {tuple(r)!r},\n" for r in spec.rows) + "]",
        f"FEATURE_LAYERS = {tuple(spec.features)!r}  # positions in LAYERS whose outputs PostNet also receives",
    ]
    code = (
        "import os\nimport random\nimport sys\nimport time\n" + parts.imports + "\n" + _PATH_SETUP,
        "\n".join(table),
        parts.static_source,
        _timing_source(),
        _CHECK_USER_MODULE,
        _TRAIN,
        parts.body,
    )
    return "\n".join(lines) + "\n" + doc + "\n\n" + "\n\n\n".join(part.strip("\n") for part in code) + "\n"


def main_start(weights_suffix: str, load: str) -> str:
    """The lines of a result script's ``main()`` that both frameworks share: check the user module,
    train when asked, build the model and load its weights (``NAME + weights_suffix`` beside the
    script, or the trained ones); ``load`` is the framework's statement that loads ``weights``."""
    return _MAIN_START.format(suffix=weights_suffix, load=load)


def measures_latency(scenario: Scenario, user: Any) -> bool:
    """Whether result scripts print their latency when run: the run constrained latency and measured
    it on this machine, not through the user's ``latency_func`` (docs/latency.md)."""
    return scenario.constraint.kind == "latency" and getattr(user, "latency_func", None) is None


def static_source(static: ModuleType, last_import: str) -> str:
    """A backend's ``static.py`` below ``last_import`` (its last import line): the static model
    classes a result script holds; the script's header has the imports."""
    return inspect.getsource(static).split(last_import, 1)[1].strip("\n")


def _timing_source() -> str:
    """dopt/latency/timing.py below its imports: the timing method every latency comes from."""
    from dopt.latency import timing

    return inspect.getsource(timing).split("import time\n", 1)[1].strip("\n")


def write_script(
    script: Path, text: str, weights_suffix: str, save_weights: Callable[[Path], None]
) -> tuple[Any, Path]:
    """The first half of a backend's ``write_and_verify``: write the result script and, beside it,
    its weights (``save_weights(path)``, the script's name + ``weights_suffix``), both atomically;
    the script imported afresh, and the weights' path. The backend then rebuilds the model from
    them, runs its exports once and compares its outputs (:func:`check_outputs`)."""
    atomic_write_text(script, text)
    weights = script.with_name(script.stem + weights_suffix)
    save_weights(weights)
    return load_script(script), weights


def check_outputs(script: Path, diff: float, scale: float) -> None:
    """Raise when the rebuilt model's outputs differ from the subnet's by more than the tolerance.

    Args:
        diff: the largest absolute difference between the two models' outputs.
        scale: the largest absolute output of the subnet.
    """
    if diff > TOLERANCE * max(1.0, scale):
        raise RuntimeError(f"{script.name}: the rebuilt model's outputs differ from the searched subnet's by {diff:g}")


def load_script(path: Path) -> Any:
    """Import a result script as a fresh module (it imports ``user_module`` already loaded)."""
    name = f"_dopt_result_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    old = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = old
    return module
