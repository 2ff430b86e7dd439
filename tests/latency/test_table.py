"""The latency table without a framework: blocks of a space, the fit, the accuracy, JSON, the
cache and the cost model on a table, with a deterministic fake meter."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest

from dopt.costs import CostModel, Costs
from dopt.latency import build as latency_build
from dopt.latency.build import Job, obtain
from dopt.latency.table import Fit, LatencyTable, accuracy, arch_blocks, fit, space_blocks
from tests.test_space import all_encodings, make_space

IN_HW = (8, 8)


def _space():
    return make_space(filters=(16, 16, 24), strides=(1, 1, 2), kernel_sizes=(3, 5), expand_ratios=(1, 3))


def _block_ms(row, hw) -> float:
    cin, cout, k, s, e = row
    return 1e-5 * (cin * e * k * k + cin * e * cout) * hw[0] * hw[1] / (s * s) + 0.01


class FakeMeter:
    """Times jobs by formula: a subnet costs 1.1 × its blocks + 0.02 per block + 0.05, exactly."""

    def __init__(self, threads: int = 1) -> None:
        self.threads, self.calls = threads, 0

    def key(self):
        return {"device": "cpu: fake", "framework": "none", "runtime": "formula", "threads": self.threads}

    def measure(self, jobs, on_round=None):
        self.calls += 1
        out = []
        for job in jobs:
            if job.kind == "empty":
                out.append(0.003)
            elif job.kind in ("prenet", "postnet"):
                out.append(0.103)
            elif job.kind == "block":
                out.append(0.003 + _block_ms(job.block.row, job.block.hw))
            else:
                hws = _row_hws(job.rows)
                out.append(
                    1.1 * (0.2 + sum(_block_ms(r, h) for r, h in zip(job.rows, hws))) + 0.02 * len(job.rows) + 0.05
                )
        return out


def _row_hws(rows):
    hws, hw = [], IN_HW
    for row in rows:
        hws.append(hw)
        hw = ((hw[0] - 1) // row[3] + 1, (hw[1] - 1) // row[3] + 1)
    return hws


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("DOPT_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "latency"


def test_space_blocks_are_exactly_the_blocks_of_every_subnet():
    space = _space()
    used = {b for e in all_encodings(space) for b in arch_blocks(space, IN_HW, space.decode(list(e)))}
    assert set(space_blocks(space, IN_HW)) == used


def test_fit_recovers_nonnegative_coefficients_and_falls_back_to_a_scale():
    rng = np.random.default_rng(0)
    sums, counts = rng.uniform(0.5, 2, 30), rng.integers(1, 6, 30)
    measured = 1.3 * sums + 0.04 * counts + 0.1
    got = fit(sums, counts, measured)
    assert (
        got.scale == pytest.approx(1.3) and got.per_block == pytest.approx(0.04) and got.intercept == pytest.approx(0.1)
    )
    # Measurements that fall as the entries grow: no negative scale, a plain positive one.
    backwards = fit([1.0, 2.0, 3.0], [1, 1, 1], [3.0, 2.0, 1.0])
    assert backwards.scale >= 0 and backwards.per_block >= 0 and backwards.intercept >= 0


def test_accuracy_shares_errors_and_tau():
    acc = accuracy([1.0, 2.15, 2.9, 4.5], [1.0, 2.0, 3.0, 4.0])
    assert acc.subnets == 4 and acc.within_10 == 0.75 and acc.within_5 == 0.5
    assert acc.median_ape == pytest.approx(100 * np.median([0, 0.075, 1 / 30, 0.125]))
    assert acc.kendall_tau == 1.0 and acc.tau_ci95[1] <= 1.0
    assert "75% of 4 held-out subnets within ±10 %" in acc.text()


def test_table_json_round_trips_and_a_changed_byte_is_refused():
    table = LatencyTable(
        key={"threads": 1},
        entries={"a": 0.5},
        fixed_ms=0.2,
        fit=Fit(1.1, 0.01, 0.05),
        accuracy=accuracy([1, 2, 3], [1, 2, 3.5]),
        build_s=3.0,
    )
    text = table.to_json()
    assert LatencyTable.from_json(text) == table
    with pytest.raises(ValueError, match="checksum"):
        LatencyTable.from_json(text.replace('"a": 0.5', '"a": 0.6'))
    with pytest.raises(ValueError, match="not a dopt latency table"):
        LatencyTable.from_json("{")


def test_table_predicts_exactly_for_a_meter_it_can_fit_and_the_cost_model_uses_it(cache):
    space, meter = _space(), FakeMeter()
    got = obtain(meter, space, IN_HW, (1, 8, 8))
    table = got.table
    assert got.source == "built" and got.path.parent == cache and got.path.exists()
    assert table.accuracy.within_5 == 1.0 and table.accuracy.median_ape < 1e-6
    model = CostModel(space, IN_HW, Costs(size=1, flops=1), tables={"latency": table})
    assert [k.name for k in model.kinds()] == ["size", "flops", "latency"]
    values = [model.cost("latency", space.decode(list(e))) for e in all_encodings(space)]
    lo, hi = model.cost_range("latency")
    assert lo == pytest.approx(min(values)) and hi == pytest.approx(max(values))
    arch = space.decode(list(space.largest()))
    rows = tuple(space.layer_rows(arch))
    [truth] = meter.measure([Job(kind="subnet", rows=rows)])
    assert model.cost("latency", arch) == pytest.approx(truth) == pytest.approx(table.predict(space, IN_HW, arch))
    # Without a table latency is not a cost of this run.
    assert "latency" not in CostModel(space, IN_HW, Costs(size=1, flops=1)).costs(arch)


def test_cache_is_reused_rebuilt_for_another_key_and_never_trusted_when_corrupt(cache, caplog):
    space = _space()
    first = obtain(FakeMeter(), space, IN_HW, (1, 8, 8))
    again_meter = FakeMeter()
    again = obtain(again_meter, space, IN_HW, (1, 8, 8))
    assert again.source == "cache" and again.table == first.table and again_meter.calls == 0
    other = obtain(FakeMeter(threads=2), space, IN_HW, (1, 8, 8))
    assert other.source == "built" and other.path != first.path
    shape = obtain(FakeMeter(), space, IN_HW, (1, 9, 9))
    assert shape.source == "built" and shape.path not in (first.path, other.path)
    first.path.write_text(first.path.read_text()[:-40])  # torn
    with caplog.at_level(logging.WARNING, logger="dopt.latency"):
        rebuilt = obtain(FakeMeter(), space, IN_HW, (1, 8, 8))
    assert rebuilt.source == "built" and "unreadable" in caplog.text
    assert json.loads(rebuilt.path.read_text())["table"]["entries"] == dict(first.table.entries)


def test_a_runs_own_copy_comes_before_the_cache(cache, tmp_path):
    space = _space()
    built = obtain(FakeMeter(), space, IN_HW, (1, 8, 8))
    copy = tmp_path / "latency_table.json"
    copy.write_text(built.table.to_json())
    built.path.unlink()
    got = obtain(FakeMeter(), space, IN_HW, (1, 8, 8), run_copy=copy)
    assert got.source == "run" and got.table == built.table


def test_poor_fit_warns_with_what_to_do():
    table = LatencyTable(
        key={"threads": 1},
        entries={},
        fixed_ms=0.0,
        fit=Fit(),
        accuracy=accuracy([1.0, 1.5, 3.0], [1.0, 2.0, 2.0]),
        build_s=1.0,
    )
    text = latency_build.poor_fit_warning(table)
    assert text is not None and "33% of 3 held-out subnets" in text and "Fix:" in text
