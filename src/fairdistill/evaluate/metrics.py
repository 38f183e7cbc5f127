"""Group-fairness metrics of one model on one split (definitions and edge cases: docs/metrics.md).

All disaggregation (per group, per class, per class and attribute value) goes through fairlearn's
``MetricFrame``; demographic-parity and equalized-odds gaps through fairlearn's
``demographic_parity_difference`` / ``equalized_odds_difference``. The result is JSON-safe: python
floats, ints, strings and ``None`` (for values that are undefined on this split, never NaN).

Sensitive features are always passed to fairlearn as a named column (a dict): a bare array of one
example is squeezed by fairlearn to 0-d and rejected.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Any

import numpy as np
from fairlearn.metrics import (
    MetricFrame,
    count,
    demographic_parity_difference,
    equalized_odds_difference,
)
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from fairdistill.data.core import DatasetInfo
from fairdistill.data.long_tail import FREQUENCY_GROUPS, frequency_groups


def compute_metrics(
    y: np.ndarray,
    probs: np.ndarray,
    attr: np.ndarray,
    group: np.ndarray,
    info: DatasetInfo,
    n_bins: int = 15,
) -> dict[str, Any]:
    """Accuracy, group/class accuracies, recall disparity, DP/EO gaps and calibration of ``argmax(probs)``.

    ``y``, ``attr``, ``group``: int arrays (N,); ``probs``: (N, C) class probabilities.

    Keys: ``n``, ``accuracy``, ``macro_precision``/``macro_recall``/``macro_f1`` (sklearn, macro over
    all C classes, zero_division=0); ``group_accuracy``/``group_count``/``group_ece`` (every group of
    ``info.group_names``; an empty group has accuracy and ECE ``None`` and count 0);
    ``worst_group_accuracy`` (min over groups present); ``balanced_accuracy``, which is the
    GROUP-balanced accuracy, the mean accuracy over groups present (not sklearn's class-balanced
    accuracy, which equals ``macro_recall``); ``class_accuracy`` (recall of each class) and
    ``worst_class_accuracy``; ``recall_disparity`` (per class: recall(attr 1) − recall(attr 0) with two
    attribute values, max − min of the per-value recalls with more; ``None`` unless the class has
    examples of at least two attribute values), ``recall_disparity_mad`` (mean of |d_c| over classes
    with a defined d_c, zeros included) and ``recall_disparity_max``; ``dp_difference``/
    ``eo_difference`` (binary: class 1 positive; C > 2: mean over one-vs-rest classes) and
    ``dp_difference_max``/``eo_difference_max`` (max over those classes); ``ece``.

    When the split holds one attribute value, every gap between attribute values (:data:`ATTRIBUTE_GAPS`) is
    ``None``, not 0. ``undefined`` (present only when needed) maps each gap that is ``None`` to the reason.

    Long-tailed runs (``info.train_class_counts`` set, C ≥ 3) add ``head_accuracy``, ``medium_accuracy`` and
    ``tail_accuracy`` (:func:`frequency_group_accuracy`).
    """
    y, probs, attr, group = _validate(y, probs, attr, group, info)
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    labels = list(range(info.num_classes))
    precision, recall, f1, _ = precision_recall_fscore_support(y, pred, labels=labels, average="macro", zero_division=0)

    # Per group: accuracy, count, ECE (the overall row gives the split's accuracy and ECE).
    by_group = MetricFrame(
        metrics={"accuracy": accuracy_score, "count": count, "ece": partial(_ece_metric, n_bins=n_bins)},
        y_true=y,
        y_pred=pred,
        sensitive_features={"group": group},
        sample_params={"ece": {"conf": conf}},
    )
    group_table = by_group.by_group
    group_acc = {name: _cell(group_table, g, "accuracy") for g, name in enumerate(info.group_names)}
    present_acc = [a for a in group_acc.values() if a is not None]

    # Per class (overall of each control level) and per class and attribute value (by_group).
    by_class = MetricFrame(
        metrics=accuracy_score,
        y_true=y,
        y_pred=pred,
        sensitive_features={"attr": attr},
        control_features={"y": y},
    )
    class_acc = {name: _cell(by_class.overall, c) for c, name in enumerate(info.class_names)}
    disparity = {
        name: _recall_disparity(by_class.by_group, c, info.num_attrs) for c, name in enumerate(info.class_names)
    }
    mad, max_disparity = _mean_and_max([abs(d) for d in disparity.values() if d is not None])

    # One-vs-rest gaps; with two classes only class 1 (the positive class). With one attribute value present
    # there is no gap to measure (fairlearn would report 0, which reads as "perfectly fair").
    dp = dp_max = eo = eo_max = None
    if len(np.unique(attr)) >= 2:
        positives = [1] if info.num_classes == 2 else labels
        one_vs_rest = [((y == c).astype(np.int64), (pred == c).astype(np.int64)) for c in positives]
        dp_per_class = [demographic_parity_difference(t, p, sensitive_features={"attr": attr}) for t, p in one_vs_rest]
        eo_per_class = [_eo_difference(t, p, attr) for t, p in one_vs_rest]
        dp, dp_max = _mean_and_max([float(d) for d in dp_per_class])
        eo, eo_max = _mean_and_max([e for e in eo_per_class if e is not None])
    group_count = {name: int(_cell(group_table, g, "count") or 0) for g, name in enumerate(info.group_names)}

    metrics: dict[str, Any] = {
        "n": int(len(y)),
        "accuracy": _json_float(by_group.overall["accuracy"]),
        "macro_precision": _json_float(precision),
        "macro_recall": _json_float(recall),
        "macro_f1": _json_float(f1),
        "group_accuracy": group_acc,
        "group_count": group_count,
        "worst_group_accuracy": min(present_acc),
        "balanced_accuracy": _json_float(np.mean(present_acc)),
        "class_accuracy": class_acc,
        "worst_class_accuracy": min(a for a in class_acc.values() if a is not None),
        "recall_disparity": disparity,
        "recall_disparity_mad": mad,
        "recall_disparity_max": max_disparity,
        "dp_difference": dp,
        "dp_difference_max": dp_max,
        "eo_difference": eo,
        "eo_difference_max": eo_max,
        "ece": _json_float(by_group.overall["ece"]),
        "group_ece": {name: _cell(group_table, g, "ece") for g, name in enumerate(info.group_names)},
    }
    undefined = _undefined_reasons(metrics, attr, info)
    if info.train_class_counts is not None and info.num_classes >= 3:
        by_frequency = frequency_group_accuracy(y, pred, info.train_class_counts)
        metrics.update(by_frequency)
        undefined.update(
            {
                key: f"no example of the {key.split('_')[0]} classes in this split"
                for key, v in by_frequency.items()
                if v is None
            }
        )
    if undefined:
        metrics["undefined"] = undefined
    return metrics


def frequency_group_accuracy(y: np.ndarray, pred: np.ndarray, train_counts: tuple[int, ...]) -> dict[str, float | None]:
    """``head_accuracy`` / ``medium_accuracy`` / ``tail_accuracy``: the accuracy over the examples whose label is
    among the head, medium or tail third of the classes by train count (most frequent first, ties by class
    index; C = 10 gives 4 / 3 / 3 classes; see :func:`~fairdistill.data.long_tail.frequency_groups`); None for a
    third without examples in the split. On the class-balanced val / test of a long-tailed run it is also the
    mean recall of the third's classes."""
    y, pred = np.asarray(y), np.asarray(pred)
    result: dict[str, float | None] = {}
    for name, classes in zip(FREQUENCY_GROUPS, frequency_groups(train_counts), strict=True):
        rows = np.isin(y, classes)
        result[f"{name}_accuracy"] = float(np.mean(pred[rows] == y[rows])) if rows.any() else None
    return result


