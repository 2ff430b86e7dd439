"""dopt: hardware-aware evolutionary neural architecture search."""

__version__ = "0.1.0"
__all__ = ["__version__"]
