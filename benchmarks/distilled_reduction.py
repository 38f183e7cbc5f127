"""ExponentiatedGradient-EO around the distilled student vs around a logistic regression and an MLP (Adult-sex).

    .venv/bin/python benchmarks/distilled_reduction.py [--seeds 0 1 2] [--out results/distilled_reduction.json]

Per seed one fairdistill run on Adult (protected sex) with the fairness_peers teacher and student (mlp [256, 256]
→ mlp [16], ``select: last``), kd (α 0.9, τ 2) as the plain distilled student, and four ExponentiatedGradient
(equalized odds) rows fitted on the run's train split: around ``LogisticRegression`` (the reference peer), around
scikit-learn's ``MLPClassifier`` of the student's size, and around the distilled student (``estimator:
distilled``: the student trained with kd's loss, α 0.5, τ 2, against the teacher) at fairlearn's default
eps 0.01 and at eps 0.002.

Every randomised row is scored twice on the test split:
- ``draw``: the metrics of one draw of hard labels (fairlearn's ``predict`` with ``random_state`` = seed), as in
  the run's metrics.json;
- ``expected``: the same metrics taken over the randomisation, from fairlearn's label probabilities (the
  ``pmf_<c>`` columns of the predictions): expected accuracy mean_i pmf_i[y_i], expected recall of each
  (label, sex) cell, MAD and EO / DP differences of those expected rates. No draw noise.
Mean ± sample std over the seeds, per-seed values, and which rows Pareto-dominate the reference peer in the
mean (accuracy ≥, MAD ≤ and EO ≤, one strictly), for each scoring. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fairdistill.config import parse_config
from fairdistill.experiment import run
from fairness_peers import ADULT_MODELS, REFERENCE_PEER, dominates
from seed_stats import summarise

SCORES = ("accuracy", "recall_disparity_mad", "eo_difference", "dp_difference")
EO = {"kind": "expgrad", "constraint": "equalized-odds"}
PEERS = [
    {**EO, "estimator": "logistic"},
    {**EO, "estimator": "mlp"},
    {**EO, "estimator": "distilled", "alpha": 0.5, "tau": 2.0},
    {**EO, "estimator": "distilled", "alpha": 0.5, "tau": 2.0, "eps": 0.002, "name": "expgrad-eo-distilled-eps0.002"},
]


def config_for(seed: int, output: str) -> Any:
    return parse_config(
        {
            "name": "distilled-reduction",
            "seed": seed,
            "data": {"name": "adult", "protected": "sex"},
            **ADULT_MODELS,
            "methods": [{"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}}],
            "peers": PEERS,
            "select": "last",
            "output": output,
        }
    )


def rate_scores(y: np.ndarray, attr: np.ndarray, positive: np.ndarray) -> dict[str, float]:
    """Accuracy, MAD, EO and DP differences of a (possibly randomised) binary classifier from each row's
    probability of predicting the positive class (1.0 / 0.0 for hard labels)."""
    correct = np.where(y == 1, positive, 1.0 - positive)
    recall = {(c, a): float(correct[(y == c) & (attr == a)].mean()) for c in (0, 1) for a in (0, 1)}
    tpr = {a: recall[(1, a)] for a in (0, 1)}
    fpr = {a: 1.0 - recall[(0, a)] for a in (0, 1)}
    rate = {a: float(positive[attr == a].mean()) for a in (0, 1)}
    return {
        "accuracy": float(correct.mean()),
        "recall_disparity_mad": float(np.mean([abs(recall[(c, 1)] - recall[(c, 0)]) for c in (0, 1)])),
        "eo_difference": max(abs(tpr[1] - tpr[0]), abs(fpr[1] - fpr[0])),
        "dp_difference": abs(rate[1] - rate[0]),
    }


def scored_rows(run_dir: Path, metrics: dict[str, Any]) -> dict[str, dict[str, dict[str, float]]]:
    """model → {"draw": scores, "expected": scores} on the test split (the students: their argmax labels)."""
    rows = {}
    for model, entry in metrics["models"].items():
        frame = pd.read_parquet(run_dir / "predictions" / f"{model}-test.parquet")
        y, attr = frame["y"].to_numpy(), frame["attr"].to_numpy()
        drawn = (frame["pred"].to_numpy() == 1).astype(float)
        expected = frame["pmf_1"].to_numpy() if "pmf_1" in frame.columns else drawn
        draw = rate_scores(y, attr, drawn)
        reported = entry["splits"]["test"]
        assert abs(draw["accuracy"] - reported["accuracy"]) < 1e-9, model  # the same rows as metrics.json
        rows[model] = {"role": entry.get("role", "student"), "draw": draw, "expected": rate_scores(y, attr, expected)}
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "distilled_reduction.json"
    )
    args = parser.parse_args()
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    roles: dict[str, str] = {}
    seconds: list[float] = []
    for seed in args.seeds:
        with tempfile.TemporaryDirectory() as output:
            started = time.perf_counter()
            result = run(config_for(seed, output))
            seconds.append(time.perf_counter() - started)
            for model, row in scored_rows(result.run_dir, result.metrics).items():
                roles[model] = row["role"]
                for scoring in ("draw", "expected"):
                    for key, value in row[scoring].items():
                        values.setdefault(model, {}).setdefault(scoring, {}).setdefault(key, []).append(value)
        print(f"seed {seed}: {seconds[-1]:.0f} s", flush=True)
    models = {
        m: {"role": roles[m], **{s: {k: summarise(v) for k, v in by.items()} for s, by in by_scoring.items()}}
        for m, by_scoring in values.items()
    }
    document: dict[str, Any] = {
        "dataset": "adult, protected sex",
        "seeds": args.seeds,
        "split": "test",
        "std": "sample standard deviation over seeds",
        "select": "last",
        "peers": PEERS,
        "machine": {"processor": platform.processor() or platform.machine(), "torch": torch.__version__},
        "run_seconds": summarise(seconds),
        "models": models,
    }
    for scoring in ("draw", "expected"):
        reference = models[REFERENCE_PEER][scoring]
        document[f"dominates_{REFERENCE_PEER}_{scoring}"] = [
            m for m, row in models.items() if m != REFERENCE_PEER and dominates(row[scoring], reference)
        ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=2) + "\n")
    for scoring in ("draw", "expected"):
        print(f"\n{scoring}: {'model':<32}" + "".join(f"{c:>24}" for c in SCORES))
        for model, row in models.items():
            cells = "".join(f"{row[scoring][c]['mean']:>16.4f} ±{row[scoring][c]['std']:.4f}" for c in SCORES)
            print(f"{'':<{len(scoring) + 2}}{model:<32}{cells}")
        print(f"dominating {REFERENCE_PEER} ({scoring}): {document[f'dominates_{REFERENCE_PEER}_{scoring}'] or 'none'}")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
