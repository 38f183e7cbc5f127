"""Damaged run directories through ``fairdistill report`` and ``fairdistill compare``: one message naming the file
and the field, exit status 2, no traceback, nothing half-written; and ``compare`` across different datasets.

One tiny real run (colored-mnist, 300 examples, one epoch) is made once per module with the command line; each
test damages its own copy.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from cli_runner import run_cli as cli
from cli_runner import tiny_config


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("rundir")
    config = tiny_config(root / "tiny.yaml", name="damage")
    with pytest.MonkeyPatch.context() as mp:
        assert cli(mp, "run", str(config), "--output", str(root / "runs")) == 0
    (path,) = list((root / "runs").iterdir())
    return path


def edit_metrics(change: Callable[[dict[str, Any]], None]) -> Callable[[Path], None]:
    """A damage that edits metrics.json's content in place."""

    def damage(run: Path) -> None:
        metrics = json.loads((run / "metrics.json").read_text())
        change(metrics)
        (run / "metrics.json").write_text(json.dumps(metrics))

    return damage


def edit_predictions(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[Path], None]:
    def damage(run: Path) -> None:
        path = run / "predictions" / "kd-test.parquet"
        change(pd.read_parquet(path)).to_parquet(path, index=False)

    return damage


def truncate(run: Path) -> None:
    path = run / "predictions" / "kd-test.parquet"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def figures_is_a_file(run: Path) -> None:
    shutil.rmtree(run / "figures")
    (run / "figures").write_text("not a folder")


def report_html_is_a_directory(run: Path) -> None:
    (run / "report.html").unlink()
    (run / "report.html").mkdir()


def figure_is_a_directory(run: Path) -> None:
    (run / "figures" / "reliability.png").unlink()
    (run / "figures" / "reliability.png").mkdir()


def _set(*keys: str, value: Any) -> Callable[[dict[str, Any]], None]:
    def change(metrics: dict[str, Any]) -> None:
        target = metrics
        for key in keys[:-1]:
            target = target[key]
        target[keys[-1]] = value

    return change


def _delete(*keys: str) -> Callable[[dict[str, Any]], None]:
    def change(metrics: dict[str, Any]) -> None:
        target = metrics
        for key in keys[:-1]:
            target = target[key]
        del target[keys[-1]]

    return change


#: Damages of metrics.json: (id, damage, the message after "<run>/metrics.json: ").
METRICS_DAMAGES = [
    ("garbage", lambda run: (run / "metrics.json").write_bytes(b"\x00\xffgarbage{"), "not valid JSON"),
    (
        "top-level-list",
        lambda run: (run / "metrics.json").write_text("[1, 2]"),
        "not a fairdistill metrics file (expected a mapping, got list)",
    ),
    ("foreign-document", edit_metrics(lambda m: m.clear() or m.update({"x": 1})), "schema_version: missing"),
    ("schema-version", edit_metrics(_set("schema_version", value=2)), "schema_version: expected 1"),
    ("schema-version-text", edit_metrics(_set("schema_version", value="1")), "schema_version: expected 1"),
    ("models-list", edit_metrics(_set("models", value=[])), "models: expected a mapping, got list"),
    ("models-empty", edit_metrics(_set("models", value={})), "models: expected at least one model"),
    ("model-string", edit_metrics(_set("models", "kd", value="kd")), "models.kd: expected a mapping, got string"),
    (
        "model-name-path",
        edit_metrics(lambda m: m["models"].update({"../x": m["models"].pop("kd")})),
        "models.../x: a model name must be usable as a file name",
    ),
    ("splits-missing", edit_metrics(_delete("models", "kd", "splits")), "models.kd.splits: missing"),
    (
        "splits-list",
        edit_metrics(_set("models", "kd", "splits", value=[1, 2])),
        "models.kd.splits: expected a mapping, got list",
    ),
    ("test-missing", edit_metrics(_delete("models", "kd", "splits", "test")), "models.kd.splits.test: missing"),
    (
        "test-list",
        edit_metrics(_set("models", "kd", "splits", "test", value=[])),
        "models.kd.splits.test: expected a mapping, got list",
    ),
    (
        "metric-string",
        edit_metrics(_set("models", "kd", "splits", "test", "accuracy", value="high")),
        "models.kd.splits.test.accuracy: expected a finite number or null, got string",
    ),
    (
        "metric-mapping",
        edit_metrics(_set("models", "teacher", "splits", "val", "ece", value={"a": 1})),
        "models.teacher.splits.val.ece: expected a finite number or null, got mapping",
    ),
    (
        "group-accuracy-list",
        edit_metrics(_set("models", "kd", "splits", "test", "group_accuracy", value=[0.5])),
        "models.kd.splits.test.group_accuracy: expected a mapping of numbers or nulls, got list",
    ),
    (
        "params-text",
        edit_metrics(_set("models", "kd", "params", value="438")),
        "models.kd.params: expected an integer, got string",
    ),
    (
        "history-record",
        edit_metrics(_set("models", "kd", "history", value=[{"train_loss": 1.0}])),
        "models.kd.history.0.epoch: missing",
    ),
    ("dataset-missing", edit_metrics(_delete("dataset")), "dataset: missing"),
    (
        "class-names",
        edit_metrics(_set("dataset", "class_names", value="<5,>=5")),
        "dataset.class_names: expected a list of strings, got string",
    ),
    (
        "class-count",
        edit_metrics(_set("dataset", "class_names", value=["only"])),
        "dataset.class_names: 1 names for 2 classes",
    ),
    (
        "num-classes",
        edit_metrics(_set("dataset", "num_classes", value=2.0)),
        "dataset.num_classes: expected an integer, got number",
    ),
    (
        "group-names",
        edit_metrics(_set("dataset", "group_names", value={"a": 1})),
        "dataset.group_names: expected a list of strings, got mapping",
    ),
    ("run-list", edit_metrics(_set("run", value=["x"])), "run: expected a mapping, got list"),
    ("seeds-empty", edit_metrics(_set("run", "seeds", value=[])), "run.seeds: expected distinct seeds"),
    (
        "amplification",
        edit_metrics(_set("amplification", "students", "kd", value="big")),
        "amplification.students.kd: expected a mapping, got string",
    ),
    ("margins", edit_metrics(_delete("margins", "models", "kd", "layers")), "margins.models.kd.layers: missing"),
]

