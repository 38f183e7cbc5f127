"""A tiny Adult run with ``postprocess:`` and ``peers:``: its extra rows hold what fairlearn, called directly on the
same val/test data, predicts (and the metrics of those predictions, computed here from fairlearn's output); the
report shows them; ``fairdistill report`` rebuilds it from the run directory; a run killed while fitting the
peers resumes to the same rows; a sweep carries the rows, reused ones included."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from fairlearn.postprocessing import ThresholdOptimizer
from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from cli_runner import run_cli, tiny_config

SEED = 2
ADULT_RUN: dict[str, Any] = {
    "name": "adultpp",
    "seed": SEED,
    "data": {"name": "adult", "max_examples": 2500},
    "teacher": {"model": {"name": "mlp", "hidden": [32]}, "train": {"epochs": 2, "batch_size": 128}},
    "student": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 2, "lr": 0.003, "batch_size": 128}},
    "methods": [{"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}}],
    "postprocess": {"threshold": "equalized_odds"},
    "peers": [
        {"kind": "expgrad", "constraint": "equalized-odds", "estimator": "logistic"},
        {"kind": "expgrad", "constraint": "demographic-parity", "estimator": "mlp"},
        {"kind": "expgrad", "constraint": "equalized-odds", "estimator": "distilled", "max_iter": 4},
    ],
}
CRASHER = Path(__file__).with_name("crashing_run.py")


class Scores(BaseEstimator):
    """This test's prefit estimator for ThresholdOptimizer: the score is X's first column."""

    def fit(self, X, y=None):  # noqa: N803
        return self

    def predict(self, X):  # noqa: N803
        return np.asarray(X)[:, 0]

    def __sklearn_is_fitted__(self) -> bool:
        return True


def only_run_dir(parent: Path) -> Path:
    (run_dir,) = [p for p in parent.iterdir() if p.is_dir()]
    return run_dir


@pytest.fixture(scope="module")
def config_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_config(tmp_path_factory.mktemp("pp-config") / "adultpp.yaml", ADULT_RUN)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory: pytest.TempPathFactory, config_path: Path) -> Path:
    parent = tmp_path_factory.mktemp("pp-run")
    with pytest.MonkeyPatch.context() as mp:
        assert run_cli(mp, "run", str(config_path), "--output", str(parent)) == 0
    return only_run_dir(parent)


@pytest.fixture(scope="module")
def metrics(run_dir: Path) -> dict[str, Any]:
    return json.loads((run_dir / "metrics.json").read_text())


def frame(run_dir: Path, model: str, split: str) -> pd.DataFrame:
    return pd.read_parquet(run_dir / "predictions" / f"{model}-{split}.parquet")


def independent_metrics(y: np.ndarray, pred: np.ndarray, attr: np.ndarray) -> dict[str, float]:
    """Accuracy, worst-group accuracy, recall-disparity MAD (numpy) and EO / DP difference (fairlearn), from the
    labels fairlearn predicted. Every attribute value has both labels here, so fairlearn's EO is ours."""
    recalls = {(c, a): np.mean(pred[(y == c) & (attr == a)] == c) for c in (0, 1) for a in (0, 1)}
    groups = [np.mean(pred[(y == c) & (attr == a)] == c) for c in (0, 1) for a in (0, 1)]
    return {
        "accuracy": float(np.mean(pred == y)),
        "worst_group_accuracy": float(min(groups)),
        "recall_disparity_mad": float(np.mean([abs(recalls[(c, 1)] - recalls[(c, 0)]) for c in (0, 1)])),
        "eo_difference": float(equalized_odds_difference(y, pred, sensitive_features=attr)),
        "dp_difference": float(demographic_parity_difference(y, pred, sensitive_features=attr)),
    }


def check_row(
    metrics: dict[str, Any], name: str, split: str, y: np.ndarray, pred: np.ndarray, attr: np.ndarray
) -> None:
    values = metrics["models"][name]["splits"][split]
    for key, expected in independent_metrics(y, pred, attr).items():
        assert values[key] == pytest.approx(expected, abs=1e-12), (name, split, key)
    assert values["ece"] is None and "no confidence" in values["undefined"]["ece"]


