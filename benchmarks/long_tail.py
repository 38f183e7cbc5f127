"""Benchmark of distillation on long-tailed data: configs/long-tail-mnist.yaml over several seeds → JSON.

    OMP_NUM_THREADS=1 python benchmarks/long_tail.py [--seeds 0 1 2] [--set KEY=VALUE ...]
                                                     [--out benchmarks/results/long_tail.json]

Colored MNIST with the ten digits as classes, the train split long-tailed (imbalance 100: 300 … 3 images per
digit), val/test balanced. For every model: test accuracy and head / medium / tail accuracy (thirds of the
classes by train count), mean ± sample std over the seeds with the per-seed values; the per-seed differences of
kd against erm and of each mitigation against kd and erm, with whether the sign holds in every seed and a 95% Student-t
interval over the seeds. Prints the table and those comparisons. ``--rescore FILE`` recomputes the comparisons of
an earlier result from its per-seed values. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from fairdistill.config import load_config
from fairdistill.experiment import run
from seed_stats import summarise, t_interval

CONFIG = Path(__file__).resolve().parents[1] / "src" / "fairdistill" / "configs" / "long-tail-mnist.yaml"
KEYS = ("accuracy", "head_accuracy", "medium_accuracy", "tail_accuracy")
TITLES = {"accuracy": "overall", "head_accuracy": "head", "medium_accuracy": "medium", "tail_accuracy": "tail"}
#: The student compared against, for each comparison: kd against erm, every mitigation against kd and erm.
BASELINES = ("erm", "kd")


def verdict(differences: list[float]) -> str:
    """How a per-seed difference (method − baseline) behaves: its sign in every seed, or mixed."""
    if all(d > 0 for d in differences):
        return "higher in every seed"
    if all(d < 0 for d in differences):
        return "lower in every seed"
    if all(d == 0 for d in differences):
        return "equal in every seed"
    return "mixed across seeds"


def compare(per_seed: dict[str, dict[str, list[float]]], method: str, baseline: str) -> dict[str, Any]:
    out = {}
    for key in KEYS:
        diffs = [a - b for a, b in zip(per_seed[method][key], per_seed[baseline][key], strict=True)]
        out[key] = {**summarise(diffs), "ci95": t_interval(diffs), "verdict": verdict(diffs)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--set", dest="overrides", action="append", default=[], help="a config override")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "long_tail.json")
    parser.add_argument(
        "--rescore", type=Path, help="recompute the comparisons of an earlier --out file from its per-seed values"
    )
    args = parser.parse_args()
    if args.rescore is not None:
        result = json.loads(args.rescore.read_text())
        per_seed = {m: {k: v["values"] for k, v in values.items()} for m, values in result["models"].items()}
        result["comparisons"] = comparisons_of(per_seed)
        args.rescore.write_text(json.dumps(result, indent=2) + "\n")
        print_comparisons(result["comparisons"])
        return
    with tempfile.TemporaryDirectory() as output:
        overrides = [f"seeds={json.dumps(args.seeds)}", f"output={output}", f"cache_dir={output}/cache"]
        config = load_config(CONFIG, [*overrides, *args.overrides])
        started = time.perf_counter()
        metrics = run(config).metrics
        seconds = time.perf_counter() - started
    per_seed: dict[str, dict[str, list[float]]] = {}
    for model, entry in metrics["models"].items():
        runs = entry.get("seeds") or {str(args.seeds[0]): {"splits": entry["splits"]}}
        for seed in map(str, args.seeds):
            test = runs[seed]["splits"]["test"]
            for key in KEYS:
                per_seed.setdefault(model, {}).setdefault(key, []).append(test[key])
    comparisons = comparisons_of(per_seed)
    result = {
        "config": str(CONFIG.relative_to(CONFIG.parents[3])),
        "overrides": args.overrides,
        "seeds": args.seeds,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "run_seconds": seconds,
        "train_class_counts": metrics["dataset"]["provenance"].get("long_tail", {}).get("train_class_counts"),
        "frequency_groups": metrics["dataset"]["provenance"].get("long_tail", {}).get("frequency_groups"),
        "split": "test (class-balanced)",
        "models": {m: {k: summarise(v) for k, v in values.items()} for m, values in per_seed.items()},
        "comparisons": comparisons,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")

    print(f"long-tail-mnist, test split, mean ± std over seeds {args.seeds} ({seconds / 60:.1f} min)")
    print(f"{'model':<12}" + "".join(f"{TITLES[k]:>18}" for k in KEYS))
    for model, values in result["models"].items():
        print(f"{model:<12}" + "".join(f"{values[k]['mean']:>10.3f} ± {values[k]['std']:.3f}" for k in KEYS))
    print_comparisons(comparisons)
    print(f"\nwritten: {args.out}")


def comparisons_of(per_seed: dict[str, dict[str, list[float]]]) -> dict[str, Any]:
    """kd against erm, and every other student against kd and erm."""
    students = [m for m in per_seed if m != "teacher"]
    comparisons = {"kd - erm": compare(per_seed, "kd", "erm")}
    for method in (m for m in students if m not in BASELINES):
        for baseline in BASELINES:
            comparisons[f"{method} - {baseline}"] = compare(per_seed, method, baseline)
    return comparisons


def print_comparisons(comparisons: dict[str, Any]) -> None:
    print("\nper-seed differences (mean ± std [95% t-interval]; sign across seeds)")
    for name, by_key in comparisons.items():
        cells = []
        for key, v in by_key.items():
            interval = "" if v["ci95"] is None else f" [{v['ci95'][0]:+.3f}, {v['ci95'][1]:+.3f}]"
            cells.append(f"{TITLES[key]} {v['mean']:+.3f} ± {v['std']:.3f}{interval} ({v['verdict']})")
        print(f"{name:<20}" + "; ".join(cells))


if __name__ == "__main__":
    main()
