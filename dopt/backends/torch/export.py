"""Result scripts for PyTorch: a standalone model file plus its inherited weights, verified (docs/outputs.md#working-directory-layout)."""

from __future__ import annotations

import contextlib
import copy
import io
import tempfile
from pathlib import Path
from typing import Any

import torch

from dopt.backends import scripts
from dopt.backends.torch import static
from dopt.backends.torch.profile import count_macs, count_params
from dopt.backends.torch.train import save_atomic
from dopt.costs import Costs

__all__ = ["render_script", "write_and_verify"]

_MAIN_BEGIN = '''

def build_model() -> Net:
    return Net(PreNet(), PostNet(), LAYERS, FEATURE_LAYERS)


def export(model: nn.Module, directory: str = ".") -> list:
    """Write NAME.pt (TorchScript), NAME.onnx (any batch size) and log_NAME/ (TensorBoard graph) into ``directory``."""
    import types
    import warnings

    if "tensorflow" not in sys.modules:
        # TensorBoard's writer would import TensorFlow, when installed, only for file I/O that its
        # own stub also provides, printing TensorFlow's start-up lines; the "notf" marker module
        # of TensorBoard's no-TensorFlow build makes it take the stub.
        sys.modules.setdefault("tensorboard.compat.notf", types.ModuleType("tensorboard.compat.notf"))
    from torch.utils.tensorboard import SummaryWriter

    model.eval()
    example = torch.randn(1, *INPUT_SHAPE)
    paths = [os.path.join(directory, NAME + ext) for ext in (".pt", ".onnx")] + [os.path.join(directory, "log_" + NAME)]
    # ONNX is traced at batch 2 so that the tracer cannot fold a batch of 1 into the graph; axis 0 of
    # the input and of every output that has the batch is then declared dynamic (any batch size).
    batch = torch.randn(2, *INPUT_SHAPE)
    with torch.no_grad():
        outputs = _tensors(model(batch))
    output_names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
    dynamic_axes = {"input": {0: "batch"}}
    dynamic_axes.update({n: {0: "batch"} for n, t in zip(output_names, outputs) if t.dim() and t.shape[0] == 2})
    with warnings.catch_warnings(), torch.no_grad():
        # TorchScript and the legacy ONNX exporter announce their deprecation in torch 2.x.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", FutureWarning)
        try:
            scripted = torch.jit.script(model)
        except Exception as exc:  # user code that TorchScript cannot compile: trace it instead
            lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
            where = " ".join(lines[:2])  # TorchScript's reason, then the file and line it points at
            print(f"TorchScript could not compile the model ({type(exc).__name__}: {where}); tracing it instead")
            scripted = torch.jit.trace(model, example, strict=False)
        scripted.save(paths[0])
        torch.onnx.export(
            model,
            (batch,),
            paths[1],
            dynamo=False,
            input_names=["input"],
            output_names=output_names,
            dynamic_axes=dynamic_axes,
        )
        with SummaryWriter(paths[2]) as writer:
            writer.add_graph(model, example, use_strict_trace=False)
    return paths


def _tensors(value) -> list:
    """The tensors of a model output, flattened in the order the ONNX exporter names them."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []


def measure_latency(model: nn.Module) -> float:
    """Milliseconds of one inference at batch 1 (eval, no_grad, LATENCY_THREADS CPU threads; on the
    GPU when dopt measured on one and this machine has it), timed as dopt timed latency_ms."""
    device = torch.device("cuda" if LATENCY_ON_GPU and torch.cuda.is_available() else "cpu")
    torch.set_num_threads(LATENCY_THREADS)
    model = model.to(device).eval()
    example = torch.zeros(1, *INPUT_SHAPE, device=device)
    sync = torch.cuda.synchronize if device.type == "cuda" else None
    with torch.no_grad():
        return measure_ms([lambda: model(example)], sync=sync)[0]


def main() -> None:
    args = _arguments()
'''

