"""Benchmark of the debiasing methods: both built-in configs with several seeds → JSON.

    python benchmarks/methods.py [--seeds 0 1 2] [--configs default adult] [--out benchmarks/results/methods.json]

For every config and model: test accuracy and worst-group accuracy (mean ± std over seeds), recall-disparity MAD
and equalised-odds difference, plus each run's wall time. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

from fairdistill.config import load_config
from fairdistill.experiment import run

CONFIGS = Path(__file__).resolve().parents[1] / "src" / "fairdistill" / "configs"
KEYS = ("accuracy", "worst_group_accuracy", "recall_disparity_mad", "eo_difference")


def summarise(values: list[float]) -> dict[str, float]:
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--configs", nargs="+", default=["default", "adult"])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "methods.json")
    args = parser.parse_args()
    result: dict = {"seeds": args.seeds, "configs": {}}
    with tempfile.TemporaryDirectory() as output:
        for name in args.configs:
            per_model: dict[str, dict[str, list[float]]] = {}
            seconds = []
            for seed in args.seeds:
                config = load_config(CONFIGS / f"{name}.yaml", [f"seed={seed}", f"output={output}"])
                started = time.perf_counter()
                metrics = run(config).metrics
                seconds.append(time.perf_counter() - started)
                for model, entry in metrics["models"].items():
                    test = entry["splits"]["test"]
                    for key in KEYS:
                        per_model.setdefault(model, {}).setdefault(key, []).append(test[key])
            result["configs"][name] = {
                "run_seconds": summarise(seconds),
                "models": {m: {k: summarise(v) for k, v in values.items()} for m, values in per_model.items()},
            }
            print(f"{name}: done in {sum(seconds):.0f} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    for name, entry in result["configs"].items():
        print(f"\n{name} (test, mean ± std over seeds {args.seeds})")
        print(f"{'model':<16}{'accuracy':>18}{'worst-group':>18}{'MAD':>18}{'EO diff':>18}")
        for model, values in entry["models"].items():
            cells = "".join(f"{values[k]['mean']:>10.3f} ± {values[k]['std']:.3f}" for k in KEYS)
            print(f"{model:<16}{cells}")
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
