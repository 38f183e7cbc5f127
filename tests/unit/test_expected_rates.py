"""Expected-rate metrics of randomised classifiers: equal to the metric suite's on hard (one-hot) label
probabilities, and hand-computed on fractional ones."""

from __future__ import annotations

import numpy as np
import pytest

from fairdistill.data.core import DatasetInfo, label_attr_groups
from fairdistill.evaluate.expected_rates import expected_rate_metrics
from fairdistill.evaluate.metrics import compute_metrics

INFO = DatasetInfo("toy", 2, ("no", "yes"), ("f", "m"), label_attr_groups(("no", "yes"), ("f", "m")), "tabular", (3,))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_hard_labels_give_the_metric_suites_values(seed: int) -> None:
    rng = np.random.default_rng(seed)
    y, attr = rng.integers(0, 2, 400), rng.integers(0, 2, 400)
    group = y * 2 + attr
    pred = np.where(rng.random(400) < 0.8, y, 1 - y)
    onehot = np.eye(2)[pred]
    ours = expected_rate_metrics(y, onehot, attr, group, INFO)
    suite = compute_metrics(y, onehot.astype(np.float32), attr, group, INFO)
    for key in ("accuracy", "worst_group_accuracy", "recall_disparity_mad", "eo_difference", "dp_difference"):
        assert ours[key] == pytest.approx(suite[key], abs=1e-12), key
    assert ours["recall_disparity"] == pytest.approx(suite["recall_disparity"], abs=1e-12)


def test_fractional_probabilities_by_hand() -> None:
    # rows: (y, attr, P(draw 1))
    rows = [(1, 0, 0.8), (1, 0, 0.4), (1, 1, 1.0), (0, 0, 0.2), (0, 1, 0.5), (0, 1, 0.1)]
    y = np.array([r[0] for r in rows])
    attr = np.array([r[1] for r in rows])
    p1 = np.array([r[2] for r in rows])
    pmf = np.stack([1 - p1, p1], 1)
    out = expected_rate_metrics(y, pmf, attr, y * 2 + attr, INFO)
    # expected correct: 0.8, 0.4, 1.0, 0.8, 0.5, 0.9
    assert out["accuracy"] == pytest.approx((0.8 + 0.4 + 1.0 + 0.8 + 0.5 + 0.9) / 6)
    # TPR f = 0.6, m = 1.0; TNR f = 0.8, m = 0.7 → FPR f = 0.2, m = 0.3
    assert out["recall_disparity"] == pytest.approx({"no": 0.7 - 0.8, "yes": 1.0 - 0.6})
    assert out["recall_disparity_mad"] == pytest.approx((0.1 + 0.4) / 2)
    assert out["eo_difference"] == pytest.approx(max(0.4, 0.1))
    # selection rate f = (0.8 + 0.4 + 0.2) / 3, m = (1.0 + 0.5 + 0.1) / 3
    assert out["dp_difference"] == pytest.approx(abs(1.6 / 3 - 1.4 / 3))
    # groups no|f 0.8, no|m 0.7, yes|f 0.6, yes|m 1.0
    assert out["worst_group_accuracy"] == pytest.approx(0.6)


def test_more_than_two_classes_is_refused() -> None:
    info = DatasetInfo("t3", 3, ("a", "b", "c"), ("f", "m"), label_attr_groups(("a", "b", "c"), ("f", "m")), "tabular")
    with pytest.raises(ValueError, match="two classes"):
        expected_rate_metrics(np.zeros(3, int), np.full((3, 3), 1 / 3), np.zeros(3, int), np.zeros(3, int), info)
