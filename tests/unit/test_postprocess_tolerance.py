"""Post-processing with a stated tolerance: the mixture of ThresholdOptimizer's labels and the model's own, its
share against hand computations, and its end points against the optimizer alone and the model alone."""

from __future__ import annotations

import numpy as np
import pytest

from fairdistill.config import PostprocessConfig
from fairdistill.evaluate.postprocess import mixing_share, postprocess, violation
from fairdistill.evaluate.predict import Predictions


def test_violation_is_the_largest_gap_of_the_criterions_rates() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    attr = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    positive = np.array([1.0, 0.5, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0])
    # TPR: 0.75 (a = 0) vs 0.25 (a = 1); FPR: 0.25 vs 0; selection rate: 0.5 vs 0.125
    assert violation(y, positive, attr, "true_positive_rate_parity") == pytest.approx(0.5)
    assert violation(y, positive, attr, "false_positive_rate_parity") == pytest.approx(0.25)
    assert violation(y, positive, attr, "equalized_odds") == pytest.approx(0.5)
    assert violation(y, positive, attr, "demographic_parity") == pytest.approx(0.375)
    assert violation(y, positive, np.zeros(8, dtype=int), "equalized_odds") == 0.0  # one attribute value


def test_mixing_share_is_the_smallest_within_the_tolerance() -> None:
    y = np.array([1, 1, 0, 0])
    attr = np.array([0, 1, 0, 1])
    model = np.array([1.0, 0.0, 0.0, 0.0])  # TPR gap 1, FPR gap 0
    optimizer = np.array([0.5, 0.5, 0.0, 0.0])  # no gap
    # the mixture's TPR gap is 1 − p: within 0.3 from p = 0.7
    assert mixing_share(y, model, optimizer, attr, "equalized_odds", 0.3) == pytest.approx(0.7, abs=1e-9)
    assert mixing_share(y, model, optimizer, attr, "equalized_odds", 1.0) == 0.0  # the model already is within
    worse = np.array([0.2, 0.9, 0.0, 0.0])  # the optimizer's own gap (0.7) exceeds the tolerance: p = 1
    assert mixing_share(y, model, worse, attr, "equalized_odds", 0.3) == 1.0


def _synthetic(n: int, seed: int) -> Predictions:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    attr = (rng.random(n) < 0.4).astype(int)
    p1 = 1 / (1 + np.exp(-(2.0 * y - 1.0 + rng.normal(0, 1.0, n) - 0.8 * attr)))
    probs = np.stack([1 - p1, p1], axis=1).astype(np.float32)
    return Predictions(index=np.arange(n), y=y, attr=attr, group=y * 2 + attr, probs=probs)


def test_a_tolerance_mixes_the_optimizer_with_the_model_and_meets_it_on_val() -> None:
    val, test = _synthetic(800, 0), _synthetic(700, 1)
    plain = postprocess(val, test, PostprocessConfig(threshold="equalized_odds"), seed=3)
    own_violation = violation(val.y, val.probs.argmax(1).astype(float), val.attr, "equalized_odds")
    assert own_violation > 0.1  # the scorer is biased: there is something to fix

    loose = postprocess(val, test, PostprocessConfig(threshold="equalized_odds", tolerance=0.99), seed=3)
    assert loose.settings["share"] == 0.0
    for split, source in (("val", val), ("test", test)):
        np.testing.assert_array_equal(loose.predictions[split].probs.argmax(1), source.probs.argmax(1))

    strict = postprocess(val, test, PostprocessConfig(threshold="equalized_odds", tolerance=1e-9), seed=3)
    assert strict.settings["share"] == pytest.approx(1.0, abs=1e-6)  # the optimizer meets it exactly in expectation
    for split in ("val", "test"):
        np.testing.assert_array_equal(strict.predictions[split].probs, plain.predictions[split].probs)
        np.testing.assert_allclose(strict.pmf[split], plain.pmf[split], atol=1e-6)

    tolerance = own_violation / 2
    middle = postprocess(val, test, PostprocessConfig(threshold="equalized_odds", tolerance=tolerance), seed=3)
    share = middle.settings["share"]
    assert 0.0 < share < 1.0
    assert middle.settings["val_violation"] == pytest.approx(tolerance, abs=1e-6)  # the smallest share: at the bound
    own = np.eye(2)[test.probs.argmax(1)]
    np.testing.assert_allclose(middle.pmf["test"], share * plain.pmf["test"] + (1 - share) * own)
    labels = middle.predictions["test"].probs.argmax(1)
    from_optimizer = labels == plain.predictions["test"].probs.argmax(1)
    from_model = labels == test.probs.argmax(1)
    assert bool((from_optimizer | from_model).all())  # every label is one of the two
    differ = plain.predictions["test"].probs.argmax(1) != test.probs.argmax(1)
    taken = float(from_optimizer[differ].mean())  # where they differ, the optimizer's label with probability p
    assert abs(taken - share) < 4 * np.sqrt(share * (1 - share) / differ.sum())


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "0.04", True])
def test_a_tolerance_outside_0_1_is_refused_naming_the_field(bad) -> None:
    from fairdistill.config import parse_config
    from fairdistill.errors import ConfigError

    config = {
        "name": "x",
        "data": {"name": "adult"},
        "methods": [{"name": "kd", "loss": {"kind": "kd"}}],
        "postprocess": {"threshold": "equalized_odds", "tolerance": bad},
    }
    with pytest.raises(ConfigError, match=r"postprocess\.tolerance"):
        parse_config(config)