#: Damages of the predictions and of the report's output paths: (id, damage, file named, message).
FILE_DAMAGES = [
    ("truncated-parquet", truncate, "predictions/kd-test.parquet", "not a readable parquet file"),
    (
        "parquet-missing",
        lambda run: (run / "predictions" / "kd-test.parquet").unlink(),
        "predictions/kd-test.parquet",
        "predictions file missing",
    ),
    (
        "no-prob-columns",
        edit_predictions(lambda f: f.drop(columns=["prob_0", "prob_1"])),
        "predictions/kd-test.parquet",
        "missing column(s) prob_0, prob_1",
    ),
    (
        "no-attr-column",
        edit_predictions(lambda f: f.drop(columns=["attr"])),
        "predictions/kd-test.parquet",
        "missing column(s) attr",
    ),
    ("zero-rows", edit_predictions(lambda f: f.iloc[:0]), "predictions/kd-test.parquet", "no rows"),
    (
        "float-labels",
        edit_predictions(lambda f: f.assign(y=f["y"] + 0.5)),
        "predictions/kd-test.parquet",
        "column y: expected integers, got float64",
    ),
    (
        "group-out-of-range",
        edit_predictions(lambda f: f.assign(group=f["group"] + 4)),
        "predictions/kd-test.parquet",
        "column group: values outside [0, 4)",
    ),
    (
        "other-examples",
        edit_predictions(lambda f: f.iloc[::-1]),
        "predictions/kd-test.parquet",
        "not the same examples",
    ),
    ("figures-file", figures_is_a_file, "figures", "it is not a directory"),
    ("report-html-dir", report_html_is_a_directory, "report.html", "it is a directory"),
    ("figure-dir", figure_is_a_directory, "figures/reliability.png", "it is a directory"),
]


def damaged_copy(run_dir: Path, tmp_path: Path, damage: Callable[[Path], None]) -> Path:
    copy = tmp_path / run_dir.name
    shutil.copytree(run_dir, copy)
    damage(copy)
    return copy


