"""ExponentiatedGradient-EO with a relaxed bound, around the distilled student and a logistic regression → JSON.

    .venv/bin/python benchmarks/relaxed_reduction.py [--seeds 0 1 ... 9] [--bounds 0.02 0.03]
                             [--dataset adult-sex | adult-race | colored-mnist]
                             [--out benchmarks/results/relaxed_reduction.json]

fairlearn's reductions meet ``EqualizedOdds(difference_bound=d)``: on the train split every attribute value's
E[h | a, y] stays within d of the pooled E[h | y] (d = 0.01 by default; ``eps`` does not relax it). Issue 13's
goal region (accuracy ≥ 0.845, MAD ≤ 0.03, EO ≤ 0.05) allows larger gaps than the default bound buys, so a
reduction relaxed toward it may keep more accuracy. On Adult-sex men are ~85% of the train rows with income > 50K
and ~62% of the others, so a bound d allows a true-positive-rate gap of about d / 0.85 and a false-positive-rate
gap of about d / 0.62 between men and women: d = 0.02 allows 0.024 and 0.032 (MAD ≤ 0.028, EO ≤ 0.032 on train),
d = 0.03 allows 0.035 and 0.049 (EO within the goal, MAD up to 0.042). Both bounds were fixed before any run.

Per seed one fairdistill run on Adult (protected sex) with the fairness_peers teacher and student (mlp [256, 256]
→ mlp [16], ``select: last``), the best deterministic student of constraint_sweep.py (kd τ 4 + fair-constraint,
equal opportunity, step 10), and ExponentiatedGradient-EO fitted on the run's train split around
``LogisticRegression`` (the reference peer, default bound) and, for each d, around the distilled student
(``estimator: distilled``, kd α 0.5, τ 2) and around the logistic regression. Each row scored on test by one draw,
by its expected rates over the randomisation and by its argmax (distilled_reduction.py's scorings); per scoring,
mean with its 95% t interval over the seeds, the seeds inside the goal region, and each row's per-seed
difference from the reference peer. The JSON is rewritten after every seed. Not part of the test suite; about
three minutes a seed on 2 idle cores (``--dataset adult-race``, protected race, five values: about four; written to
``results/relaxed_reduction_adult_race.json`` for seeds 0–2; ``--dataset colored-mnist``: fairness_peers' setting,
the embedded default's CNNs, the logistic regression on the pixels, no goal region, about ten minutes a seed).
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from constraint_sweep import paired_difference
from distilled_reduction import SCORINGS, add_scores, setting_for
from fairdistill.config import parse_config
from fairdistill.experiment import run
from fairness_peers import GOAL, REFERENCE_PEER, dominates, in_goal, within_goal
from seed_stats import summarise, t_interval

EO = {"kind": "expgrad", "constraint": "equalized-odds"}
DISTILLED = {**EO, "estimator": "distilled", "alpha": 0.5, "tau": 2.0}
STUDENT = {
    "name": "tau4-eopp10",
    "loss": {"kind": "kd", "tau": 4.0, "alpha": 0.9},
    "weighting": {"kind": "fair-constraint", "constraint": "equal-opportunity", "step": 10.0},
}


def peers_for(bounds: list[float]) -> list[dict[str, Any]]:
    """The reference peer, the distilled reduction at fairlearn's bound, and both estimators at each bound."""
    peers: list[dict[str, Any]] = [{**EO, "estimator": "logistic"}, DISTILLED]
    for bound in bounds:
        peers.append({**DISTILLED, "difference_bound": bound, "name": f"expgrad-eo-distilled-d{bound:g}"})
        logistic = {**EO, "estimator": "logistic", "difference_bound": bound}
        peers.append({**logistic, "name": f"expgrad-eo-logistic-d{bound:g}"})
    return peers


def has_goal(dataset: str) -> bool:
    """Issue 13's goal region is stated for Adult; colored-mnist rows are compared with the reference only."""
    return dataset.startswith("adult")


