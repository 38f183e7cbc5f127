"""Summaries over seeds shared by the benchmark scripts (imported as ``seed_stats`` from the scripts' folder)."""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any


def summarise(values: list[float]) -> dict[str, float | list[float]]:
    """Mean, sample standard deviation (0 for one value) and the values themselves."""
    return {
        "mean": statistics.fmean(values),
        "std": statistics.stdev(values) if len(values) > 1 else 0.0,
        "values": values,
    }


def t_interval(values: list[float], level: float = 0.95) -> list[float] | None:
    """The Student-t confidence interval of the mean over seeds (None for one seed)."""
    from scipy import stats

    if len(values) < 2:
        return None
    half = float(stats.t.ppf(0.5 + level / 2, len(values) - 1)) * statistics.stdev(values) / len(values) ** 0.5
    mean = statistics.fmean(values)
    return [mean - half, mean + half]


def kept_datasets(out: Path, seeds: list[int], rerun: list[str]) -> dict[str, Any]:
    """For ``--merge``: the per-dataset results already in ``out`` that are not rerun (none without a file);
    ValueError when that file holds other seeds, whose results would not be comparable."""
    if not out.is_file():
        return {}
    previous = json.loads(out.read_text())
    if previous.get("seeds") != seeds:
        raise ValueError(f"--merge: {out} holds seeds {previous.get('seeds')}, not {seeds}")
    return {name: result for name, result in previous.get("datasets", {}).items() if name not in rerun}


def merged_datasets(parser: argparse.ArgumentParser, args: argparse.Namespace) -> dict[str, Any]:
    """The starting ``datasets`` of a benchmark's JSON: with ``--merge`` those of ``args.out`` not rerun (see
    :func:`kept_datasets`; other seeds end the program with the parser's error), else none."""
    if not args.merge:
        return {}
    try:
        return kept_datasets(args.out, args.seeds, args.datasets)
    except ValueError as error:
        parser.error(str(error))
