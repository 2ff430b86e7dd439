"""Result scripts written by the backend rebuild, verify and export their model."""

from __future__ import annotations

import sys
import types

import pytest

from tests.frameworks import require

torch = require("torch")

from dopt.backends.scripts import ScriptSpec, load_script  # noqa: E402
from dopt.backends.torch.export import render_script, write_and_verify  # noqa: E402
from tests.backends.torch import nets  # noqa: E402
from tests.backends.torch.supernets import trained_supernet  # noqa: E402


@pytest.fixture
def user_module(monkeypatch):
    module = types.ModuleType("user_module")
    module.__file__ = nets.__file__
    monkeypatch.setitem(sys.modules, "user_module", module)
    return module


def largest_subnet_script(user_module, post, feature_choose):
    """The largest subnet of a briefly trained supernet with ``post`` as PostNet, and its script's text."""
    user_module.PreNet, user_module.PostNet = nets.PreNet, post
    net, space, _ = trained_supernet(feature_choose)
    net.post = post()
    arch = space.decode(space.largest())
    net.set_active(arch)
    static = net.extract().eval()
    text = render_script(
        ScriptSpec(
            name="model_arch_result_1",
            header={"model_param_size": 1, "encoding": [0]},
            rows=net.layer_rows(arch),
            features=net.static_features(arch),
            input_shape=(1, 8, 8),
            user_sha256="0",
        )
    )
    return static, text


@pytest.mark.parametrize(
    ("post", "feature_choose", "scripted"),
    [
        (nets.PostNet, (), True),
        (nets.ListPostNet, (1,), True),
        (nets.DictPostNet, (), False),
    ],
)
def test_script_rebuilds_the_subnet_and_exports_it(tmp_path, user_module, capsys, post, feature_choose, scripted):
    static, text = largest_subnet_script(user_module, post, feature_choose)
    costs, _ = write_and_verify(static, text, tmp_path / "model_arch_result_1.py", torch.zeros(1, 1, 8, 8))
    assert costs["size"] == sum(p.numel() for p in static.parameters())
    script = load_script(tmp_path / "model_arch_result_1.py")
    rebuilt = script.build_model()
    rebuilt.load_state_dict(torch.load(tmp_path / "model_arch_result_1.weights.pth", weights_only=True))
    rebuilt.eval()
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        a, b = static(x), rebuilt(x)
    a, b = (a["logits"], b["logits"]) if isinstance(a, dict) else (a, b)
    torch.testing.assert_close(a, b)
    paths = script.export(rebuilt, str(tmp_path))
    assert ("tracing it instead" in capsys.readouterr().out) != scripted
    loaded = torch.jit.load(paths[0])
    with torch.no_grad():
        out = loaded(x)
    torch.testing.assert_close(out["logits"] if isinstance(out, dict) else out, b)


@pytest.mark.parametrize(
    ("post", "feature_choose"), [(nets.PostNet, ()), (nets.ListPostNet, (1,)), (nets.DictPostNet, ())]
)
def test_onnx_export_takes_any_batch_size(tmp_path, user_module, post, feature_choose):
    ort = require("onnxruntime")
    from dopt.backends.torch.profile import count_macs
    from tests.backends.torch.onnx_macs import onnx_macs

    static, text = largest_subnet_script(user_module, post, feature_choose)
    write_and_verify(static, text, tmp_path / "model_arch_result_1.py", torch.zeros(1, 1, 8, 8))
    script = load_script(tmp_path / "model_arch_result_1.py")
    model = script.build_model()
    model.load_state_dict(torch.load(tmp_path / "model_arch_result_1.weights.pth", weights_only=True))
    model.eval()
    onnx_path = script.export(model, str(tmp_path))[1]
    session = ort.InferenceSession(onnx_path, providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["input"]
    for batch in (1, 3):
        x = torch.randn(batch, 1, 8, 8, generator=torch.Generator().manual_seed(batch))
        with torch.no_grad():
            expected = model(x)
        expected = expected["logits"] if isinstance(expected, dict) else expected
        (got,) = session.run(None, {"input": x.numpy()})
        assert got.shape == tuple(expected.shape)
        torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-5)
    # The MACs read back from the graph (as tests/test_cli.py does) survive the symbolic batch axis.
    assert onnx_macs(onnx_path) == count_macs(model, torch.zeros(1, 1, 8, 8))
