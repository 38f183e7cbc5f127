"""Tests of fairdistill.evaluate.metrics: hand-computed cases, independent recomputation, properties."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference, equalized_odds_difference
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score, precision_recall_fscore_support

from fairdistill.data.core import DatasetInfo, label_attr_groups
from fairdistill.evaluate.metrics import compute_metrics, expected_calibration_error


def make_info(class_names: tuple[str, ...], attr_names: tuple[str, ...]) -> DatasetInfo:
    return DatasetInfo(
        name="toy",
        num_classes=len(class_names),
        class_names=class_names,
        attr_names=attr_names,
        group_names=label_attr_groups(class_names, attr_names),
        modality="tabular",
    )


def probs_for(pred: np.ndarray, num_classes: int, conf: float | np.ndarray) -> np.ndarray:
    """Rows with probability ``conf`` on ``pred`` and the rest spread evenly over the other classes."""
    conf = np.broadcast_to(np.asarray(conf, dtype=np.float64), pred.shape)
    probs = np.repeat(((1.0 - conf) / (num_classes - 1))[:, None], num_classes, axis=1)
    probs[np.arange(len(pred)), pred] = conf
    return probs


def random_split(seed: int, n: int, num_classes: int, num_attrs: int) -> tuple[np.ndarray, ...]:
    """Labels, attributes, groups (label-attribute) and class probabilities of ``n`` random examples."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, num_classes, n)
    attr = rng.integers(0, num_attrs, n)
    # Lean towards the label, and towards class 0 as attr grows, so the gaps are not zero.
    logits = rng.normal(size=(n, num_classes)) + 1.2 * np.eye(num_classes)[y]
    logits[:, 0] += 0.8 * attr
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return y, attr, y * num_attrs + attr, probs


BINARY = make_info(("neg", "pos"), ("a0", "a1"))
TERNARY = make_info(("c0", "c1", "c2"), ("x", "y", "z"))

# The hand-computed binary split (group = 2*y + attr):
#   idx   y  attr  pred  group    correct
#    0    0   0     0    neg|a0   yes
#    1    0   0     1    neg|a0   no
#    2    0   1     0    neg|a1   yes
#    3    0   1     0    neg|a1   yes
#    4    1   0     1    pos|a0   yes
#    5    1   0     1    pos|a0   yes
#    6    1   1     0    pos|a1   no
#    7    1   1     0    pos|a1   no
BIN_Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
BIN_ATTR = np.array([0, 0, 1, 1, 0, 0, 1, 1])
BIN_PRED = np.array([0, 1, 0, 0, 1, 1, 0, 0])
BIN_GROUP = BIN_Y * 2 + BIN_ATTR