def expect_error(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture, args: list[str], *fragments: str
) -> str:
    code = cli(monkeypatch, *args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err and err.count("error:") == 1, err
    flat = " ".join(err.split())  # the console may wrap a long message
    for fragment in fragments:
        assert " ".join(fragment.split()) in flat, (fragment, err)
    return err


@pytest.mark.parametrize("command", ["report", "compare"])
@pytest.mark.parametrize("damage,message", [d[1:] for d in METRICS_DAMAGES], ids=[d[0] for d in METRICS_DAMAGES])
def test_damaged_metrics_json(
    run_dir: Path, tmp_path: Path, monkeypatch, capsys, command: str, damage: Callable[[Path], None], message: str
) -> None:
    bad = damaged_copy(run_dir, tmp_path, damage)
    args = ["report", str(bad)] if command == "report" else ["compare", str(run_dir), str(bad)]
    expect_error(monkeypatch, capsys, args, f"{bad}/metrics.json: {message}")


def test_missing_metrics_json(run_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    bad = damaged_copy(run_dir, tmp_path, lambda run: (run / "metrics.json").unlink())
    for args in (["report", str(bad)], ["compare", str(bad), str(run_dir)]):
        expect_error(monkeypatch, capsys, args, f"{bad}: no metrics.json")


@pytest.mark.parametrize("damage,named,message", [d[1:] for d in FILE_DAMAGES], ids=[d[0] for d in FILE_DAMAGES])
def test_damaged_files_stop_the_report_before_it_writes(
    run_dir: Path, tmp_path: Path, monkeypatch, capsys, damage: Callable[[Path], None], named: str, message: str
) -> None:
    bad = damaged_copy(run_dir, tmp_path, damage)
    before = {p: p.stat().st_mtime_ns for p in bad.rglob("*") if p.is_file()}
    expect_error(monkeypatch, capsys, ["report", str(bad)], f"error: {bad / named}: ", message)
    after = {p: p.stat().st_mtime_ns for p in bad.rglob("*") if p.is_file()}
    assert after == before, "nothing is written, not even part of the report"


@pytest.mark.parametrize("damage", [d[1] for d in FILE_DAMAGES], ids=[d[0] for d in FILE_DAMAGES])
def test_compare_reads_only_metrics_json(
    run_dir: Path, tmp_path: Path, monkeypatch, capsys, damage: Callable[[Path], None]
) -> None:
    """compare prints metrics.json values: damaged predictions or report paths do not concern it."""
    bad = damaged_copy(run_dir, tmp_path, damage)
    assert cli(monkeypatch, "compare", str(run_dir), str(bad)) == 0
    assert "error" not in capsys.readouterr().err


def test_intact_copy_rebuilds(run_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    copy = damaged_copy(run_dir, tmp_path, lambda run: None)
    assert cli(monkeypatch, "report", str(copy)) == 0, capsys.readouterr().err


# ----------------------------------------------------------------------------------------------- other data


def other_data(run: Path) -> None:
    def change(metrics: dict[str, Any]) -> None:
        metrics["dataset"]["options"]["max_examples"] = 500
        metrics["dataset"]["counts"]["test"] = 100

    edit_metrics(change)(run)


def test_compare_refuses_runs_on_different_data(run_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    other = damaged_copy(run_dir, tmp_path, other_data)
    err = expect_error(
        monkeypatch,
        capsys,
        ["compare", str(run_dir), str(other)],
        "different data",
        "dataset.options.max_examples: 300 (A) vs 500 (B)",
        "dataset.counts.test: 60 (A) vs 100 (B)",
        "--force",
    )
    assert "better" not in err


def test_compare_refuses_another_dataset_and_other_class_names(
    run_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    def change(metrics: dict[str, Any]) -> None:
        metrics["dataset"]["name"] = "waterbirds"
        metrics["dataset"]["class_names"] = ["landbird", "waterbird"]

    other = damaged_copy(run_dir, tmp_path, edit_metrics(change))
    expect_error(
        monkeypatch,
        capsys,
        ["compare", str(other), str(run_dir)],
        "dataset.name: 'waterbirds' (A) vs 'colored-mnist' (B)",
        "dataset.class_names: ['landbird',",
    )


def test_compare_force_warns_loudly(run_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    other = damaged_copy(run_dir, tmp_path, other_data)
    assert cli(monkeypatch, "compare", str(run_dir), str(other), "--force") == 0
    captured = capsys.readouterr()
    flat = " ".join(captured.err.split())
    assert "WARNING" in flat and "different data" in flat and "dataset.options.max_examples: 300 (A) vs 500 (B)" in flat
    assert "B vs A" in captured.out and "same" in captured.out  # the table is still printed


def test_compare_same_data_has_no_warning(run_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    copy = damaged_copy(run_dir, tmp_path, lambda run: None)
    assert cli(monkeypatch, "compare", str(run_dir), str(copy)) == 0
    assert capsys.readouterr().err == ""
