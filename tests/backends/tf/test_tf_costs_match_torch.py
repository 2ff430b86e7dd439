"""The same network written as a PyTorch and as a Keras user module gets the same size and flops (docs/costs.md#measured-on-the-extracted-model)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.frameworks import require

tf = require("tensorflow")
torch = require("torch")

from dopt.backends.tf import profile as tf_profile  # noqa: E402
from dopt.backends.tf.supernet import Supernet as KerasSupernet  # noqa: E402
from dopt.backends.torch import profile as torch_profile  # noqa: E402
from dopt.backends.torch.supernet import Supernet as TorchSupernet  # noqa: E402
from dopt.costs import Costs  # noqa: E402
from tests.backends.tf import keras_nets  # noqa: E402
from tests.backends.torch import nets as torch_nets  # noqa: E402
from tests.test_space import make_space  # noqa: E402


@pytest.mark.slow
def test_pytorch_and_keras_versions_of_one_network_have_equal_costs():
    space = make_space(filters=(16, 16, 24, 32), strides=(1, 1, 2, 1))
    torch_net = TorchSupernet(torch_nets.PreNet(), torch_nets.PostNet(), space, ())
    pre, post = keras_nets.PreNet(), keras_nets.PostNet()
    pre(np.zeros((1, 8, 8, 1), np.float32))
    post(tf.zeros((1, 4, 4, 32)))
    keras_net = KerasSupernet(pre, post, space, (), (8, 8, 1))
    rng = np.random.default_rng(0)
    archs = [space.decode(space.sample(rng)) for _ in range(8)] + [
        space.decode(space.largest()),
        space.decode(space.smallest()),
    ]
    for arch in archs:
        torch_net.set_active(arch)
        keras_net.set_active(arch)
        t, k = torch_net.extract(), keras_net.extract()
        torch_costs = Costs(
            size=torch_profile.count_params(t), flops=torch_profile.count_macs(t, torch.zeros(1, 1, 8, 8))
        )
        keras_costs = Costs(
            size=tf_profile.count_params(k), flops=tf_profile.count_macs(k, np.zeros((1, 8, 8, 1), np.float32))
        )
        assert torch_costs == keras_costs, arch
