"""Teacher → student bias amplification with paired-bootstrap intervals (definitions: docs/metrics.md).

For each bias metric M in {recall-disparity MAD, equalized-odds difference, demographic-parity difference,
worst-group error 1 − WGA}: Δ = M(student) − M(teacher), the relative change Δ / M(teacher) (``None`` when
M(teacher) is 0) and a percentile interval of Δ over bootstrap resamples of the test examples. The resamples
are *paired*: each one draws the same example indices for the teacher and the student, so the interval
reflects the uncertainty of the difference on this test set (the trained models are held fixed).

Speed: 1,000 resamples through fairlearn's ``MetricFrame`` would take minutes, so the four metrics are
computed here from cell counts. A resample is a row of multiplicities (how many times each example was
drawn); multiplying a block of such rows with one-hot indicator matrices gives every count the metrics
need for a whole block of resamples at once. On the full sample (all multiplicities 1) the values equal
:func:`fairdistill.evaluate.metrics.compute_metrics` (tested to 1e-9): the same definitions, including
which classes and attribute values count as present, and DP / EO undefined (``None``) when the split — or a
resample — holds one attribute value only.

With several seeds, pass one teacher and one student prediction array per seed (paired by position): the
point estimate is the mean over seeds of Δ, and every resample draws one set of indices used for all seeds.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: The amplified metrics, keyed like ``compute_metrics``'s output (``worst_group_error`` = 1 − WGA).
AMPLIFIED_METRICS: tuple[str, ...] = ("recall_disparity_mad", "eo_difference", "dp_difference", "worst_group_error")

#: Human-readable names of the amplified metrics.
METRIC_TITLES: dict[str, str] = {
    "recall_disparity_mad": "recall disparity MAD",
    "eo_difference": "EO diff",
    "dp_difference": "DP diff",
    "worst_group_error": "1 − WGA",
}

#: Resamples per block: bounds memory to about this many float64 cells times the number of examples.
_BLOCK_CELLS = 4_000_000


@dataclass(frozen=True)
class LabelArrays:
    """The labels of a split shared by every model: true class, attribute value and group of each example."""

    y: np.ndarray
    attr: np.ndarray
    group: np.ndarray
    num_classes: int
    num_attrs: int
    num_groups: int

    def __post_init__(self) -> None:
        n = len(self.y)
        if n == 0:
            raise ValueError("bias metrics of an empty split are undefined")
        for name, values, upper in (
            ("y", self.y, self.num_classes),
            ("attr", self.attr, self.num_attrs),
            ("group", self.group, self.num_groups),
        ):
            if len(values) != n:
                raise ValueError(f"{name} has {len(values)} rows, y has {n}")
            if values.min() < 0 or values.max() >= upper:
                raise ValueError(f"{name} values must lie in [0, {upper})")

    @classmethod
    def of(cls, y: Any, attr: Any, group: Any, num_classes: int, num_attrs: int, num_groups: int) -> LabelArrays:
        y, attr, group = (np.asarray(a).astype(np.int64).reshape(-1) for a in (y, attr, group))
        return cls(y, attr, group, num_classes=num_classes, num_attrs=num_attrs, num_groups=num_groups)

    @classmethod
    def from_predictions(cls, frame: Any, dataset: Mapping[str, Any]) -> LabelArrays:
        """The labels of a saved prediction table (its ``y``, ``attr`` and ``group`` columns), sized by a
        metrics.json ``dataset`` section."""
        return cls.of(
            frame["y"],
            frame["attr"],
            frame["group"],
            dataset["num_classes"],
            len(dataset["attr_names"]),
            len(dataset["group_names"]),
        )

    def __len__(self) -> int:
        return len(self.y)


def bias_metrics(labels: LabelArrays, pred: Any) -> dict[str, float | None]:
    """The four amplified metrics of one model's predicted classes on the full sample (``None``: undefined)."""
    values = _metric_values(labels, [_checked_pred(labels, pred)], np.ones((1, len(labels))))[0]
    return {key: _scalar(values[key][0]) for key in AMPLIFIED_METRICS}


