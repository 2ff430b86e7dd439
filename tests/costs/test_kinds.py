"""Cost kinds: a contributor adds one by writing a class and registering it (docs/costs.md)."""

from __future__ import annotations

import csv
import json

import pytest

from dopt import costs
from dopt.costs import CostKind, CostModel, Costs
from tests.digits_workdir import make_workdir
from tests.frameworks import require
from tests.spaces import all_encodings, make_space


class Layers(CostKind):
    """A toy kind: how many searched layers a subnet keeps (PreNet and PostNet count none)."""

    name, unit, column, header = "layers", "layers", "layers", "layers"

    def layer(self, choice, cin, stride, hw):
        return 1

    def fixed(self, fixed):
        return 0


@pytest.fixture
def layers_kind():
    kind = costs.register(Layers())
    yield kind
    costs.unregister("layers")


def test_a_registered_kind_gets_exact_ranges_and_costs(layers_kind):
    space = make_space(filters=(16, 16, 24), strides=(1, 1, 2))
    model = CostModel(space, (8, 8), Costs(size=100, flops=1000))
    values = [model.costs(space.decode(list(e)))["layers"] for e in all_encodings(space)]
    assert model.cost_range("layers") == (min(values), max(values)) == (1, 3)
    assert "layers" in costs.names() and costs.get("layers") is layers_kind


def test_registering_a_name_or_column_twice_is_refused(layers_kind):
    with pytest.raises(ValueError, match="already registered"):
        costs.register(Layers())


@pytest.mark.slow
def test_a_search_constrained_by_a_registered_kind_writes_it_everywhere(layers_kind, tmp_path, monkeypatch):
    require("torch")
    from dopt.cli import main

    work = make_workdir(tmp_path / "w", kind="layers", value=2)
    monkeypatch.chdir(work)
    assert main(["-c", "scen.yaml", "-q"]) == 0

    doc = json.loads((work / "results" / "pareto.json").read_text())
    assert doc["constraint"] == {"type": "layers", "value": 2}
    records = doc["archive"]
    assert all(r["layers"] == sum(not layer.get("skip", False) for layer in r["arch"]) for r in records)
    assert all(r["feasible"] == (r["layers"] <= 2) for r in records)
    front = [records[e["index"]] for e in doc["front"]]
    assert front and all(r["layers"] <= 2 and r["feasible"] for r in front)
    with open(work / "results" / "pareto.csv") as f:
        rows = list(csv.DictReader(f))
    assert [int(row["layers"]) for row in rows] == [r["layers"] for r in records]
    script = (work / "results" / "model_arch_result_1.py").read_text()
    assert f"# layers: {front[0]['layers']}\n" in script
