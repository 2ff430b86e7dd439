"""TensorFlow (tf.keras, Keras 3) backend: supernet, training and evaluation primitives, costs and
result scripts.

``TFBackend`` is in ``backend.py``; ``dopt.backends.get_backend("tensorflow")`` loads it.
"""