_MAIN_END = """    export(model, os.getcwd())
    print(f"wrote {NAME}.pt (TorchScript), {NAME}.onnx and log_{NAME}/ (TensorBoard graph) in {os.getcwd()}")
    if args.latency or MEASURE_LATENCY:
        where = "GPU" if LATENCY_ON_GPU and torch.cuda.is_available() else f"CPU, {LATENCY_THREADS} thread(s)"
        print(f"latency at batch 1 ({where}, eval + no_grad): {measure_latency(model):.4g} ms, the fastest of "
              f"{ROUNDS * REPEATS} timed calls as dopt measures it (compare with latency_ms in the header)")


if __name__ == "__main__":
    main()
"""

_LOAD = 'model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))'

# PyTorch's parts of every result script; main()'s start is shared with TensorFlow's (scripts.main_start).
_PARTS = scripts.ScriptParts(
    exports="{name}.pt (TorchScript), {name}.onnx (any batch size) and a TensorBoard graph log",
    imports="from typing import Final, List\n\nimport torch\nfrom torch import nn\n",
    static_source=scripts.static_source(static, "from torch import nn\n"),
    body=_MAIN_BEGIN + scripts.main_start(".weights.pth", _LOAD) + _MAIN_END,
)


def render_script(spec: scripts.ScriptSpec, *, latency_on_gpu: bool = False) -> str:
    """The text of a PyTorch result script (``dopt.backends.scripts.render``); ``spec.input_shape``
    is (C, H, W), ``latency_on_gpu`` whether dopt measured latency on a GPU (docs/latency.md)."""
    constants = {
        "INPUT_SHAPE": (tuple(spec.input_shape), "C, H, W"),
        "USER_MODULE_SHA256": spec.user_sha256,
        "MEASURE_LATENCY": (spec.measure_latency, "print the latency after exporting (the run constrained latency)"),
        "LATENCY_THREADS": (spec.latency_threads, "CPU threads of the latency measurement"),
        "LATENCY_ON_GPU": (latency_on_gpu, "dopt measured latency on a GPU"),
    }
    return scripts.render(_PARTS, spec, constants)


def write_and_verify(
    static: torch.nn.Module, script_text: str, script: Path, example: torch.Tensor
) -> tuple[Costs, torch.nn.Module]:
    """Write ``script`` and the state dict of ``static`` (``dopt.backends.scripts.write_script``),
    rebuild the model from them, run its exports once and compare its outputs with ``static``'s
    (docs/outputs.md#working-directory-layout).

    Returns:
        The rebuilt model's params and MACs (those of the user's exported model), and that model.

    Raises:
        RuntimeError: the outputs differ.
    """
    state = {k: v.detach().cpu() for k, v in static.state_dict().items()}
    module, weights = scripts.write_script(script, script_text, ".weights.pth", lambda path: save_atomic(state, path))
    model = module.build_model()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    model.eval()
    # The user's exports must work: run them once.
    with tempfile.TemporaryDirectory() as scratch, contextlib.redirect_stdout(io.StringIO()):
        module.export(model, scratch)
    # Compared on the CPU in float32: on a GPU, TF32 convolutions alone differ by ~1e-3.
    reference = copy.deepcopy(static).cpu().eval()
    probe = torch.randn(2, *example.shape[1:], generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected, got = reference(probe), model(probe)
    diff = _max_abs_diff(expected, got)
    scripts.check_outputs(script, diff, _max_abs(expected))
    return Costs(size=count_params(model), flops=count_macs(model, example.cpu())), model


def _max_abs(a: Any) -> float:
    if isinstance(a, torch.Tensor):
        return float(a.detach().abs().max()) if a.numel() else 0.0
    if isinstance(a, (list, tuple)):
        return max((_max_abs(x) for x in a), default=0.0)
    if isinstance(a, dict):
        return max((_max_abs(x) for x in a.values()), default=0.0)
    return 0.0


def _max_abs_diff(a: Any, b: Any) -> float:
    if isinstance(a, torch.Tensor):
        return float((a.detach().cpu().float() - b.detach().cpu().float()).abs().max()) if a.numel() else 0.0
    if isinstance(a, (list, tuple)):
        return max((_max_abs_diff(x, y) for x, y in zip(a, b)), default=0.0)
    if isinstance(a, dict):
        return max((_max_abs_diff(a[k], b[k]) for k in a), default=0.0)
    return 0.0
