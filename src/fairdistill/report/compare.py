"""What ``fairdistill compare`` adds to the two metrics tables: how the configs differ, and paired-bootstrap
intervals of B − A over the examples both runs predicted, so that "better" / "worse" means more than noise.

This module reads the two runs (config.yaml, the saved predictions) and says how the intervals were made; the
intervals themselves come from :func:`~fairdistill.evaluate.run_comparison.paired_run_intervals` (the runs'
predictions matched example by example, one set of examples per resample for run A's model and run B's). With
several seeds, seed k of A is paired with seed k of B when both runs have the same seeds; otherwise the first seed
of each run is used.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from fairdistill.errors import FairdistillError
from fairdistill.evaluate.run_comparison import paired_run_intervals
from fairdistill.run_record import changed_fields
from fairdistill.rundir import predictions_dir, read_predictions, run_seeds

#: The metrics compare gives intervals for (the others show "no interval").
INTERVAL_METRICS: tuple[str, ...] = (
    "accuracy",
    "worst_group_accuracy",
    "recall_disparity_mad",
    "eo_difference",
    "dp_difference",
)
RESAMPLES = 1000
CONFIDENCE = 0.95


@dataclass(frozen=True)
class PairedIntervals:
    """model → metric key → :func:`~fairdistill.evaluate.amplification.paired_bootstrap` entry (``ci_low``,
    ``ci_high``, …); ``note`` says how they were computed, or why there are none."""

    by_model: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    note: str = ""
    confidence: float = CONFIDENCE


def config_differences(run_a: Path, run_b: Path) -> list[str]:
    """``path: A's value → B's value`` for every config field that differs (config.yaml of each run)."""
    configs = []
    for label, run in (("A", run_a), ("B", run_b)):
        path = run / "config.yaml"
        try:
            configs.append(yaml.safe_load(path.read_text()))
        except (OSError, yaml.YAMLError) as exc:
            return [f"(config of {label} not readable: {path}: {type(exc).__name__})"]
    return changed_fields(configs[0], configs[1])


def paired_intervals(
    run_a: Path,
    metrics_a: dict[str, Any],
    run_b: Path,
    metrics_b: dict[str, Any],
    split: str = "test",
    *,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
    seed: int = 0,
) -> PairedIntervals:
    """Intervals of B − A for every model both runs have; none (with the reason in ``note``) when the
    predictions are missing, damaged or not on the same examples."""
    seeds_a, seeds_b = run_seeds(metrics_a), run_seeds(metrics_b)
    pairs = list(zip(seeds_a, seeds_b, strict=True)) if seeds_a == seeds_b else [(seeds_a[0], seeds_b[0])]
    names = [name for name in metrics_a["models"] if name in metrics_b["models"]]
    by_model: dict[str, dict[str, dict[str, Any]]] = {}
    try:
        for name in names:
            frames_a = [_frame(run_a, metrics_a, s, name, split) for s, _ in pairs]
            frames_b = [_frame(run_b, metrics_b, s, name, split) for _, s in pairs]
            by_model[name] = paired_run_intervals(
                frames_a,
                frames_b,
                metrics_a["dataset"],
                metrics=INTERVAL_METRICS,
                resamples=resamples,
                confidence=confidence,
                seed=seed,
            )
    except FairdistillError as exc:
        return PairedIntervals(note=f"no intervals, so no better / worse: {exc}", confidence=confidence)
    used = (
        "seeds " + ", ".join(str(s) for s, _ in pairs)
        if seeds_a == seeds_b and len(seeds_a) > 1
        else (f"seed {pairs[0][0]} of A and seed {pairs[0][1]} of B")
    )
    level = round(100 * confidence)
    note = (
        f"B vs A: better / worse only where the {level}% paired-bootstrap interval of B − A ({resamples:,} "
        f"resamples of the {split} examples, both runs' predictions matched by example; {used}) excludes 0; "
        "otherwise no clear difference; no interval: a metric without a bootstrap."
    )
    return PairedIntervals(by_model, note, confidence)


def _frame(run: Path, metrics: dict[str, Any], seed: int, name: str, split: str) -> pd.DataFrame:
    several = len(run_seeds(metrics)) > 1
    return read_predictions(predictions_dir(run, seed, several) / f"{name}-{split}.parquet", metrics["dataset"])
