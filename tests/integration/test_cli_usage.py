"""Command-line usage mistakes and the help/version flags: a usage mistake exits 2 with click's one-paragraph
hint and never a traceback; ``-h``/``--help``/``--version`` exit 0. typer ships its own copy of click
(``typer._click``), so these are checked through the real entry point, not by isinstance on click's classes."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

import fairdistill
from cli_runner import run_cli as cli


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["runn"], "No such command 'runn'. Did you mean 'run'?"),
        (["--bogus"], "No such option: --bogus"),
        (["run", "--bogus"], "No such option: --bogus"),
        (["run", "--set"], "Option '--set' requires an argument"),
        (["sweep", "--grid"], "Option '--grid' requires an argument"),
        (["compare", "only-one-run"], "Missing argument"),
        (["report"], "Missing argument"),
        (["compare", "a", "b", "--split"], "Option '--split' requires an argument"),
    ],
)
def test_usage_mistakes_exit_2_without_a_traceback(args: list[str], message: str, monkeypatch, capsys) -> None:
    code = cli(monkeypatch, *args)
    captured = capsys.readouterr()
    assert code == 2, captured
    assert message in captured.err and "Traceback" not in captured.err + captured.out
    assert len(captured.err.splitlines()) <= 6, "click's short hint, not a page"


@pytest.mark.parametrize("args", [["-h"], ["--help"], ["run", "-h"], ["sweep", "--help"], ["compare", "-h"]])
def test_help_flags_exit_0_and_show_usage(args: list[str], monkeypatch, capsys) -> None:
    assert cli(monkeypatch, *args) == 0
    out = capsys.readouterr().out
    assert "Usage: fairdistill" in out and "Traceback" not in out


def test_version_flag(monkeypatch, capsys) -> None:
    assert cli(monkeypatch, "--version") == 0
    assert capsys.readouterr().out.strip() == f"fairdistill {fairdistill.__version__}"


def test_no_arguments_shows_the_commands(monkeypatch, capsys) -> None:
    code = cli(monkeypatch)
    captured = capsys.readouterr()
    assert code in (0, 2) and "run" in captured.out + captured.err and "Traceback" not in captured.err


def test_markup_in_a_user_error_is_printed_literally(tmp_path, monkeypatch, capsys) -> None:
    """rich would swallow ``[bold]`` or ``[modality=…]`` in a message as markup; errors are escaped."""
    path = tmp_path / "[bold]x[/bold].yaml"
    code = cli(monkeypatch, "run", str(path), "--dry-run")
    err = capsys.readouterr().err
    assert code == 2 and "[bold]x[/bold].yaml" in err


def test_python_dash_m_runs_the_same_command_line(tmp_path) -> None:
    """``python -m fairdistill`` (what ``torchrun -m`` starts) is the command line, with its exit statuses."""
    env = {**os.environ, "MPLCONFIGDIR": str(tmp_path)}
    version = subprocess.run(
        [sys.executable, "-m", "fairdistill", "--version"], capture_output=True, text=True, env=env, timeout=120
    )
    assert version.returncode == 0, version.stderr
    assert version.stdout.strip() == f"fairdistill {fairdistill.__version__}"
    bad = subprocess.run(
        [sys.executable, "-m", "fairdistill", "run", "--set", "epochs"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr, bad.stderr
