"""The deterministic classifiers inside fairlearn's ExponentiatedGradient-EO (logistic peer) on Adult → JSON.

    .venv/bin/python benchmarks/expgrad_members.py [--seeds 0 1 2] [--datasets adult-sex adult-race]
                                                   [--students benchmarks/results/distilled_reduction.json]
                                                   [--out benchmarks/results/expgrad_members.json]

ExponentiatedGradient returns a *randomised* classifier: a mixture of the base classifiers it fitted. This
benchmark fits the fairness_peers logistic peer with the run's own code (``evaluate.peers.exponentiated_gradient``:
``LogisticRegression(max_iter=1000, random_state=seed)``, ``EqualizedOdds``, eps 0.01, 50 iterations, on the same
train split and features) and
scores on the test split, by fairdistill's expected-rate metrics:

- the mixture by its expected rates (checked equal, to 1e-9, to the ``expected`` row of the same peer in
  ``--students``, so it is the same fit) and by its argmax labels;
- every base classifier the mixture uses, with its weight, and a plain logistic regression without a constraint.

Then, per seed, it asks whether the deterministic students of ``--students`` (kd and kd + fair-constraint, from
``benchmarks/distilled_reduction.py``, same splits and seeds) Pareto-dominate each of these deterministic
classifiers and the mixture on (accuracy ↑, MAD ↓, EO ↓). Not part of the test suite; ~2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import platform
from pathlib import Path
from typing import Any

import numpy as np
import torch

from distilled_reduction import rate_scores
from fairdistill.api import load_data
from fairdistill.config import PeerConfig
from fairdistill.evaluate.peers import PeerPlan, base_estimator, exponentiated_gradient, features

SCORES = ("accuracy", "recall_disparity_mad", "eo_difference", "dp_difference")
PARETO = ("accuracy", "recall_disparity_mad", "eo_difference")
PROTECTED = {"adult-sex": "sex", "adult-race": "race"}
PEER = "expgrad-eo-logistic"
STUDENTS = ("kd", "kd-eo")
RESULTS = Path(__file__).resolve().parent / "results"


def scores(split: Any, info: Any, positive: np.ndarray) -> dict[str, float]:
    """Expected-rate metrics of a binary classifier on ``split`` from each row's probability of predicting 1."""
    return rate_scores(split.y.numpy(), split.attr.numpy(), split.group.numpy(), positive, info)


def dominates(row: dict[str, float], other: dict[str, float]) -> bool:
    """Accuracy ≥ and MAD, EO ≤ ``other``'s, one strictly."""
    at_least = row["accuracy"] >= other["accuracy"] and all(row[k] <= other[k] for k in PARETO[1:])
    return at_least and any(row[k] != other[k] for k in PARETO)


def seed_document(dataset: str, seed: int, position: int, students: dict[str, Any]) -> dict[str, Any]:
    """One seed's fit, its members and the verdicts; ``position``: the seed's place in ``students``' values."""
    splits = load_data("adult", protected=PROTECTED[dataset])
    plan = PeerPlan(PEER, "peer", PeerConfig(kind="expgrad", constraint="equalized-odds"))  # a run's defaults
    x_train, y_train = features(splits.train), splits.train.y.numpy()
    reduction = exponentiated_gradient(plan, seed)
    reduction.fit(x_train, y_train, sensitive_features=splits.train.attr.numpy())
    test, info = splits.test, splits.info
    x_test = features(test)
    positive = np.asarray(reduction._pmf_predict(x_test), dtype=np.float64)[:, 1]
    mixture = scores(test, info, positive)
    reported = students["models"][PEER]["expected"]
    for key in PARETO:  # the same fit as the peer of the students' runs
        assert abs(mixture[key] - reported[key]["values"][position]) < 1e-9, (dataset, seed, key)
    weights = reduction.weights_
    members = [
        {
            "weight": float(weights[h]),
            **scores(test, info, np.asarray(reduction.predictors_[h].predict(x_test), dtype=np.float64)),
        }
        for h in weights.index
        if weights[h] > 0
    ]
    plain = base_estimator(plan, seed).fit(x_train, y_train)
    deterministic = {
        "argmax": scores(test, info, (positive >= 0.5).astype(np.float64)),
        "heaviest_member": max(members, key=lambda m: m["weight"]),
        "plain_logistic": scores(test, info, np.asarray(plain.predict(x_test), dtype=np.float64)),
    }
    student_rows = {
        name: {key: students["models"][name]["draw"][key]["values"][position] for key in SCORES} for name in STUDENTS
    }
    verdicts = {
        name: {
            "dominates_mixture": dominates(row, mixture),
            "dominates_argmax": dominates(row, deterministic["argmax"]),
            "dominates_plain_logistic": dominates(row, deterministic["plain_logistic"]),
            "dominates_members": [dominates(row, member) for member in members],
        }
        for name, row in student_rows.items()
    }
    return {
        "mixture_size": len(members),
        "predictors_fitted": len(weights),
        "mixture_expected": mixture,
        **deterministic,
        "members": members,
        "students": student_rows,
        "verdicts": verdicts,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--datasets", nargs="+", default=list(PROTECTED), choices=list(PROTECTED))
    parser.add_argument("--students", type=Path, default=RESULTS / "distilled_reduction.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "expgrad_members.json")
    args = parser.parse_args()
    students = json.loads(args.students.read_text())
    missing = [seed for seed in args.seeds if seed not in students["seeds"]]
    if missing:
        parser.error(f"--students {args.students} has seeds {students['seeds']}, not {missing}")
    document: dict[str, Any] = {
        "seeds": args.seeds,
        "split": "test",
        "peer": PEER,
        "students_from": str(args.students.name),
        "scoring": "expected rates (hard labels for the deterministic classifiers)",
        "machine": {"processor": platform.processor() or platform.machine(), "torch": torch.__version__},
        "datasets": {},
    }
    for dataset in args.datasets:
        per_seed = {
            str(seed): seed_document(dataset, seed, students["seeds"].index(seed), students["datasets"][dataset])
            for seed in args.seeds
        }
        document["datasets"][dataset] = per_seed
        for seed, entry in per_seed.items():
            print(f"{dataset} seed {seed}: mixture of {entry['mixture_size']} of {entry['predictors_fitted']}")
            rows = [("mixture (expected)", entry["mixture_expected"]), ("argmax", entry["argmax"])]
            rows += [(f"member w={m['weight']:.3f}", m) for m in entry["members"]]
            rows += [("plain logistic", entry["plain_logistic"])]
            rows += [(name, row) for name, row in entry["students"].items()]
            for label, row in rows:
                print(f"  {label:22s}" + "  ".join(f"{row[k]:.4f}" for k in SCORES))
            for name, verdict in entry["verdicts"].items():
                print(f"  {name}: {verdict}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(document, indent=1) + "\n")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
