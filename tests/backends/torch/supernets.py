"""A small trained PyTorch supernet for the backend's tests."""

from __future__ import annotations

import numpy as np
import torch

from dopt.backends.torch.supernet import Supernet
from tests.backends.torch.nets import ListPostNet, PostNet, PreNet
from tests.spaces import make_space


def trained_supernet(feature_choose=()):
    torch.manual_seed(0)
    space = make_space(filters=(16, 16, 24, 32), strides=(1, 1, 2, 1), feature_choose=feature_choose)
    post = ListPostNet() if feature_choose else PostNet()
    net = Supernet(PreNet(), post, space, feature_choose)
    rng = np.random.default_rng(0)
    opt = torch.optim.SGD(net.parameters(), lr=0.05)
    x, y = torch.randn(16, 1, 8, 8), torch.randint(0, 10, (16,))
    for _ in range(5):  # a few steps so weights and BN statistics differ per channel
        net.set_active(space.decode(rng.integers(np.array(space.xl), np.array(space.xu) + 1).tolist()))
        opt.zero_grad()
        torch.nn.functional.cross_entropy(net(x), y).backward()
        opt.step()
    return net, space, rng


def random_archs(space, rng, n):
    return [space.decode(rng.integers(np.array(space.xl), np.array(space.xu) + 1).tolist()) for _ in range(n)]
