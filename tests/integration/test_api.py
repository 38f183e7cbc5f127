"""The Python API (fairdistill.api, reached as ``fairdistill.<name>``): the notebook example end to end, the
results table against hand-picked metrics, reading back a run made by the CLI, and the custom-loop objective
against ``Method.batch_loss``."""

from __future__ import annotations

import copy
import dataclasses
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import fairdistill as fd
from cli_runner import run_cli, tiny_config
from fairdistill.data.core import (
    DatasetInfo,
    SplitDataset,
    Splits,
    collate,
    label_attr_group_index,
    label_attr_groups,
)
from fairdistill.errors import ConfigError, FairdistillError
from fairdistill.models import build_model

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "notebook_api.py"


# ------------------------------------------------------------------------------------------------ the package


def test_api_names_are_package_attributes_and_import_stays_light() -> None:
    from fairdistill import api

    for name in fd._API:
        assert getattr(fd, name) is getattr(api, name), name
    assert set(fd._API) == set(api.__all__)
    code = "import sys, fairdistill; assert 'torch' not in sys.modules and 'fairdistill.api' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)


def test_example_runs_and_prints_every_model(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "FAIRDISTILL_CACHE": str(tmp_path / "cache"),
        "MPLCONFIGDIR": str(tmp_path / "mpl"),
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_OFFLINE": "1",
        "TQDM_DISABLE": "1",
    }
    done = subprocess.run(
        [sys.executable, str(EXAMPLE), str(tmp_path / "runs")],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    rows: dict[str, str] = {}  # the printed table's rows: model → role
    for line in out.splitlines():
        if len(line.split()) > 2:
            rows.setdefault(line.split()[0], line.split()[1])
    assert rows.get("teacher") == "teacher" and rows.get("kd") == "student" and rows.get("groupdro") == "student", out
    assert "accuracy" in out and "worst_group_accuracy" in out and "recall_disparity_mad" in out
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert f"report: {run_dir / 'report.html'}" in out and (run_dir / "report.html").is_file()
    assert "epoch 2:" in out and "my student (test): accuracy" in out


# ---------------------------------------------------------------------------------------- Results.table


def _model(role: str, method: str, test: dict, std: dict | None = None) -> dict:
    entry = {"role": role, "method": method, "params": 100, "splits": {"val": {"accuracy": 0.1}, "test": test}}
    if std is not None:
        entry["splits_std"] = {"val": {"accuracy": 0.0}, "test": std}
    return entry


def test_table_holds_the_metrics_values(tmp_path: Path) -> None:
    metrics = {
        "run": {"name": "x", "seed": 0},
        "dataset": {},
        "models": {
            "teacher": _model(
                "teacher",
                "erm",
                {
                    "accuracy": 0.9,
                    "worst_group_accuracy": 0.7,
                    "recall_disparity_mad": 0.25,
                    "eo_difference": 0.125,
                    "dp_difference": 0.5,
                    "ece": 0.03,
                },
            ),
            "kd": _model(
                "student", "kd", {"accuracy": 0.6, "worst_group_accuracy": None, "recall_disparity_mad": 0.75}
            ),
        },
    }
    table = fd.Results(tmp_path, metrics).table()
    assert list(table.index) == ["teacher", "kd"] and table.index.name == "model"
    assert list(table.columns[:3]) == ["role", "method", "params"]
    assert table.loc["teacher", "accuracy"] == 0.9 and table.loc["teacher", "worst_group_accuracy"] == 0.7
    assert table.loc["teacher", "recall_disparity_mad"] == 0.25 and table.loc["teacher", "eo_difference"] == 0.125
    assert table.loc["teacher", "dp_difference"] == 0.5 and table.loc["teacher", "ece"] == 0.03
    assert table.loc["kd", "role"] == "student" and table.loc["kd", "method"] == "kd"
    assert table.loc["kd", "accuracy"] == 0.6 and table.loc["kd", "recall_disparity_mad"] == 0.75
    assert math.isnan(table.loc["kd", "worst_group_accuracy"]) and math.isnan(table.loc["kd", "ece"])  # null, absent
    assert not any(c.endswith("_std") for c in table.columns) and "seeds" not in table.columns
    assert fd.Results(tmp_path, metrics).table("val")["accuracy"].tolist() == [0.1, 0.1]
    with pytest.raises(FairdistillError, match="no 'train' split"):
        fd.Results(tmp_path, metrics).table("train")


def test_table_with_several_seeds_has_mean_and_std_columns(tmp_path: Path) -> None:
    metrics = {
        "run": {"name": "x", "seeds": [0, 1, 2]},
        "dataset": {},
        "models": {
            "teacher": _model("teacher", "erm", {"accuracy": 0.8, "ece": 0.05}, {"accuracy": 0.02, "ece": 0.01}),
            "kd": _model("student", "kd", {"accuracy": 0.5, "ece": 0.1}, {"accuracy": 0.04, "ece": None}),
        },
    }
    table = fd.Results(tmp_path, metrics).table(metrics=("accuracy", "ece"))
    assert list(table.columns) == ["role", "method", "params", "seeds", "accuracy", "accuracy_std", "ece", "ece_std"]
    assert table["seeds"].tolist() == [3, 3]
    assert table["accuracy"].tolist() == [0.8, 0.5] and table["accuracy_std"].tolist() == [0.02, 0.04]
    assert table.loc["teacher", "ece_std"] == 0.01 and math.isnan(table.loc["kd", "ece_std"])


# --------------------------------------------------------------------------------- a run made by the CLI


def test_load_results_reads_a_cli_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    config = tiny_config(tmp_path / "tiny.yaml")
    assert run_cli(monkeypatch, "run", str(config), "--output", str(tmp_path / "runs"), "--quiet") == 0
    capsys.readouterr()
    (run_dir,) = (tmp_path / "runs").iterdir()
    results = fd.load_results(run_dir)
    assert results.run_dir == run_dir.resolve() and results.models == ["teacher", "kd"] and results.seeds == [0]
    assert results.report_path == run_dir.resolve() / "report.html" and results.report_path.is_file()
    assert results.config.name == "tiny"
    table = results.table()
    for name, entry in results.metrics["models"].items():
        assert table.loc[name, "role"] == entry["role"]
        for key in ("accuracy", "worst_group_accuracy", "recall_disparity_mad", "eo_difference", "ece"):
            assert table.loc[name, key] == pytest.approx(entry["splits"]["test"][key], nan_ok=True)
    frame = results.predictions("kd", "test")
    pd.testing.assert_frame_equal(frame, pd.read_parquet(run_dir / "predictions" / "kd-test.parquet"))
    assert (frame.pred == frame.y).mean() == pytest.approx(
        results.metrics["models"]["kd"]["splits"]["test"]["accuracy"]
    )
    assert len(results.predictions("teacher", "val")) == results.metrics["dataset"]["counts"]["val"]
    with pytest.raises(FairdistillError, match="no model 'dedier'; its models: teacher, kd"):
        results.predictions("dedier")
    splits = results.load_data()
    student = results.load_model("kd", splits)
    assert fd.evaluate_model(student, splits, "test")["accuracy"] == pytest.approx(
        results.metrics["models"]["kd"]["splits"]["test"]["accuracy"]
    )
    with pytest.raises(FairdistillError, match="metrics.json"):
        fd.load_results(tmp_path)


def test_configs_from_names_files_and_code(tmp_path: Path) -> None:
    config = fd.load_config(
        "default", overrides={"data.max_examples": 300, "methods.kd.loss.tau": 4}, methods=["erm", "kd"]
    )
    assert config.data.options()["max_examples"] == 300 and [m.name for m in config.methods] == ["erm", "kd"]
    assert config.methods[1].loss.options()["tau"] == 4
    path = tiny_config(tmp_path / "tiny.yaml")
    assert fd.load_config(path, ["student.train.epochs=3"]).student.train.epochs == 3
    made = fd.make_config({"data": {"name": "adult"}, "methods": [{"name": "kd"}], "output": tmp_path})
    assert made.output == str(tmp_path) and fd.make_config(made) is made
    with pytest.raises(ConfigError, match=r"methods\.0\(kd\)\.loss\.tau"):
        fd.make_config({"data": {"name": "adult"}, "methods": [{"name": "kd", "loss": {"kind": "kd", "tau": "x"}}]})
    with pytest.raises(ConfigError, match="progress: expected one of quiet, normal, verbose"):
        fd.run(made, progress="loud")


# ---------------------------------------------------------------------------------- one's own training loop

FEATURES, CLASSES = 6, 3
INFO = DatasetInfo(
    "synthetic",
    CLASSES,
    ("a", "b", "c"),
    ("f", "m"),
    label_attr_groups(("a", "b", "c"), ("f", "m")),
    "tabular",
    (FEATURES,),
)


def _split(n: int, seed: int, name: str) -> SplitDataset:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FEATURES)).astype(np.float32)
    y = torch.from_numpy(x[:, :CLASSES].argmax(1)).long()
    attr = torch.from_numpy((rng.random(n) < 0.5).astype(np.int64))
    return SplitDataset({"x": torch.from_numpy(x)}, y, attr, label_attr_group_index(y, attr, 2), name=name)


