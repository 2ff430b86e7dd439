"""A small trained Keras supernet for the backend's tests."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from dopt.backends.tf.supernet import Supernet
from tests.backends.tf.keras_nets import ListPostNet, PostNet, PreNet
from tests.spaces import make_space

X = np.random.default_rng(1).standard_normal((4, 8, 8, 1)).astype(np.float32)


def random_archs(space, rng, n):
    return [space.decode(space.sample(rng)) for _ in range(n)]


def trained_supernet(feature_choose=(), post_cls=None):
    keras.utils.set_random_seed(0)
    space = make_space(filters=(16, 16, 24, 32), strides=(1, 1, 2, 1), feature_choose=feature_choose)
    pre, post = PreNet(), (post_cls or (ListPostNet if feature_choose else PostNet))()
    pre(X[:1], training=False)
    post([tf.zeros((1, 8, 8, 16)), tf.zeros((1, 4, 4, 32))] if feature_choose else tf.zeros((1, 4, 4, 32)))
    net = Supernet(pre, post, space, feature_choose, (8, 8, 1))
    opt = keras.optimizers.SGD(0.05)
    opt.build(net.trainable_variables)
    rng = np.random.default_rng(0)
    x = np.random.default_rng(2).standard_normal((16, 8, 8, 1)).astype(np.float32)
    y = np.arange(16) % 10
    for _ in range(5):  # a few steps so weights and BN statistics differ per channel
        net.set_active(space.decode(space.sample(rng)))
        with tf.GradientTape() as tape:
            loss = tf.reduce_mean(
                keras.losses.sparse_categorical_crossentropy(y, net(x, training=True), from_logits=True)
            )
        grads = tape.gradient(loss, net.trainable_variables)
        opt.apply_gradients([(g, v) for g, v in zip(grads, net.trainable_variables) if g is not None])
    return net, space, rng
