"""Framework backends behind one small interface (``dopt.backends.base``), loaded on demand from a
table: ``get_backend(framework)`` imports a framework only when a run asks for it, and a test (or
a third-party backend) can ``register`` another one."""

from __future__ import annotations

import importlib
from collections.abc import Callable

from dopt.backends.base import Backend
from dopt.errors import UserError

__all__ = ["get_backend", "register", "unregister"]


def _loader(module: str, name: str, framework: str, packages: frozenset[str], fix: str) -> Callable[[], Backend]:
    """A factory that imports ``module`` (and with it the framework) on first use."""

    def load() -> Backend:
        try:
            found = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in packages:
                raise UserError(
                    f"framework {framework} needs the package {exc.name!r}, which is not installed",
                    key="scenario.strategy.framework",
                    fix=fix,
                ) from None
            raise
        backend: Backend = getattr(found, name)()
        return backend

    return load


# The scenario's framework -> a factory of its backend. torch and tensorflow are imported only by
# these factories.
_BACKENDS: dict[str, Callable[[], Backend]] = {
    "pytorch": _loader(
        "dopt.backends.torch.backend",
        "TorchBackend",
        "PyTorch",
        frozenset({"torch", "onnx", "onnxruntime"}),
        "pip install torch (the build for your CUDA, see pytorch.org), then pip install 'dopt[torch]'",
    ),
    "tensorflow": _loader(
        "dopt.backends.tf.backend",
        "TFBackend",
        "TensorFlow",
        frozenset({"tensorflow", "keras"}),
        "pip install 'dopt[tf]' (GPU builds) or 'dopt[tf-cpu]' (CPU only)",
    ),
}


def get_backend(framework: str) -> Backend:
    """The backend of ``framework``; its framework is imported here and only here.

    Raises:
        UserError: the framework's packages are not installed (naming the pip command).
    """
    try:
        factory = _BACKENDS[framework]
    except KeyError:
        raise ValueError(f"unknown framework {framework!r}") from None
    return factory()


def register(framework: str, factory: Callable[[], Backend]) -> Callable[[], Backend] | None:
    """Serve ``framework`` with ``factory``; returns the factory it replaces (None: a new one)."""
    old = _BACKENDS.get(framework)
    _BACKENDS[framework] = factory
    return old


def unregister(framework: str, previous: Callable[[], Backend] | None = None) -> None:
    """Undo :func:`register`: put ``previous`` back, or drop ``framework``."""
    if previous is None:
        _BACKENDS.pop(framework, None)
    else:
        _BACKENDS[framework] = previous