def test_binary_hand_computed() -> None:
    # Every prediction has confidence 0.9, so each set's ECE is |accuracy − 0.9| (one bin).
    m = compute_metrics(BIN_Y, probs_for(BIN_PRED, 2, 0.9), BIN_ATTR, BIN_GROUP, BINARY)
    assert m["n"] == 8
    assert m["accuracy"] == pytest.approx(5 / 8)  # idx 0, 2, 3, 4, 5
    # Precision: pred 0 on {0,2,3,6,7}, 3 right -> 3/5; pred 1 on {1,4,5}, 2 right -> 2/3.
    assert m["macro_precision"] == pytest.approx((3 / 5 + 2 / 3) / 2)
    # Recall: class 0 -> 3/4, class 1 -> 2/4.
    assert m["macro_recall"] == pytest.approx((3 / 4 + 2 / 4) / 2)
    # F1: class 0 -> 2·(3/5)(3/4)/(3/5+3/4) = 2/3; class 1 -> 2·(2/3)(1/2)/(2/3+1/2) = 4/7.
    assert m["macro_f1"] == pytest.approx((2 / 3 + 4 / 7) / 2)
    assert m["group_accuracy"] == pytest.approx({"neg|a0": 0.5, "neg|a1": 1.0, "pos|a0": 1.0, "pos|a1": 0.0})
    assert m["group_count"] == {"neg|a0": 2, "neg|a1": 2, "pos|a0": 2, "pos|a1": 2}
    assert m["worst_group_accuracy"] == 0.0
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 1 + 0) / 4)
    assert m["class_accuracy"] == pytest.approx({"neg": 0.75, "pos": 0.5})
    assert m["worst_class_accuracy"] == pytest.approx(0.5)
    # d_neg = recall(a1) − recall(a0) = 1 − 1/2 = 0.5; d_pos = 0 − 1 = −1 (signed).
    assert m["recall_disparity"] == pytest.approx({"neg": 0.5, "pos": -1.0})
    assert m["recall_disparity_mad"] == pytest.approx((0.5 + 1.0) / 2)
    assert m["recall_disparity_max"] == pytest.approx(1.0)
    # Selection rate P(pred=1 | a): a0 {0,1,1,1} -> 3/4, a1 {0,0,0,0} -> 0; DP = 3/4.
    assert m["dp_difference"] == pytest.approx(0.75)
    assert m["dp_difference_max"] == pytest.approx(0.75)
    # TPR: a0 {4,5} -> 1, a1 {6,7} -> 0, gap 1. FPR: a0 {0,1} -> 1/2, a1 {2,3} -> 0, gap 1/2.
    # EO is the worst case (max) of the two gaps, 1 — not their mean 3/4.
    assert m["eo_difference"] == pytest.approx(1.0)
    assert m["eo_difference_max"] == pytest.approx(1.0)
    assert m["ece"] == pytest.approx(abs(5 / 8 - 0.9))
    assert m["group_ece"] == pytest.approx({"neg|a0": 0.4, "neg|a1": 0.1, "pos|a0": 0.1, "pos|a1": 0.9})


def test_ternary_hand_computed() -> None:
    # One example per (class, attribute) cell; group = 3*y + attr.
    #   y:    0 0 0 | 1 1 1 | 2 2 2
    #   attr: x y z | x y z | x y z
    #   pred: 0 0 1 | 1 1 1 | 2 2 0     (wrong on (c0, z) and (c2, z))
    y = np.repeat([0, 1, 2], 3)
    attr = np.tile([0, 1, 2], 3)
    pred = np.array([0, 0, 1, 1, 1, 1, 2, 2, 0])
    m = compute_metrics(y, probs_for(pred, 3, 0.8), attr, y * 3 + attr, TERNARY)
    assert m["accuracy"] == pytest.approx(7 / 9)
    assert m["worst_group_accuracy"] == 0.0
    assert m["balanced_accuracy"] == pytest.approx(7 / 9)  # nine groups of one example each
    assert m["class_accuracy"] == pytest.approx({"c0": 2 / 3, "c1": 1.0, "c2": 2 / 3})
    # Per-attribute recalls (x, y, z): c0 (1, 1, 0), c1 (1, 1, 1), c2 (1, 1, 0); d_c = max − min.
    assert m["recall_disparity"] == pytest.approx({"c0": 1.0, "c1": 0.0, "c2": 1.0})
    assert m["recall_disparity_mad"] == pytest.approx(2 / 3)  # the zero of c1 counts
    assert m["recall_disparity_max"] == pytest.approx(1.0)
    # Predictions by attribute: x (0, 1, 2), y (0, 1, 2), z (1, 1, 0).
    # One-vs-rest selection rates (x, y, z): c0 (1/3, 1/3, 1/3) -> 0; c1 (1/3, 1/3, 2/3) -> 1/3;
    # c2 (1/3, 1/3, 0) -> 1/3. Mean 2/9, max 1/3.
    assert m["dp_difference"] == pytest.approx(2 / 9)
    assert m["dp_difference_max"] == pytest.approx(1 / 3)
    # c0: TPR (1, 1, 0) gap 1; FPR x {1,2}->0, y {1,2}->0, z {1,0}->1/2, gap 1/2; EO 1.
    # c1: TPR (1, 1, 1) gap 0; FPR x {0,2}->0, y {0,2}->0, z {1,0}->1/2, gap 1/2; EO 1/2.
    # c2: TPR (1, 1, 0) gap 1; FPR x {0,1}->0, y {0,1}->0, z {1,1}->0, gap 0; EO 1.
    assert m["eo_difference"] == pytest.approx((1 + 0.5 + 1) / 3)
    assert m["eo_difference_max"] == pytest.approx(1.0)


