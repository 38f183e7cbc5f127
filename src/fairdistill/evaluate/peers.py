"""Non-distilled fair references ("peers"): fairlearn's ``ExponentiatedGradient`` reduction (Agarwal et al.,
*A Reductions Approach to Fair Classification*, ICML 2018, arXiv:1803.02453) around a scikit-learn classifier,
fitted on the run's own train split and predicted on val and test, so a report can show what a fairness-
constrained model trained without any teacher reaches on the same data.

Table data and in-memory images: the peers read the split's feature tensor as scikit-learn's ``X``, one row of
numbers per example (an image's pixels flattened, channel by channel); text runs are refused when the run is
planned, and images read from files (no in-memory tensor) when the data is loaded, before any training. Two
classes only (fairlearn's classification moments). The estimators:

- ``logistic``: ``LogisticRegression(max_iter=1000, random_state=seed)`` (lbfgs, C = 1; on images, of the
  pixels);
- ``mlp``: ``MLPClassifier`` with the student's hidden layer sizes, trained like the student (its epochs as
  ``max_iter``, its learning rate and batch size; adam, ``random_state=seed``). ExponentiatedGradient refits
  it with ``sample_weight``, which ``MLPClassifier.fit`` accepts from scikit-learn 1.7 on.

- ``distilled``: the run's student model (any table model), trained with kd's loss (``alpha``, default 0.5;
  ``tau``, default 2) against the teacher's logits of the train rows, on the labels and weights the reduction
  hands over (:class:`~fairdistill.evaluate.distilled_estimator.DistilledClassifier`): a *distilled* student made
  fair by the reduction, shown with role ``reduced`` rather than ``peer``. Needs the run's teacher.

Like the ThresholdOptimizer, ExponentiatedGradient predicts randomised hard labels (a mixture of classifiers);
they are drawn by fairlearn's ``predict`` with ``random_state`` = the run's seed and scored as one-hot
probabilities (:mod:`fairdistill.evaluate.postprocess`). Fitting is deterministic for a seed, so a resumed run
refits a peer to the same predictions.
"""

from __future__ import annotations

import inspect
import time
import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
from sklearn.dummy import DummyClassifier
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from fairdistill.config import PeerConfig, RunConfig, TrainConfig
from fairdistill.data.core import DEFAULT_ENCODING, DatasetInfo, SplitDataset, Splits, is_lazy
from fairdistill.errors import ConfigError
from fairdistill.evaluate.distilled_estimator import DistilledClassifier
from fairdistill.evaluate.postprocess import hard_predictions
from fairdistill.evaluate.predict import Predictions

#: The dataset modalities peers can read (images only when they are held in memory).
PEER_MODALITIES = ("tabular", "image")

#: fairlearn's moment of each ``constraint``.
MOMENTS = {"equalized-odds": EqualizedOdds, "demographic-parity": DemographicParity}


@dataclass(frozen=True)
class PeerPlan:
    """One peer, resolved: its name, how reports show it and its estimator's settings."""

    name: str
    label: str
    config: PeerConfig
    #: The MLP's hidden layer sizes, epochs, learning rate and batch size (None for logistic regression).
    hidden: tuple[int, ...] | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    #: distilled: the student's model spec and kd's α and τ.
    model_spec: dict[str, Any] | None = None
    alpha: float | None = None
    tau: float | None = None

    @property
    def distilled(self) -> bool:
        return self.config.estimator == "distilled"

    @property
    def role(self) -> str:
        """``peer`` (a non-distilled reference) or ``reduced`` (the distilled student inside the reduction)."""
        return "reduced" if self.distilled else "peer"

    @property
    def method(self) -> str:
        """The recipe shown in the tables: ``expgrad(equalized-odds, logistic)``, ``expgrad(equalized-odds, kd
        α=0.5 τ=2)`` around the distilled student."""
        bound = self.config.difference_bound
        constraint = self.config.constraint + ("" if bound is None else f" bound={bound:g}")
        if self.distilled:
            return f"{self.config.kind}({constraint}, kd alpha={self.alpha:g} tau={self.tau:g})"
        size = "" if self.hidden is None else f" {'x'.join(map(str, self.hidden))}"
        return f"{self.config.kind}({constraint}, {self.config.estimator}{size})"

    def describe(self) -> dict[str, Any]:
        """The peer's settings as metrics.json records them."""
        described: dict[str, Any] = {
            "kind": self.config.kind,
            "constraint": self.config.constraint,
            "estimator": self.config.estimator,
            "difference_bound": self.config.difference_bound,
            "eps": self.config.eps,
            "max_iter": self.config.max_iter,
            "fitted_on": "train",
        }
        if self.hidden is not None:
            described.update(hidden=list(self.hidden), epochs=self.epochs, lr=self.lr, batch_size=self.batch_size)
        if self.distilled:
            described.update(
                model=self.model_spec,
                loss={"kind": "kd", "alpha": self.alpha, "tau": self.tau},
                epochs=self.epochs,
                lr=self.lr,
                batch_size=self.batch_size,
                teacher="the run's teacher (its logits of the train rows)",
            )
        return described


