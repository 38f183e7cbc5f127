"""Reading users' data files: resolved paths, content digests for the provenance, JSON-lines records."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path

from fairdistill.errors import DataError


def resolve_path(text: str) -> Path:
    """``text`` as an absolute path (``~`` expanded, relative to the current directory)."""
    return Path(text).expanduser().resolve()


def sha256_file(path: Path) -> str:
    """sha256 of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def json_objects(path: Path, dataset: str, expected: str = "an object") -> Iterator[tuple[int, dict]]:
    """``(line number, object)`` for every non-blank line of a JSON-lines file; a line that is not a JSON
    object is a DataError naming the dataset, the file and the line (``expected`` says what it should hold)."""
    with path.open(encoding="utf-8") as fh:
        for line_no, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(
                    f"{dataset}: {path}: line {line_no} is not JSON ({exc.msg} at column {exc.colno}); "
                    "expected one JSON object per line"
                ) from None
            if not isinstance(obj, dict):
                raise DataError(
                    f"{dataset}: {path}: line {line_no} is a JSON {type(obj).__name__}, expected {expected}"
                )
            yield line_no, obj