def test_ece_hand_computed() -> None:
    # n_bins = 5: bins (0, .2], (.2, .4], (.4, .6], (.6, .8], (.8, 1].
    #   probs        y  pred  conf  correct   bin
    #   [.9, .1]     0   0    .9    yes      (.8, 1]
    #   [.1, .9]     0   1    .9    no       (.8, 1]
    #   [.7, .3]     0   0    .7    yes      (.6, .8]
    #   [.3, .7]     1   1    .7    yes      (.6, .8]
    # (.8, 1]: acc 1/2, conf .9 -> 2/4·.4 = .2;  (.6, .8]: acc 1, conf .7 -> 2/4·.3 = .15.  ECE = .35.
    probs = np.array([[0.9, 0.1], [0.1, 0.9], [0.7, 0.3], [0.3, 0.7]])
    y = np.array([0, 0, 0, 1])
    assert expected_calibration_error(y, probs, n_bins=5) == pytest.approx(0.35)
    # One bin: |acc − mean conf| = |3/4 − .8| = .05.
    assert expected_calibration_error(y, probs, n_bins=1) == pytest.approx(0.05)
    # compute_metrics reports the same ECE.
    attr = np.array([0, 1, 0, 1])
    assert compute_metrics(y, probs, attr, 2 * y + attr, BINARY, n_bins=5)["ece"] == pytest.approx(0.35)


def test_ece_bin_edges_are_closed_on_the_right() -> None:
    # The inner edges of 5 bins are np.linspace(0, 1, 6)[1:-1]; the fourth edge is 0.6000000000000001, not 0.6,
    # so the confidence must be taken from linspace itself to lie exactly on an edge.
    edges = np.linspace(0.0, 1.0, 6)
    assert edges[3] != 0.6
    # conf = edges[3] (correct) lies in (.4, edges[3]], conf .65 (wrong) in (edges[3], .8]:
    # ECE = ½·|1 − edges[3]| + ½·|0 − .65|. Had the edge fallen in [edges[3], .8) with .65, it would be
    # |1/2 − (edges[3] + .65)/2|.
    e = edges[3]
    probs = np.array([[e, 1.0 - e], [0.35, 0.65]])
    expected = 0.5 * (1.0 - e) + 0.5 * 0.65
    assert expected_calibration_error(np.array([0, 0]), probs, n_bins=5) == pytest.approx(expected, abs=1e-12)
    assert abs(0.5 - (e + 0.65) / 2) == pytest.approx(0.125)  # the value of the wrong binning, far from 0.525
    # The edge edges[4] (= .8 exactly): conf .8 (wrong) shares (.6, .8] with conf .75 (correct), and conf .9
    # (correct) is alone in (.8, 1]: ECE = (2·|1/2 − .775| + |1 − .9|)/3. Binned [.8, 1) it would share .9's bin.
    assert edges[4] == 0.8
    probs = np.array([[0.8, 0.2], [0.75, 0.25], [0.9, 0.1]])
    y = np.array([1, 0, 0])
    expected = (2 * abs(0.5 - (0.8 + 0.75) / 2) + abs(1.0 - 0.9)) / 3
    assert expected_calibration_error(y, probs, n_bins=5) == pytest.approx(expected, abs=1e-12)


