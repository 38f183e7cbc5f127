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


def postprocess(val: Predictions, test: Predictions, settings: PostprocessConfig, seed: int) -> Postprocessed:
    """Fit the ThresholdOptimizer on ``val`` (a model's predictions: class-1 probability, label, attribute) and
    predict val and test with ``random_state=seed`` (the run's seed; not in ``settings``, which metrics.json
    averages over seeds)."""
    if val.probs.shape[1] != 2:
        raise ConfigError(f"postprocess: the ThresholdOptimizer needs two classes, got {val.probs.shape[1]}")
    optimizer = threshold_optimizer(settings)
    optimizer.fit(_scores(val), val.y, sensitive_features=val.attr)
    predictions, pmf = {}, {}
    for split, source in (("val", val), ("test", test)):
        scores = _scores(source)
        labels = np.asarray(optimizer.predict(scores, sensitive_features=source.attr, random_state=seed), dtype=int)
        predictions[split] = hard_predictions(source, labels)
        pmf[split] = np.asarray(optimizer._pmf_predict(scores, sensitive_features=source.attr), dtype=np.float64)
    described = {
        "kind": "threshold-optimizer",
        "constraints": settings.threshold,
        "objective": settings.objective,
        "grid_size": settings.grid_size,
        "fitted_on": "val",
    }
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
