"""benchmarks/records.py: the labelled result files every benchmark writes."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

RECORDS = Path(__file__).resolve().parents[2] / "benchmarks" / "records.py"


def _records():
    spec = importlib.util.spec_from_file_location("benchmark_records", RECORDS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_labelled_run_joins_the_runs_already_stored(tmp_path: Path) -> None:
    records = _records()
    output = tmp_path / "results" / "x.json"
    records.store(output, {"ratio": 1.5}, "before")
    records.store(output, {"ratio": 1.2}, "after")
    records.store(output, {"ratio": 1.1}, "after")  # the same label again replaces only that run
    assert json.loads(output.read_text()) == {"before": {"ratio": 1.5}, "after": {"ratio": 1.1}}
    records.store(output, {"whole": True})  # no label: the file is the result
    assert json.loads(output.read_text()) == {"whole": True}


def test_a_file_that_is_not_an_object_of_runs_is_refused_and_kept(tmp_path: Path) -> None:
    records = _records()
    output = tmp_path / "x.json"
    output.write_text("[1, 2]\n")
    with pytest.raises(SystemExit, match=r"x\.json: expected a JSON object of labelled runs, found list"):
        records.store(output, {"ratio": 1.0}, "after")
    assert output.read_text() == "[1, 2]\n"
    assert [p.name for p in tmp_path.iterdir()] == ["x.json"]  # no temporary file left behind


def test_the_header_names_the_benchmark_revision_and_threads() -> None:
    head = _records().header("what it measures")
    assert head["benchmark"] == "what it measures"
    assert head["revision"] == "unknown" or len(head["revision"].split("+")[0]) >= 7
    assert head["machine"]["torch_num_threads"] >= 1 and head["machine"]["cpu_count"] >= 1