def test_rows_and_roles(metrics: dict[str, Any]) -> None:
    models = metrics["models"]
    assert list(models) == [
        "teacher",
        "kd",
        "teacher+threshold",
        "kd+threshold",
        "expgrad-eo-logistic",
        "expgrad-dp-mlp",
        "expgrad-eo-distilled",
    ]
    assert [models[n]["role"] for n in models] == [
        "teacher",
        "student",
        "postprocessed",
        "postprocessed",
        "peer",
        "peer",
        "reduced",
    ]
    distilled = models["expgrad-eo-distilled"]
    assert distilled["label"] == "expgrad-eo around the kd student"
    assert distilled["params"] == models["kd"]["params"]  # one base classifier is a student of the student's size
    assert distilled["peer"]["loss"] == {"kind": "kd", "alpha": 0.5, "tau": 2.0}
    assert distilled["peer"]["model"]["hidden"] == [8] and distilled["peer"]["epochs"] == 2
    assert models["kd+threshold"]["source"] == "kd" and models["teacher+threshold"]["source"] == "teacher"
    assert models["kd+threshold"]["postprocess"]["constraints"] == "equalized_odds"
    assert models["kd+threshold"]["params"] == models["kd"]["params"]
    assert models["expgrad-eo-logistic"]["label"] == "peer: expgrad-eo (logistic)"
    assert models["expgrad-dp-mlp"]["peer"]["hidden"] == [8] and models["expgrad-dp-mlp"]["peer"]["epochs"] == 2
    features = metrics["dataset"]["provenance"]["feature_names"]
    assert models["expgrad-eo-logistic"]["params"] == len(features) + 1
    # the amplification section compares every row with the teacher; margins only models with probabilities
    assert set(metrics["amplification"]["students"]) == set(models) - {"teacher"}
    assert set(metrics["margins"]["models"]) == {"teacher", "kd"}


@pytest.mark.parametrize("source", ["teacher", "kd"])
def test_threshold_rows_are_fairlearn_called_directly(run_dir: Path, metrics: dict[str, Any], source: str) -> None:
    val, test = frame(run_dir, source, "val"), frame(run_dir, source, "test")
    optimizer = ThresholdOptimizer(
        estimator=Scores(), constraints="equalized_odds", prefit=True, predict_method="predict"
    )
    optimizer.fit(val[["prob_1"]].to_numpy(np.float64), val["y"].to_numpy(), sensitive_features=val["attr"].to_numpy())
    for split, scored in (("val", val), ("test", test)):
        x, attr, y = scored[["prob_1"]].to_numpy(np.float64), scored["attr"].to_numpy(), scored["y"].to_numpy()
        pred = optimizer.predict(x, sensitive_features=attr, random_state=SEED)
        row = frame(run_dir, f"{source}+threshold", split)
        np.testing.assert_array_equal(row["pred"].to_numpy(), pred)
        np.testing.assert_array_equal(row["index"].to_numpy(), scored["index"].to_numpy())
        np.testing.assert_allclose(
            row[["pmf_0", "pmf_1"]].to_numpy(), optimizer._pmf_predict(x, sensitive_features=attr)
        )
        check_row(metrics, f"{source}+threshold", split, y, pred, attr)


def test_peers_are_exponentiated_gradient_called_directly(run_dir: Path, metrics: dict[str, Any]) -> None:
    from fairdistill.data import load_dataset

    splits = load_dataset("adult", {k: v for k, v in ADULT_RUN["data"].items() if k != "name"})
    x = {name: split.encodings["x"].numpy().astype(np.float64) for name, split in splits.items()}
    train = ADULT_RUN["student"]["train"]
    peers = {
        "expgrad-eo-logistic": ExponentiatedGradient(
            LogisticRegression(max_iter=1000, random_state=SEED), constraints=EqualizedOdds()
        ),
        "expgrad-dp-mlp": ExponentiatedGradient(
            MLPClassifier(
                hidden_layer_sizes=(8,),
                max_iter=train["epochs"],
                learning_rate_init=train["lr"],
                batch_size=train["batch_size"],
                random_state=SEED,
            ),
            constraints=DemographicParity(),
        ),
    }
    import warnings

    for name, model in peers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the MLP stops at its two epochs (ConvergenceWarning)
            model.fit(x["train"], splits.train.y.numpy(), sensitive_features=splits.train.attr.numpy())
        for split_name in ("val", "test"):
            split = getattr(splits, split_name)
            pred = model.predict(x[split_name], random_state=SEED)
            row = frame(run_dir, name, split_name)
            np.testing.assert_array_equal(row["pred"].to_numpy(), pred)
            np.testing.assert_allclose(row[["pmf_0", "pmf_1"]].to_numpy(), model._pmf_predict(x[split_name]))
            check_row(metrics, name, split_name, split.y.numpy(), np.asarray(pred), split.attr.numpy())