def test_absent_group_is_none_and_excluded() -> None:
    # Drop pos|a1 (idx 6, 7) from the binary split: the remaining groups score 0.5, 1, 1.
    keep = BIN_GROUP != 3
    y, attr, pred = BIN_Y[keep], BIN_ATTR[keep], BIN_PRED[keep]
    m = compute_metrics(y, probs_for(pred, 2, 0.9), attr, BIN_GROUP[keep], BINARY)
    assert m["group_accuracy"]["pos|a1"] is None
    assert m["group_count"]["pos|a1"] == 0
    assert m["group_ece"]["pos|a1"] is None
    assert m["worst_group_accuracy"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 1) / 3)


def test_class_with_one_attribute_value_has_no_disparity() -> None:
    # Same reduced split: class pos now has examples of a0 only, so d_pos is None and the MAD is |d_neg|.
    keep = BIN_GROUP != 3
    y, attr, pred = BIN_Y[keep], BIN_ATTR[keep], BIN_PRED[keep]
    m = compute_metrics(y, probs_for(pred, 2, 0.9), attr, BIN_GROUP[keep], BINARY)
    assert m["recall_disparity"]["pos"] is None
    assert m["recall_disparity"]["neg"] == pytest.approx(0.5)
    assert m["recall_disparity_mad"] == pytest.approx(0.5)
    assert m["recall_disparity_max"] == pytest.approx(0.5)


def test_three_attribute_class_with_one_value_present_is_none() -> None:
    # c2 only has attr x; c0 and c1 have x and y (z absent everywhere).
    y = np.array([0, 0, 1, 1, 2, 2])
    attr = np.array([0, 1, 0, 1, 0, 0])
    pred = np.array([0, 1, 1, 1, 2, 0])
    m = compute_metrics(y, probs_for(pred, 3, 0.7), attr, 3 * y + attr, TERNARY)
    # c0: recalls x 1, y 0 -> 1; c1: 1, 1 -> 0; c2: None. MAD = (1 + 0) / 2.
    assert m["recall_disparity"] == {"c0": 1.0, "c1": 0.0, "c2": None}
    assert m["recall_disparity_mad"] == pytest.approx(0.5)


def test_no_defined_disparity_gives_none() -> None:
    # A single attribute value in the split: no class can be compared across attribute values.
    y = np.array([0, 1, 1])
    attr = np.zeros(3, dtype=int)
    m = compute_metrics(y, probs_for(np.array([0, 1, 0]), 2, 0.8), attr, 2 * y, BINARY)
    assert m["recall_disparity"] == {"neg": None, "pos": None}
    assert m["recall_disparity_mad"] is None
    assert m["recall_disparity_max"] is None
    # One attribute value: no gap between attribute values, so the gaps are undefined (not 0, "perfectly fair").
    for key in ("dp_difference", "dp_difference_max", "eo_difference", "eo_difference_max"):
        assert m[key] is None, key
    assert m["undefined"]["dp_difference"] == "the attribute has one value (a0) in this split"


def test_perfect_predictor() -> None:
    y, attr, group, _ = random_split(seed=3, n=60, num_classes=3, num_attrs=3)
    m = compute_metrics(y, np.eye(3)[y], attr, group, TERNARY)
    assert m["accuracy"] == 1.0
    assert m["worst_group_accuracy"] == 1.0
    assert m["balanced_accuracy"] == 1.0
    assert m["worst_class_accuracy"] == 1.0
    assert all(d == 0.0 for d in m["recall_disparity"].values())
    assert m["recall_disparity_mad"] == 0.0
    assert m["recall_disparity_max"] == 0.0
    assert m["eo_difference"] == 0.0
    assert m["eo_difference_max"] == 0.0
    assert m["ece"] == 0.0
    # DP of a perfect predictor is the gap in base rates, not 0.
    base_gaps = [np.ptp([np.mean(y[attr == a] == c) for a in range(3)]) for c in range(3)]
    assert m["dp_difference"] == pytest.approx(np.mean(base_gaps))
    assert m["dp_difference_max"] == pytest.approx(np.max(base_gaps))


