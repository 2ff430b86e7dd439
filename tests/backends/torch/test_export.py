"""Result scripts written by the backend rebuild, verify and export their model."""

from __future__ import annotations

import sys
import types

import pytest

from tests.frameworks import require

torch = require("torch")

from dopt.backends.torch.export import load_script, render_script, write_and_verify  # noqa: E402
from tests.backends.torch import nets  # noqa: E402
from tests.backends.torch.test_supernet import trained_supernet  # noqa: E402


@pytest.fixture
def user_module(monkeypatch):
    module = types.ModuleType("user_module")
    module.__file__ = nets.__file__
    monkeypatch.setitem(sys.modules, "user_module", module)
    return module


@pytest.mark.parametrize(
    ("post", "feature_choose", "scripted"),
    [
        (nets.PostNet, (), True),
        (nets.ListPostNet, (1,), True),
        (nets.DictPostNet, (), False),
    ],
)
def test_script_rebuilds_the_subnet_and_exports_it(tmp_path, user_module, capsys, post, feature_choose, scripted):
    user_module.PreNet, user_module.PostNet = nets.PreNet, post
    net, space, rng = trained_supernet(feature_choose)
    net.post = post()
    arch = space.decode(space.largest())
    net.set_active(arch)
    static = net.extract().eval()
    text = render_script(
        name="model_arch_result_1",
        header={"model_param_size": 1, "encoding": [0]},
        rows=net.layer_rows(arch),
        features=net.static_features(arch),
        input_shape=(1, 8, 8),
        user_sha256="0",
    )
    costs = write_and_verify(static, text, tmp_path / "model_arch_result_1.py", torch.zeros(1, 1, 8, 8))
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
