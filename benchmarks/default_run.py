"""The embedded default run (``fairdistill run`` with no CONFIG) over several seeds → JSON.

    .venv/bin/python benchmarks/default_run.py [--seeds 0 1 2] [--set key.path=value ...]
                                               [--out benchmarks/results/default_run.json]

Runs the default config once per seed, one after the other (about 2 minutes each on 2 idle CPU cores), and
writes, for every model (the teacher and each student): test accuracy, worst-group accuracy and recall-disparity
MAD as mean ± sample std over the seeds (with the per-seed values), plus the teacher's selected epoch per seed
and each run's wall time. The README quotes these figures. Float results differ between CPUs (and between
torch builds), so another machine gives somewhat different digits; the qualitative claims are what
``tests/integration/test_default_claims.py`` checks. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import platform
import tempfile
import time
from pathlib import Path

import torch

from fairdistill.config import load_config
from fairdistill.experiment import run
from seed_stats import summarise

DEFAULT = Path(__file__).resolve().parents[1] / "src" / "fairdistill" / "configs" / "default.yaml"
KEYS = {"accuracy": "accuracy", "worst_group_accuracy": "worst_group_accuracy", "mad": "recall_disparity_mad"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="extra config override, as `fairdistill run --set` (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "default_run.json")
    args = parser.parse_args()
    per_model: dict[str, dict[str, list[float]]] = {}
    selected: list[int] = []
    seconds: list[float] = []
    with tempfile.TemporaryDirectory() as output:
        for seed in args.seeds:
            config = load_config(DEFAULT, [*args.overrides, f"seed={seed}", f"output={output}"])
            started = time.perf_counter()
            metrics = run(config).metrics
            seconds.append(time.perf_counter() - started)
            for model, entry in metrics["models"].items():
                test = entry["splits"]["test"]
                for key, field in KEYS.items():
                    per_model.setdefault(model, {}).setdefault(key, []).append(test[field])
            selected.append(metrics["models"]["teacher"]["selected_epoch"])
            print(f"seed {seed}: {seconds[-1]:.0f} s, teacher selected epoch {selected[-1]}", flush=True)
    result = {
        "config": "default (embedded)",
        "overrides": args.overrides,
        "seeds": args.seeds,
        "split": "test",
        "std": "sample standard deviation over seeds",
        "machine": {
            "processor": platform.processor() or platform.machine(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
        },
        "run_seconds": summarise(seconds),
        "teacher_selected_epochs": selected,
        "models": {m: {k: summarise(v) for k, v in values.items()} for m, values in per_model.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\ndefault run (test, mean ± std over seeds {args.seeds}; teacher selected epochs {selected})")
    print(f"{'model':<16}{'accuracy':>16}{'worst-group':>16}{'MAD':>16}")
    for model, values in result["models"].items():
        print(f"{model:<16}" + "".join(f"{values[k]['mean']:>8.3f} ± {values[k]['std']:.3f}" for k in KEYS))
    print(f"\nwritten: {args.out}")


if __name__ == "__main__":
    main()