def test_the_distilled_reduction_row_is_its_own_predictions(run_dir: Path, metrics: dict[str, Any]) -> None:
    """The randomised distilled student: drawn labels among the classes the mixture gives mass, metrics of
    those labels (computed here), fairlearn's label probabilities summing to one."""
    for split_name in ("val", "test"):
        row = frame(run_dir, "expgrad-eo-distilled", split_name)
        pmf = row[["pmf_0", "pmf_1"]].to_numpy()
        np.testing.assert_allclose(pmf.sum(axis=1), 1.0, atol=1e-9)
        pred = row["pred"].to_numpy()
        assert bool((pmf[np.arange(len(pred)), pred] > 0).all())
        check_row(metrics, "expgrad-eo-distilled", split_name, row["y"].to_numpy(), pred, row["attr"].to_numpy())


@pytest.mark.parametrize(
    "name", ["teacher+threshold", "kd+threshold", "expgrad-eo-logistic", "expgrad-dp-mlp", "expgrad-eo-distilled"]
)
def test_randomised_rows_are_also_scored_by_their_expected_rates(
    run_dir: Path, metrics: dict[str, Any], name: str
) -> None:
    """``expected``: the metrics over the draw, recomputed here from the saved label probabilities (pmf_1)."""
    for split_name in ("val", "test"):
        row = frame(run_dir, name, split_name)
        y, attr, p1 = row["y"].to_numpy(), row["attr"].to_numpy(), row["pmf_1"].to_numpy()
        correct = np.where(y == 1, p1, 1.0 - p1)
        recall = {(c, a): correct[(y == c) & (attr == a)].mean() for c in (0, 1) for a in (0, 1)}
        expected = metrics["models"][name]["splits"][split_name]["expected"]
        assert expected["accuracy"] == pytest.approx(correct.mean(), abs=1e-12)
        mad = np.mean([abs(recall[(c, 1)] - recall[(c, 0)]) for c in (0, 1)])
        assert expected["recall_disparity_mad"] == pytest.approx(mad, abs=1e-12)
        tpr_gap, fpr_gap = abs(recall[(1, 1)] - recall[(1, 0)]), abs(recall[(0, 1)] - recall[(0, 0)])
        assert expected["eo_difference"] == pytest.approx(max(tpr_gap, fpr_gap), abs=1e-12)
        selection = [p1[attr == a].mean() for a in (0, 1)]
        assert expected["dp_difference"] == pytest.approx(abs(selection[1] - selection[0]), abs=1e-12)


