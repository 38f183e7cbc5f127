"""Hostile inputs through the command line: each gives one clear error (exit 2, no traceback) and leaves no
half-written run directory; a corrupted teacher cache is rebuilt with a warning instead of failing the run.

Config errors (malformed YAML, unknown keys, wrong types, zero epochs, unknown names) are in test_cli.py and
tests/unit/test_config.py; table errors (missing columns, NaN features, labels out of range) in
tests/unit/test_table_dataset.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from cli_runner import TINY_RUN, expect_user_error, tiny_config
from cli_runner import run_cli as cli
from fairdistill.config import load_config
from fairdistill.experiment import resolved_config
from fairdistill.run_record import start_record

TINY = {**TINY_RUN, "name": "hostile"}


def config_file(path: Path, **changes) -> Path:
    return tiny_config(path, TINY, **changes)


@pytest.fixture(scope="module")
def teacher_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    with pytest.MonkeyPatch.context() as mp:
        assert cli(mp, "run", str(config_file(root / "c.yaml")), "--output", str(root / "runs")) == 0
    (run_dir,) = list((root / "runs").iterdir())
    return run_dir / "checkpoints" / "teacher.pt"


def test_corrupted_teacher_checkpoint(tmp_path: Path, monkeypatch, capsys) -> None:
    broken = tmp_path / "teacher.pt"
    broken.write_bytes(b"PK\x03\x04 this is not a checkpoint" + bytes(range(256)))
    config = config_file(tmp_path / "c.yaml", teacher={**TINY["teacher"], "checkpoint": str(broken)})
    runs = tmp_path / "runs"
    expect_user_error(
        monkeypatch,
        capsys,
        ["run", str(config), "--output", str(runs)],
        f"teacher.checkpoint {broken}: not a readable checkpoint",
    )
    assert not runs.exists() or not any(runs.iterdir()), "no half-written run directory is left behind"


class _RunsCode:
    """Pickles to a call of ``Path.touch``: loading it without weights_only would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_checkpoint_that_would_run_code_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    marker = tmp_path / "code-ran"
    hostile = tmp_path / "teacher.pt"
    torch.save({"state_dict": _RunsCode(marker)}, hostile)
    config = config_file(tmp_path / "c.yaml", teacher={**TINY["teacher"], "checkpoint": str(hostile)})
    expect_user_error(
        monkeypatch, capsys, ["run", str(config), "--output", str(tmp_path / "runs")], "not a readable checkpoint"
    )
    assert not marker.exists(), "weights_only loading must not execute anything from the file"


def test_teacher_checkpoint_path_is_resolved_and_reported(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)
    config = config_file(tmp_path / "c.yaml", teacher={**TINY["teacher"], "checkpoint": "models/../teacher.pt"})
    expect_user_error(
        monkeypatch, capsys, ["run", str(config), "--dry-run"], f"file not found: {tmp_path.resolve() / 'teacher.pt'}"
    )


@pytest.mark.parametrize("layout", ["output-is-a-file", "output-below-a-file"])
def test_output_directory_that_cannot_be_created(layout: str, tmp_path: Path, monkeypatch, capsys) -> None:
    blocker = tmp_path / "blocker"
    blocker.write_text("keep me\n")
    output = blocker if layout == "output-is-a-file" else blocker / "runs"
    config = config_file(tmp_path / "c.yaml")
    expect_user_error(
        monkeypatch,
        capsys,
        ["run", str(config), "--output", str(output)],
        f"output: {blocker.resolve()}" if layout == "output-is-a-file" else "is not a directory",
    )
    assert blocker.read_text() == "keep me\n"


