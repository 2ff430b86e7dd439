"""Cost kinds: what a constraint can limit, each declared once and registered (docs/costs.md).

A kind says how it is named (scenario ``constraint_type``), which unit it has, under which column
the archive, journal and CSV store it, which key the result header gives it, how much one searched
layer costs (the analytic formula behind the space's min/max), and where the truth for a candidate
comes from: the backend's count on the extracted model, or the formula itself. Everything that
lists costs (archive records, journal, result headers, CSV, plot labels, the constraint check)
iterates over :func:`kinds`, so a new kind is one class and one :func:`register` call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from dopt.costs.formulas import layer_costs

if TYPE_CHECKING:
    from dopt.costs.values import Costs
    from dopt.space import LayerChoice

__all__ = ["CostKind", "register", "unregister", "kinds", "names", "get"]


class CostKind:
    """One kind of cost. Subclass it, set the class attributes, and :func:`register` an instance.

    Attributes:
        name: the ``constraint_type`` that selects it.
        unit: how its values read, e.g. ``"parameters"``.
        column: its key in archive records, the journal and ``pareto.csv``.
        header: its key in a result script's header; empty to leave it out.
        measured: True when the backend counts it on the extracted model (the truth, checked
            again on every written result); False when :meth:`layer` and :meth:`fixed` give it.
        formula: False for a kind without a per-layer formula: its per-layer costs come from a
            table measured for the run (latency, docs/latency.md), and a run that does not
            constrain it does not compute it.
    """

    name: str = ""
    unit: str = ""
    column: str = ""
    header: str = ""
    measured: bool = False
    formula: bool = True

    def layer(self, choice: LayerChoice, cin: int, stride: int, hw: tuple[int, int]) -> float:
        """The cost of one kept searched layer with ``cin`` input channels at spatial size ``hw``."""
        raise NotImplementedError(f"cost kind {self.name!r} has no per-layer formula")

    def fixed(self, fixed: Costs) -> float:
        """The cost of PreNet and PostNet, from what the backend counted on them."""
        value = fixed.get(self.name)
        return 0 if value is None else value


_REGISTRY: dict[str, CostKind] = {}


def register(kind: CostKind) -> CostKind:
    """Add ``kind``; its ``name`` and ``column`` must be new. Returns it, for use as a decorator."""
    if not kind.name or not kind.column:
        raise ValueError("a cost kind needs a name and a column")
    if kind.name in _REGISTRY or any(k.column == kind.column for k in _REGISTRY.values()):
        raise ValueError(f"a cost kind named {kind.name!r} or stored as {kind.column!r} is already registered")
    _REGISTRY[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    """Remove a registered kind (tests that register a toy kind clean up with it)."""
    del _REGISTRY[name]


def kinds() -> tuple[CostKind, ...]:
    """Every registered kind, in registration order (the order of columns in every output)."""
    return tuple(_REGISTRY.values())


def names() -> tuple[str, ...]:
    return tuple(k.name for k in kinds())


def get(name: str) -> CostKind:
    """The kind called ``name``. Raises ``KeyError`` naming the registered kinds."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown cost kind {name!r}; registered: {', '.join(_REGISTRY)}") from None


class Size(CostKind):
    """Trainable parameters of the whole model, PreNet and PostNet included."""

    name, unit, column, header, measured = "size", "parameters", "size", "model_param_size", True

    def layer(self, choice: LayerChoice, cin: int, stride: int, hw: tuple[int, int]) -> float:
        return layer_costs(choice, cin, stride, hw)["size"]


class Flops(CostKind):
    """Multiply-accumulates of the whole model at batch 1."""

    name, unit, column, header, measured = "flops", "MACs", "flops", "flops", True

    def layer(self, choice: LayerChoice, cin: int, stride: int, hw: tuple[int, int]) -> float:
        return layer_costs(choice, cin, stride, hw)["flops"]


class Latency(CostKind):
    """Milliseconds at batch 1 on the target device. No formula: the run's latency table predicts
    each layer (dopt/latency, docs/latency.md), or the user's ``latency_func`` measures the whole
    candidate; a run that does not constrain latency does not compute it."""

    name, unit, column, header, measured, formula = "latency", "ms", "latency_ms", "latency_ms", False, False


for _kind in (Size(), Flops(), Latency()):
    register(_kind)
