"""The metrics.json sections derived from the saved test predictions: bias amplification and margins.

``amplification``: for every student, the teacher → student change of each bias metric with a paired-bootstrap
interval (:mod:`fairdistill.evaluate.amplification`); with several seeds, seed k's student is paired with seed
k's teacher, the point estimate is the mean over seeds and each resample uses one set of test indices for all
of them (``per_seed`` holds each seed's own result). ``margins``: confidence margins by layer and on each
student's errors (:mod:`fairdistill.evaluate.margins`), on the first seed's predictions.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from fairdistill.evaluate.amplification import LabelArrays, amplification
from fairdistill.evaluate.margins import margins_summary

#: Bootstrap settings of METHODS.md §7.
RESAMPLES = 1000
CONFIDENCE = 0.95
SPLIT = "test"


def teacher_name(metrics: dict[str, Any]) -> str | None:
    return next((name for name, m in metrics["models"].items() if m.get("role") == "teacher"), None)


def student_names(metrics: dict[str, Any]) -> list[str]:
    return [name for name, m in metrics["models"].items() if m.get("role") == "student"]


def amplification_section(
    metrics: dict[str, Any], frames: dict[int, dict[str, pd.DataFrame]], *, seed: int = 0,
    resamples: int = RESAMPLES, confidence: float = CONFIDENCE,
) -> dict[str, Any] | None:
    """The ``amplification`` section (None when the run has no teacher or no student)."""
    teacher = teacher_name(metrics)
    students = student_names(metrics)
    if teacher is None or not students:
        return None
    dataset = metrics["dataset"]
    seeds = list(frames)
    reference = frames[seeds[0]][teacher]
    labels = LabelArrays.of(
        reference["y"], reference["attr"], reference["group"], dataset["num_classes"],
        len(dataset["attr_names"]), len(dataset["group_names"]),
    )
    for s in seeds:
        for name, frame in frames[s].items():
            if not np.array_equal(frame["y"].to_numpy(), reference["y"].to_numpy()):
                raise ValueError(f"predictions of {name} (seed {s}) are not on the same examples as the teacher's")
    options = {"resamples": resamples, "confidence": confidence, "seed": seed}
    section: dict[str, Any] = {
        "split": SPLIT, "reference": teacher, "resamples": resamples, "confidence": confidence,
        "bootstrap_seed": seed, "seeds": seeds,
        "students": {
            name: amplification(labels, [frames[s][teacher]["pred"] for s in seeds],
                                [frames[s][name]["pred"] for s in seeds], **options)
            for name in students
        },
    }
    if len(seeds) > 1:
        section["per_seed"] = {
            str(s): {name: amplification(labels, [frames[s][teacher]["pred"]], [frames[s][name]["pred"]], **options)
                     for name in students}
            for s in seeds
        }
    return section


def margins_section(metrics: dict[str, Any], frames: dict[int, dict[str, pd.DataFrame]]) -> dict[str, Any]:
    """The ``margins`` section, on the first seed's test predictions."""
    seed = next(iter(frames))
    summary = margins_summary(frames[seed], teacher=teacher_name(metrics) or "teacher",
                              group_names=metrics["dataset"]["group_names"])
    return {"split": SPLIT, "seed": seed, **summary}


def add_analysis(metrics: dict[str, Any], frames: dict[int, dict[str, pd.DataFrame]], seed: int = 0) -> dict[str, Any]:
    """``metrics`` with the ``amplification`` and ``margins`` sections filled in (a new dict)."""
    result = dict(metrics)
    amplified = amplification_section(metrics, frames, seed=seed)
    if amplified is not None:
        result["amplification"] = amplified
    result["margins"] = margins_section(metrics, frames)
    return result
