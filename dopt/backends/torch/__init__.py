"""PyTorch backend: supernet, training and evaluation primitives, costs and result scripts.

``TorchBackend`` is in ``backend.py``; ``dopt.backends.get_backend("pytorch")`` loads it.
"""