def amplification(
    labels: LabelArrays,
    teacher_preds: Sequence[Any],
    student_preds: Sequence[Any],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """Δ, relative Δ and a paired-bootstrap percentile interval of Δ for each amplified metric.

    ``teacher_preds`` / ``student_preds``: predicted classes, one array (N,) per seed, paired by position.
    Returns per metric: ``teacher`` and ``student`` (the metric, mean over seeds), ``delta``, ``relative``
    (``None`` when the teacher's value is 0), ``ci_low``/``ci_high`` (the (1 − confidence)/2 and
    (1 + confidence)/2 percentiles of the resampled Δ, over the resamples where it is defined) and
    ``resamples`` (how many of them were). Undefined values are ``None``, never NaN.
    """
    if len(teacher_preds) != len(student_preds) or not teacher_preds:
        raise ValueError("give one teacher and one student prediction array per seed (at least one pair)")
    paired = paired_bootstrap(
        labels,
        teacher_preds,
        student_preds,
        metrics=AMPLIFIED_METRICS,
        resamples=resamples,
        confidence=confidence,
        seed=seed,
    )
    result: dict[str, dict[str, Any]] = {}
    for key, entry in paired.items():
        teacher_value, delta = entry["a"], entry["delta"]
        relative = None
        if delta is not None and teacher_value is not None and teacher_value != 0.0:
            relative = delta / teacher_value
        result[key] = {
            "teacher": teacher_value,
            "student": entry["b"],
            "delta": delta,
            "relative": relative,
            "ci_low": entry["ci_low"],
            "ci_high": entry["ci_high"],
            "resamples": entry["resamples"],
        }
    return result


#: Every metric :func:`paired_bootstrap` resamples: the amplified ones, accuracy and worst-group accuracy.
PAIRED_METRICS: tuple[str, ...] = (*AMPLIFIED_METRICS, "accuracy", "worst_group_accuracy")


def paired_bootstrap(
    labels: LabelArrays,
    preds_a: Sequence[Any],
    preds_b: Sequence[Any],
    *,
    metrics: Sequence[str] = PAIRED_METRICS,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, Any]]:
    """B − A of each metric with a paired-bootstrap percentile interval, on the examples of ``labels``.

    ``preds_a`` / ``preds_b``: predicted classes, one array (N,) per seed, paired by position; every resample
    draws one set of example indices for both models and all seeds (teacher → student in :func:`amplification`,
    run A → run B in ``fairdistill compare``). Returns per metric: ``a`` and ``b`` (mean over seeds),
    ``delta`` (b − a), ``ci_low``/``ci_high`` (the (1 − confidence)/2 and (1 + confidence)/2 percentiles of
    the resampled difference, over the resamples where it is defined) and ``resamples`` (how many of them
    were). Undefined values are ``None``, never NaN.
    """
    unknown = [key for key in metrics if key not in PAIRED_METRICS]
    if unknown:
        raise ValueError(f"no paired bootstrap for {', '.join(unknown)}; known: {', '.join(PAIRED_METRICS)}")
    if len(preds_a) != len(preds_b) or not preds_a:
        raise ValueError("give one prediction array of A and one of B per seed (at least one pair)")
    if resamples < 1:
        raise ValueError(f"resamples must be positive, got {resamples}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must lie in (0, 1), got {confidence}")
    models = [[_checked_pred(labels, p) for p in preds_a], [_checked_pred(labels, p) for p in preds_b]]
    n = len(labels)
    point_a, point_b = (_with_wga(v) for v in _metric_values(labels, models, np.ones((1, n))))
    deltas: dict[str, list[np.ndarray]] = {key: [] for key in metrics}
    for weights in _resample_weights(n, resamples, seed):
        boot_a, boot_b = (_with_wga(v) for v in _metric_values(labels, models, weights))
        for key in metrics:
            deltas[key].append(boot_b[key] - boot_a[key])

    tail = 100.0 * (1.0 - confidence) / 2.0
    result: dict[str, dict[str, Any]] = {}
    for key in metrics:
        a_value, b_value = _scalar(point_a[key][0]), _scalar(point_b[key][0])
        delta = None if a_value is None or b_value is None else _scalar(point_b[key][0] - point_a[key][0])
        resampled = np.concatenate(deltas[key])
        resampled = resampled[np.isfinite(resampled)]
        low = high = None
        if delta is not None and len(resampled):
            low, high = (float(v) for v in np.percentile(resampled, [tail, 100.0 - tail]))
        result[key] = {
            "a": a_value,
            "b": b_value,
            "delta": delta,
            "ci_low": low,
            "ci_high": high,
            "resamples": int(len(resampled)),
        }
    return result


