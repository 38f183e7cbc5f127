"""End to end through the command line: a tiny run, its run directory, and user errors (exit code 2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cli_runner import run_cli as cli

TINY = {
    "name": "tiny",
    "seed": 0,
    "data": {"name": "colored-mnist", "max_examples": 400},
    "teacher": {"model": {"name": "cnn", "width": 8, "blocks": 2}, "train": {"epochs": 2, "batch_size": 32}},
    "student": {"model": {"name": "cnn", "width": 4, "blocks": 2}, "train": {"epochs": 2, "batch_size": 32}},
    "methods": [{"name": "erm"}, {"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}}],
}
FLAT_KEYS = [
    "accuracy",
    "balanced_accuracy",
    "worst_group_accuracy",
    "worst_class_accuracy",
    "macro_precision",
    "macro_recall",
    "macro_f1",
    "recall_disparity_mad",
    "recall_disparity_max",
    "dp_difference",
    "eo_difference",
    "ece",
]


def write_config(path: Path, raw: dict) -> Path:
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    root = tmp_path_factory.mktemp("cli")
    config = write_config(root / "tiny.yaml", TINY)
    with pytest.MonkeyPatch.context() as mp:
        from io import StringIO

        from rich.console import Console

        import fairdistill.cli

        out = StringIO()
        mp.setattr(fairdistill.cli, "console", Console(file=out, width=200))
        code = cli(mp, "run", str(config), "--output", str(root / "runs"))
    assert code == 0, out.getvalue()
    (run_dir,) = list((root / "runs").iterdir())
    return run_dir, out.getvalue()


def test_run_directory_contract(tiny_run: tuple[Path, str]) -> None:
    run_dir, _ = tiny_run
    assert run_dir.name.startswith("tiny-")
    for name in ("config.yaml", "metrics.json", "report.md", "log.txt", "checkpoints/teacher.pt"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["schema_version"] == 1
    assert metrics["dataset"]["name"] == "colored-mnist"
    assert list(metrics["models"]) == ["teacher", "erm", "kd"]
    assert metrics["models"]["teacher"]["role"] == "teacher"
    assert metrics["models"]["kd"]["role"] == "student" and metrics["models"]["kd"]["method"] == "kd"
    for model in metrics["models"].values():
        assert model["params"] > 0 and model["train_seconds"] > 0
        assert len(model["history"]) == 2 and 1 <= model["selected_epoch"] <= 2
        for split in ("val", "test"):
            values = model["splits"][split]
            for key in FLAT_KEYS:
                assert key in values, key
            assert set(values["group_accuracy"]) == set(metrics["dataset"]["group_names"])
    # the teacher is wider than the student
    assert metrics["models"]["teacher"]["params"] > metrics["models"]["kd"]["params"]


def test_predictions_agree_with_metrics(tiny_run: tuple[Path, str]) -> None:
    run_dir, _ = tiny_run
    metrics = json.loads((run_dir / "metrics.json").read_text())
    counts = metrics["dataset"]["counts"]
    for model in ("teacher", "erm", "kd"):
        for split in ("val", "test"):
            frame = pd.read_parquet(run_dir / "predictions" / f"{model}-{split}.parquet")
            assert list(frame.columns) == ["index", "y", "attr", "group", "pred", "prob_0", "prob_1"]
            assert len(frame) == counts[split]
            probs = frame[["prob_0", "prob_1"]].to_numpy()
            assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)
            assert (probs.argmax(axis=1) == frame["pred"].to_numpy()).all()
            assert (frame["group"] == frame["y"] * 2 + frame["attr"]).all()
            values = metrics["models"][model]["splits"][split]
            assert values["accuracy"] == pytest.approx((frame["pred"] == frame["y"]).mean())
            group_acc = frame.assign(ok=frame["pred"] == frame["y"]).groupby("group")["ok"].mean()
            assert values["worst_group_accuracy"] == pytest.approx(group_acc.min())


def test_table_and_report_are_printed(tiny_run: tuple[Path, str]) -> None:
    run_dir, output = tiny_run
    for word in ("teacher", "erm", "kd", "worst-group", "report:"):
        assert word in output
    report = (run_dir / "report.md").read_text()
    assert "| teacher |" in report and "| kd |" in report


def test_teacher_checkpoint_is_reused(tiny_run: tuple[Path, str], tmp_path: Path, monkeypatch) -> None:
    run_dir, _ = tiny_run
    raw = dict(
        TINY,
        teacher={"model": TINY["teacher"]["model"], "checkpoint": str(run_dir / "checkpoints/teacher.pt")},
        methods=[{"name": "kd"}],
    )
    config = write_config(tmp_path / "reuse.yaml", raw)
    assert cli(monkeypatch, "run", str(config), "--output", str(tmp_path / "runs")) == 0
    (second,) = list((tmp_path / "runs").iterdir())
    before = json.loads((run_dir / "metrics.json").read_text())["models"]["teacher"]["splits"]["test"]
    after = json.loads((second / "metrics.json").read_text())["models"]["teacher"]
    assert after["method"] == "checkpoint"
    assert after["splits"]["test"]["accuracy"] == pytest.approx(before["accuracy"])
    assert "teacher cache hit" in (second / "log.txt").read_text()


def test_checkpoint_with_other_class_count_is_refused(tiny_run, tmp_path: Path, monkeypatch, capsys) -> None:
    run_dir, _ = tiny_run
    raw = dict(
        TINY,
        data={"name": "colored-mnist", "max_examples": 400, "classes": 10},
        teacher={"model": TINY["teacher"]["model"], "checkpoint": str(run_dir / "checkpoints/teacher.pt")},
    )
    config = write_config(tmp_path / "mismatch.yaml", raw)
    assert cli(monkeypatch, "run", str(config), "--output", str(tmp_path / "runs")) == 2
    err = capsys.readouterr().err
    assert "predicts 2 classes but the data has 10" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "override,message",
    [
        ("data.name=mnist-colour", "unknown dataset 'mnist-colour'"),
        ("methods.kd.loss.kind=kdd", "unknown loss 'kdd'. Did you mean 'kd'?"),
        (
            "student.model.name=resnet",
            "Did you mean 'resnet-small'? "
            "Valid model names: cnn, efficientnet, hf, mlp, resnet-small, timm, torchvision",
        ),
        ("student.train.epochs=0", "student.train.epochs: Input should be greater than 0"),
        ("methods.kd.loss.temperature=3", "methods.1(kd).loss.temperature: unknown field"),
        ("teacher.checkpoint=/nonexistent/teacher.pt", "file not found: /nonexistent/teacher.pt"),
        ("student.train.batch_size=abc", "student.train.batch_size: expected an integer, got the text 'abc'"),
        ("student.train.batch_size=-3", "student.train.batch_size: Input should be greater than 0 (got -3)"),
        (
            "methods=[{name: d, loss: {kind: kd}, weighting: {kind: early-readout, tap: block9}}]",
            "methods.0(d).weighting.tap: the student (cnn) has no tap 'block9'; its taps: block1, block2",
        ),
        ("methods.kd.weighting={kind: reweight-by-magic}", "unknown weighting 'reweight-by-magic'"),
    ],
)
def test_user_errors_exit_2_without_traceback(tmp_path: Path, monkeypatch, capsys, override: str, message: str) -> None:
    config = write_config(tmp_path / "c.yaml", TINY)
    code = cli(monkeypatch, "run", str(config), "--set", override, "--output", str(tmp_path / "runs"))
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert "Traceback" not in err
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_invalid_yaml_and_missing_file(tmp_path: Path, monkeypatch, capsys) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed\n")
    assert cli(monkeypatch, "run", str(bad)) == 2
    assert "invalid YAML" in capsys.readouterr().err
    assert cli(monkeypatch, "run", str(tmp_path / "missing.yaml")) == 2
    assert "config file not found" in capsys.readouterr().err


def test_dry_run_validates_without_training(tmp_path: Path, monkeypatch, capsys) -> None:
    config = write_config(tmp_path / "c.yaml", TINY)
    assert cli(monkeypatch, "run", str(config), "--dry-run", "--output", str(tmp_path / "runs")) == 0
    out = capsys.readouterr().out
    assert "config OK" in out and "kd: kd — loss options" in out and "train 240" in out
    assert not (tmp_path / "runs").exists()


def test_modality_defaults_make_adult_a_one_line_switch(monkeypatch, capsys) -> None:
    assert cli(monkeypatch, "run", "--set", "data.name=adult", "--dry-run") == 0
    out = capsys.readouterr().out
    assert "teacher: mlp" in out and "student: mlp" in out and "adult (tabular)" in out


def test_list_shows_registered_names(monkeypatch, capsys) -> None:
    assert cli(monkeypatch, "list") == 0
    out = capsys.readouterr().out
    for name in (
        "colored-mnist",
        "adult",
        "cnn",
        "mlp",
        "erm",
        "kd",
        "weightings",
        "early-readout",
        "groupdro",
        "jtt",
        "group-balanced",
        "mixings",
        "per-group-alpha",
        "adaptive-margin",
        "adversary inputs",
        "probs+label",
        "embedding",
    ):
        assert name in out