def plan_peers(
    config: RunConfig, modality: str, student_spec: dict[str, Any], student_train: TrainConfig
) -> list[PeerPlan]:
    """The run's peers, checked against the data's modality and the student (a ConfigError naming the entry)."""
    if not config.peers:
        return []
    if modality not in PEER_MODALITIES:
        raise ConfigError(
            f"peers: fairlearn's ExponentiatedGradient peers need table data or in-memory images (one row of "
            f"numbers per example), but data {config.data.name} is {modality}; remove peers (post-processing, "
            "postprocess:, works on any data with two classes)"
        )
    plans = []
    for i, peer in enumerate(config.peers):
        where = f"peers.{i}({peer.default_name if peer.name is None else peer.name})"
        name = peer.name or peer.default_name
        label = f"peer: {peer.short_name} ({peer.estimator})"
        if peer.estimator == "distilled":
            plans.append(
                PeerPlan(
                    name,
                    f"{peer.short_name} around the kd student",
                    peer,
                    epochs=peer.epochs if peer.epochs is not None else student_train.epochs,
                    lr=student_train.lr,
                    batch_size=student_train.batch_size,
                    model_spec=dict(student_spec),
                    alpha=0.5 if peer.alpha is None else peer.alpha,
                    tau=2.0 if peer.tau is None else peer.tau,
                )
            )
            continue
        if peer.estimator != "mlp":
            plans.append(PeerPlan(name, label, peer))
            continue
        if "sample_weight" not in inspect.signature(MLPClassifier.fit).parameters:  # scikit-learn < 1.7
            raise ConfigError(
                f"{where}: estimator mlp needs MLPClassifier.fit(sample_weight=...) (scikit-learn 1.7 or later) "
                "for ExponentiatedGradient's reweighting; upgrade scikit-learn or use estimator: logistic"
            )
        hidden = peer.hidden if peer.hidden is not None else _student_hidden(student_spec, where)
        plans.append(
            PeerPlan(
                name,
                label,
                peer,
                hidden=tuple(hidden),
                epochs=peer.epochs if peer.epochs is not None else student_train.epochs,
                lr=student_train.lr,
                batch_size=student_train.batch_size,
            )
        )
    return plans


def _student_hidden(spec: dict[str, Any], where: str) -> list[int]:
    """The hidden layer sizes of the student's ``mlp`` (its default when the spec leaves them out)."""
    if spec.get("name") != "mlp":
        raise ConfigError(
            f"{where}.hidden: an mlp peer takes the student's hidden layer sizes, but the student is "
            f"{spec.get('name')!r}, not an mlp; give the peer hidden: [sizes]"
        )
    from fairdistill.models.small import MLPOptions

    return list(MLPOptions.model_validate({k: v for k, v in spec.items() if k != "name"}).hidden)


def base_estimator(
    plan: PeerPlan, seed: int, teacher_logits: np.ndarray | None = None, info: DatasetInfo | None = None
) -> LogisticRegression | MLPClassifier | DistilledClassifier:
    """The scikit-learn classifier ExponentiatedGradient reweights (a fresh, unfitted one); ``distilled`` needs
    the teacher's train logits and the dataset's info."""
    if plan.distilled:
        if teacher_logits is None or info is None:
            raise ValueError(f"peer {plan.name}: the distilled estimator needs the teacher's train logits")
        assert plan.model_spec is not None and plan.epochs is not None and plan.lr is not None
        assert plan.batch_size is not None and plan.alpha is not None and plan.tau is not None
        return DistilledClassifier(
            teacher_logits,
            plan.model_spec,
            info,
            epochs=plan.epochs,
            lr=plan.lr,
            batch_size=plan.batch_size,
            alpha=plan.alpha,
            tau=plan.tau,
            random_state=seed,
        )
    if plan.config.estimator == "logistic":
        return LogisticRegression(max_iter=1000, random_state=seed)
    assert plan.hidden is not None and plan.epochs is not None and plan.lr is not None and plan.batch_size is not None
    return MLPClassifier(
        hidden_layer_sizes=plan.hidden,
        max_iter=plan.epochs,
        learning_rate_init=plan.lr,
        batch_size=plan.batch_size,
        random_state=seed,
    )


