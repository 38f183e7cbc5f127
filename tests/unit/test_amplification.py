"""Tests of fairdistill.evaluate.amplification: a hand-computed case, agreement with compute_metrics, bootstrap."""

from __future__ import annotations

import numpy as np
import pytest

from fairdistill.data.core import DatasetInfo, label_attr_groups
from fairdistill.evaluate.amplification import AMPLIFIED_METRICS, LabelArrays, amplification, bias_metrics
from fairdistill.evaluate.metrics import compute_metrics

# 8 examples: y, attr, group = y * 2 + attr; the teacher misses example 6, the student examples 2, 6 and 7.
Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
ATTR = np.array([0, 0, 1, 1, 0, 0, 1, 1])
TEACHER = np.array([0, 0, 0, 0, 1, 1, 0, 1])
STUDENT = np.array([0, 0, 1, 0, 1, 1, 0, 0])


def toy_labels() -> LabelArrays:
    return LabelArrays.of(Y, ATTR, Y * 2 + ATTR, num_classes=2, num_attrs=2, num_groups=4)


def test_hand_computed_metrics_and_deltas() -> None:
    labels = toy_labels()
    # teacher: recall disparity class 0: 1 − 1 = 0, class 1: 0.5 − 1 → MAD 0.25; selection rate of class 1
    # 0.5 (attr 0) vs 0.25 (attr 1) → DP 0.25; TPR gap 0.5, FPR gap 0 → EO 0.5; worst group 1|1 at 0.5.
    assert bias_metrics(labels, TEACHER) == pytest.approx(
        {"recall_disparity_mad": 0.25, "dp_difference": 0.25, "eo_difference": 0.5, "worst_group_error": 0.5}
    )
    # student: disparities −0.5 and −1 → MAD 0.75; DP 0.5 vs 0.25; TPR gap 1, FPR gap 0.5 → EO 1; WGA 0.
    assert bias_metrics(labels, STUDENT) == pytest.approx(
        {"recall_disparity_mad": 0.75, "dp_difference": 0.25, "eo_difference": 1.0, "worst_group_error": 1.0}
    )
    result = amplification(labels, [TEACHER], [STUDENT], resamples=200, seed=0)
    expected = {
        "recall_disparity_mad": (0.5, 2.0),
        "eo_difference": (0.5, 1.0),
        "dp_difference": (0.0, 0.0),
        "worst_group_error": (0.5, 1.0),
    }
    for key, (delta, relative) in expected.items():
        assert result[key]["delta"] == pytest.approx(delta), key
        assert result[key]["relative"] == pytest.approx(relative), key
        assert result[key]["ci_low"] <= result[key]["delta"] <= result[key]["ci_high"], key


def test_relative_is_none_when_the_teacher_scores_zero() -> None:
    labels = toy_labels()
    perfect = Y.copy()
    result = amplification(labels, [perfect], [STUDENT], resamples=50)
    for key in AMPLIFIED_METRICS:
        assert result[key]["teacher"] == 0.0
        assert result[key]["relative"] is None
    assert result["recall_disparity_mad"]["delta"] == pytest.approx(0.75)


def test_identical_models_have_zero_delta_and_a_zero_interval() -> None:
    rng = np.random.default_rng(1)
    n = 300
    y, attr = rng.integers(0, 3, n), rng.integers(0, 2, n)
    labels = LabelArrays.of(y, attr, y * 2 + attr, 3, 2, 6)
    pred = np.where(rng.random(n) < 0.7, y, rng.integers(0, 3, n))
    result = amplification(labels, [pred], [pred.copy()], resamples=300, seed=3)
    for key in AMPLIFIED_METRICS:
        assert result[key]["delta"] == 0.0
        assert result[key]["ci_low"] == 0.0 and result[key]["ci_high"] == 0.0
        assert result[key]["resamples"] == 300


