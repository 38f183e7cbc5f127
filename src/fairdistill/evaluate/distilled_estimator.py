"""A distilled student as a scikit-learn classifier, so that fairlearn's ``ExponentiatedGradient`` can reweight
and relabel it: the ``distilled`` estimator of a peer (:mod:`fairdistill.evaluate.peers`).

``fit(X, y, sample_weight)`` trains a fresh student (the run's student model, e.g. ``mlp [16]``) with kd's loss,
(1 − α)·CE(y, z_s) + α·τ²·KL(σ(z_t/τ) ‖ σ(z_s/τ)) per row, weighted by ``sample_weight``: the labels and weights
are the ones the reduction hands over, the teacher term uses the teacher's logits of the same rows of the train
split (row k of ``X`` is train example k, which ExponentiatedGradient keeps in order). Minibatch Adam with the
student's epochs, learning rate and batch size, seeded by ``random_state``; ``predict`` gives argmax labels.
``X`` is one row of numbers per example; rows of images (flattened pixels) are shaped back to the dataset's
``input_shape`` before the student reads them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.base import BaseEstimator, ClassifierMixin

from fairdistill.data.core import DEFAULT_ENCODING, DatasetInfo
from fairdistill.distill.losses import soft_kl
from fairdistill.models.core import TappedModel

#: Rows per forward pass when predicting (bounds the memory of a convolutional student on many images).
PREDICT_CHUNK = 2048


class DistilledClassifier(ClassifierMixin, BaseEstimator):
    """fit / predict of a student distilled from ``teacher_logits`` (one row per training example)."""

    def __init__(
        self,
        teacher_logits: np.ndarray,
        model_spec: dict[str, Any],
        info: DatasetInfo,
        epochs: int = 10,
        lr: float = 3e-3,
        batch_size: int = 256,
        alpha: float = 0.5,
        tau: float = 2.0,
        random_state: int = 0,
    ) -> None:
        self.teacher_logits = teacher_logits
        self.model_spec = model_spec
        self.info = info
        self.epochs = epochs
        self.lr = lr
        self.batch_size = batch_size
        self.alpha = alpha
        self.tau = tau
        self.random_state = random_state

    def fit(self, X: np.ndarray, y: np.ndarray, sample_weight: np.ndarray | None = None) -> DistilledClassifier:  # noqa: N803
        from fairdistill.models import build_model

        x = self._inputs(X)
        # copies: fairlearn hands over read-only arrays, which torch would share and warn about
        labels = torch.tensor(np.asarray(y), dtype=torch.long)
        teacher = torch.as_tensor(np.asarray(self.teacher_logits, dtype=np.float32))
        if len(x) != len(teacher):
            raise ValueError(
                f"DistilledClassifier.fit: X has {len(x)} rows but the teacher's logits {len(teacher)}; the rows "
                "must be the train split's, in order"
            )
        if sample_weight is None:
            weights = torch.ones(len(x))
        else:
            weights = torch.tensor(np.asarray(sample_weight), dtype=torch.float32)
        if float(weights.sum()) <= 0:
            raise ValueError("DistilledClassifier.fit: the sample weights sum to 0")
        weights = weights * (len(weights) / weights.sum())  # mean 1: the learning rate means the same as for kd
        self.classes_ = np.arange(self.info.num_classes)
        generator = torch.Generator().manual_seed(int(self.random_state))
        with torch.random.fork_rng():
            torch.manual_seed(int(self.random_state))
            model = build_model(self.model_spec, self.info, where="peers.estimator(distilled)")
        optimizer = torch.optim.Adam(model.parameters(), lr=self.lr)
        model.train()
        for _ in range(self.epochs):
            order = torch.randperm(len(x), generator=generator)
            for start in range(0, len(x), self.batch_size):
                rows = order[start : start + self.batch_size]
                logits = model({DEFAULT_ENCODING: x[rows]}).logits
                ce = F.cross_entropy(logits, labels[rows], reduction="none")
                kl = soft_kl(teacher[rows], logits, self.tau)
                per_row = (1.0 - self.alpha) * ce + self.alpha * self.tau**2 * kl
                loss = (weights[rows] * per_row).mean()
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
        model.eval()
        self.model_: TappedModel = model
        return self

    def _inputs(self, X: np.ndarray) -> torch.Tensor:  # noqa: N803
        """``X`` as the student's input tensor: (N, *input_shape) when the dataset gives a shape."""
        x = torch.tensor(np.asarray(X, dtype=np.float32))
        shape = self.info.input_shape
        if shape is None or tuple(x.shape[1:]) == tuple(shape):
            return x
        if x.ndim != 2 or x.shape[1] != int(np.prod(shape)):
            raise ValueError(
                f"DistilledClassifier: X has rows of shape {tuple(x.shape[1:])}, expected {int(np.prod(shape))} "
                f"numbers (one example of shape {tuple(shape)})"
            )
        return x.reshape(len(x), *shape)

    @torch.no_grad()
    def predict_proba(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        x = self._inputs(X)
        chunks = [
            torch.softmax(self.model_({DEFAULT_ENCODING: x[start : start + PREDICT_CHUNK]}).logits, 1)
            for start in range(0, len(x), PREDICT_CHUNK)
        ]
        return torch.cat(chunks).numpy().astype(np.float64)

    def predict(self, X: np.ndarray) -> np.ndarray:  # noqa: N803
        return self.predict_proba(X).argmax(1)

    @property
    def parameters_count(self) -> int:
        return int(sum(p.numel() for p in self.model_.parameters()))