@pytest.fixture(scope="module")
def data() -> tuple[Splits, object]:
    splits = Splits(_split(96, 0, "train"), _split(48, 1, "val"), _split(48, 2, "test"), INFO)
    torch.manual_seed(0)
    teacher = build_model({"name": "mlp", "hidden": [16]}, INFO, where="teacher.model").eval()
    return splits, teacher


class Net(torch.nn.Module):
    """A custom module: the objective only sees it through TappedModel's taps and embedding."""

    def __init__(self) -> None:
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(FEATURES, 12), torch.nn.ReLU())
        self.out = torch.nn.Linear(12, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


METHODS = {
    "kd": {"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}},
    "groupdro": {"name": "g", "loss": {"kind": "kd"}, "weighting": {"kind": "groupdro", "eta": 0.5}},
    "readout-online": {
        "name": "r",
        "loss": {"kind": "dkd"},
        "weighting": {"kind": "early-readout", "tap": "body", "refit": "online"},
    },
    "mixing": {"name": "m", "loss": {"kind": "kd"}, "mixing": {"kind": "per-group-alpha", "by": "group"}},
    "adversary": {"name": "a", "loss": {"kind": "kd"}, "adversary": {"input": "embedding", "weight": 2.0}},
    "erm-jtt": {"name": "j", "loss": {"kind": "erm"}, "weighting": {"kind": "jtt", "identify_epochs": 1}},
}


@pytest.mark.parametrize("key", list(METHODS))
def test_custom_loop_loss_equals_batch_loss(data, key: str) -> None:
    splits, teacher = data
    torch.manual_seed(1)
    student = fd.TappedModel(Net(), taps={"body": "body"}, embedding="body")
    objective = fd.make_method(METHODS[key], splits, student, teacher=teacher, epochs=2)
    reference = copy.deepcopy(objective.method)  # stateful weightings (GroupDRO's q) start equal in both
    batch = collate([splits.train[i] for i in range(32)])
    state = dataclasses.replace(objective.state)
    out = student(batch.inputs)
    per_example = objective.per_example_loss(batch, out)
    weights = objective.weights(batch, out, per_example)
    assert per_example.shape == weights.shape == (32,) and not weights.requires_grad
    mine = (weights * per_example).mean() + objective.extra_loss(batch, out)
    teacher_out = None if objective.teacher is None else objective.teacher.lookup(batch.index, "cpu")
    expected = reference.batch_loss(batch, out, teacher_out, state)
    torch.testing.assert_close(mine, expected)
    assert mine.requires_grad
    if key == "groupdro":
        assert not torch.allclose(weights, torch.ones_like(weights))


def test_custom_loop_runs_the_epoch_hooks(data) -> None:
    splits, teacher = data
    torch.manual_seed(2)
    student = fd.TappedModel(Net(), taps={"body": "body"}, embedding="body")
    objective = fd.make_method(
        {"name": "dedier", "loss": {"kind": "kd"}, "weighting": {"kind": "early-readout", "beta": 3.0}},
        splits,
        student,
        teacher=teacher,
        epochs=2,
    )
    optimizer = torch.optim.Adam([*student.parameters(), *objective.parameters()], lr=1e-2)
    loader = torch.utils.data.DataLoader(splits.train, batch_size=32, shuffle=True, collate_fn=collate)
    seen = []
    for _ in range(2):
        for batch in objective.epoch(loader, optimizer):
            out = student(batch.inputs)
            per_example = objective.per_example_loss(batch, out)
            weights = objective.weights(batch, out, per_example)
            seen.append(weights)
            loss = (weights * per_example).mean() + objective.extra_loss(batch, out)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    assert objective.state.step == 6 and [h["epoch"] for h in objective.history] == [1, 2]
    assert all(torch.equal(w, torch.ones_like(w)) for w in seen[:3])  # epoch 1: w = 1, then the readout's
    assert "readout_train_acc" in objective.history[0] and objective.history[1]["weight_mean"] >= 1.0
    metrics = fd.evaluate_model(student, splits, "test")
    assert 0.0 <= metrics["accuracy"] <= 1.0 and "worst_group_accuracy" in metrics


def test_make_method_mistakes_are_config_errors(data) -> None:
    splits, _ = data
    student = fd.TappedModel(Net(), taps={"body": "body"})
    with pytest.raises(ConfigError, match="distils a teacher; pass teacher="):
        fd.make_method({"name": "kd"}, splits, student)
    with pytest.raises(ConfigError, match=r"method\(kd\)\.loss\.tau"):
        fd.make_method({"name": "kd", "loss": {"kind": "kd", "tau": -1}}, splits, student)
    with pytest.raises(ConfigError, match="has no tap 'conv1'"):
        fd.make_method(
            {"name": "d", "loss": {"kind": "erm"}, "weighting": {"kind": "early-readout", "tap": "conv1"}},
            splits,
            student,
        )
