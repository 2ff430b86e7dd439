"""Result scripts written by the TF backend rebuild, verify and export their model; the header's
numbers equal what the exported graph and SavedModel hold."""

from __future__ import annotations

import subprocess
import sys
import types
from math import prod
from pathlib import Path

import numpy as np
import pytest

from tests.frameworks import require

tf = require("tensorflow")

from dopt.backends.scripts import ScriptSpec, load_script  # noqa: E402
from dopt.backends.tf.export import render_script, write_and_verify  # noqa: E402
from dopt.backends.tf.profile import count_params  # noqa: E402
from tests.backends.tf import keras_nets as nets  # noqa: E402
from tests.backends.tf.supernets import trained_supernet  # noqa: E402


def pb_macs(path: str) -> int:
    """MACs of a frozen GraphDef: Conv2D, DepthwiseConv2dNative and MatMul nodes, shapes inferred
    on import (written independently of dopt's counter, as the deployed truth)."""
    graph_def = tf.compat.v1.GraphDef()
    with open(path, "rb") as f:
        graph_def.ParseFromString(f.read())
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(graph_def, name="")
    total = 0
    for op in graph.get_operations():
        if op.type in ("Conv2D", "DepthwiseConv2dNative"):
            kh, kw, cin, mult = op.inputs[1].shape.as_list()
            n, h, w, c = op.outputs[0].shape.as_list()
            total += n * h * w * c * kh * kw * (cin if op.type == "Conv2D" else 1)
        elif op.type == "MatMul":
            rows, inner = op.inputs[0].shape.as_list()
            total += rows * inner * op.outputs[0].shape.as_list()[1]
    return total


@pytest.fixture
def user_module(monkeypatch):
    module = types.ModuleType("user_module")
    module.__file__ = nets.__file__
    monkeypatch.setitem(sys.modules, "user_module", module)
    return module


@pytest.mark.parametrize(("post", "feature_choose"), [(nets.PostNet, ()), (nets.ListPostNet, (1,))])
def test_script_rebuilds_the_subnet_and_its_exports_match_the_header(tmp_path, user_module, post, feature_choose):
    user_module.PreNet, user_module.PostNet = nets.PreNet, post
    net, space, rng = trained_supernet(feature_choose)
    arch = space.decode(space.sample(rng))
    net.set_active(arch)
    static = net.extract()
    example = np.zeros((1, 8, 8, 1), np.float32)
    script = tmp_path / "model_arch_result_1.py"

    def render(size, flops):
        header = {"model_param_size": size, "accuracy": 0.5, "flops": flops, "encoding": list(space.encode(arch))}
        spec = ScriptSpec(
            name=script.stem,
            header=header,
            rows=net.layer_rows(arch),
            features=net.static_features(arch),
            input_shape=(8, 8, 1),
            user_sha256="0",
        )
        return render_script(spec, data_format="channels_last")

    costs, _ = write_and_verify(static, render(0, 0), script, example)  # the measured costs go in the header
    assert write_and_verify(static, render(costs["size"], costs["flops"]), script, example)[0] == costs
    assert costs["size"] == count_params(static)

    module = load_script(script)
    rebuilt = module.build_model()
    rebuilt.load_weights(str(tmp_path / "model_arch_result_1.weights.h5"))
    x = np.random.default_rng(0).standard_normal((2, 8, 8, 1)).astype(np.float32)
    np.testing.assert_allclose(static(x, training=False), rebuilt(x, training=False), atol=1e-5)
    out = tmp_path / "out"
    out.mkdir()
    saved, pb, log = module.export(rebuilt, str(out))

    lines = dict(line[2:].split(": ", 1) for line in script.read_text().splitlines() if line.startswith("# "))
    assert int(lines["flops"]) == pb_macs(pb) == costs["flops"]
    loaded = tf.saved_model.load(saved)
    assert int(lines["model_param_size"]) == sum(prod(v.shape) for v in loaded.trainable_variables) == costs["size"]
    np.testing.assert_allclose(loaded.serve(x), rebuilt(x, training=False), atol=1e-5)
    assert any(p.name.startswith("events.out.tfevents") for p in (out / "log_model_arch_result_1").iterdir())


@pytest.mark.slow
def test_script_runs_standalone_from_results_and_next_to_user_module(tmp_path, user_module):
    """Run as `python3 model_arch_result_N.py`: finds user_module in its parent directory, loads
    the weights beside it, warns about a changed user module and writes its exports to the cwd."""
    user_module.PreNet, user_module.PostNet = nets.PreNet, nets.PostNet
    net, space, _ = trained_supernet()
    arch = space.decode(space.smallest())
    net.set_active(arch)
    work = tmp_path / "work"
    (work / "results").mkdir(parents=True)
    (work / "user_module.py").write_text(Path(nets.__file__).read_text())
    script = work / "results" / "model_arch_result_1.py"
    spec = ScriptSpec(
        name=script.stem,
        header={"model_param_size": 1},
        rows=net.layer_rows(arch),
        features=(),
        input_shape=(8, 8, 1),
        user_sha256="not the hash",
    )
    text = render_script(spec, data_format="channels_last")
    write_and_verify(net.extract(), text, script, np.zeros((1, 8, 8, 1), np.float32))
    run = tmp_path / "run"
    run.mkdir()
    proc = subprocess.run([sys.executable, str(script)], cwd=run, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "differs from the user_module.py" in proc.stdout and "loaded inherited weights" in proc.stdout
    assert {"model_arch_result_1.pb", "model_arch_result_1_saved_model", "log_model_arch_result_1"} <= {
        p.name for p in run.iterdir()
    }
