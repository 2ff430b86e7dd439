"""How numbers and paths are written in messages, the log and the summary: one formatter for each
way a number is shown, so the same value reads the same everywhere."""

from __future__ import annotations

import math
from pathlib import Path

__all__ = ["plain", "grouped", "cost_text", "rounded", "rel", "shortened", "path_problem"]


def plain(value: float) -> str:
    """6650 or 0.494: as one would type it in scen.yaml, or name a folder after it."""
    return str(int(value)) if float(value).is_integer() else str(value)


def grouped(value: float) -> str:
    """12,000 or 0.5: thousands separated, no exponent."""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,}"


def cost_text(value: float) -> str:
    """12,000 or 0.4937: a cost in a table, four significant digits when it is not a count."""
    return f"{value:,}" if float(value).is_integer() else f"{value:.4g}"


def rounded(value: float, up: bool = False) -> float:
    """Integers stay; milliseconds get 3 decimals (rounded up for a bound the user should set)."""
    if float(value).is_integer():
        return value
    return math.ceil(value * 1000) / 1000 if up else round(value, 3)


def rel(path: Path, base: Path) -> str:
    """``path`` relative to ``base`` where it lies below it, else as it is."""
    try:
        return str(path.relative_to(base))
    except ValueError:
        return str(path)


def shortened(text: str, limit: int = 80) -> str:
    """``text`` cut to ``limit`` characters, saying how much was left out: a value quoted in a
    message (a 5 MB name, a whole section) must not make the message as long as it is."""
    if len(text) <= limit:
        return text
    return f"{text[: limit - 1]}… ({len(text) - limit + 1:,} more characters)"


def path_problem(raw: str) -> str | None:
    """Why ``raw`` cannot be a path a user meant, or None: empty, control characters, or over
    1,024 characters (docs/scenario.md)."""
    if not raw:
        return "it is empty"
    if "\0" in raw or not raw.isprintable():
        return "it holds control characters"
    if len(raw) > 1024:
        return f"it has {len(raw):,} characters, over 1,024"
    return None