def test_deterministic_given_the_seed_and_different_across_seeds() -> None:
    rng = np.random.default_rng(2)
    n = 200
    y, attr = rng.integers(0, 2, n), rng.integers(0, 2, n)
    labels = LabelArrays.of(y, attr, y * 2 + attr, 2, 2, 4)
    teacher = np.where(rng.random(n) < 0.8, y, 1 - y)
    student = np.where((rng.random(n) < 0.7) | (attr == y), y, 1 - y)
    first = amplification(labels, [teacher], [student], resamples=400, seed=7)
    again = amplification(labels, [teacher], [student], resamples=400, seed=7)
    other = amplification(labels, [teacher], [student], resamples=400, seed=8)
    assert first == again
    assert first["recall_disparity_mad"]["ci_low"] != other["recall_disparity_mad"]["ci_low"]
    for key in AMPLIFIED_METRICS:
        assert first[key]["ci_low"] <= first[key]["delta"] <= first[key]["ci_high"], key


@pytest.mark.parametrize(
    "num_classes,num_attrs,n,drop_cells,seed",
    [(2, 2, 500, 0, 0), (3, 2, 400, 0, 1), (4, 3, 300, 2, 2), (2, 3, 120, 1, 3), (5, 2, 60, 3, 4), (2, 2, 7, 0, 5)],
)
def test_full_sample_values_equal_compute_metrics(num_classes, num_attrs, n, drop_cells, seed) -> None:
    """The vectorised path is an independent implementation: it must agree with the fairlearn one."""
    rng = np.random.default_rng(seed)
    y, attr = rng.integers(0, num_classes, n), rng.integers(0, num_attrs, n)
    # Empty some (class, attribute) cells so that undefined disparities and missing groups are exercised.
    for _ in range(drop_cells):
        c, a = rng.integers(0, num_classes), rng.integers(0, num_attrs)
        attr = np.where((y == c) & (attr == a), (a + 1) % num_attrs, attr)
    pred = np.where(rng.random(n) < 0.6, y, rng.integers(0, num_classes, n))
    class_names = tuple(f"c{i}" for i in range(num_classes))
    attr_names = tuple(f"a{i}" for i in range(num_attrs))
    info = DatasetInfo(
        "toy", num_classes, class_names, attr_names, label_attr_groups(class_names, attr_names), "tabular"
    )
    group = y * num_attrs + attr
    probs = np.full((n, num_classes), 0.1 / (num_classes - 1))
    probs[np.arange(n), pred] = 0.9
    reference = compute_metrics(y, probs, attr, group, info)
    ours = bias_metrics(LabelArrays.of(y, attr, group, num_classes, num_attrs, info.num_groups), pred)
    for key in ("recall_disparity_mad", "eo_difference", "dp_difference"):
        if reference[key] is None:
            assert ours[key] is None, key
        else:
            assert ours[key] == pytest.approx(reference[key], abs=1e-9), key
    assert ours["worst_group_error"] == pytest.approx(1.0 - reference["worst_group_accuracy"], abs=1e-9)


def test_several_seeds_average_the_deltas_with_shared_indices() -> None:
    rng = np.random.default_rng(4)
    n = 250
    y, attr = rng.integers(0, 2, n), rng.integers(0, 2, n)
    labels = LabelArrays.of(y, attr, y * 2 + attr, 2, 2, 4)
    teachers = [np.where(rng.random(n) < 0.85, y, 1 - y) for _ in range(2)]
    students = [np.where(rng.random(n) < 0.7, y, 1 - y) for _ in range(2)]
    both = amplification(labels, teachers, students, resamples=100, seed=0)
    single = [amplification(labels, [t], [s], resamples=100, seed=0) for t, s in zip(teachers, students, strict=True)]
    for key in AMPLIFIED_METRICS:
        assert both[key]["delta"] == pytest.approx(np.mean([r[key]["delta"] for r in single]))
        assert both[key]["teacher"] == pytest.approx(np.mean([r[key]["teacher"] for r in single]))


def test_bad_inputs_are_rejected() -> None:
    labels = toy_labels()
    with pytest.raises(ValueError, match="rows"):
        amplification(labels, [TEACHER[:4]], [STUDENT])
    with pytest.raises(ValueError, match="one teacher and one student"):
        amplification(labels, [TEACHER], [])
    with pytest.raises(ValueError, match="predicted classes"):
        bias_metrics(labels, TEACHER + 5)


