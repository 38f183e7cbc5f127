"""Two writer processes and a reader racing on the same teacher cache entries lose no write and delete no valid
entry; the race is the one of ``benchmarks/cache_stress.py`` (2 × 200 writes there, 2 × 50 here)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

HARNESS = Path(__file__).resolve().parents[2] / "benchmarks" / "cache_stress.py"
KEYS = 3


def _harness() -> ModuleType:
    spec = importlib.util.spec_from_file_location("cache_stress", HARNESS)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_two_writers_and_a_reader_lose_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    result = _harness().stress(tmp_path, writers=2, writes=50, keys=KEYS)
    assert result["lost_writes"] == 0, result["errors"]
    assert result["valid_entries_deleted"] == 0, "no process deletes a complete entry of another"
    assert result["reads_not_valid_after_valid"] == 0 and result["reader_errors"] == 0, (
        "the reader never takes an entry being installed for a damaged or missing one"
    )
    assert result["damaged_entries_deleted"] == KEYS, "each seeded damaged entry is replaced exactly once"
    assert result["wrong_outputs_returned"] == 0 and result["reads"] >= KEYS
    assert result["final_entries_valid"] == KEYS and result["leftovers"] == [], "no temporary or lock file left"