def test_report_shows_the_rows_and_rebuilds(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    md = (run_dir / "report.md").read_text()
    for shown in ("kd+threshold", "teacher+threshold", "peer: expgrad-eo (logistic)", "peer: expgrad-dp (mlp)"):
        assert shown in md
    assert "fairlearn's ThresholdOptimizer (equalized_odds" in md and "non-distilled reference" in md
    assert "expgrad-eo around the kd student" in md and "a distilled, randomised classifier" in md
    assert "For reference, without a teacher (not distilled): peer: expgrad-eo (logistic) accuracy" in md
    before = md
    (run_dir / "report.md").unlink()
    (run_dir / "figures" / "pareto.png").unlink()
    assert run_cli(monkeypatch, "report", str(run_dir)) == 0
    assert (run_dir / "report.md").read_text() == before
    assert (run_dir / "figures" / "pareto.png").stat().st_size > 10_000


def count_metric_calls(config_path: Path, parent: Path) -> int:
    """How many times a run computes metrics (in this process, counted)."""
    import fairdistill.experiment as experiment

    calls = 0
    original = experiment.compute_metrics

    def counted(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        return original(*args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(experiment, "compute_metrics", counted)
        assert run_cli(mp, "run", str(config_path), "--output", str(parent)) == 0
    return calls


def without_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_timings(v) for k, v in value.items() if k not in {"train_seconds", "seconds", "started"}}
    if isinstance(value, list):
        return [without_timings(v) for v in value]
    return value


def test_killed_among_the_peers_resumes_to_the_same_rows(
    run_dir: Path, config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = count_metric_calls(config_path, tmp_path / "counted")
    # the last two metric computations are the last peer's val and test: kill before its val metrics
    crashed_parent = tmp_path / "crashed"
    crashed_parent.mkdir()
    completed = subprocess.run(
        [
            sys.executable,
            str(CRASHER),
            "evaluate",
            str(calls - 1),
            "--",
            "run",
            str(config_path),
            "--output",
            str(crashed_parent),
        ],
        env={**os.environ, "PYTHONHASHSEED": "0"},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert completed.returncode == -signal.SIGKILL, completed.stderr[-2000:]
    crashed = only_run_dir(crashed_parent)
    assert (crashed / "predictions" / "expgrad-eo-logistic-test.parquet").is_file()
    assert not (crashed / "metrics.json").exists()
    assert run_cli(monkeypatch, "run", "--resume", str(crashed)) == 0
    reference = json.loads((run_dir / "metrics.json").read_text())
    assert without_timings(json.loads((crashed / "metrics.json").read_text())) == without_timings(reference)
    for name in ("kd+threshold", "teacher+threshold", "expgrad-eo-logistic", "expgrad-dp-mlp", "expgrad-eo-distilled"):
        for split in ("val", "test"):
            pd.testing.assert_frame_equal(frame(crashed, name, split), frame(run_dir, name, split))


def test_multiclass_data_is_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tiny_config(
        tmp_path / "mnist10.yaml",
        data={"name": "colored-mnist", "max_examples": 300, "classes": 10},
        postprocess={"threshold": "demographic_parity"},
        output=str(tmp_path / "runs"),
    )
    assert run_cli(monkeypatch, "run", str(path)) == 2
    err = capsys.readouterr().err
    assert (
        "postprocess: fairlearn's ThresholdOptimizer and ExponentiatedGradient handle binary labels only"
        in " ".join(err.split())
    )
    assert "teacher epoch" not in err and "Traceback" not in err


def test_colored_mnist_peers_read_the_pixels(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Images held in memory: the logistic peer is ExponentiatedGradient on the flattened pixels (called here on
    the loaded data), and the reduction around the CNN student gives a row per example of each split."""
    from fairdistill.data import load_dataset

    peers = [
        {"kind": "expgrad", "constraint": "equalized-odds", "estimator": "logistic", "max_iter": 5},
        {"kind": "expgrad", "constraint": "equalized-odds", "estimator": "distilled", "max_iter": 3},
    ]
    path = tiny_config(tmp_path / "img.yaml", peers=peers, output=str(tmp_path / "runs"))
    assert run_cli(monkeypatch, "run", str(path)) == 0
    run_dir = only_run_dir(tmp_path / "runs")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["models"]["expgrad-eo-distilled"]["role"] == "reduced"
    splits = load_dataset("colored-mnist", {"max_examples": 300})
    x = {name: s.encodings["x"].numpy().reshape(len(s), -1).astype(np.float64) for name, s in splits.items()}
    assert x["train"].shape[1] == 3 * 28 * 28
    direct = ExponentiatedGradient(
        LogisticRegression(max_iter=1000, random_state=0), constraints=EqualizedOdds(), max_iter=5
    )
    direct.fit(x["train"], splits.train.y.numpy(), sensitive_features=splits.train.attr.numpy())
    for split_name in ("val", "test"):
        split = getattr(splits, split_name)
        row = frame(run_dir, "expgrad-eo-logistic", split_name)
        np.testing.assert_array_equal(row["pred"].to_numpy(), direct.predict(x[split_name], random_state=0))
        np.testing.assert_allclose(row[["pmf_0", "pmf_1"]].to_numpy(), direct._pmf_predict(x[split_name]))
        reduced = frame(run_dir, "expgrad-eo-distilled", split_name)
        assert sorted(reduced["index"].tolist()) == list(range(len(split)))
        check_row(
            metrics, "expgrad-eo-distilled", split_name, reduced["y"].to_numpy(), reduced["pred"].to_numpy(),
            reduced["attr"].to_numpy(),
        )  # fmt: skip


def test_sweep_carries_the_rows(config_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the cache folder changes no model: the second point trains nothing and reuses every row of the first
    grid = f"cache_dir={tmp_path / 'cache-a'},{tmp_path / 'cache-b'}"
    code = run_cli(monkeypatch, "sweep", str(config_path), "--grid", grid, "--output", str(tmp_path / "sweeps"))
    assert code == 0
    (sweep_dir,) = [p for p in (tmp_path / "sweeps").iterdir() if p.is_dir()]
    document = json.loads((sweep_dir / "sweep.json").read_text())
    first, second = document["points"]
    expected = {
        "teacher",
        "kd",
        "kd+threshold",
        "teacher+threshold",
        "expgrad-eo-logistic",
        "expgrad-dp-mlp",
        "expgrad-eo-distilled",
    }
    assert set(first["models"]) == expected == set(second["models"])
    assert second["run_dir"] is None
    for name in expected - {"teacher"}:
        assert second["models"][name]["reused_from"] == "p0"
        assert second["models"][name]["accuracy"] == first["models"][name]["accuracy"]
    assert first["models"]["expgrad-eo-logistic"]["display"] == "peer: expgrad-eo (logistic)"
    assert first["models"]["kd+threshold"]["source"] == "kd"
    assert len(first["models"]["kd+threshold"]["interval"]["eo_difference"]) == 2
    assert "peer: expgrad-eo (logistic)" in (sweep_dir / "sweep.md").read_text()
