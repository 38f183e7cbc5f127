"""What a run was started with, so that ``--resume`` continues that run and nothing else.

``run.json`` in the run directory holds the resolved config (and its sha256) written before anything trains,
and the sha256 of every data split once the data is loaded. A resume re-reads config.yaml and the data and
refuses to continue when either differs, naming the fields or splits that changed: a resumed model trained
half with one learning rate and half with another, or on relabelled data, would be neither run.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from fairdistill.atomic_io import write_json
from fairdistill.errors import FairdistillError, shown_value

RUN_RECORD = "run.json"
RUN_RECORD_FORMAT = 1


def config_digest(resolved: Mapping[str, Any]) -> str:
    """sha256 of a resolved config (a JSON-able mapping), independent of key order."""
    return hashlib.sha256(json.dumps(resolved, sort_keys=True, default=str).encode()).hexdigest()


def start_record(run_dir: Path, resolved: Mapping[str, Any]) -> None:
    """Write run.json for a new run: the resolved config and its digest (data digests come later)."""
    write_json(
        run_dir / RUN_RECORD,
        {
            "format": RUN_RECORD_FORMAT,
            "config_sha256": config_digest(resolved),
            "config": dict(resolved),
            "data_sha256": None,
        },
    )


def read_record(run_dir: Path) -> dict[str, Any]:
    """run.json of a run directory; a folder without a readable one is not a run that can be resumed."""
    path = run_dir / RUN_RECORD
    if not path.is_file():
        raise FairdistillError(
            f"--resume: {run_dir} has no {RUN_RECORD}, so it is not a run directory written by "
            "this version of fairdistill; start a new run instead"
        )
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FairdistillError(f"--resume: {path} is damaged ({exc}); start a new run instead") from None
    if (
        not isinstance(record, dict)
        or record.get("format") != RUN_RECORD_FORMAT
        or not isinstance(record.get("config"), dict)
        or not isinstance(record.get("config_sha256"), str)
    ):
        raise FairdistillError(
            f"--resume: {path} is not a run record of format {RUN_RECORD_FORMAT}; start a new run instead"
        )
    return record


def check_same_config(run_dir: Path, record: Mapping[str, Any], resolved: Mapping[str, Any]) -> None:
    """Refuse to resume when config.yaml no longer resolves to the config the run was started with."""
    if config_digest(resolved) == record["config_sha256"]:
        return
    changes = changed_fields(record["config"], resolved)
    listed = "; ".join(changes[:8]) + (f"; and {len(changes) - 8} more" if len(changes) > 8 else "")
    raise FairdistillError(
        f"--resume: {run_dir / 'config.yaml'} differs from the config the run was started with ({listed}). "
        "A resumed run must continue with the same settings: undo the change, or start a new run with it"
    )


def record_data(run_dir: Path, record: dict[str, Any] | None, split_digests: Mapping[str, str]) -> None:
    """Store the data digests of a new run, or refuse a resume whose data files changed since it started.

    ``record`` is None for a new run (its run.json is re-read); otherwise the record read at resume.
    """
    current = read_record(run_dir) if record is None else record
    saved = current.get("data_sha256")
    if saved is None:
        write_json(run_dir / RUN_RECORD, {**current, "data_sha256": dict(split_digests)})
        return
    changed = sorted(name for name in {*saved, *split_digests} if saved.get(name) != split_digests.get(name))
    if changed:
        raise FairdistillError(
            f"--resume: the data of split{'s' if len(changed) > 1 else ''} {', '.join(changed)} changed since the "
            "run started (the dataset files were edited or replaced); restore them, or start a new run"
        )


def changed_fields(before: Any, after: Any, path: str = "") -> list[str]:
    """``path: old → new`` for every leaf that differs between two JSON-like values."""
    if isinstance(before, dict) and isinstance(after, dict):
        changes: list[str] = []
        for key in sorted({*before, *after}, key=str):
            where = f"{path}.{key}" if path else str(key)
            changes += changed_fields(before.get(key, _NOT_SET), after.get(key, _NOT_SET), where)
        return changes
    if (
        isinstance(before, list)
        and isinstance(after, list)
        and len(before) == len(after)
        and all(isinstance(entry, dict) for entry in [*before, *after])
    ):
        changes = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            label = b.get("name") if isinstance(b, dict) and isinstance(b.get("name"), str) else i
            changes += changed_fields(b, a, f"{path}.{label}" if path else str(label))
        return changes
    if before == after:
        return []
    return [f"{path or 'config'}: {_shown(before)} → {_shown(after)}"]


class _NotSet:
    """A field absent from one of two configs (its default then applies)."""


_NOT_SET = _NotSet()


def _shown(value: Any) -> str:
    return "(not set)" if value is _NOT_SET else shown_value(value)
