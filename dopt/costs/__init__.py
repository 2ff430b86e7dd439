"""Costs by kind: the registry of kinds, analytic formulas, and costs of whole models (docs/costs.md)."""

from dopt.costs.analytic import CostModel
from dopt.costs.kinds import CostKind, get, kinds, names, register, unregister
from dopt.costs.values import Costs

__all__ = ["Costs", "CostModel", "CostKind", "get", "kinds", "names", "register", "unregister"]
