"""Randomised mixtures of a student and its ThresholdOptimizer-post-processed self, scored from a
constraint_sweep result without rerunning anything (issue 13's goal region, Adult-sex).

A mixture that answers with the post-processed model with probability p and with the student otherwise has, in
expectation, every per-group rate equal to (1 − p)·rate(student) + p·rate(post-processed): accuracy, and the
male − female gaps in true- and false-positive rate, mix linearly. With two attribute values and two classes the
README's metrics follow from the gaps: EO difference = max(|TPR gap|, |FPR gap|) and recall-disparity MAD =
(|TPR gap| + |FPR gap|) / 2 (the script checks this against every stored MAD before using it). The
post-processed rows' rates are those of their recorded draw (ThresholdOptimizer is itself randomised).

**p is read off the test split here**, so these figures bound from above what a mixture whose p is chosen on
validation would reach on test; they say whether the student–threshold frontier passes through the goal region
at all, not that a run reaches it.

    cd benchmarks && ../.venv/bin/python threshold_mixture.py [--sweep results/constraint_sweep_seeds10.json]

Writes ``results/threshold_mixture.json`` (or ``--out``); prints the table. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from fairness_peers import GOAL, within_goal
from records import header, store
from seed_stats import summarise, t_interval

RESULTS = Path(__file__).resolve().parent / "results"
SHARES = (0.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.0)
POSTPROCESSED = "+threshold"


def mixture(student: dict[str, Any], thresholded: dict[str, Any], share: float) -> dict[str, list[float]]:
    """Per seed, the expected accuracy, MAD, EO difference and rate gaps of the ``share`` mixture."""

    def mixed(key: str) -> list[float]:
        pairs = zip(student[key]["values"], thresholded[key]["values"], strict=True)
        return [(1.0 - share) * a + share * b for a, b in pairs]

    tpr, fpr = mixed("tpr_gap"), mixed("fpr_gap")
    return {
        "accuracy": mixed("accuracy"),
        "recall_disparity_mad": [(abs(t) + abs(f)) / 2.0 for t, f in zip(tpr, fpr, strict=True)],
        "eo_difference": [max(abs(t), abs(f)) for t, f in zip(tpr, fpr, strict=True)],
        "tpr_gap": tpr,
        "fpr_gap": fpr,
    }


def check_two_group_formulas(models: dict[str, Any]) -> None:
    """The MAD and EO of every stored row from its gaps, as :func:`mixture` computes them (share 0)."""
    for name, row in models.items():
        if "tpr_gap" not in row:
            continue
        derived = mixture(row, row, 0.0)
        for key in ("recall_disparity_mad", "eo_difference"):
            for ours, stored in zip(derived[key], row[key]["values"], strict=True):
                if abs(ours - stored) > 1e-9:
                    raise SystemExit(f"{name}.{key}: {stored} stored, {ours} from the gaps; not a two-group result")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--sweep", type=Path, default=RESULTS / "constraint_sweep_seeds10.json")
    parser.add_argument("--out", type=Path, default=RESULTS / "threshold_mixture.json")
    args = parser.parse_args()
    sweep = json.loads(args.sweep.read_text(encoding="utf-8"))
    models = sweep["models"]
    check_two_group_formulas(models)
    mixtures: dict[str, Any] = {}
    for name in models:
        if name.endswith(POSTPROCESSED) or name + POSTPROCESSED not in models:
            continue
        rows = {}
        for share in SHARES:
            per_seed = mixture(models[name], models[name + POSTPROCESSED], share)
            rows[f"{share:g}"] = {
                **{k: {**summarise(v), "ci95": t_interval(v)} for k, v in per_seed.items()},
                "seeds_in_goal": sum(map(within_goal, *(per_seed[k] for k in GOAL))),
                "mean_in_goal": within_goal(*(sum(per_seed[k]) / len(per_seed[k]) for k in GOAL)),
            }
        mixtures[name] = rows
    result = {
        **header("expected rates of student / student+threshold mixtures, from a constraint_sweep result"),
        "sweep": args.sweep.name,
        "seeds": sweep["seeds"],
        "goal_region": GOAL,
        "share": "probability of answering with the threshold-post-processed model (read off test: an upper bound)",
        "mixtures": mixtures,
    }
    store(args.out, result)
    print(f"{'student':<16}{'p':>6}{'accuracy':>10}{'MAD':>8}{'EO':>8}  seeds in region")
    for name, rows in mixtures.items():
        for share, row in rows.items():
            means = [row[k]["mean"] for k in GOAL]
            mark = " (mean inside)" if row["mean_in_goal"] else ""
            print(f"{name:<16}{share:>6}" + "".join(f"{m:>9.4f}" for m in means) + f"  {row['seeds_in_goal']}{mark}")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