#: The gaps between attribute values; none is defined when the split holds a single attribute value.
ATTRIBUTE_GAPS: tuple[str, ...] = (
    "recall_disparity_mad",
    "recall_disparity_max",
    "dp_difference",
    "dp_difference_max",
    "eo_difference",
    "eo_difference_max",
)


def _undefined_reasons(metrics: dict[str, Any], attr: np.ndarray, info: DatasetInfo) -> dict[str, str]:
    """Why each null gap of :data:`ATTRIBUTE_GAPS` is undefined on this split (metric key → reason)."""
    values = np.unique(attr)
    if len(values) < 2:
        reason = f"the attribute has one value ({info.attr_names[int(values[0])]}) in this split"
        return {key: reason for key in ATTRIBUTE_GAPS}
    reasons = {
        "recall_disparity": "no class has examples of two attribute values in this split",
        "eo_difference": "every example of this split has the same label",
    }
    return {
        key: reasons[prefix]
        for key in ATTRIBUTE_GAPS
        for prefix in reasons
        if key.startswith(prefix) and metrics[key] is None
    }


def expected_calibration_error(y: np.ndarray, probs: np.ndarray, n_bins: int = 15) -> float:
    """ECE of ``argmax(probs)``: sum over the bins B of |B|/N·|acc(B) − conf(B)|.

    Confidence is the max probability of each row; the bins are (0, 1/n], (1/n, 2/n], ..., ((n−1)/n, 1].
    """
    probs = np.asarray(probs, dtype=np.float64)
    return _ece(np.asarray(y) == probs.argmax(axis=1), probs.max(axis=1), n_bins)


def reliability_bins(
    y: np.ndarray, probs: np.ndarray, n_bins: int = 15
) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """The reliability diagram of ``argmax(probs)``: per non-empty confidence bin (the bins of
    :func:`expected_calibration_error`) the mean confidence, the accuracy and the size; and the ECE."""
    probs = np.asarray(probs, dtype=np.float64)
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == np.asarray(y)
    bins = _confidence_bins(confidence, n_bins)
    sizes = np.bincount(bins, minlength=n_bins)
    used = sizes > 0
    mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins)[used] / sizes[used]
    accuracy = np.bincount(bins, weights=correct.astype(float), minlength=n_bins)[used] / sizes[used]
    return mean_conf, accuracy, sizes[used], _ece(correct, confidence, n_bins)


