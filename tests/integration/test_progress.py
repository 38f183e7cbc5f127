"""What ``fairdistill run`` shows while it works when its output is piped (nohup, SLURM, CI): the plan and run
directory first, one plain line per model epoch with an ETA, the phases, and nothing with --quiet."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from cli_runner import TINY_RUN, tiny_config
from fairdistill.progress import Progress, duration

pytestmark = pytest.mark.slow

EPOCH_LINE = re.compile(
    r"^\[(\d+)/(\d+)\] (\S+) epoch (\d+)/(\d+)  loss \d+\.\d+  val_acc \d+\.\d+  "
    r"val_wga \d+\.\d+.*\| \d+/\d+ epochs, .* elapsed"
)


def _piped_run(
    tmp_path: Path, *flags: str, epochs: int = 1, methods: list | None = None
) -> subprocess.CompletedProcess[str]:
    """``fairdistill run`` on the tiny config in a subprocess, stdout and stderr piped."""
    config = {**TINY_RUN, "output": str(tmp_path / "runs"), "cache_dir": str(tmp_path / "cache")}
    for role in ("teacher", "student"):
        config[role] = {**TINY_RUN[role], "train": {**TINY_RUN[role]["train"], "epochs": epochs}}
    if methods is not None:
        config["methods"] = methods
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = tiny_config(tmp_path / "tiny.yaml", config)
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE", "TQDM_DISABLE")}
    env.update(OMP_NUM_THREADS="1", MPLCONFIGDIR=str(tmp_path / "mpl"), FAIRDISTILL_CACHE=str(tmp_path / "cache"))
    done = subprocess.run(
        [sys.executable, "-m", "fairdistill.cli", "run", str(path), *flags],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    return done


@pytest.fixture(scope="module")
def normal(tmp_path_factory: pytest.TempPathFactory) -> subprocess.CompletedProcess[str]:
    methods = [{"name": "erm", "loss": {"kind": "erm"}}, *TINY_RUN["methods"]]
    return _piped_run(tmp_path_factory.mktemp("normal"), epochs=2, methods=methods)


def test_piped_output_has_per_epoch_lines(normal: subprocess.CompletedProcess[str]) -> None:
    lines = normal.stderr.splitlines()
    epoch_lines = [line for line in lines if EPOCH_LINE.match(line)]
    seen = [EPOCH_LINE.match(line).group(1, 2, 3, 4, 5) for line in epoch_lines]  # type: ignore[union-attr]
    assert seen == [
        ("1", "3", "teacher", "1", "2"),
        ("1", "3", "teacher", "2", "2"),
        ("2", "3", "erm", "1", "2"),
        ("2", "3", "erm", "2", "2"),
        ("3", "3", "kd", "1", "2"),
        ("3", "3", "kd", "2", "2"),
    ], lines
    assert "ETA" in epoch_lines[0] and "6/6 epochs" in epoch_lines[-1], epoch_lines
    first_epoch = lines.index(epoch_lines[0])
    run_dir = next(i for i, line in enumerate(lines) if line.startswith("run directory: "))
    plan = next(i for i, line in enumerate(lines) if line.startswith("methods:"))
    assert plan < run_dir < first_epoch, lines
    assert lines[run_dir].removeprefix("run directory: ") in normal.stdout  # the same directory as at the end
    assert any(line.startswith("[3/3] kd: ") for line in lines[: lines.index(epoch_lines[4])]), lines
    for phase in ("teacher outputs", "evaluating 3 models", "report: "):
        assert any(line.startswith(phase) for line in lines), (phase, lines)


def test_piped_output_is_plain_text(normal: subprocess.CompletedProcess[str]) -> None:
    for stream in (normal.stderr, normal.stdout):
        assert "\r" not in stream and "\x1b" not in stream, repr(stream[:2000])
    assert "epoch" not in normal.stdout  # progress stays on stderr, the tables on stdout


def test_quiet_and_verbose(tmp_path: Path, normal: subprocess.CompletedProcess[str]) -> None:
    quiet = _piped_run(tmp_path / "quiet", "--quiet")
    assert not any(EPOCH_LINE.match(line) for line in quiet.stderr.splitlines()), quiet.stderr
    assert "epoch" not in quiet.stderr and "run directory: " in quiet.stdout, quiet.stderr
    verbose = _piped_run(tmp_path / "verbose", "-v")
    lines = verbose.stderr.splitlines()
    assert sum(bool(EPOCH_LINE.match(line)) for line in lines) == 2, lines
    assert any("teacher cache written" in line for line in lines), lines  # a log.txt detail
    assert not any(re.search(r"kd epoch 1: train_loss=", line) for line in lines)  # not shown twice


def test_quiet_and_verbose_together_is_a_user_error(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "fairdistill.cli", "run", "-q", "-v", "--dry-run"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2 and "contradict" in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_reporter_counts_restored_epochs_for_the_eta() -> None:
    out = io.StringIO()
    progress = Progress(console=Console(file=out, width=200))
    progress.start("plan", Path("/runs/x"), models=2, epochs=10, resumed=True)
    progress.model_started("teacher", "5 epochs")
    progress.restored(5)
    progress.epoch("teacher", 5, 5, {"epoch": 5, "train_loss": 0.5, "val_acc": 0.75})
    text = out.getvalue()
    assert "resuming in /runs/x" in text and "continuing after epoch 5" in text, text
    assert "[1/2] teacher epoch 5/5  loss 0.5000  val_acc 0.7500  | 6/10 epochs" in text and "ETA" in text, text
    assert duration(42) == "42 s" and duration(185) == "3 min 05 s" and duration(6420) == "1 h 47 min"
