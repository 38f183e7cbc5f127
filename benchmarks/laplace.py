"""Cost and accuracy of the KFAC last-layer Laplace readout (src/fairdistill/distill/laplace.py).

On a synthetic problem of the size of a transformer early exit (N = 100,000 float32 features of width D = 768,
C classes; labels drawn from a softmax of a random linear head, which is then used as the MAP head), it measures:

- the time of ``KronLaplace.fit`` plus the probit predictive on all N rows (the speed target: ≤ 2 s on 2 cores),
  and of the evidence tuning of τ (grid + 1-D refinement) separately; the median of ``--repeats`` runs;
- the peak resident memory added by fit + predictive (``ru_maxrss`` over the features alone);
- on ``--eval-rows`` rows, the largest and mean absolute error of the probit predictive against a Monte Carlo
  predictive with ``--mc-samples`` samples, with and without the projection of the common-shift direction, and
  of the MAP softmax; the share of the logit variance in the direction 1;
- the float32 probit against the float64 path on the same rows;
- the evidence lost by the quarter-decade grid against the refined τ;
- optionally (``--old``) the same timing of the implementation at git HEAD.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/laplace.py [--threads 1] [--n 100000] [--d 768] [--classes 3]

Writes ``benchmarks/results/laplace.json`` (or ``--output``). Nothing is asserted: the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from fairdistill.distill.laplace import (
    DEFAULT_TAU_GRID,
    KronLaplace,
    log_likelihood,
    tune_tau_by_evidence,
)
from records import header, store


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def synthetic(n: int, d: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(n, d, generator=g)  # standardised (centred) features, like the readout's
    weight = torch.randn(c, d, generator=g) * (2.0 / math.sqrt(d))
    bias = torch.randn(c, generator=g) * 0.3
    probs = torch.softmax(features @ weight.T + bias, 1)
    y = torch.multinomial(probs, 1, generator=g).squeeze(1)
    return features, weight, bias, y


def load_old():
    """The laplace module at git HEAD (for ``--old``), or None."""
    try:
        text = subprocess.run(
            ["git", "show", "HEAD:src/fairdistill/distill/laplace.py"],
            check=True,
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        ).stdout
    except (OSError, subprocess.CalledProcessError):
        return None
    path = Path(tempfile.mkdtemp()) / "laplace_old.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("laplace_old", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["laplace_old"] = module
    spec.loader.exec_module(module)
    return module


def errors(a: torch.Tensor, b: torch.Tensor) -> dict[str, float]:
    diff = (a - b).abs()
    return {"max": float(diff.max()), "mean": float(diff.mean())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--d", type=int, default=768)
    parser.add_argument("--classes", type=int, nargs="+", default=[3, 10])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eval-rows", type=int, default=2000)
    parser.add_argument("--mc-samples", type=int, default=10_000)
    parser.add_argument("--old", action="store_true", help="also time the implementation at git HEAD")
    parser.add_argument("--output", type=Path, default=Path(__file__).resolve().parent / "results" / "laplace.json")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    result: dict = {
        **header("Kronecker Laplace fit + probit predictive on synthetic last-layer features: time, memory, accuracy"),
        "n": args.n,
        "d": args.d,
        "classes": {},
    }
    old = load_old() if args.old else None
    for c in args.classes:
        features, weight, bias, y = synthetic(args.n, args.d, c, seed=0)
        base_rss = rss_mib()
        fit_times, predictive_times, tune_times, cpu_times = [], [], [], []
        for _ in range(args.repeats):
            cpu = time.process_time()
            start = time.perf_counter()
            laplace = KronLaplace.fit(weight, bias, features)
            fit_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            laplace.tau = tune_tau_by_evidence(laplace, features, y)
            tune_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            laplace.predictive(features, "probit")
            predictive_times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu)
        peak_extra = rss_mib() - base_rss
        entry: dict = {
            "fit_s": statistics.median(fit_times),
            "predictive_probit_s": statistics.median(predictive_times),
            "fit_plus_probit_s": statistics.median(f + p for f, p in zip(fit_times, predictive_times, strict=True)),
            "tune_evidence_s": statistics.median(tune_times),
            #: CPU seconds of fit + tune + probit (all threads): the work, less sensitive to a shared machine
            "fit_tune_probit_cpu_s": statistics.median(cpu_times),
            "load_average_1min": os.getloadavg()[0],
            "peak_rss_extra_mib": peak_extra,
            "features_mib": features.numel() * 4 / 2**20,
            "tau": laplace.tau,
        }
        # the grid alone against the refined τ
        ll = log_likelihood(laplace, features, y)
        grid_best = max(DEFAULT_TAU_GRID, key=lambda t: laplace.log_evidence(t, ll))
        entry["tau_grid"] = grid_best
        entry["evidence_gain_over_grid_nats"] = laplace.log_evidence(laplace.tau, ll) - laplace.log_evidence(
            grid_best, ll
        )
        # accuracy on a subset, at the tuned τ and at a weaker and a stronger prior
        x = features[: args.eval_rows]
        index = torch.arange(len(x))
        l64 = KronLaplace.fit(weight.double(), bias.double(), features.double())
        accuracy = {}
        for label, tau in (("tuned", laplace.tau), ("tuned/10", laplace.tau / 10), ("tuned*10", laplace.tau * 10)):
            laplace.tau = l64.tau = tau
            mc = laplace.predictive(x, "mc", args.mc_samples, seed=1, index=index, chunk=256)
            cov = laplace.logit_covariance(x[:500])
            ones = torch.full((c,), 1.0 / math.sqrt(c), dtype=torch.float64)
            shift = torch.einsum("c,bcd,d->b", ones, cov, ones) / torch.diagonal(cov, dim1=1, dim2=2).sum(1)
            accuracy[label] = {
                "tau": tau,
                "common_shift_variance_share": {"min": float(shift.min()), "max": float(shift.max())},
                "probit_projected_vs_mc": errors(laplace.predictive(x, "probit"), mc),
                "probit_unprojected_vs_mc": errors(laplace.predictive(x, "probit", project=False), mc),
                "map_softmax_vs_mc": errors(torch.softmax(laplace.logit_mean(x), 1), mc),
                "float32_vs_float64_probit": errors(
                    laplace.predictive(features, "probit"), l64.predictive(features.double(), "probit")
                )["max"],
            }
        entry["accuracy"] = accuracy
        if old is not None:
            times, cpu_times = [], []
            for _ in range(args.repeats):
                cpu = time.process_time()
                start = time.perf_counter()
                fitted = old.KronLaplace.fit(weight, bias, features)
                fitted.tau = laplace.tau
                fitted.predictive(features, "probit")
                times.append(time.perf_counter() - start)
                cpu_times.append(time.process_time() - cpu)
            entry["old_fit_plus_probit_s"] = statistics.median(times)
            entry["old_fit_plus_probit_cpu_s"] = statistics.median(cpu_times)
            entry["old_peak_rss_extra_mib"] = rss_mib() - base_rss
        result["classes"][str(c)] = entry
        print(json.dumps({c: entry}, indent=1), flush=True)
    store(args.output, result)


if __name__ == "__main__":
    main()
