"""Post-processing a trained model with fairlearn's ``ThresholdOptimizer`` (Hardt, Price and Srebro 2016).

The optimizer is fitted on the validation split, from the model's probability of class 1 and the attribute
(its ``sensitive_features``), and predicts the validation and test splits. Its predictions are *randomised
hard labels*: per attribute value it mixes two thresholds, so one example may be called 1 with probability
0.3. They are drawn by fairlearn's own ``predict`` with ``random_state`` = the run's seed, so a run (and a
resumed run) gives the same labels every time.

What the metrics get (docs/postprocessing.md): the drawn labels as one-hot probabilities, so every metric
of a predicted class (accuracy, worst-group accuracy, MAD, EO, DP, ...) is the metric of the labels fairlearn
predicts. Calibration is not meaningful for such rows (a one-hot "probability" is a label, not a confidence):
``ece`` and ``group_ece`` are ``null`` with the reason recorded. fairlearn's probabilities of predicting each
class (``_pmf_predict``) are kept in the predictions files as ``pmf_<c>`` columns.

**A stated tolerance** (``tolerance: 0.04``): ThresholdOptimizer meets its criterion exactly, which costs
accuracy. With a tolerance the row is the randomised mixture that answers, per example, with the optimizer's
label with probability p and with the model's own label otherwise, p the smallest share whose *expected*
violation of the criterion on val is within the tolerance (every per-group rate of the mixture is linear in p,
so its violation, a largest gap between attribute values, is convex in p and the smallest such p is found by
bisection; p = 1 when the optimizer alone exceeds the tolerance). The draws use the run's seed.

Two classes only: ThresholdOptimizer thresholds one score; a multiclass run is refused before anything trains.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from fairlearn.postprocessing import ThresholdOptimizer
from sklearn.base import BaseEstimator

from fairdistill.config import PostprocessConfig
from fairdistill.data.core import DatasetInfo
from fairdistill.errors import ConfigError
from fairdistill.evaluate.predict import Predictions

#: Suffix of a post-processed model's name: ``kd`` → ``kd+threshold``.
THRESHOLD_SUFFIX = "+threshold"

#: Why the calibration metrics of hard (randomised) predictions are null.
NO_CONFIDENCE = "hard randomised predictions (a post-processor or a peer) have no confidence to calibrate"

#: The calibration metrics of :func:`~fairdistill.evaluate.metrics.compute_metrics`.
CALIBRATION_METRICS = ("ece", "group_ece")


def threshold_name(source: str) -> str:
    """The name of ``source`` post-processed by the ThresholdOptimizer (``kd+threshold``)."""
    return f"{source}{THRESHOLD_SUFFIX}"


def check_binary(info: DatasetInfo, what: str) -> None:
    """A ConfigError unless the data has two classes and real attribute labels (``what``: the config field)."""
    if info.num_classes != 2:
        raise ConfigError(
            f"{what}: fairlearn's ThresholdOptimizer and ExponentiatedGradient handle binary labels only, but data "
            f"{info.name} has {info.num_classes} classes ({', '.join(info.class_names[:5])}"
            f"{', ...' if info.num_classes > 5 else ''}); remove {what} or use data with two classes"
        )
    if not info.groups_known:
        raise ConfigError(f"{what}: needs the attribute of every example, but data {info.name} has no attribute labels")


class ScoreColumn(BaseEstimator):
    """A prefit "estimator" whose prediction is its input's first column: the model's score, computed before.

    ThresholdOptimizer thresholds the output of an estimator; our models are PyTorch networks already evaluated
    on every example, so their class-1 probability is passed as the one feature and read back as the score.
    """

    def fit(self, X: Any, y: Any = None) -> ScoreColumn:  # noqa: N803 - scikit-learn's argument name
        return self

    def predict(self, X: Any) -> np.ndarray:  # noqa: N803
        return np.asarray(X, dtype=np.float64)[:, 0]

    def __sklearn_is_fitted__(self) -> bool:
        return True


@dataclass(frozen=True)
class Postprocessed:
    """A post-processed model's predictions on val and test (one-hot of the drawn labels) and fairlearn's
    probabilities of each label (``pmf``: split → (N, 2))."""

    predictions: dict[str, Predictions]
    pmf: dict[str, np.ndarray]
    settings: dict[str, Any]


def threshold_optimizer(settings: PostprocessConfig) -> ThresholdOptimizer:
    """fairlearn's ThresholdOptimizer with the config's criterion, around the model's precomputed scores."""
    return ThresholdOptimizer(
        estimator=ScoreColumn(),
        constraints=settings.threshold,
        objective=settings.objective,
        grid_size=settings.grid_size,
        prefit=True,
        predict_method="predict",
    )


#: The expected per-group rates each criterion equalises: P(ŷ = 1 | a) or P(ŷ = 1 | y, a) for the labels y listed.
CRITERION_RATES: dict[str, tuple[int, ...] | None] = {
    "demographic_parity": None,
    "selection_rate_parity": None,
    "equalized_odds": (0, 1),
    "true_positive_rate_parity": (1,),
    "false_negative_rate_parity": (1,),
    "false_positive_rate_parity": (0,),
    "true_negative_rate_parity": (0,),
}

#: Bisection steps for the mixing share: 2⁻⁴⁰ of the unit interval.
SHARE_STEPS = 40


