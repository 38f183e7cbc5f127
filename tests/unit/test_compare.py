"""``fairdistill compare`` on two hand-made run directories: the config difference, and better / worse only where
the paired-bootstrap interval of B − A excludes 0.

Each run holds a teacher (the same predictions in both), ``kd`` (B right on far more test examples than A) and
``erm`` (B right on two more examples out of 400: a difference the bootstrap cannot tell from noise).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from cli_runner import run_cli
from fairdistill.evaluate.amplification import LabelArrays, bias_metrics, paired_bootstrap
from fairdistill.report.compare import config_differences, paired_intervals

N = 400
RNG = np.random.default_rng(7)
Y = RNG.integers(0, 2, N)
ATTR = RNG.integers(0, 2, N)
GROUP = Y * 2 + ATTR
DATASET = {
    "name": "toy",
    "num_classes": 2,
    "class_names": ["no", "yes"],
    "attr_names": ["a0", "a1"],
    "group_names": ["no/a0", "no/a1", "yes/a0", "yes/a1"],
    "options": {"max_examples": N},
    "counts": {"train": 10, "val": N, "test": N},
}


def _predictions(correct: np.ndarray) -> np.ndarray:
    """Y where ``correct``, the other class elsewhere."""
    return np.where(correct, Y, 1 - Y)


def _correct(fraction: float) -> np.ndarray:
    correct = np.zeros(N, dtype=bool)
    correct[: int(fraction * N)] = True
    return correct


TEACHER = _predictions(_correct(0.95))
ERM_A = _predictions(_correct(0.70))
ERM_B = _predictions(_correct(0.70 + 2 / N))  # two more examples right
KD_A = _predictions(_correct(0.60))
KD_B = _predictions(_correct(0.90))


def _split_metrics(pred: np.ndarray) -> dict:
    labels = LabelArrays.of(Y, ATTR, GROUP, 2, 2, 4)
    bias = bias_metrics(labels, pred)
    return {
        "accuracy": float((pred == Y).mean()),
        "worst_group_accuracy": 1.0 - bias["worst_group_error"],
        "recall_disparity_mad": bias["recall_disparity_mad"],
        "eo_difference": bias["eo_difference"],
        "dp_difference": bias["dp_difference"],
    }


def make_run(root: Path, name: str, preds: dict[str, np.ndarray], tau: float, seeds: tuple[int, ...] = (0,)) -> Path:
    """A run directory with config.yaml, metrics.json and test/val predictions of every model (for each seed)."""
    run = root / name
    several = len(seeds) > 1
    models = {}
    for model, pred in preds.items():
        role = "teacher" if model == "teacher" else "student"
        values = _split_metrics(pred)
        models[model] = {
            "role": role,
            "method": "erm" if model != "kd" else "kd",
            "params": 100,
            "splits": {"val": values, "test": values},
        }
        for seed in seeds:
            folder = run / "predictions" / (f"seed{seed}" if several else "")
            folder.mkdir(parents=True, exist_ok=True)
            frame = pd.DataFrame(
                {
                    "index": np.arange(N)[::-1],
                    "y": Y[::-1],
                    "attr": ATTR[::-1],
                    "group": GROUP[::-1],
                    "pred": pred[::-1],
                    "prob_0": (pred[::-1] == 0).astype(float),
                    "prob_1": (pred[::-1] == 1).astype(float),
                }
            )
            if name.endswith("b"):  # B lists the examples in another order: they are matched by index
                frame = frame.iloc[::-1]
            for split in ("val", "test"):
                frame.to_parquet(folder / f"{model}-{split}.parquet", index=False)
    run_section = {"name": name, "seed": seeds[0], **({"seeds": list(seeds)} if several else {})}
    (run / "metrics.json").write_text(
        json.dumps({"schema_version": 1, "dataset": DATASET, "run": run_section, "models": models})
    )
    config = {
        "name": name,
        "seed": 0,
        "data": {"name": "toy"},
        "methods": [{"name": "erm"}, {"name": "kd", "loss": {"kind": "kd", "tau": tau}}],
    }
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    return run


@pytest.fixture()
def runs(tmp_path: Path) -> tuple[Path, Path]:
    a = make_run(tmp_path, "run-a", {"teacher": TEACHER, "erm": ERM_A, "kd": KD_A}, tau=2.0)
    b = make_run(tmp_path, "run-b", {"teacher": TEACHER, "erm": ERM_B, "kd": KD_B}, tau=4.0)
    return a, b


def _rows(out: str) -> dict[tuple[str, str], list[str]]:
    rows = [[c.strip() for c in line.split("│")[1:-1]] for line in out.splitlines() if line.startswith("│")]
    return {(r[0], r[1]): r for r in rows if len(r) == 7}


def test_compare_prints_config_difference_and_tested_verdicts(runs, monkeypatch, capsys) -> None:
    a, b = runs
    assert run_cli(monkeypatch, "compare", str(a), str(b)) == 0
    captured = capsys.readouterr()
    out = " ".join(captured.out.split())
    assert captured.err == ""
    assert "config (A → B): 2 difference(s)" in out
    assert "methods.kd.loss.tau: 2.0 → 4.0" in out and "name: 'run-a' → 'run-b'" in out
    rows = _rows(captured.out)
    assert rows[("kd", "accuracy")][4:6] == ["+0.3000", "better"]
    low, high = (float(v) for v in rows[("kd", "accuracy")][6].strip("[]").split(","))
    assert 0 < low < 0.3 < high
    assert rows[("erm", "accuracy")][4:6] == ["+0.0050", "no clear difference"]
    assert all(rows[("teacher", metric)][5] == "same" for metric in ("accuracy", "worst-group acc"))
    assert rows[("kd", "ECE")][5] == "—" and rows[("kd", "macro F1")][5] == "—"  # not in metrics.json
    assert "excludes 0" in out and "no clear difference" in out


def test_interval_verdicts_agree_with_the_bootstrap(runs) -> None:
    a, b = runs
    metrics_a, metrics_b = (json.loads((r / "metrics.json").read_text()) for r in runs)
    intervals = paired_intervals(a, metrics_a, b, metrics_b)
    labels = LabelArrays.of(Y, ATTR, GROUP, 2, 2, 4)
    direct = paired_bootstrap(labels, [KD_A], [KD_B], metrics=("accuracy",))
    assert intervals.by_model["kd"]["accuracy"] == direct["accuracy"]
    assert direct["accuracy"]["delta"] == pytest.approx(0.3)
    erm = intervals.by_model["erm"]["accuracy"]
    assert erm["ci_low"] <= 0 <= erm["ci_high"]
    teacher = intervals.by_model["teacher"]["accuracy"]
    assert teacher["ci_low"] == teacher["ci_high"] == 0


def test_several_seeds_are_paired_seed_by_seed(tmp_path: Path) -> None:
    a = make_run(tmp_path, "run-a", {"kd": KD_A}, tau=2.0, seeds=(3, 5))
    b = make_run(tmp_path, "run-b", {"kd": KD_B}, tau=2.0, seeds=(3, 5))
    metrics_a, metrics_b = (json.loads((r / "metrics.json").read_text()) for r in (a, b))
    intervals = paired_intervals(a, metrics_a, b, metrics_b)
    assert intervals.by_model["kd"]["accuracy"]["delta"] == pytest.approx(0.3)
    assert "seeds 3, 5" in intervals.note
    assert config_differences(a, b) == ["name: 'run-a' → 'run-b'"]


def test_missing_predictions_mean_no_verdict(runs, monkeypatch, capsys) -> None:
    a, b = runs
    (b / "predictions" / "kd-test.parquet").unlink()
    assert run_cli(monkeypatch, "compare", str(a), str(b)) == 0
    out = capsys.readouterr().out
    assert "no intervals, so no better / worse" in " ".join(out.split())
    rows = _rows(out)
    assert rows[("kd", "accuracy")][5] == "no interval"
    assert not any(row[5] in ("better", "worse") for row in rows.values())
