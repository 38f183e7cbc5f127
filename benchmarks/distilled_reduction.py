"""ExponentiatedGradient-EO around the distilled student vs around a logistic regression (and an MLP) → JSON.

    .venv/bin/python benchmarks/distilled_reduction.py [--seeds 0 1 2] [--datasets adult-sex adult-race colored-mnist]
                                                       [--out benchmarks/results/distilled_reduction.json] [--merge]

Per dataset and seed, one fairdistill run with the fairness_peers teacher and student (Adult: mlp [256, 256] →
mlp [16]; colored-mnist: the embedded default's CNNs), ``select: last``, and these rows, all on the same splits:
- students: kd (α 0.9, τ 2) and the best deterministic constrained student of constraint_sweep.json, kd (τ 4) +
  fair-constraint (equalized odds, step 10);
- ExponentiatedGradient (equalized odds) fitted on the run's train split around ``LogisticRegression`` (the
  reference peer; on colored-mnist, of the flattened pixels), around the distilled student (``estimator:
  distilled``: the run's student trained with kd's loss, α 0.5, τ 2, against the teacher), each at fairlearn's
  eps 0.01 and at a looser eps 0.03, and on Adult around scikit-learn's ``MLPClassifier`` of the student's size.

Every row is scored three ways on the test split:
- ``draw``: one draw of hard labels (fairlearn's ``predict`` with ``random_state`` = seed), as in metrics.json;
- ``expected``: the same metrics taken over the randomisation, from fairlearn's label probabilities (the
  ``pmf_<c>`` columns of the predictions): no draw noise;
- ``argmax``: the deterministic classifier that predicts the label of larger probability (``pmf_1 ≥ 0.5``), the
  way a user who cannot ship a randomised model would use the reduction.
Students are deterministic, so their three scorings are the same. Written: mean ± sample std over the seeds with
the per-seed values; per scoring, the rows that Pareto-dominate the reference peer in the mean (accuracy ≥, MAD ≤
and EO ≤, one strictly); for each eps, whether the distilled reduction dominates the logistic one at that eps;
and on Adult the rows inside the issue's goal region (accuracy ≥ 0.845, MAD ≤ 0.03, EO ≤ 0.05). Not part of the
test suite; about an hour on 2 idle cores for all three datasets.
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
from fairdistill.data.core import DatasetInfo
from fairdistill.evaluate.expected_rates import expected_rate_metrics
from fairdistill.experiment import run
from fairness_peers import ADULT_MODELS, DATASETS, GOAL, REFERENCE_PEER, dominates, in_goal
from seed_stats import merged_datasets, summarise

SCORES = ("accuracy", "recall_disparity_mad", "eo_difference", "dp_difference")
SCORINGS = ("draw", "expected", "argmax")
EO = {"kind": "expgrad", "constraint": "equalized-odds"}
LOOSE_EPS = 0.03
DISTILLED = {**EO, "estimator": "distilled", "alpha": 0.5, "tau": 2.0}

STUDENTS: list[dict[str, Any]] = [
    {"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}},
    {
        "name": "kd-eo",
        "loss": {"kind": "kd", "tau": 4.0, "alpha": 0.9},
        "weighting": {"kind": "fair-constraint", "constraint": "equalized-odds", "step": 10.0},
    },
]


def peers_for(dataset: str) -> list[dict[str, Any]]:
    """The reductions of one dataset: logistic and distilled at eps 0.01 and 0.03, the MLP at 0.01 on Adult."""
    peers: list[dict[str, Any]] = [{**EO, "estimator": "logistic"}, DISTILLED]
    peers += [
        {**EO, "estimator": "logistic", "eps": LOOSE_EPS, "name": f"expgrad-eo-logistic-eps{LOOSE_EPS:g}"},
        {**DISTILLED, "eps": LOOSE_EPS, "name": f"expgrad-eo-distilled-eps{LOOSE_EPS:g}"},
    ]
    if dataset.startswith("adult"):
        peers.append({**EO, "estimator": "mlp"})
    return peers


def setting_for(dataset: str) -> dict[str, Any]:
    """fairness_peers' data and training setting for ``dataset`` without its peers; on Adult its teacher and student
    models (mlp [256, 256] → mlp [16]), elsewhere the embedded default's."""
    setting = {k: v for k, v in DATASETS[dataset].items() if k != "peers"}
    return {**setting, **ADULT_MODELS} if dataset.startswith("adult") else setting


def config_for(dataset: str, seed: int, output: str) -> Any:
    return parse_config(
        {
            "name": f"distilled-reduction-{dataset}",
            "seed": seed,
            **setting_for(dataset),
            "methods": STUDENTS,
            "peers": peers_for(dataset),
            "select": "last",
            "output": output,
        }
    )


def dataset_info(metrics: dict[str, Any]) -> DatasetInfo:
    """The run's dataset description, rebuilt from metrics.json's ``dataset`` block."""
    block = metrics["dataset"]
    return DatasetInfo(
        name=block["name"],
        num_classes=block["num_classes"],
        class_names=tuple(block["class_names"]),
        attr_names=tuple(block["attr_names"]),
        group_names=tuple(block["group_names"]),
        modality=block["modality"],
    )


