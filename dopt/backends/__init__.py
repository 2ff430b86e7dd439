"""Framework backends behind one small interface (``dopt.backends.base``), loaded on demand."""

from __future__ import annotations

from dopt.backends.base import Backend
from dopt.errors import UserError

__all__ = ["get_backend"]


def get_backend(framework: str) -> Backend:
    """The backend of ``framework``; its framework is imported here and only here.

    Raises:
        UserError: the framework's packages are not installed (naming the pip command).
    """
    if framework == "pytorch":
        try:
            from dopt.backends.torch.backend import TorchBackend  # torch is imported only here
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in {"torch", "onnx", "onnxruntime"}:
                raise UserError(
                    f"framework PyTorch needs the package {exc.name!r}, which is not installed",
                    key="scenario.strategy.framework",
                    fix="pip install torch (the build for your CUDA, see pytorch.org), then pip install 'dopt[torch]'",
                ) from None
            raise
        return TorchBackend()
    if framework == "tensorflow":
        try:
            from dopt.backends.tf.backend import TFBackend  # tensorflow is imported only here
        except ModuleNotFoundError as exc:
            if exc.name and exc.name.split(".")[0] in {"tensorflow", "keras"}:
                raise UserError(
                    f"framework TensorFlow needs the package {exc.name!r}, which is not installed",
                    key="scenario.strategy.framework",
                    fix="pip install 'dopt[tf]' (GPU builds) or 'dopt[tf-cpu]' (CPU only)",
                ) from None
            raise
        return TFBackend()
    raise ValueError(f"unknown framework {framework!r}")
