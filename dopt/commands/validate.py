"""`dopt validate -c scen.yaml`: check the scenario and the user module, rehearse the smallest and
the largest subnet, print the space and its costs against the constraint. Writes nothing."""

from __future__ import annotations

from dopt.pipeline.prepare import describe, prepare
from dopt.scenario import Scenario
from dopt.text import cost_text

__all__ = ["validate"]


def validate(scenario: Scenario) -> int:
    """Print what preparing a run found; the exit code (0: every check passed)."""
    prepared = prepare(scenario)
    space = prepared.space
    for line in describe(prepared):
        print(line)
    for name, encoding, report in zip(("smallest", "largest"), (space.smallest(), space.largest()), prepared.rehearsal):
        costs = prepared.costs.costs(space.decode(encoding))
        listed = ", ".join(f"{kind} {cost_text(value)}" for kind, value in costs.items())
        print(f"{name} subnet: {listed}; forward/backward ok ({report})")
    print(f"{prepared.scenario.path.name}: OK")
    return 0