def exponentiated_gradient(
    plan: PeerPlan, seed: int, teacher_logits: np.ndarray | None = None, info: DatasetInfo | None = None
) -> ExponentiatedGradient:
    """fairlearn's ExponentiatedGradient with the peer's constraint around its base estimator."""
    return ExponentiatedGradient(
        base_estimator(plan, seed, teacher_logits, info),
        constraints=MOMENTS[plan.config.constraint](difference_bound=plan.config.difference_bound),
        eps=plan.config.eps,
        max_iter=plan.config.max_iter,
    )


def check_peer_data(splits: Splits) -> None:
    """Refuse (ConfigError naming the split) data the peers cannot read: every split needs an in-memory tensor
    of its examples, e.g. not images decoded from files one by one. Called right after the data is loaded."""
    for split in (splits.train, splits.val, splits.test):
        _feature_tensor(split)


def _feature_tensor(split: SplitDataset) -> torch.Tensor:
    encoding = None if is_lazy(split) else split.encodings.get(DEFAULT_ENCODING)
    if encoding is None or isinstance(encoding, dict) or encoding.ndim < 2:
        where = "reads its examples from files one at a time" if is_lazy(split) else "has no tensor of examples"
        raise ConfigError(
            f"peers: split {split.name} {where}; fairlearn's ExponentiatedGradient needs "
            "every example as one row of numbers in memory (table data, or images held as one tensor such as "
            "colored-mnist's); remove peers"
        )
    return encoding


def features(split: SplitDataset) -> np.ndarray:
    """A split's examples as an (N, F) float array (scikit-learn's ``X``): table rows as they are, images
    flattened (channel, row, column)."""
    encoding = _feature_tensor(split)
    return encoding.detach().cpu().reshape(len(encoding), -1).numpy().astype(np.float64)


@dataclass(frozen=True)
class FittedPeer:
    """A peer's predictions on val and test (one-hot of the drawn labels), fairlearn's probabilities of each label
    (``pmf``), the size of one base classifier, how many the mixture holds and the fitting time."""

    predictions: dict[str, Predictions]
    pmf: dict[str, np.ndarray]
    params: int
    mixture: int
    seconds: float
    converged: bool


def fit_peer(plan: PeerPlan, splits: Splits, seed: int, teacher_logits: np.ndarray | None = None) -> FittedPeer:
    """Fit the peer on the train split and predict val and test with ``random_state=seed`` (``teacher_logits``:
    the teacher's logits of the train rows, in order, for the distilled estimator)."""
    if splits.info.modality not in PEER_MODALITIES:
        raise ConfigError(
            f"peers: need table data or in-memory images, but data {splits.info.name} is {splits.info.modality}"
        )
    started = time.time()
    model = exponentiated_gradient(plan, seed, teacher_logits, splits.info)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        model.fit(features(splits.train), splits.train.y.numpy(), sensitive_features=splits.train.attr.numpy())
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    predictions, pmf = {}, {}
    for split_name in ("val", "test"):
        split: SplitDataset = getattr(splits, split_name)
        X = features(split)  # noqa: N806 - scikit-learn's name
        like = Predictions(
            index=np.arange(len(split)),
            y=split.y.numpy(),
            attr=split.attr.numpy(),
            group=split.group.numpy(),
            probs=np.zeros((len(split), splits.info.num_classes), dtype=np.float32),
        )
        labels = np.asarray(model.predict(X, random_state=seed)).astype(int)
        predictions[split_name] = hard_predictions(like, labels)
        pmf[split_name] = np.asarray(model._pmf_predict(X), dtype=np.float64)
    weights = model.weights_
    used = [model.predictors_[h] for h in weights.index if weights[h] > 0]
    trained = [p for p in used if not isinstance(p, DummyClassifier)] or list(model.predictors_)
    return FittedPeer(
        predictions,
        pmf,
        params=_parameters(trained[0]),
        mixture=len(used),
        seconds=time.time() - started,
        converged=converged,
    )


def _parameters(estimator: Any) -> int:
    """The number of learned numbers of one fitted base classifier (weights and biases)."""
    if isinstance(estimator, MLPClassifier):
        return int(sum(w.size for w in estimator.coefs_) + sum(b.size for b in estimator.intercepts_))
    if isinstance(estimator, LogisticRegression):
        return int(np.size(estimator.coef_) + np.size(estimator.intercept_))
    if isinstance(estimator, DistilledClassifier):
        return estimator.parameters_count
    return 0  # fairlearn's constant (dummy) predictor