def test_corrupted_teacher_cache_is_rebuilt_with_a_warning(
    teacher_checkpoint: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    cache = tmp_path / "cache"
    config = config_file(
        tmp_path / "c.yaml", cache_dir=str(cache), teacher={**TINY["teacher"], "checkpoint": str(teacher_checkpoint)}
    )
    assert cli(monkeypatch, "run", str(config), "--output", str(tmp_path / "first")) == 0
    (entry,) = [p for p in (cache / "teacher").iterdir() if (p / "logits.npy").is_file()]
    logits = np.load(entry / "logits.npy")
    logits[:, 0] = np.inf  # a stale or damaged file: outputs no teacher produces
    np.save(entry / "logits.npy", logits)
    capsys.readouterr()
    assert cli(monkeypatch, "run", str(config), "--output", str(tmp_path / "second")) == 0
    err = capsys.readouterr().err
    assert f"warning: teacher cache {entry} is unreadable or stale" in err
    (first,) = list((tmp_path / "first").iterdir())
    (second,) = list((tmp_path / "second").iterdir())
    kd = [json.loads((d / "metrics.json").read_text())["models"]["kd"]["splits"]["test"] for d in (first, second)]
    assert kd[0] == kd[1], "the rebuilt cache gives the student the same teacher outputs as the first run"
    assert np.isfinite(np.load(entry / "logits.npy")).all()


def test_corrupted_training_checkpoint_on_resume(teacher_checkpoint: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    run_dir = tmp_path / "stopped"
    (run_dir / "checkpoints").mkdir(parents=True)
    config_file(run_dir / "config.yaml")
    start_record(run_dir, resolved_config(load_config(run_dir / "config.yaml")))  # as a fresh run writes it
    broken = run_dir / "checkpoints" / "teacher-train.pt"
    broken.write_bytes(b"\x00" * 100)
    expect_user_error(
        monkeypatch,
        capsys,
        ["run", "--resume", str(run_dir)],
        f"checkpoint {broken.resolve()} is corrupt or not a fairdistill checkpoint",
    )
    assert broken.read_bytes() == b"\x00" * 100 and (run_dir / "config.yaml").is_file(), "resume deletes nothing"


def people(n: int, seed: int, drop_group: tuple[str, str] | None = None):
    """A small census-like table; ``drop_group`` removes every row of one (income, sex) group."""
    import pandas as pd

    rng = np.random.default_rng(seed)
    sex = rng.choice(["F", "M"], n)
    hours = rng.normal(40, 8, n).round()
    job = rng.choice(["clerk", "nurse", "engineer"], n)
    income = np.where(hours + (job == "engineer") * 10 + rng.normal(0, 5, n) > 45, ">50K", "<=50K")
    frame = pd.DataFrame({"hours": hours, "job": job, "sex": sex, "income": income})
    if drop_group is not None:
        frame = frame[~((frame["income"] == drop_group[0]) & (frame["sex"] == drop_group[1]))]
    return frame


def table_config(tmp_path: Path, files: dict[str, Path]) -> Path:
    return config_file(
        tmp_path / "table.yaml",
        data={"name": "csv", "label": "income", "attr": "sex", **{k: str(v) for k, v in files.items()}},
        teacher={"train": {"epochs": 1, "batch_size": 32}},
        student={"train": {"epochs": 1, "batch_size": 32}},
        methods=[{"name": "erm"}, {"name": "kd", "loss": {"kind": "kd", "tau": 2.0}}],
    )


def test_a_group_without_test_examples_is_reported_missing(tmp_path: Path, monkeypatch, capsys) -> None:
    files = {"train": tmp_path / "train.csv", "val": tmp_path / "val.csv", "test": tmp_path / "test.csv"}
    people(200, 0).to_csv(files["train"], index=False)
    people(80, 1).to_csv(files["val"], index=False)
    test = people(80, 2, drop_group=(">50K", "F"))
    test.to_csv(files["test"], index=False)
    assert cli(monkeypatch, "run", str(table_config(tmp_path, files)), "--output", str(tmp_path / "runs")) == 0
    (run_dir,) = list((tmp_path / "runs").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for name in ("teacher", "erm", "kd"):
        test_metrics = metrics["models"][name]["splits"]["test"]
        assert test_metrics["group_accuracy"][">50K|F"] is None, "missing, not 0"
        assert test_metrics["group_count"][">50K|F"] == 0
        predictions = __import__("pandas").read_parquet(run_dir / "predictions" / f"{name}-test.parquet")
        correct = predictions["pred"] == predictions["y"]
        present = [correct[predictions["group"] == g].mean() for g in sorted(predictions["group"].unique())]
        assert len(present) == 3
        assert test_metrics["worst_group_accuracy"] == pytest.approx(min(present))
    report = (run_dir / "report.md").read_text()
    assert ">50K\\|F" in report or ">50K|F" in report
    row = next(line for line in report.splitlines() if line.startswith("| kd |") and "—" in line)
    assert "nan" not in row.lower()


def test_table_errors_through_the_command_line(tmp_path: Path, monkeypatch, capsys) -> None:
    files = {"train": tmp_path / "train.csv", "test": tmp_path / "test.csv"}
    people(120, 0).to_csv(files["train"], index=False)
    broken = people(60, 1)
    broken.loc[broken.index[[4, 9]], "hours"] = np.inf
    broken.to_csv(files["test"], index=False)
    runs = tmp_path / "runs"
    err = expect_user_error(
        monkeypatch,
        capsys,
        ["run", str(table_config(tmp_path, files)), "--output", str(runs)],
        str(files["test"].resolve()),
    )
    assert "column 'hours' has infinite values at rows 6 (value inf), 11 (value inf)" in err  # row 1 = header
    assert not runs.exists() or not any(runs.iterdir())
    people(60, 1).drop(columns=["sex"]).to_csv(files["test"], index=False)
    err = expect_user_error(
        monkeypatch, capsys, ["run", str(table_config(tmp_path, files)), "--output", str(runs)], "'sex'"
    )
    assert str(files["test"].resolve()) in err
    assert not runs.exists() or not any(runs.iterdir())