def _with_wga(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {**values, "worst_group_accuracy": 1.0 - values["worst_group_error"]}


#: The per-model metrics :func:`model_intervals` gives intervals for by default (True: higher is better).
INTERVAL_METRICS: dict[str, bool] = {"accuracy": True, "worst_group_accuracy": True, "recall_disparity_mad": False}
#: Every metric :func:`model_intervals` can give an interval for.
INTERVAL_CHOICES: tuple[str, ...] = (*INTERVAL_METRICS, "eo_difference")


def model_intervals(
    labels: LabelArrays,
    preds: Sequence[Any],
    *,
    resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
    metrics: Sequence[str] = tuple(INTERVAL_METRICS),
) -> dict[str, dict[str, float | None]]:
    """One model's ``metrics`` (default accuracy, worst-group accuracy and recall-disparity MAD; any of
    :data:`INTERVAL_CHOICES`) with bootstrap percentile intervals.

    ``preds``: predicted classes, one array per seed (the value is the mean over seeds). The resamples are
    the ones :func:`amplification` draws for the same ``seed`` and ``resamples``. Returns per metric
    ``value``, ``ci_low`` and ``ci_high`` (``None`` when undefined).
    """
    if not preds:
        raise ValueError("give at least one prediction array")
    unknown = [key for key in metrics if key not in INTERVAL_CHOICES]
    if unknown:
        raise ValueError(f"no interval for {unknown}; choose from {list(INTERVAL_CHOICES)}")
    model = [_checked_pred(labels, p) for p in preds]
    point = _interval_values(_metric_values(labels, [model], np.ones((1, len(labels))))[0])
    boot: dict[str, list[np.ndarray]] = {key: [] for key in metrics}
    for weights in _resample_weights(len(labels), resamples, seed):
        values = _interval_values(_metric_values(labels, [model], weights)[0])
        for key in metrics:
            boot[key].append(values[key])
    tail = 100.0 * (1.0 - confidence) / 2.0
    result: dict[str, dict[str, float | None]] = {}
    for key in metrics:
        resampled = np.concatenate(boot[key])
        resampled = resampled[np.isfinite(resampled)]
        value = _scalar(point[key][0])
        low = high = None
        if value is not None and len(resampled):
            low, high = (float(v) for v in np.percentile(resampled, [tail, 100.0 - tail]))
        result[key] = {"value": value, "ci_low": low, "ci_high": high}
    return result


def _interval_values(values: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "accuracy": values["accuracy"],
        "worst_group_accuracy": 1.0 - values["worst_group_error"],
        "recall_disparity_mad": values["recall_disparity_mad"],
        "eo_difference": values["eo_difference"],
    }


def _resample_weights(n: int, resamples: int, seed: int) -> Iterator[np.ndarray]:
    """Blocks of bootstrap resamples of ``n`` examples as (R, n) multiplicities (same draws for the same seed)."""
    rng = np.random.default_rng(seed)
    block = max(1, min(resamples, _BLOCK_CELLS // n))
    done = 0
    while done < resamples:
        size = min(block, resamples - done)
        indices = rng.integers(0, n, size=(size, n))
        offsets = (np.arange(size)[:, None] * n + indices).ravel()
        yield np.bincount(offsets, minlength=size * n).reshape(size, n).astype(np.float64)
        done += size


def _checked_pred(labels: LabelArrays, pred: Any) -> np.ndarray:
    pred = np.asarray(pred).astype(np.int64).reshape(-1)
    if len(pred) != len(labels):
        raise ValueError(f"predictions have {len(pred)} rows, the labels {len(labels)}")
    if pred.min() < 0 or pred.max() >= labels.num_classes:
        raise ValueError(f"predicted classes must lie in [0, {labels.num_classes})")
    return pred


def _one_hot(codes: np.ndarray, size: int, keep: np.ndarray | None = None) -> np.ndarray:
    """(N, size) 0/1 matrix; rows where ``keep`` is False are all zeros."""
    matrix = np.zeros((len(codes), size))
    rows = np.arange(len(codes)) if keep is None else np.flatnonzero(keep)
    matrix[rows, codes[rows]] = 1.0
    return matrix


def _metric_values(labels: LabelArrays, models: list, weights: np.ndarray) -> list[dict[str, np.ndarray]]:
    """Per model (or per list of seed models, averaged over seeds): each metric for each weight row (R,).

    ``weights``: (R, N) multiplicity of each example in each resample. A metric is NaN where it is
    undefined; with several seeds, where it is undefined for any of them.
    """
    C, A, G = labels.num_classes, labels.num_attrs, labels.num_groups
    y, attr, group = labels.y, labels.attr, labels.group
    shared = weights @ np.hstack([_one_hot(y * A + attr, C * A), _one_hot(group, G)])
    ya = shared[:, : C * A].reshape(-1, C, A)  # examples of class c with attribute a
    g_count = shared[:, C * A :]  # examples of each group
    out = []
    for model in models:
        preds = model if isinstance(model, list) else [model]
        per_seed = []
        for pred in preds:
            hit = pred == y
            counts = weights @ np.hstack(
                [
                    _one_hot(y * A + attr, C * A, keep=hit),  # class c, attribute a, predicted c
                    _one_hot(pred * A + attr, C * A),  # predicted c, attribute a
                    _one_hot(group, G, keep=hit),  # correct in group g
                ]
            )
            ya_hit = counts[:, : C * A].reshape(-1, C, A)
            pa = counts[:, C * A : 2 * C * A].reshape(-1, C, A)
            g_hit = counts[:, 2 * C * A :]
            per_seed.append(
                {
                    "recall_disparity_mad": _mad(ya, ya_hit),
                    "eo_difference": _eo(ya, ya_hit, pa),
                    "dp_difference": _dp(ya, pa),
                    "worst_group_error": _worst_group_error(g_count, g_hit),
                    "accuracy": _ratio(g_hit.sum(axis=-1), g_count.sum(axis=-1)),
                }
            )
        # NaN in any seed propagates into the mean, as intended.
        out.append({key: np.mean([s[key] for s in per_seed], axis=0) for key in per_seed[0]})
    return out


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator where the denominator is positive, NaN elsewhere."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def _gap(rates: np.ndarray, present: np.ndarray) -> np.ndarray:
    """max − min over the last axis, over the present entries (0 with one, NaN with none)."""
    high = np.where(present, rates, -np.inf).max(axis=-1)
    low = np.where(present, rates, np.inf).min(axis=-1)
    return np.where(present.any(axis=-1), high - low, np.nan)


def _mean_defined(values: np.ndarray) -> np.ndarray:
    """Mean over the last axis of the finite entries; NaN where there are none."""
    finite = np.isfinite(values)
    total = np.where(finite, values, 0.0).sum(axis=-1)
    count = finite.sum(axis=-1)
    return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _mad(ya: np.ndarray, ya_hit: np.ndarray) -> np.ndarray:
    """Mean over classes of |recall disparity|; a class counts when two attribute values are present."""
    recall = _ratio(ya_hit, ya)
    present = ya > 0
    if ya.shape[-1] == 2:
        disparity = recall[..., 1] - recall[..., 0]  # NaN unless both attribute values are present
    else:
        disparity = np.where(present.sum(axis=-1) >= 2, _gap(recall, present), np.nan)
    return _mean_defined(np.abs(disparity))


def _positive_classes(num_classes: int) -> slice:
    """Binary: class 1 is the positive class; more classes: one-vs-rest over all of them."""
    return slice(1, 2) if num_classes == 2 else slice(0, num_classes)


def _two_attribute_values(ya: np.ndarray) -> np.ndarray:
    """(R,) whether each resample holds examples of at least two attribute values (else no gap is defined)."""
    return (ya.sum(axis=1) > 0).sum(axis=-1) >= 2


def _dp(ya: np.ndarray, pa: np.ndarray) -> np.ndarray:
    """Mean over the positive classes of the gap in selection rate P(pred = c | a) between attribute values."""
    n_attr = ya.sum(axis=1)  # (R, A)
    classes = _positive_classes(ya.shape[1])
    rates = _ratio(pa[:, classes, :], n_attr[:, None, :])  # (R, P, A)
    gaps = _gap(rates, np.broadcast_to(n_attr[:, None, :] > 0, rates.shape))
    return np.where(_two_attribute_values(ya), _mean_defined(gaps), np.nan)


def _eo(ya: np.ndarray, ya_hit: np.ndarray, pa: np.ndarray) -> np.ndarray:
    """Mean over the positive classes of max(TPR gap, FPR gap) between attribute values.

    The TPR gap is over the attribute values with positives, the FPR gap over those with negatives (as in
    ``compute_metrics``); a class with no positives or no negatives at all is left out. Undefined (NaN) where
    the resample holds a single attribute value, as DP.
    """
    n_attr = ya.sum(axis=1)
    classes = _positive_classes(ya.shape[1])
    positives = ya[:, classes, :]
    negatives = n_attr[:, None, :] - positives
    true_pos = ya_hit[:, classes, :]
    false_pos = pa[:, classes, :] - true_pos
    tpr_gap = _gap(_ratio(true_pos, positives), positives > 0)
    fpr_gap = _gap(_ratio(false_pos, negatives), negatives > 0)
    defined = (positives.sum(axis=-1) > 0) & (negatives.sum(axis=-1) > 0)
    eo = _mean_defined(np.where(defined, np.maximum(tpr_gap, fpr_gap), np.nan))
    return np.where(_two_attribute_values(ya), eo, np.nan)


def _worst_group_error(g_count: np.ndarray, g_hit: np.ndarray) -> np.ndarray:
    """1 − the lowest accuracy over the groups present."""
    accuracy = _ratio(g_hit, g_count)
    return 1.0 - np.where(g_count > 0, accuracy, np.inf).min(axis=-1)


def _scalar(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) or math.isinf(value) else value
