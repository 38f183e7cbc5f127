"""The metrics.json sections derived from the saved test predictions: bias amplification and margins.

``amplification``: for every student (and every post-processed model and peer), the teacher → student change of
each bias metric with a paired-bootstrap interval (:mod:`fairdistill.evaluate.amplification`); with several
seeds, seed k's student is paired with seed k's teacher, the point estimate is the mean over seeds and each
resample uses one set of test indices for all of them (``per_seed`` holds each seed's own result).
``intervals``: every model's accuracy, worst-group accuracy and MAD with bootstrap intervals (the resamples of
``amplification``), for the Pareto plot. ``margins``: confidence margins by layer and on each student's errors
(:mod:`fairdistill.evaluate.margins`), on the first seed's predictions of the models with probabilities (not
of the hard, randomised labels of post-processed models and peers).
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pandas as pd

from fairdistill.evaluate.amplification import (
    LabelArrays,
    amplification,
    model_intervals,
)
from fairdistill.evaluate.margins import margins_summary

#: Bootstrap settings (docs/metrics.md, "Teacher → student bias amplification").
RESAMPLES = 1000
CONFIDENCE = 0.95
SPLIT = "test"


def teacher_name(metrics: dict[str, Any]) -> str | None:
    return next((name for name, m in metrics["models"].items() if m.get("role") == "teacher"), None)


def student_names(metrics: dict[str, Any]) -> list[str]:
    return [name for name, m in metrics["models"].items() if m.get("role") == "student"]


#: Roles of the rows compared with the teacher: the students, the post-processed models and the peers.
COMPARED_ROLES = ("student", "postprocessed", "reduced", "peer")
#: Roles of the models with real probabilities (the others predict hard, randomised labels: no margins).
PROBABILISTIC_ROLES = ("teacher", "student")


def compared_names(metrics: dict[str, Any]) -> list[str]:
    """Every model compared with the teacher in ``amplification``: students, post-processed models, peers."""
    return [name for name, m in metrics["models"].items() if m.get("role") in COMPARED_ROLES]


def probabilistic_names(metrics: dict[str, Any]) -> list[str]:
    """The models whose predictions hold probabilities (teacher, students), not one-hot randomised labels."""
    return [name for name, m in metrics["models"].items() if m.get("role", "student") in PROBABILISTIC_ROLES]


def amplification_section(
    metrics: dict[str, Any],
    frames: dict[int, dict[str, pd.DataFrame]],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> dict[str, Any] | None:
    """The ``amplification`` section (None when the run has no teacher or no student)."""
    teacher = teacher_name(metrics)
    students = compared_names(metrics)
    if teacher is None or not students:
        return None
    seeds = list(frames)
    labels = _labels(metrics, frames)
    amplify = partial(amplification, resamples=resamples, confidence=confidence, seed=seed)
    section: dict[str, Any] = {
        "split": SPLIT,
        "reference": teacher,
        "resamples": resamples,
        "confidence": confidence,
        "bootstrap_seed": seed,
        "seeds": seeds,
        "students": {
            name: amplify(labels, [frames[s][teacher]["pred"] for s in seeds], [frames[s][name]["pred"] for s in seeds])
            for name in students
        },
    }
    if len(seeds) > 1:
        section["per_seed"] = {
            str(s): {
                name: amplify(labels, [frames[s][teacher]["pred"]], [frames[s][name]["pred"]]) for name in students
            }
            for s in seeds
        }
    return section


def _labels(metrics: dict[str, Any], frames: dict[int, dict[str, pd.DataFrame]]) -> LabelArrays:
    """The shared labels of the test predictions; every model of every seed must be on the same examples."""
    dataset = metrics["dataset"]
    first = next(iter(frames.values()))
    reference = next(iter(first.values()))
    for s, by_model in frames.items():
        for name, frame in by_model.items():
            if not np.array_equal(frame["y"].to_numpy(), reference["y"].to_numpy()):
                raise ValueError(f"predictions of {name} (seed {s}) are not on the same examples as the others")
    return LabelArrays.from_predictions(reference, dataset)


def intervals_section(
    metrics: dict[str, Any],
    frames: dict[int, dict[str, pd.DataFrame]],
    *,
    seed: int = 0,
    resamples: int = RESAMPLES,
    confidence: float = CONFIDENCE,
) -> dict[str, Any]:
    """The ``intervals`` section: per model, accuracy / worst-group accuracy / MAD with bootstrap intervals."""
    labels = _labels(metrics, frames)
    seeds = list(frames)
    models = {
        name: model_intervals(
            labels,
            [frames[s][name]["pred"] for s in seeds if name in frames[s]],
            resamples=resamples,
            confidence=confidence,
            seed=seed,
        )
        for name in metrics["models"]
        if any(name in frames[s] for s in seeds)
    }
    return {
        "split": SPLIT,
        "resamples": resamples,
        "confidence": confidence,
        "bootstrap_seed": seed,
        "seeds": seeds,
        "models": models,
    }


def margins_section(metrics: dict[str, Any], frames: dict[int, dict[str, pd.DataFrame]]) -> dict[str, Any]:
    """The ``margins`` section, on the first seed's test predictions."""
    seed = next(iter(frames))
    with_probabilities = {n: f for n, f in frames[seed].items() if n in probabilistic_names(metrics)}
    summary = margins_summary(
        with_probabilities, teacher=teacher_name(metrics) or "teacher", group_names=metrics["dataset"]["group_names"]
    )
    return {"split": SPLIT, "seed": seed, **summary}


def add_analysis(metrics: dict[str, Any], frames: dict[int, dict[str, pd.DataFrame]], seed: int = 0) -> dict[str, Any]:
    """``metrics`` with the ``amplification``, ``intervals`` and ``margins`` sections filled in (a new dict)."""
    result = dict(metrics)
    amplified = amplification_section(metrics, frames, seed=seed)
    if amplified is not None:
        result["amplification"] = amplified
    result["intervals"] = intervals_section(metrics, frames, seed=seed)
    result["margins"] = margins_section(metrics, frames)
    return result
