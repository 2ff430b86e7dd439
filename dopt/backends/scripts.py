"""Framework-free helpers of result scripts (SPEC 8): header lines and importing a written script."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from typing import Any

__all__ = ["header_value", "load_script"]


def header_value(value: Any) -> str:
    """A header value as a safe literal: plain digits (no separators), or a list of integers."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(int(v)) for v in value) + "]"
    raise TypeError(f"header values are numbers or integer lists, got {type(value).__name__}")


def load_script(path: Path) -> Any:
    """Import a result script as a fresh module (it imports ``user_module`` already loaded)."""
    name = f"_dopt_result_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    old = sys.dont_write_bytecode
    sys.dont_write_bytecode = True
    try:
        spec.loader.exec_module(module)
    finally:
        sys.dont_write_bytecode = old
    return module
