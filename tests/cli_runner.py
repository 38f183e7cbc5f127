"""The ``fairdistill`` command line in-process, as a test would type it, and the tiny run the CLI tests share.

Importable from every test folder (pytest puts ``tests/``, the folder of the root conftest.py, on the path).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from fairdistill.cli import main

#: A colored-mnist run that trains in seconds: 300 examples, small CNNs, one epoch each, one kd student.
TINY_RUN: dict[str, Any] = {
    "name": "tiny",
    "seed": 0,
    "data": {"name": "colored-mnist", "max_examples": 300},
    "teacher": {"model": {"name": "cnn", "width": 6, "blocks": 2}, "train": {"epochs": 1, "batch_size": 50}},
    "student": {"model": {"name": "cnn", "width": 4, "blocks": 2}, "train": {"epochs": 1, "batch_size": 50}},
    "methods": [{"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}}],
}


def run_cli(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    """``fairdistill ARGS``; its exit status."""
    monkeypatch.setattr(sys, "argv", ["fairdistill", *args])
    try:
        main()
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


def tiny_config(path: Path, base: dict[str, Any] | None = None, **changes: Any) -> Path:
    """Write ``base`` (default TINY_RUN) with top-level ``changes`` as a YAML config file; return its path."""
    path.write_text(yaml.safe_dump({**(TINY_RUN if base is None else base), **changes}))
    return path


def expect_user_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], *messages: str
) -> str:
    """Run the CLI and check it failed as a user error: exit 2, no traceback, every message on stderr (compared
    with whitespace collapsed, so wrapped lines match). Returns the collapsed stderr."""
    code = run_cli(monkeypatch, *args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err, err
    flat = " ".join(err.split())
    for message in messages:
        assert message in flat, flat
    return flat
