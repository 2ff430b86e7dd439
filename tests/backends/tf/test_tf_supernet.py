"""The Keras supernet: slicing, extraction, BN recalibration and costs (mirrors tests/backends/torch)."""

from __future__ import annotations

import numpy as np
import pytest

from tests.frameworks import require

tf = require("tensorflow")

import keras  # noqa: E402

from dopt.backends.tf.bn_calib import recalibrate  # noqa: E402
from dopt.backends.tf.profile import count_macs, count_params  # noqa: E402
from dopt.backends.tf.slicing import SliceBatchNorm  # noqa: E402
from dopt.costs import CostModel, Costs  # noqa: E402
from tests.backends.tf.keras_nets import DropoutPostNet, PreNet  # noqa: E402
from tests.backends.tf.supernets import X, random_archs, trained_supernet  # noqa: E402


@pytest.mark.parametrize("feature_choose", [(), (1,)])
def test_extracted_subnet_equals_supernet_for_20_random_subnets(feature_choose):
    net, space, rng = trained_supernet(feature_choose)
    supernet_ids = {id(v.value) for v in net.variables}
    for arch in random_archs(space, rng, 20):
        net.set_active(arch)
        static = net.extract()
        diff = float(tf.reduce_max(tf.abs(net(X, training=False) - static(X, training=False))))
        assert diff <= 1e-5, (arch, diff)
        assert not any(id(v.value) in supernet_ids for v in static.variables)


def test_sliced_batchnorm_matches_keras_batchnorm_on_the_first_channels():
    bn = SliceBatchNorm(8, momentum=0.9, epsilon=1e-5)
    rng = np.random.default_rng(0)
    bn.gamma.assign(rng.uniform(0.5, 2, 8).astype(np.float32))
    bn.beta.assign(rng.standard_normal(8).astype(np.float32))
    x = (rng.standard_normal((6, 4, 4, 5)) * 3 + 1).astype(np.float32)
    ref = keras.layers.BatchNormalization(momentum=0.9, epsilon=1e-5)
    ref.build(x.shape)
    ref.gamma.assign(bn.gamma.numpy()[:5])
    ref.beta.assign(bn.beta.numpy()[:5])
    np.testing.assert_allclose(bn.forward(tf.constant(x), True), ref(x, training=True), atol=1e-5)
    np.testing.assert_allclose(bn.moving_mean.numpy()[:5], ref.moving_mean.numpy(), atol=1e-6)
    np.testing.assert_allclose(bn.moving_variance.numpy()[:5], ref.moving_variance.numpy(), atol=1e-5)
    assert np.all(bn.moving_mean.numpy()[5:] == 0) and np.all(bn.moving_variance.numpy()[5:] == 1)
    np.testing.assert_allclose(bn.forward(tf.constant(x), False), ref(x, training=False), atol=1e-5)


def test_recalibration_sets_exact_batch_statistics_with_dropout_silenced():
    model = keras.Sequential([keras.layers.Dropout(0.9), keras.layers.BatchNormalization(momentum=0.99)])
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((10, 4, 4, 3)) * 3 + 1).astype(np.float32) for _ in range(4)]
    model(batches[0] * 100, training=True)  # stale statistics that recalibration must discard
    recalibrate(model, batches)
    bn = model.layers[1]
    np.testing.assert_allclose(
        bn.moving_mean.numpy(), np.mean([b.mean(axis=(0, 1, 2)) for b in batches], axis=0), atol=1e-5
    )
    np.testing.assert_allclose(
        bn.moving_variance.numpy(), np.mean([b.var(axis=(0, 1, 2)) for b in batches], axis=0), rtol=1e-4
    )
    assert bn.momentum == 0.99 and model.layers[0].rate == 0.9


def test_analytic_costs_equal_the_extracted_models_counts():
    net, space, rng = trained_supernet(post_cls=DropoutPostNet)
    pre, post = PreNet(), DropoutPostNet()
    example = np.zeros((1, 8, 8, 1), np.float32)
    pre(example)
    post_in = tf.zeros((1, 4, 4, 32))
    post(post_in)
    fixed = Costs(
        size=count_params(pre) + count_params(post), flops=count_macs(pre, example) + count_macs(post, post_in)
    )
    assert fixed == Costs(size=16 * 9 + 32 + 330, flops=16 * 9 * 64 + 320)
    model = CostModel(space, (8, 8), fixed)
    for arch in random_archs(space, rng, 10) + [space.decode(space.largest()), space.decode(space.smallest())]:
        net.set_active(arch)
        static = net.extract()
        assert model.costs(arch) == Costs(size=count_params(static), flops=count_macs(static, example)), arch


def test_supernet_parameter_count_is_close_to_the_largest_subnet():
    net, space, _ = trained_supernet()
    net.set_active(space.decode(space.largest()))
    largest = count_params(net.extract())
    assert largest <= count_params(net) <= 1.2 * largest
