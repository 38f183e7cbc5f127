"""What every benchmark writes around its figures: a header (what, when, at which revision, on which machine)
and the JSON file, optionally one labelled run among others ("before" and "after" side by side).

The machine description is ``fairdistill.bench.machine()``, the one ``fairdistill bench`` writes, so every
result file names its threads and cores the same way. Files are replaced atomically: an interrupted benchmark
leaves the previous file whole.
"""

from __future__ import annotations

import datetime as dt
import json
import subprocess
from pathlib import Path
from typing import Any

from fairdistill.atomic_io import write_json
from fairdistill.bench import machine


def revision() -> str:
    """The checked-out commit (short hash), ``+dirty`` when the working tree has changes; ``unknown`` outside git."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain"], capture_output=True, text=True, check=True)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header(benchmark: str) -> dict[str, Any]:
    """The fields that open every result: the benchmark's one-line description, date, revision and machine."""
    return {
        "benchmark": benchmark,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "revision": revision(),
        "machine": machine(),
    }


def store(output: Path, result: dict[str, Any], label: str | None = None) -> None:
    """Write ``result`` to ``output``; with ``label``, as that key of the file's object, keeping the other runs
    already stored there (a file that is not such an object is refused, not overwritten)."""
    document: dict[str, Any] = result
    if label is not None:
        existing: Any = json.loads(output.read_text(encoding="utf-8")) if output.is_file() else {}
        if not isinstance(existing, dict):
            raise SystemExit(f"{output}: expected a JSON object of labelled runs, found {type(existing).__name__}")
        document = {**existing, label: result}
    write_json(output, document)