def test_eo_ignores_rates_undefined_for_an_attribute_value() -> None:
    # a1 has no positives. fairlearn scores its TPR as 0 and reports a gap of 1 for this perfect
    # predictor; the TPR gap should only compare attribute values that have positives.
    y = np.array([0, 1, 1, 0, 0, 0])
    attr = np.array([0, 0, 0, 1, 1, 1])
    assert equalized_odds_difference(y, y, sensitive_features=attr) == 1.0  # the quirk
    m = compute_metrics(y, np.eye(2)[y], attr, 2 * y + attr, BINARY)
    assert m["eo_difference"] == 0.0
    # A wrong prediction on a1's negatives is still an FPR gap: a0 FPR 0, a1 FPR 1/3.
    pred = np.array([0, 1, 1, 1, 0, 0])
    m = compute_metrics(y, np.eye(2)[pred], attr, 2 * y + attr, BINARY)
    assert m["eo_difference"] == pytest.approx(1 / 3)


def test_eo_undefined_for_class_without_positives() -> None:
    # Class c2 never occurs: its one-vs-rest TPR is undefined, so it is left out of the EO mean and max.
    y = np.array([0, 0, 1, 1, 0, 1])
    attr = np.array([0, 1, 0, 1, 2, 2])
    pred = np.array([0, 2, 1, 1, 0, 0])
    m = compute_metrics(y, np.eye(3)[pred], attr, 3 * y + attr, TERNARY)
    # c0: TPR x 1, y 0, z 1 -> gap 1; FPR (negatives are class 1) x 0, y 0, z 1 -> gap 1. EO 1.
    # c1: TPR x 1, y 1, z 0 -> gap 1; FPR x 0, y 0, z 0 -> 0. EO 1.
    # (Fairlearn would give c2 an EO of 1/2: all TPRs 0, FPR x 0, y 1/2 (idx 1 predicted c2), z 0.)
    assert m["eo_difference"] == pytest.approx(1.0)
    assert m["eo_difference_max"] == pytest.approx(1.0)
    assert m["class_accuracy"]["c2"] is None
    # DP of c2 is defined. Predictions by attribute: x (0, 1), y (2, 1), z (0, 0). Selection rates
    # (x, y, z): c0 (1/2, 0, 1) -> 1; c1 (1/2, 1/2, 0) -> 1/2; c2 (0, 1/2, 0) -> 1/2. Mean 2/3, max 1.
    assert m["dp_difference"] == pytest.approx(2 / 3)
    assert m["dp_difference_max"] == pytest.approx(1.0)


def _reference(y, probs, attr, group, info, n_bins):
    """Plain-numpy recomputation of the disaggregated metrics."""
    pred = probs.argmax(axis=1)
    conf = probs.max(axis=1)
    correct = pred == y

    def ece(mask):
        total = 0.0
        for b in range(n_bins):
            lo, hi = b / n_bins, (b + 1) / n_bins
            in_bin = mask & (conf > lo) & (conf <= hi)
            if in_bin.any():
                total += in_bin.sum() * abs(correct[in_bin].mean() - conf[in_bin].mean())
        return total / mask.sum()

    group_acc = {
        name: (correct[group == g].mean() if (group == g).any() else None) for g, name in enumerate(info.group_names)
    }
    disparity = {}
    for c, name in enumerate(info.class_names):
        cells = [(y == c) & (attr == a) for a in range(info.num_attrs)]
        recalls = [correct[cell].mean() for cell in cells if cell.any()]
        if len(recalls) < 2:
            disparity[name] = None
        elif info.num_attrs == 2:
            disparity[name] = recalls[1] - recalls[0]
        else:
            disparity[name] = max(recalls) - min(recalls)
    return {
        "group_acc": group_acc,
        "class_acc": {name: correct[y == c].mean() for c, name in enumerate(info.class_names)},
        "disparity": disparity,
        "ece": ece(np.ones_like(correct)),
        "group_ece": {name: ece(group == g) for g, name in enumerate(info.group_names) if (group == g).any()},
    }


