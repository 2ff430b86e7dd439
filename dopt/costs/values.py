"""The costs of one model, by kind (docs/costs.md)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

__all__ = ["Costs"]


class Costs(Mapping[str, float]):
    """Costs of one model by kind name, e.g. ``Costs(size=1200, flops=56000)``; immutable.

    A kind this model was not measured for is absent (``costs.get("latency")`` is None).
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, float | None] | None = None, /, **kw: float | None) -> None:
        merged = {**(values or {}), **kw}
        self._values: dict[str, float] = {k: v for k, v in merged.items() if v is not None}

    def __getitem__(self, kind: str) -> float:
        return self._values[kind]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Mapping) and dict(self._values) == dict(other)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._values.items())))

    def __repr__(self) -> str:
        return "Costs(" + ", ".join(f"{k}={v!r}" for k, v in self._values.items()) + ")"
