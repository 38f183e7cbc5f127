"""Summaries over seeds shared by the benchmark scripts (imported as ``seed_stats`` from the scripts' folder)."""

from __future__ import annotations

import statistics


def summarise(values: list[float]) -> dict[str, float | list[float]]:
    """Mean, sample standard deviation (0 for one value) and the values themselves."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }
