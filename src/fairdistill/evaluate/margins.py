"""Confidence margins by layer (docs/metrics.md; the overconfident early layers of Tiwari et al., WACV 2024), from
predictions frames.

The margin of a probability vector is p_(1) − p_(2), its largest minus its second-largest entry. A predictions
frame holds the final layer's probabilities as ``prob_<c>`` and, for models with early readouts, each
readout's as ``readout_<tap>_prob_<c>``. Per layer we report the mean margin on all examples and on the
worst group (the group where the model's final prediction is least accurate), and, per student, the
teacher's and the student's final-layer margins on the examples the student gets wrong.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

#: Name of the final layer among the layers of a frame.
FINAL_LAYER = "final"

_READOUT = re.compile(r"^readout_(?P<tap>.+)_prob_(?P<c>\d+)$")
_FINAL = re.compile(r"^prob_(?P<c>\d+)$")


def layer_probabilities(frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Probabilities (N, C) of each layer: the early readouts in column order, then ``final``."""
    columns: dict[str, dict[int, str]] = {}
    for column in frame.columns:
        readout = _READOUT.match(str(column))
        final = _FINAL.match(str(column))
        if readout:
            columns.setdefault(readout["tap"], {})[int(readout["c"])] = column
        elif final:
            columns.setdefault(FINAL_LAYER, {})[int(final["c"])] = column
    if FINAL_LAYER not in columns:
        raise ValueError("the predictions frame has no prob_<c> columns")
    order = [layer for layer in columns if layer != FINAL_LAYER] + [FINAL_LAYER]
    result = {}
    for layer in order:
        by_class = columns[layer]
        if sorted(by_class) != list(range(len(by_class))):
            raise ValueError(f"layer {layer!r}: probability columns are not prob_0 … prob_{len(by_class) - 1}")
        result[layer] = frame[[by_class[c] for c in range(len(by_class))]].to_numpy(dtype=np.float64)
    return result


def confidence_margin(probs: np.ndarray) -> np.ndarray:
    """p_(1) − p_(2) of each row of an (N, C) probability matrix (C ≥ 2)."""
    probs = np.asarray(probs, dtype=np.float64)
    if probs.ndim != 2 or probs.shape[1] < 2:
        raise ValueError(f"expected an (N, C ≥ 2) probability matrix, got shape {probs.shape}")
    top_two = np.sort(probs, axis=1)[:, -2:]
    return top_two[:, 1] - top_two[:, 0]


def worst_group(frame: pd.DataFrame) -> int:
    """The group (index) with the lowest accuracy of the frame's ``pred`` among the groups present."""
    correct = (frame["pred"].to_numpy() == frame["y"].to_numpy()).astype(np.float64)
    accuracy = pd.Series(correct).groupby(frame["group"].to_numpy()).mean()
    return int(accuracy.idxmin())


def margins_by_layer(frame: pd.DataFrame, group: int | None = None) -> dict[str, Any]:
    """Mean margin per layer on all examples and on ``group`` (default: the frame's worst group).

    Returns ``{"worst_group": g, "worst_group_size": n, "layers": {layer: {"all": m, "worst_group": m}}}``.
    """
    if group is None:
        group = worst_group(frame)
    in_group = frame["group"].to_numpy() == group
    layers = {}
    for layer, probs in layer_probabilities(frame).items():
        margin = confidence_margin(probs)
        layers[layer] = {
            "all": float(margin.mean()),
            "worst_group": float(margin[in_group].mean()) if in_group.any() else None,
        }
    return {"worst_group": int(group), "worst_group_size": int(in_group.sum()), "layers": layers}


def wrong_example_margins(student: pd.DataFrame, teacher: pd.DataFrame) -> dict[str, np.ndarray]:
    """Final-layer margins of the teacher and of the student on the examples the student gets wrong.

    Rows are matched by ``index``; returns ``{"index", "teacher", "student"}`` arrays of equal length.
    """
    if len(student) != len(teacher) or not np.array_equal(
        np.sort(student["index"].to_numpy()), np.sort(teacher["index"].to_numpy())
    ):
        raise ValueError("the student and teacher frames do not cover the same examples")
    teacher = teacher.set_index("index").loc[student["index"].to_numpy()].reset_index()
    wrong = student["pred"].to_numpy() != student["y"].to_numpy()
    return {
        "index": student["index"].to_numpy()[wrong],
        "teacher": confidence_margin(layer_probabilities(teacher)[FINAL_LAYER])[wrong],
        "student": confidence_margin(layer_probabilities(student)[FINAL_LAYER])[wrong],
    }


def margins_summary(
    frames: dict[str, pd.DataFrame], teacher: str = "teacher", group_names: Sequence[str] | None = None
) -> dict[str, Any]:
    """JSON-safe summary of one split: margins by layer per model, and per student the margins on its errors."""
    models = {}
    for name, frame in frames.items():
        entry = margins_by_layer(frame)
        if group_names is not None:
            entry["worst_group_name"] = group_names[entry["worst_group"]]
        models[name] = entry
    wrong = {}
    if teacher in frames:
        for name, frame in frames.items():
            if name == teacher:
                continue
            m = wrong_example_margins(frame, frames[teacher])
            wrong[name] = {
                "n": int(len(m["index"])),
                "teacher_mean": float(m["teacher"].mean()) if len(m["index"]) else None,
                "student_mean": float(m["student"].mean()) if len(m["index"]) else None,
            }
    return {"models": models, "student_errors": wrong}