@pytest.mark.parametrize(("info", "seed"), [(BINARY, 0), (BINARY, 1), (TERNARY, 2), (TERNARY, 3)])
def test_random_predictions_match_independent_computation(info: DatasetInfo, seed: int) -> None:
    y, attr, group, probs = random_split(seed, n=400, num_classes=info.num_classes, num_attrs=info.num_attrs)
    pred = probs.argmax(axis=1)
    m = compute_metrics(y, probs, attr, group, info, n_bins=10)
    ref = _reference(y, probs, attr, group, info, n_bins=10)

    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred))
    p, r, f, _ = precision_recall_fscore_support(
        y, pred, labels=range(info.num_classes), average="macro", zero_division=0
    )
    assert (m["macro_precision"], m["macro_recall"], m["macro_f1"]) == pytest.approx((p, r, f))
    assert m["group_accuracy"] == pytest.approx(ref["group_acc"])
    assert m["worst_group_accuracy"] == pytest.approx(min(ref["group_acc"].values()))
    assert m["balanced_accuracy"] == pytest.approx(np.mean(list(ref["group_acc"].values())))
    assert m["group_count"] == {name: int((group == g).sum()) for g, name in enumerate(info.group_names)}
    assert m["class_accuracy"] == pytest.approx(ref["class_acc"])
    assert m["worst_class_accuracy"] == pytest.approx(min(ref["class_acc"].values()))
    assert m["recall_disparity"] == pytest.approx(ref["disparity"])
    abs_d = [abs(d) for d in ref["disparity"].values()]
    assert m["recall_disparity_mad"] == pytest.approx(np.mean(abs_d))
    assert m["recall_disparity_max"] == pytest.approx(np.max(abs_d))
    assert m["ece"] == pytest.approx(ref["ece"])
    assert m["ece"] == pytest.approx(expected_calibration_error(y, probs, n_bins=10))
    assert m["group_ece"] == pytest.approx(ref["group_ece"])

    # DP / EO straight from fairlearn (every attribute value has positives and negatives of every class).
    positives = [1] if info.num_classes == 2 else range(info.num_classes)
    dp, eo = [], []
    for c in positives:
        y_c, pred_c = (y == c).astype(int), (pred == c).astype(int)
        assert all(len(np.unique(y_c[attr == a])) == 2 for a in range(info.num_attrs))
        dp.append(demographic_parity_difference(y_c, pred_c, sensitive_features=attr))
        eo.append(equalized_odds_difference(y_c, pred_c, sensitive_features=attr))
    assert m["dp_difference"] == pytest.approx(np.mean(dp))
    assert m["dp_difference_max"] == pytest.approx(np.max(dp))
    assert m["eo_difference"] == pytest.approx(np.mean(eo))
    assert m["eo_difference_max"] == pytest.approx(np.max(eo))
    assert m["dp_difference"] > 0 and m["eo_difference"] > 0


def _assert_json_safe(value) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            assert type(key) is str
            _assert_json_safe(item)
    else:
        assert value is None or type(value) in (int, float, str), f"{value!r} is {type(value)}"


def test_json_serialisable() -> None:
    keep = BIN_GROUP != 3  # an empty group and an undefined disparity, so None values occur
    y, attr, pred = BIN_Y[keep], BIN_ATTR[keep], BIN_PRED[keep]
    m = compute_metrics(y, probs_for(pred, 2, 0.9), attr, BIN_GROUP[keep], BINARY)
    json.dumps(m, allow_nan=False)
    _assert_json_safe(m)
    y, attr, group, probs = random_split(seed=5, n=50, num_classes=3, num_attrs=3)
    m = compute_metrics(y, probs, attr, group, TERNARY)
    assert json.loads(json.dumps(m, allow_nan=False)) == m
    _assert_json_safe(m)


