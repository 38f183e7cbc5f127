"""Crash and resume: a run killed with SIGKILL (during training, evaluation or report writing) and continued
with ``fairdistill run --resume RUN_DIR`` ends with the metrics.json of an uninterrupted run; the same config
and seed give the same metrics.json twice (timings aside)."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from cli_runner import run_cli as cli

CONFIG = {
    "name": "resumable",
    "seed": 3,
    "data": {"name": "colored-mnist", "max_examples": 500},
    "teacher": {"model": {"name": "cnn", "width": 6, "blocks": 2}, "train": {"epochs": 2, "batch_size": 50}},
    "student": {"model": {"name": "cnn", "width": 4, "blocks": 2}, "train": {"epochs": 3, "batch_size": 50}},
    "methods": [
        {"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}},
        {
            "name": "dedier",
            "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9},
            "weighting": {"kind": "early-readout", "score": "margin", "beta": 3.0, "alpha": 0.2},
        },
    ],
}
TIMING_KEYS = {"train_seconds", "seconds", "started"}
CRASHER = Path(__file__).with_name("crashing_run.py")


def without_timings(value: Any) -> Any:
    """The document with every wall-clock entry removed (they legitimately differ between runs)."""
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def only_run_dir(parent: Path) -> Path:
    (run_dir,) = [p for p in parent.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("resume-config") / "resumable.yaml"
    path.write_text(yaml.safe_dump(CONFIG))
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory, config_path: Path) -> Path:
    """An uninterrupted run."""
    parent = tmp_path_factory.mktemp("reference")
    with pytest.MonkeyPatch.context() as mp:
        assert cli(mp, "run", str(config_path), "--output", str(parent)) == 0
    return only_run_dir(parent)


def metrics_of(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


def steps_per_epoch(run_dir: Path) -> int:
    train = metrics_of(run_dir)["dataset"]["counts"]["train"]
    return math.ceil(train / CONFIG["teacher"]["train"]["batch_size"])


def test_same_config_and_seed_give_identical_results(
    reference: Path, config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert cli(monkeypatch, "run", str(config_path), "--output", str(tmp_path)) == 0
    again = only_run_dir(tmp_path)
    first, second = metrics_of(reference), metrics_of(again)
    assert first["models"]["kd"]["train_seconds"] > 0  # timings exist, and are the only thing set aside
    assert without_timings(first) == without_timings(second)
    for file in sorted((reference / "predictions").glob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(file), pd.read_parquet(again / "predictions" / file.name))


def crash(config_path: Path, parent: Path, stage: str, at_call: int) -> Path:
    """Run fairdistill in a child process that SIGKILLs itself at the chosen point; returns its run directory."""
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    completed = subprocess.run(
        [sys.executable, str(CRASHER), stage, str(at_call), "--", "run", str(config_path), "--output", str(parent)],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == -signal.SIGKILL, completed.stderr[-2000:]
    return only_run_dir(parent)


def resume_and_compare(run_dir: Path, reference: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert not (run_dir / ".complete").exists()
    assert cli(monkeypatch, "run", "--resume", str(run_dir)) == 0
    assert without_timings(metrics_of(run_dir)) == without_timings(metrics_of(reference))
    for file in sorted((reference / "predictions").glob("*.parquet")):
        pd.testing.assert_frame_equal(pd.read_parquet(file), pd.read_parquet(run_dir / "predictions" / file.name))
    assert (run_dir / ".complete").is_file() and (run_dir / "report.html").is_file()
    assert not list(run_dir.rglob("*-train.pt")), "training checkpoints are removed once the run is complete"
    assert not [p for p in run_dir.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".tmp")]


def test_killed_mid_epoch_resumes_to_the_uninterrupted_result(
    reference: Path, config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    per_epoch = steps_per_epoch(reference)
    teacher_steps = CONFIG["teacher"]["train"]["epochs"] * per_epoch
    # the teacher and kd are done; dedier has finished one epoch and is half-way through its second
    at_call = teacher_steps + 3 * per_epoch + per_epoch + per_epoch // 2
    run_dir = crash(config_path, tmp_path, "train", at_call)
    assert not (run_dir / "metrics.json").exists()
    checkpoint = run_dir / "checkpoints" / "dedier-train.pt"
    assert checkpoint.is_file()
    import torch

    assert torch.load(checkpoint, weights_only=True)["epoch"] == 1, "the kill happened during dedier's epoch 2"
    log = (run_dir / "log.txt").read_text()
    assert "dedier epoch 1:" in log and "dedier epoch 2:" not in log
    resume_and_compare(run_dir, reference, monkeypatch)
    assert "dedier: resumed after epoch 1" in (run_dir / "log.txt").read_text()


@pytest.mark.parametrize("stage, at_call", [("evaluate", 3), ("report", 1)])
def test_killed_during_evaluation_or_report_resumes(
    stage: str, at_call: int, reference: Path, config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = crash(config_path, tmp_path, stage, at_call)
    if stage == "report":
        assert (run_dir / "metrics.json").is_file() and not (run_dir / "report.md").exists()
    resume_and_compare(run_dir, reference, monkeypatch)


def test_resuming_a_complete_run_changes_nothing(reference: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = (reference / "metrics.json").read_bytes()
    assert cli(monkeypatch, "run", "--resume", str(reference)) == 0
    assert (reference / "metrics.json").read_bytes() == before


def test_resume_errors(tmp_path: Path, config_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    assert cli(monkeypatch, "run", "--resume", str(tmp_path / "nowhere")) == 2
    assert "run directory not found" in capsys.readouterr().err
    assert cli(monkeypatch, "run", "--resume", str(tmp_path)) == 2
    assert "no config.yaml" in capsys.readouterr().err
    assert cli(monkeypatch, "run", str(config_path), "--resume", str(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "drop CONFIG" in err and "Traceback" not in err