def config_for(seed: int, output: str, bounds: list[float], dataset: str = "adult-sex") -> Any:
    """One run: fairness_peers' setting for ``dataset`` (on Adult its teacher and student models), the student,
    and :func:`peers_for`."""
    return parse_config(
        {
            "name": f"relaxed-reduction-{dataset}",
            "seed": seed,
            **setting_for(dataset),
            "methods": [STUDENT],
            "peers": peers_for(bounds),
            "select": "last",
            "output": output,
        }
    )


def document(
    values: dict[str, dict[str, dict[str, list[float]]]], roles: dict[str, str], goal: bool = True
) -> dict[str, Any]:
    """Per model and scoring: each metric's summary and t interval, and (``goal``) the seeds in the goal region;
    per scoring, the rows dominating the reference in the mean, (``goal``) those inside the region, and the paired
    differences."""
    models: dict[str, Any] = {}
    for model, by_scoring in values.items():
        models[model] = {"role": roles[model]}
        for scoring, by_key in by_scoring.items():
            row: dict[str, Any] = {k: {**summarise(v), "ci95": t_interval(v)} for k, v in by_key.items()}
            if goal:
                row["seeds_in_goal"] = sum(map(within_goal, *(by_key[k] for k in GOAL)))
            models[model][scoring] = row
    result: dict[str, Any] = {"models": models}
    for scoring in SCORINGS:
        reference = models[REFERENCE_PEER][scoring]
        result[f"dominates_{REFERENCE_PEER}_{scoring}"] = [
            m for m, row in models.items() if m != REFERENCE_PEER and dominates(row[scoring], reference)
        ]
        if goal:
            result[f"in_goal_region_{scoring}"] = [m for m, row in models.items() if in_goal(row[scoring])]
        result[f"minus_{REFERENCE_PEER}_{scoring}"] = {
            m: {k: paired_difference(values[m][scoring][k], values[REFERENCE_PEER][scoring][k]) for k in GOAL}
            for m in values
            if m != REFERENCE_PEER
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--bounds", type=float, nargs="+", default=[0.02, 0.03])
    parser.add_argument("--dataset", choices=["adult-sex", "adult-race", "colored-mnist"], default="adult-sex")
    parser.add_argument(
        "--out", type=Path, default=Path(__file__).resolve().parent / "results" / "relaxed_reduction.json"
    )
    args = parser.parse_args()
    values: dict[str, dict[str, dict[str, list[float]]]] = {}
    roles: dict[str, str] = {}
    seconds: list[float] = []
    for done, seed in enumerate(args.seeds, start=1):
        with tempfile.TemporaryDirectory() as output:
            started = time.perf_counter()
            result = run(config_for(seed, output, args.bounds, args.dataset))
            seconds.append(time.perf_counter() - started)
            add_scores(result.run_dir, result.metrics, values, roles)
        print(f"seed {seed}: {seconds[-1]:.0f} s", flush=True)
        written = {
            "dataset": args.dataset,
            "seeds": args.seeds[:done],
            "bounds": args.bounds,
            "split": "test",
            "std": "sample standard deviation over seeds",
            "select": "last",
            "student": STUDENT,
            "peers": peers_for(args.bounds),
            "goal_region": GOAL if has_goal(args.dataset) else None,
            "machine": {"processor": platform.processor() or platform.machine(), "torch": torch.__version__},
            "run_seconds": summarise(seconds),
            **document(values, roles, has_goal(args.dataset)),
        }
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(written, indent=2) + "\n")
    for scoring in SCORINGS:
        print(f"\n{scoring}: {'model':<30}" + "".join(f"{k:>26}" for k in GOAL) + "   in goal")
        for model, row in written["models"].items():
            cells = "".join(f"{row[scoring][k]['mean']:>18.4f} ±{row[scoring][k]['std']:.4f}" for k in GOAL)
            inside = f"{row[scoring]['seeds_in_goal']}/{len(args.seeds)}" if "seeds_in_goal" in row[scoring] else "-"
            print(f"  {model:<30}{cells}   {inside}")
    print(f"written: {args.out}")


if __name__ == "__main__":
    main()
