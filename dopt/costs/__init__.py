"""Costs by kind: the registry of kinds, analytic formulas, and costs of whole models (docs/costs.md)."""

from dopt.costs.analytic import CostModel, Costs
from dopt.costs.kinds import CostKind, get, kinds, names, register, unregister

__all__ = ["Costs", "CostModel", "CostKind", "get", "kinds", "names", "register", "unregister"]
