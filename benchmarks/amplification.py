"""Cost of the teacher→student amplification intervals (paired bootstrap) as the test split grows.

    .venv/bin/python benchmarks/amplification.py [--sizes 1000 5000 20000] [--resamples 1000]

For 10 classes and 2 attribute values, random predictions (80% correct) of one teacher and one student: seconds
for ``amplification(..., resamples)`` (median of 3). Writes ``benchmarks/results/amplification.json``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from fairdistill.evaluate.amplification import LabelArrays, amplification


def seconds_for(n: int, resamples: int, repeats: int) -> list[float]:
    rng = np.random.default_rng(5)
    y, attr = rng.integers(0, 10, n), rng.integers(0, 2, n)
    labels = LabelArrays.of(y, attr, y * 2 + attr, 10, 2, 20)
    pred = np.where(rng.random(n) < 0.8, y, rng.integers(0, 10, n))
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        amplification(labels, [pred], [np.roll(pred, 1)], resamples=resamples)
        times.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 5000, 20000])
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "amplification.json")
    args = parser.parse_args()
    result = {"resamples": args.resamples, "classes": 10, "attrs": 2, "sizes": {}}
    for n in args.sizes:
        times = seconds_for(n, args.resamples, args.repeats)
        result["sizes"][str(n)] = {
            "seconds_median": round(statistics.median(times), 4),
            "seconds": [round(t, 4) for t in times],
        }
        print(f"n={n}: {statistics.median(times):.3f} s for {args.resamples} resamples", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