def rate_scores(
    y: np.ndarray, attr: np.ndarray, group: np.ndarray, positive: np.ndarray, info: DatasetInfo
) -> dict[str, float]:
    """Accuracy, MAD, EO and DP differences of a (possibly randomised) binary classifier from each row's
    probability of predicting the positive class (1.0 / 0.0 for hard labels), any number of attribute values
    (fairdistill's expected-rate metrics: the spread between the values for more than two)."""
    pmf = np.stack([1.0 - positive, positive], axis=1)
    scores = expected_rate_metrics(y, pmf, attr, group, info)
    return {key: float(scores[key]) for key in SCORES}


def scored_rows(run_dir: Path, metrics: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """model → {"role", "draw", "expected", "argmax"} on the test split (the students: their argmax labels)."""
    rows, info = {}, dataset_info(metrics)
    for model, entry in metrics["models"].items():
        frame = pd.read_parquet(run_dir / "predictions" / f"{model}-test.parquet")
        rows_of = (frame["y"].to_numpy(), frame["attr"].to_numpy(), frame["group"].to_numpy())
        drawn = (frame["pred"].to_numpy() == 1).astype(float)
        expected = frame["pmf_1"].to_numpy() if "pmf_1" in frame.columns else drawn
        draw = rate_scores(*rows_of, drawn, info)
        reported = entry["splits"]["test"]
        for key in ("accuracy", "recall_disparity_mad", "eo_difference"):  # the same rows as metrics.json
            assert abs(draw[key] - reported[key]) < 1e-9, (model, key, draw[key], reported[key])
        rows[model] = {
            "role": entry.get("role", "student"),
            "draw": draw,
            "expected": rate_scores(*rows_of, expected, info),
            "argmax": rate_scores(*rows_of, (expected >= 0.5).astype(float), info),
        }
    return rows


def add_scores(
    run_dir: Path,
    metrics: dict[str, Any],
    values: dict[str, dict[str, dict[str, list[float]]]],
    roles: dict[str, str],
) -> None:
    """Append one run's :func:`scored_rows` to ``values`` (model → scoring → metric → per-seed values) and record
    each model's role in ``roles``."""
    for model, row in scored_rows(run_dir, metrics).items():
        roles[model] = row["role"]
        for scoring in SCORINGS:
            for key, value in row[scoring].items():
                values.setdefault(model, {}).setdefault(scoring, {}).setdefault(key, []).append(value)


def dataset_document(dataset: str, seeds: list[int]) -> dict[str, Any]:
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    roles: dict[str, str] = {}
    seconds: list[float] = []
    for seed in seeds:
        with tempfile.TemporaryDirectory() as output:
            started = time.perf_counter()
            result = run(config_for(dataset, seed, output))
            seconds.append(time.perf_counter() - started)
            add_scores(result.run_dir, result.metrics, values, roles)
        print(f"{dataset} seed {seed}: {seconds[-1]:.0f} s", flush=True)
    models = {
        m: {"role": roles[m], **{s: {k: summarise(v) for k, v in by.items()} for s, by in by_scoring.items()}}
        for m, by_scoring in values.items()
    }
    document: dict[str, Any] = {"peers": peers_for(dataset), "run_seconds": summarise(seconds), "models": models}
    for scoring in SCORINGS:
        reference = models[REFERENCE_PEER][scoring]
        document[f"dominates_{REFERENCE_PEER}_{scoring}"] = [
            m for m, row in models.items() if m != REFERENCE_PEER and dominates(row[scoring], reference)
        ]
        same_eps = {}
        for eps, suffix in ((0.01, ""), (LOOSE_EPS, f"-eps{LOOSE_EPS:g}")):
            distilled, logistic = models[f"expgrad-eo-distilled{suffix}"], models[f"expgrad-eo-logistic{suffix}"]
            same_eps[f"{eps:g}"] = dominates(distilled[scoring], logistic[scoring])
        document[f"distilled_dominates_logistic_at_same_eps_{scoring}"] = same_eps
        if dataset.startswith("adult"):
            document[f"in_goal_region_{scoring}"] = [m for m, row in models.items() if in_goal(row[scoring])]
    return document


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(DATASETS), choices=list(DATASETS))
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "distilled_reduction.json"
    )
    parser.add_argument(
        "--merge", action="store_true", help="keep the other datasets already in --out (same seeds) and replace these"
    )
    args = parser.parse_args()
    document: dict[str, Any] = {
        "seeds": args.seeds,
        "split": "test",
        "std": "sample standard deviation over seeds",
        "select": "last",
        "students": STUDENTS,
        "goal_region_adult": GOAL,
        "machine": {"processor": platform.processor() or platform.machine(), "torch": torch.__version__},
        "datasets": merged_datasets(parser, args),
    }
    for dataset in args.datasets:
        document["datasets"][dataset] = result = dataset_document(dataset, args.seeds)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(document, indent=2) + "\n")  # after each dataset: partial results kept
        for scoring in SCORINGS:
            print(f"\n{dataset}, {scoring}: {'model':<34}" + "".join(f"{c:>24}" for c in SCORES))
            for model, row in result["models"].items():
                cells = "".join(f"{row[scoring][c]['mean']:>16.4f} ±{row[scoring][c]['std']:.4f}" for c in SCORES)
                print(f"  {model:<34}{cells}")
            print(f"  dominating {REFERENCE_PEER}: {result[f'dominates_{REFERENCE_PEER}_{scoring}'] or 'none'}")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
