from __future__ import annotations

import pytest

from tests.frameworks import require

torch = require("torch")

from dopt.backends.torch.bn_calib import recalibrate  # noqa: E402
from dopt.backends.torch.profile import count_macs, count_params  # noqa: E402
from dopt.costs import CostModel, Costs  # noqa: E402
from tests.backends.torch.nets import PostNet, PreNet  # noqa: E402
from tests.backends.torch.supernets import random_archs, trained_supernet  # noqa: E402


@pytest.mark.parametrize("feature_choose", [(), (1,)])
def test_extracted_subnet_equals_supernet_for_20_random_subnets(feature_choose):
    net, space, rng = trained_supernet(feature_choose)
    x = torch.randn(4, 1, 8, 8)
    calib = [torch.randn(8, 1, 8, 8)]
    for arch in random_archs(space, rng, 20):
        net.set_active(arch)
        recalibrate(net, calib)
        net.eval()
        static = net.extract().eval()
        with torch.no_grad():
            diff = (net(x) - static(x)).abs().max().item()
        assert diff <= 1e-5, (arch, diff)
        assert not any(p.data_ptr() == q.data_ptr() for p in static.parameters() for q in net.parameters())


def test_analytic_costs_equal_the_extracted_models_counts():
    net, space, rng = trained_supernet()
    pre, post = PreNet(), PostNet()
    example = torch.zeros(1, 1, 8, 8)
    fixed = Costs(
        size=count_params(pre) + count_params(post),
        flops=count_macs(pre, example) + count_macs(post, torch.zeros(1, 32, 4, 4)),
    )
    model = CostModel(space, (8, 8), fixed)
    for arch in random_archs(space, rng, 20) + [space.decode(space.largest()), space.decode(space.smallest())]:
        net.set_active(arch)
        static = net.extract()
        assert model.costs(arch) == Costs(size=count_params(static), flops=count_macs(static, example)), arch


def test_recalibration_sets_exact_batch_statistics():
    bn_net = torch.nn.Sequential(torch.nn.BatchNorm2d(3))
    batches = [torch.randn(10, 3, 4, 4) * 3 + 1 for _ in range(4)]
    bn_net.train()
    bn_net(torch.randn(10, 3, 4, 4) * 100)  # stale statistics that recalibration must discard
    recalibrate(bn_net, batches)
    everything = torch.cat(batches)
    torch.testing.assert_close(bn_net[0].running_mean, everything.mean(dim=(0, 2, 3)))
    assert bn_net[0].momentum == 0.1 and bn_net.training


def test_supernet_parameter_count_is_close_to_the_largest_subnet():
    net, space, _ = trained_supernet()
    net.set_active(space.decode(space.largest()))
    largest = count_params(net.extract())
    assert largest <= count_params(net) <= 1.2 * largest
