"""Metrics of a randomised binary classifier taken over its randomisation, from each example's probability of
drawing each label (fairlearn's ``_pmf_predict``: the ``pmf_<c>`` columns of the predictions).

A post-processed model, a peer or the distilled student inside ExponentiatedGradient predicts labels drawn at
random; the run scores one draw (seeded). These are the same quantities as :func:`compute_metrics`'s, with every
count replaced by its expectation, so they carry no draw noise: accuracy mean_i pmf_i[y_i], the expected accuracy
of each group, the expected recall of each (class, attribute) cell and, from those, the recall disparities and
their mean absolute value (MAD), and the equalized-odds and demographic-parity differences of class 1 (the
largest gap between attribute values in expected TPR or FPR, and in expected selection rate).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from fairdistill.data.core import DatasetInfo


def _mean_or_none(values: np.ndarray) -> float | None:
    return float(values.mean()) if len(values) else None


def _spread(values: list[float | None]) -> float | None:
    """max − min of the defined values; None with fewer than two."""
    present = [v for v in values if v is not None]
    return max(present) - min(present) if len(present) >= 2 else None


def expected_rate_metrics(
    y: np.ndarray, pmf: np.ndarray, attr: np.ndarray, group: np.ndarray, info: DatasetInfo
) -> dict[str, Any]:
    """accuracy, worst_group_accuracy, recall_disparity (per class), recall_disparity_mad, eo_difference and
    dp_difference in expectation over the labels' draw (two classes; ``pmf``: (N, 2), rows summing to 1)."""
    if info.num_classes != 2 or pmf.ndim != 2 or pmf.shape[1] != 2:
        raise ValueError(f"expected-rate metrics are for two classes; got label probabilities of shape {pmf.shape}")
    y, attr, group = np.asarray(y), np.asarray(attr), np.asarray(group)
    correct = pmf[np.arange(len(y)), y]
    group_accuracy = [_mean_or_none(correct[group == g]) for g in range(len(info.group_names))]
    recall = {(c, a): _mean_or_none(pmf[(y == c) & (attr == a), c]) for c in (0, 1) for a in range(info.num_attrs)}
    disparity: dict[str, float | None] = {}
    for c, name in enumerate(info.class_names):
        per_value = [recall[(c, a)] for a in range(info.num_attrs)]
        if info.num_attrs == 2:
            low, high = per_value
            disparity[name] = None if low is None or high is None else high - low
        else:
            disparity[name] = _spread(per_value)
    defined = [abs(d) for d in disparity.values() if d is not None]
    tpr = [recall[(1, a)] for a in range(info.num_attrs)]
    fpr = [None if recall[(0, a)] is None else 1.0 - recall[(0, a)] for a in range(info.num_attrs)]  # type: ignore[operator]
    gaps = [g for g in (_spread(tpr), _spread(fpr)) if g is not None]
    selection = [_mean_or_none(pmf[attr == a, 1]) for a in range(info.num_attrs)]
    present_groups = [a for a in group_accuracy if a is not None]
    return {
        "accuracy": float(correct.mean()),
        "worst_group_accuracy": min(present_groups) if present_groups else None,
        "recall_disparity": disparity,
        "recall_disparity_mad": float(np.mean(defined)) if defined else None,
        "eo_difference": max(gaps) if gaps else None,
        "dp_difference": _spread(selection),
    }