def test_rejects_mismatched_inputs() -> None:
    with pytest.raises(ValueError):
        compute_metrics(BIN_Y, np.full((8, 3), 1 / 3), BIN_ATTR, BIN_GROUP, BINARY)
    with pytest.raises(ValueError):
        compute_metrics(BIN_Y, probs_for(BIN_PRED, 2, 0.9), BIN_ATTR[:7], BIN_GROUP, BINARY)
    with pytest.raises(ValueError):
        compute_metrics(BIN_Y, probs_for(BIN_PRED, 2, 0.9), BIN_ATTR + 1, BIN_GROUP, BINARY)


@st.composite
def splits(draw):
    info = draw(st.sampled_from([BINARY, TERNARY]))
    n = draw(st.integers(1, 30))
    y = np.array(draw(st.lists(st.integers(0, info.num_classes - 1), min_size=n, max_size=n)))
    attr = np.array(draw(st.lists(st.integers(0, info.num_attrs - 1), min_size=n, max_size=n)))
    weights = draw(st.lists(st.integers(1, 20), min_size=n * info.num_classes, max_size=n * info.num_classes))
    probs = np.array(weights, dtype=np.float64).reshape(n, info.num_classes)
    probs /= probs.sum(axis=1, keepdims=True)
    return info, y, attr, y * info.num_attrs + attr, probs


def _scalars(m: dict) -> dict:
    return {k: v for k, v in m.items() if not isinstance(v, dict)}


@settings(max_examples=10, deadline=None)  # each example costs two compute_metrics calls
@given(split=splits(), data=st.data())
def test_permutation_invariance(split, data) -> None:
    info, y, attr, group, probs = split
    perm = np.array(data.draw(st.permutations(range(len(y)))))
    m = compute_metrics(y, probs, attr, group, info)
    m_perm = compute_metrics(y[perm], probs[perm], attr[perm], group[perm], info)
    assert _scalars(m_perm) == pytest.approx(_scalars(m))
    for key in ("group_accuracy", "group_count", "class_accuracy", "recall_disparity", "group_ece"):
        assert m_perm[key] == pytest.approx(m[key])


@settings(max_examples=15, deadline=None)
@given(split=splits())
def test_bounds(split) -> None:
    info, y, attr, group, probs = split
    m = compute_metrics(y, probs, attr, group, info)
    present = [a for a in m["group_accuracy"].values() if a is not None]
    assert m["worst_group_accuracy"] <= m["balanced_accuracy"] + 1e-12
    assert m["balanced_accuracy"] <= max(present) + 1e-12
    assert sum(m["group_count"].values()) == m["n"] == len(y)
    if m["recall_disparity_mad"] is not None:
        assert 0.0 <= m["recall_disparity_mad"] <= m["recall_disparity_max"] <= 1.0
    for key in ("dp_difference", "dp_difference_max", "eo_difference", "eo_difference_max", "ece"):
        assert m[key] is None or 0.0 <= m[key] <= 1.0
    json.dumps(m, allow_nan=False)


@settings(max_examples=15, deadline=None)
@given(split=splits(), confidence=st.floats(0.51, 1.0))
def test_perfect_predictor_has_no_disparities(split, confidence) -> None:
    """Any split, any confidence on the true class above the rest: every accuracy is 1, every disparity 0."""
    info, y, attr, group, _ = split
    rest = (1.0 - confidence) / (info.num_classes - 1)
    probs = np.full((len(y), info.num_classes), rest)
    probs[np.arange(len(y)), y] = confidence
    m = compute_metrics(y, probs, attr, group, info)
    assert m["accuracy"] == m["balanced_accuracy"] == m["worst_group_accuracy"] == 1.0
    assert all(a in (None, 1.0) for a in m["group_accuracy"].values())
    for key in ("recall_disparity_mad", "recall_disparity_max", "eo_difference", "eo_difference_max"):
        assert m[key] in (None, 0.0), key
    assert all(d in (None, 0.0) for d in m["recall_disparity"].values())
