"""A result script's header, the ``# key: value`` lines at its top (docs/outputs.md#result-scripts):
what it holds, written, rewritten after the latency check, and read back by `dopt train`."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dopt import costs as cost_kinds
from dopt.store.atomic import atomic_write_text

if TYPE_CHECKING:
    from dopt.archive import Candidate

__all__ = ["header_of", "header_lines", "header_value", "replace_header", "read_header"]


def header_of(c: Candidate, metric_name: str, latency: dict[str, Any] | None = None) -> dict[str, Any]:
    """A result's header: the metric under its name, every cost kind with a header key (latency as
    re-measured, with its prediction and how it was measured), the encoding."""
    costs = {k.header: c.costs[k.name] for k in cost_kinds.kinds() if k.header and k.name in c.costs}
    if latency is not None:
        costs.pop("latency_ms", None)
        costs.update(latency)
    return {metric_name: c.metric, **costs, "encoding": list(c.encoding)}


def header_lines(header: dict[str, Any]) -> list[str]:
    """The header as the script's first lines."""
    return [f"# {key}: {header_value(value)}" for key, value in header.items()]


def header_value(value: Any) -> str:
    """A header value as a safe literal: plain digits (no separators), a list of integers, or a
    quoted one-line text."""
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, str):
        return repr(" ".join(value.split()))
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(str(int(v)) for v in value) + "]"
    raise TypeError(f"header values are numbers or integer lists, got {type(value).__name__}")


def replace_header(script: Path, header: dict[str, Any]) -> None:
    """Rewrite the header of a written script (the code is untouched)."""
    lines = script.read_text().splitlines(keepends=True)
    body = 0
    while body < len(lines) and _is_header(lines[body]):
        body += 1
    atomic_write_text(script, "".join(line + "\n" for line in header_lines(header)) + "".join(lines[body:]))


def read_header(script: Path) -> dict[str, Any]:
    """The header of a result script, values as literals."""
    values: dict[str, Any] = {}
    for line in script.read_text().splitlines():
        if not _is_header(line):
            break
        key, value = line[2:].split(": ", 1)
        try:
            values[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            values[key] = value
    return values


def _is_header(line: str) -> bool:
    return line.startswith("# ") and ": " in line