def criterion_rates(y: np.ndarray, positive: np.ndarray, attr: np.ndarray, criterion: str) -> list[np.ndarray]:
    """Per rate the criterion equalises, the expected rate of predicting 1 of each attribute value that has
    examples (``positive``: each example's probability of label 1)."""
    labels = CRITERION_RATES[criterion]
    cells = [np.ones(len(y), dtype=bool)] if labels is None else [y == label for label in labels]
    rates = []
    for cell in cells:
        members = [cell & (attr == a) for a in np.unique(attr)]
        rates.append(np.array([positive[m].mean() for m in members if m.any()]))
    return rates


def largest_gap(rates: list[np.ndarray]) -> float:
    """The largest gap between attribute values over the rates; 0 when fewer than two values have examples."""
    return max([0.0] + [float(r.max() - r.min()) for r in rates if len(r) >= 2])


def violation(y: np.ndarray, positive: np.ndarray, attr: np.ndarray, criterion: str) -> float:
    """The criterion's expected violation: the largest gap between attribute values in the expected rate of
    predicting 1, over the rates the criterion equalises (:func:`criterion_rates`)."""
    return largest_gap(criterion_rates(y, positive, attr, criterion))


def mixing_share(
    y: np.ndarray,
    model_positive: np.ndarray,
    optimizer_positive: np.ndarray,
    attr: np.ndarray,
    criterion: str,
    tolerance: float,
) -> float:
    """The smallest p in [0, 1] whose mixture (1 − p)·model + p·optimizer violates ``criterion`` by at most
    ``tolerance`` in expectation (1 when even p = 1 does not). The mixture's rates are the same mixture of the
    two models' rates, so these are computed once."""
    model = criterion_rates(y, model_positive, attr, criterion)
    optimizer = criterion_rates(y, optimizer_positive, attr, criterion)

    def mixed(p: float) -> float:
        return largest_gap([(1.0 - p) * m + p * o for m, o in zip(model, optimizer, strict=True)])

    if mixed(0.0) <= tolerance:
        return 0.0
    if mixed(1.0) > tolerance:
        return 1.0
    low, high = 0.0, 1.0  # convex violation: above the tolerance on [0, p*), within it on [p*, 1]
    for _ in range(SHARE_STEPS):
        middle = 0.5 * (low + high)
        low, high = (low, middle) if mixed(middle) <= tolerance else (middle, high)
    return high


def postprocess(val: Predictions, test: Predictions, settings: PostprocessConfig, seed: int) -> Postprocessed:
    """Fit the ThresholdOptimizer on ``val`` (a model's predictions: class-1 probability, label, attribute) and
    predict val and test with ``random_state=seed`` (the run's seed; not in ``settings``, which metrics.json
    averages over seeds); with ``settings.tolerance``, mixed with the model's own labels (module docstring)."""
    if val.probs.shape[1] != 2:
        raise ConfigError(f"postprocess: the ThresholdOptimizer needs two classes, got {val.probs.shape[1]}")
    optimizer = threshold_optimizer(settings)
    optimizer.fit(_scores(val), val.y, sensitive_features=val.attr)
    sources = {"val": val, "test": test}
    predictions, pmf, labels = {}, {}, {}
    for split, source in sources.items():
        scores = _scores(source)
        drawn = optimizer.predict(scores, sensitive_features=source.attr, random_state=seed)
        labels[split] = np.asarray(drawn, dtype=int)
        pmf[split] = np.asarray(optimizer._pmf_predict(scores, sensitive_features=source.attr), dtype=np.float64)
    described: dict[str, Any] = {
        "kind": "threshold-optimizer",
        "constraints": settings.threshold,
        "objective": settings.objective,
        "grid_size": settings.grid_size,
        "fitted_on": "val",
    }
    if settings.tolerance is not None:
        own = {split: source.probs.argmax(1).astype(int) for split, source in sources.items()}
        share = mixing_share(
            val.y, own["val"].astype(np.float64), pmf["val"][:, 1], val.attr, settings.threshold, settings.tolerance
        )
        for index, split in enumerate(sources):
            keep_optimizer = np.random.default_rng([seed, index]).random(len(own[split])) < share
            labels[split] = np.where(keep_optimizer, labels[split], own[split])
            pmf[split] = share * pmf[split] + (1.0 - share) * np.eye(2)[own[split]]
        mixed_val = violation(val.y, pmf["val"][:, 1], val.attr, settings.threshold)
        described.update({"tolerance": settings.tolerance, "share": share, "val_violation": mixed_val})
    for split, source in sources.items():
        predictions[split] = hard_predictions(source, labels[split])
    return Postprocessed(predictions, pmf, described)


def hard_predictions(like: Predictions, labels: np.ndarray) -> Predictions:
    """``like``'s examples with the predicted ``labels`` as one-hot probabilities."""
    probs = np.zeros((len(labels), like.probs.shape[1]), dtype=np.float32)
    probs[np.arange(len(labels)), labels] = 1.0
    return Predictions(index=like.index, y=like.y, attr=like.attr, group=like.group, probs=probs)


def without_calibration(metrics: dict[str, Any]) -> dict[str, Any]:
    """``metrics`` of hard predictions with the calibration metrics null and the reason recorded."""
    result = dict(metrics)
    result["ece"] = None
    result["group_ece"] = dict.fromkeys(metrics.get("group_ece") or {})
    result["undefined"] = {**(metrics.get("undefined") or {}), "ece": NO_CONFIDENCE}
    return result


def _scores(predictions: Predictions) -> np.ndarray:
    """The model's probability of class 1, as the one feature column of :class:`ScoreColumn`."""
    return np.asarray(predictions.probs[:, 1], dtype=np.float64).reshape(-1, 1)