def _confidence_bins(conf: np.ndarray, n_bins: int) -> np.ndarray:
    """The bin of each confidence among (0, 1/n], (1/n, 2/n], ..., ((n−1)/n, 1] (0-based)."""
    if n_bins < 1:
        raise ValueError(f"n_bins must be positive, got {n_bins}")
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    # side="left": a confidence equal to an edge falls in the bin that edge closes, (lo, hi].
    return np.searchsorted(inner_edges, conf, side="left")


def _ece(correct: np.ndarray, conf: np.ndarray, n_bins: int) -> float:
    """ECE from per-example correctness and confidence."""
    if len(conf) == 0:
        raise ValueError("ECE of an empty set of predictions is undefined")
    bins = _confidence_bins(conf, n_bins)
    sizes = np.bincount(bins, minlength=n_bins)
    acc_sums = np.bincount(bins, weights=correct.astype(np.float64), minlength=n_bins)
    conf_sums = np.bincount(bins, weights=conf, minlength=n_bins)
    # Per bin |B|·|acc(B) − conf(B)| = |Σcorrect − Σconf|; empty bins contribute 0.
    return float(np.abs(acc_sums - conf_sums).sum() / sizes.sum())


def _ece_metric(y_true: np.ndarray, y_pred: np.ndarray, conf: np.ndarray, n_bins: int) -> float:
    """ECE in MetricFrame's (y_true, y_pred, **sample_params) signature."""
    return _ece(np.asarray(y_true) == np.asarray(y_pred), np.asarray(conf, dtype=np.float64), n_bins)


def _eo_difference(y_bin: np.ndarray, pred_bin: np.ndarray, attr: np.ndarray) -> float | None:
    """Equalized-odds gap of 0/1 labels and predictions: max(TPR gap, FPR gap) across attribute values.

    None when the labels have no positives or no negatives (TPR or FPR undefined everywhere).

    fairlearn's ``equalized_odds_difference`` scores a TPR (FPR) as 0 for an attribute value with no
    positives (negatives), through sklearn's normalised confusion matrix, which fakes a gap (a perfect
    predictor can score 1). So the TPR gap is taken over positives only and the FPR gap over negatives
    only, each with fairlearn; when every attribute value has both, this equals fairlearn's value on
    the full arrays.
    """
    pos = y_bin == 1
    if pos.all() or not pos.any():
        return None
    gaps = [
        equalized_odds_difference(y_bin[rows], pred_bin[rows], sensitive_features={"attr": attr[rows]})
        for rows in (pos, ~pos)
    ]
    return _json_float(max(gaps))


def _recall_disparity(by_class_attr: Any, c: int, num_attrs: int) -> float | None:
    """recall_c(attr 1) − recall_c(attr 0) with two attribute values, else max − min; None if < 2 present."""
    recalls = {a: _cell(by_class_attr, (c, a)) for a in range(num_attrs)}
    present = [r for r in recalls.values() if r is not None]
    if len(present) < 2:
        return None
    if num_attrs == 2:
        low, high = recalls[0], recalls[1]
        assert low is not None and high is not None  # both present: two values, two attribute values
        return _json_float(high - low)
    return _json_float(max(present) - min(present))


def _mean_and_max(values: list[float]) -> tuple[float | None, float | None]:
    """Mean and max of per-class values (the defined ones); (None, None) when there are none."""
    if not values:
        return None, None
    return _json_float(np.mean(values)), _json_float(max(values))


def _cell(table: Any, row: Any, column: str | None = None) -> float | None:
    """One value of a MetricFrame table (Series, or DataFrame with ``column``); None when absent or NaN."""
    if row not in table.index:
        return None
    value = table.loc[row] if column is None else table.loc[row, column]
    return _json_float(value)


def _json_float(value: Any) -> float | None:
    """A python float, or None for NaN / None."""
    if value is None:
        return None
    value = float(value)
    return None if math.isnan(value) else value


def _validate(
    y: np.ndarray, probs: np.ndarray, attr: np.ndarray, group: np.ndarray, info: DatasetInfo
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The inputs as int64 / float64 arrays, after checking their shapes and index ranges."""
    y, attr, group = (np.asarray(a).astype(np.int64).reshape(-1) for a in (y, attr, group))
    probs = np.asarray(probs, dtype=np.float64)
    n = len(y)
    if n == 0:
        raise ValueError("metrics of an empty split are undefined")
    if probs.shape != (n, info.num_classes):
        raise ValueError(f"probs has shape {probs.shape}, expected {(n, info.num_classes)}")
    for name, values, upper in (
        ("y", y, info.num_classes),
        ("attr", attr, info.num_attrs),
        ("group", group, info.num_groups),
    ):
        if len(values) != n:
            raise ValueError(f"{name} has {len(values)} rows, y has {n}")
        if values.min() < 0 or values.max() >= upper:
            raise ValueError(f"{name} values must lie in [0, {upper})")
    return y, probs, attr, group