def _draws(n: int, resamples: int, seed: int) -> np.ndarray:
    """The bootstrap draws the module documents: one generator per seed, (R, n) indices (here in one block)."""
    return np.random.default_rng(seed).integers(0, n, size=(resamples, n))


def _plain_wge(y, attr, pred) -> float:
    """1 − the lowest accuracy over the (label, attribute) groups present, by a loop over the groups."""
    accs = [
        np.mean(pred[(y == c) & (attr == a)] == c) for c in (0, 1) for a in (0, 1) if ((y == c) & (attr == a)).any()
    ]
    return 1.0 - min(accs)


def _plain_dp(attr, pred) -> float:
    """|P(pred = 1 | attr 1) − P(pred = 1 | attr 0)| (binary)."""
    return abs(np.mean(pred[attr == 1] == 1) - np.mean(pred[attr == 0] == 1))


@pytest.mark.parametrize("confidence", [0.95, 0.8])
def test_interval_has_the_requested_level(confidence: float) -> None:
    """ci_low/ci_high are the (1 ∓ confidence)/2 percentiles of Δ over the resamples, recomputed here in plain numpy
    from the same draws (a 90 % interval in place of a 95 % one is caught)."""
    rng = np.random.default_rng(11)
    n, resamples, seed = 120, 400, 5
    y, attr = rng.integers(0, 2, n), rng.integers(0, 2, n)
    labels = LabelArrays.of(y, attr, y * 2 + attr, 2, 2, 4)
    teacher = np.where(rng.random(n) < 0.85, y, 1 - y)
    student = np.where((rng.random(n) < 0.6) | (attr == 0), y, 1 - y)
    result = amplification(labels, [teacher], [student], resamples=resamples, confidence=confidence, seed=seed)
    draws = _draws(n, resamples, seed)
    tail = 100 * (1 - confidence) / 2
    for key, metric in (
        ("worst_group_error", lambda i, p: _plain_wge(y[i], attr[i], p[i])),
        ("dp_difference", lambda i, p: _plain_dp(attr[i], p[i])),
    ):
        deltas = np.array([metric(i, student) - metric(i, teacher) for i in draws])
        low, high = np.percentile(deltas, [tail, 100 - tail])
        assert result[key]["resamples"] == resamples
        assert result[key]["ci_low"] == pytest.approx(low, abs=1e-12), key
        assert result[key]["ci_high"] == pytest.approx(high, abs=1e-12), key
        assert result[key]["delta"] == pytest.approx(metric(np.arange(n), student) - metric(np.arange(n), teacher))
    # The interval widens with the level: a 99 % interval contains the 80 % one.
    wide = amplification(labels, [teacher], [student], resamples=resamples, confidence=0.99, seed=seed)
    assert wide["worst_group_error"]["ci_low"] <= result["worst_group_error"]["ci_low"]
    assert wide["worst_group_error"]["ci_high"] >= result["worst_group_error"]["ci_high"]


def test_model_interval_has_the_requested_level() -> None:
    from fairdistill.evaluate.amplification import model_intervals

    rng = np.random.default_rng(12)
    n, resamples, seed = 90, 300, 2
    y, attr = rng.integers(0, 2, n), rng.integers(0, 2, n)
    labels = LabelArrays.of(y, attr, y * 2 + attr, 2, 2, 4)
    pred = np.where(rng.random(n) < 0.75, y, 1 - y)
    result = model_intervals(labels, [pred], resamples=resamples, confidence=0.95, seed=seed)
    draws = _draws(n, resamples, seed)
    accuracy = np.array([np.mean(pred[i] == y[i]) for i in draws])
    wga = np.array([1.0 - _plain_wge(y[i], attr[i], pred[i]) for i in draws])
    for key, values, point in (
        ("accuracy", accuracy, np.mean(pred == y)),
        ("worst_group_accuracy", wga, 1.0 - _plain_wge(y, attr, pred)),
    ):
        low, high = np.percentile(values, [2.5, 97.5])
        assert result[key]["value"] == pytest.approx(point)
        assert (result[key]["ci_low"], result[key]["ci_high"]) == pytest.approx((low, high), abs=1e-12), key
