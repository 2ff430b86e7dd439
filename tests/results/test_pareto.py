"""pareto.json and pareto.csv."""

from __future__ import annotations

import csv
import json
import os

import pytest

from dopt.results import front_entries, write_csv, write_json
from dopt.results.pareto import csv_columns
from dopt.store.atomic import atomic_write_bytes, atomic_write_text

OBJECTIVE = {"metric": "accuracy", "maximize": True, "cost": "flops", "minimize": True}


def test_json_layout(tmp_path, archive):
    path = tmp_path / "results" / "pareto.json"
    write_json(path, archive, objective=OBJECTIVE, extra={"seed": 7, "space_size": 1234})
    doc = json.loads(path.read_text())
    assert list(doc) == ["objective", "constraint", "seed", "space_size", "archive", "front"]
    assert doc["constraint"] == {"type": "flops", "value": 100.0}
    assert doc["front"] == [{"n": 1, "index": 4}, {"n": 2, "index": 0}, {"n": 3, "index": 2}]
    assert len(doc["archive"]) == len(archive)
    first = doc["archive"][0]
    assert first == {
        "encoding": [0, 0],
        "arch": [{"kernel": 3, "expand": 1, "out_channels": 8}],
        "metric": 0.5,
        "size": 120,
        "flops": 40,
        "latency_ms": None,
        "feasible": True,
        "generation": 0,
    }
    assert doc["archive"][1]["latency_ms"] == 1.5
    assert doc["archive"][3]["metric"] is None and doc["archive"][3]["feasible"] is False
    assert doc["archive"][5]["metric"] is None and doc["archive"][5]["feasible"] is True  # NaN
    assert doc["archive"][4]["metric"] == 0.1 + 0.2  # repr-exact


def test_json_has_no_timings_and_is_byte_identical(tmp_path, archive):
    a, b = tmp_path / "a.json", tmp_path / "b.json"
    write_json(a, archive, objective=OBJECTIVE, extra={})
    for c in archive:
        c.eval_seconds += 1.0  # another run, other timings
    write_json(b, archive, objective=OBJECTIVE, extra={})
    assert a.read_bytes() == b.read_bytes()
    assert b"eval_seconds" not in a.read_bytes()
    assert b"NaN" not in a.read_bytes()


def test_json_holds_every_record_and_the_front(tmp_path, archive):
    path = tmp_path / "pareto.json"
    write_json(path, archive, objective=OBJECTIVE, extra={})
    doc = json.loads(path.read_text())
    assert archive.front() == [e["index"] for e in doc["front"]]
    drop = lambda rs: [{k: v for k, v in r.items() if k != "eval_seconds"} for r in rs]  # noqa: E731
    assert drop(doc["archive"]) == drop(archive.to_records())


def test_json_rejects_extra_keys_that_clash(tmp_path, archive):
    with pytest.raises(ValueError, match="front"):
        write_json(tmp_path / "p.json", archive, objective=OBJECTIVE, extra={"front": []})


def test_json_with_an_empty_archive(tmp_path, empty_archive):
    path = tmp_path / "pareto.json"
    write_json(path, empty_archive, objective=OBJECTIVE, extra={})
    doc = json.loads(path.read_text())
    assert doc["archive"] == [] and doc["front"] == []


def test_front_entries_match_the_archive_front(archive):
    assert [e["index"] for e in front_entries(archive)] == archive.front()
    assert [e["n"] for e in front_entries(archive)] == [1, 2, 3]


def test_csv_columns_and_rows(tmp_path, archive):
    path = tmp_path / "pareto.csv"
    write_csv(path, archive)
    raw = path.read_bytes()
    assert b"\r" not in raw
    rows = list(csv.DictReader(path.open(newline="")))
    assert tuple(rows[0]) == csv_columns()
    assert csv_columns() == (
        "index",
        "front_n",
        "metric",
        "size",
        "flops",
        "latency_ms",
        "feasible",
        "generation",
        "eval_seconds",
        "encoding",
    )
    assert len(rows) == len(archive)
    assert [r["front_n"] for r in rows] == ["2", "", "3", "", "1", ""]
    assert rows[0] == {
        "index": "0",
        "front_n": "2",
        "metric": "0.5",
        "size": "120",
        "flops": "40",
        "latency_ms": "",
        "feasible": "true",
        "generation": "0",
        "eval_seconds": "0.01",
        "encoding": "0 0",
    }
    assert rows[1]["latency_ms"] == "1.5" and rows[1]["encoding"] == "1 1"
    assert rows[3]["metric"] == "" and rows[3]["feasible"] == "false"
    assert rows[5]["metric"] == "nan"
    assert float(rows[4]["metric"]) == 0.1 + 0.2


def test_csv_with_an_empty_archive(tmp_path, empty_archive):
    path = tmp_path / "pareto.csv"
    write_csv(path, empty_archive)
    assert path.read_text() == ",".join(csv_columns()) + "\n"


def test_atomic_write_replaces_and_leaves_no_temp_file(tmp_path):
    path = tmp_path / "sub" / "f.txt"
    atomic_write_text(path, "one\n")
    atomic_write_text(path, "two\r\n")
    assert path.read_bytes() == b"two\r\n"
    assert os.listdir(path.parent) == ["f.txt"]


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = tmp_path / "f.bin"
    atomic_write_bytes(path, b"old")
    with pytest.raises(TypeError):
        atomic_write_bytes(path, "not bytes")  # type: ignore[arg-type]
    assert path.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["f.bin"]


def test_atomic_write_respects_the_umask(tmp_path):
    path = tmp_path / "f.txt"
    atomic_write_text(path, "x")
    old = os.umask(0o022)
    os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o666 & ~old
