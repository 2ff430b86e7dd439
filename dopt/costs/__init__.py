"""Cost model: analytic per-layer formulas for the space's min/max and for tests (SPEC 6)."""

from dopt.costs.analytic import Costs, CostModel

__all__ = ["Costs", "CostModel"]
