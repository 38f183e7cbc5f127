"""Early readouts: an auxiliary head on a student tap whose confidence reweights the loss (docs/methods.md).

DeDiER (Tiwari et al., WACV 2024) observes that an early layer of the student is confidently wrong on examples
that rely on spurious features, and up-weights them: w_i = exp(β·m_i^α) when the readout errs, else 1, where
m_i is the readout's top-1 minus top-2 probability. The Laplace variants take m_i (or the entropy) from the
Laplace-approximated predictive of the head instead, which is better calibrated (Meronen et al., WACV 2024).
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from torch import nn

from fairdistill.data.core import Batch, SplitDataset
from fairdistill.distill.core import MethodContext, TrainState
from fairdistill.distill.features import extract_features, pool_tap
from fairdistill.distill.laplace import (
    KronLaplace,
    tune_tau_by_evidence,
    tune_tau_by_validation,
)
from fairdistill.distill.weighting import WEIGHTINGS, IndexedWeighting, WeightingOptions
from fairdistill.errors import ConfigError
from fairdistill.models.core import ModelOutput, TappedModel
from fairdistill.processes import Processes
from fairdistill.registry import Options


class LaplaceOptions(Options):
    prior: Literal["exact", "split"] = "exact"
    #: ``probit`` (default): deterministic, the logit covariance with its common-shift direction projected out;
    #: ``mc``: ``samples`` draws, the noise keyed by (seed, example index).
    predictive: Literal["mc", "probit"] = "probit"
    samples: int = Field(default=32, ge=1)
    #: How τ is chosen: Laplace evidence on the train features, or validation NLL.
    tune: Literal["evidence", "val-nll"] = "evidence"


#: Largest exponent of an early-readout weight exp(β·score) (see EarlyReadoutOptions.beta).
MAX_EXPONENT = 50.0


class EarlyReadoutOptions(WeightingOptions):
    #: The student tap the readout reads; omitted: the student's first (earliest) tap.
    tap: str | None = None
    score: Literal["margin", "laplace-margin", "laplace-entropy"] = "margin"
    #: At most 50: the score is in [0, 1], so a weight can reach exp(β) ≈ 5·10²¹, already one example outweighing
    #: all others; larger β overflows float32 (inf weights, NaN loss).
    beta: float = Field(default=3.0, ge=0.0, le=MAX_EXPONENT)
    alpha: float = Field(default=0.2, gt=0.0)
    #: ``power``: exp(β·m^α) (the released DeDiER code); ``product``: exp(β·m·α) (the slide's formula).
    form: Literal["power", "product"] = "power"
    #: ``epoch``: re-initialise and fit the head on the whole train split after every epoch (faithful);
    #: ``online``: train the head alongside the student and use its predictions of the previous epoch.
    refit: Literal["epoch", "online"] = "epoch"
    head: Literal["linear", "mlp"] = "linear"
    head_hidden: int = Field(default=64, gt=0)
    head_epochs: int = Field(default=20, ge=1)
    head_lr: float = Field(default=1e-2, gt=0.0)
    head_batch_size: int = Field(default=256, gt=0)
    laplace: LaplaceOptions = LaplaceOptions()

    @model_validator(mode="after")
    def _bounded_product(self) -> EarlyReadoutOptions:
        if self.form == "product" and self.beta * self.alpha > MAX_EXPONENT:
            raise ValueError(
                f"form product: beta × alpha = {self.beta * self.alpha:g} makes weights up to "
                f"exp({self.beta * self.alpha:g}); keep beta × alpha ≤ {MAX_EXPONENT:g}"
            )
        return self


class ReadoutHead(nn.Module):
    """Standardise the pooled features, then a linear layer (or a one-hidden-layer MLP) to class logits.

    ``last_layer_features`` gives the input of the final linear layer, on which the Laplace posterior lives.
    """

    #: Buffers (registered in __init__): the train features' per-column mean and std.
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, in_features: int, num_classes: int, kind: str, hidden: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(in_features))
        self.register_buffer("std", torch.ones(in_features))
        self.body: nn.Module = (
            nn.Sequential(nn.Linear(in_features, hidden), nn.ReLU()) if kind == "mlp" else nn.Identity()
        )
        self.out = nn.Linear(hidden if kind == "mlp" else in_features, num_classes)

    def reset(self, features: torch.Tensor) -> None:
        """Re-initialise the weights and set the standardisation from ``features``."""
        for module in self.modules():
            if isinstance(module, nn.Linear):
                module.reset_parameters()
        self.standardise(features)

    def standardise(self, features: torch.Tensor) -> None:
        """Set the standardisation (per-column mean and std) from ``features``."""
        mean = features.mean(0)
        self.mean.copy_(mean)
        if len(features) > 1:  # two passes, the sample std: torch's one-pass std(0) is ~4x slower on tall columns
            centred = features - mean
            self.std.copy_(((centred * centred).sum(0) / (len(features) - 1)).sqrt().clamp(min=1e-6))
        else:
            self.std.fill_(1.0)

    @property
    def is_linear(self) -> bool:
        return isinstance(self.body, nn.Identity)

    def last_layer_features(self, features: torch.Tensor) -> torch.Tensor:
        return self.body((features - self.mean) / self.std)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.out(self.last_layer_features(features))


def fit_head(
    head: ReadoutHead, features: torch.Tensor, y: torch.Tensor, epochs: int, lr: float, batch_size: int, seed: int
) -> None:
    """Re-initialise ``head`` and fit it by minibatch Adam on cross-entropy (a convex problem for a linear head)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        head.reset(features)
    optimizer = torch.optim.Adam(head.parameters(), lr=lr)
    head.train()
    with torch.enable_grad():
        for _ in range(epochs):
            order = torch.randperm(len(features), generator=generator)
            for start in range(0, len(features), batch_size):
                idx = order[start : start + batch_size]
                loss = F.cross_entropy(head(features[idx]), y[idx])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    head.eval()


#: Full-batch L-BFGS fit of a linear head: stop when every gradient entry of the mean cross-entropy is at most
#: this (float64), or after LBFGS_MAX_ITER iterations (reached only when the classes are (nearly) separable in
#: the tap, where the unregularised optimum lies at infinity).
LBFGS_TOLERANCE_GRAD = 1e-6
LBFGS_MAX_ITER = 200
#: Heads with at most this many parameters, C·(d + 1), are fit by Newton's method instead: the Hessian is
#: small enough to build and solve, and a handful of steps reach the minimum (L-BFGS takes ~30 closures).
NEWTON_MAX_PARAMETERS = 160
#: Newton stops at the L-BFGS gradient tolerance or after this many steps (separable classes).
NEWTON_MAX_STEPS = 50


def _relative_fit(x: torch.Tensor, target: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean cross-entropy and class probabilities of the softmax model whose class-0 logit is 0 and whose other
    logits are x βᵀ (``beta``: (C − 1) × (d + 1)); with two classes, a logistic regression on z = x β₁."""
    if beta.shape[0] == 1:  # the same quantities without a softmax over a column of zeros (~2.5x faster)
        z = x @ beta[0]
        positive = torch.sigmoid(z)
        loss = F.binary_cross_entropy_with_logits(z, target.to(x.dtype))
        return loss, torch.stack([1.0 - positive, positive], 1)
    logits = torch.cat([x.new_zeros(x.shape[0], 1), x @ beta.T], 1)
    log_probs = torch.log_softmax(logits, 1)
    return -log_probs.gather(1, target.unsqueeze(1)).mean(), log_probs.exp()


def _newton_direction(x: torch.Tensor, p: torch.Tensor, gradient: torch.Tensor, exact: bool) -> torch.Tensor:
    """H⁻¹g for the relative softmax model: blocks (a, b) of H = mean_n p_a(δ_ab − p_b)·x xᵀ, the products in
    float32 unless ``exact`` (float64). A float32 H is ~3x cheaper on tall x and only shapes the step: the loss
    and the gradient, which decide acceptance and convergence, stay float64. The ridge keeps a near-singular H
    (separable classes) solvable: 1e-12 of its mean diagonal in float64, 1e-6 (above float32's rounding) else."""
    n, width = x.shape
    classes = p.shape[1]
    dtype = torch.float64 if exact else torch.float32
    rows = x.to(dtype)
    hessian = x.new_empty(classes - 1, width, classes - 1, width)
    for a in range(1, classes):  # the blocks are symmetric in (a, b): a ≤ b are computed
        for b in range(a, classes):
            weight = (p[:, a] * ((1.0 if a == b else 0.0) - p[:, b])).to(dtype)
            block = (rows.T @ (rows * weight.unsqueeze(1))).to(x.dtype) / n
            hessian[a - 1, :, b - 1, :] = block
            hessian[b - 1, :, a - 1, :] = block
    size = (classes - 1) * width
    hessian = hessian.reshape(size, size)
    ridge = (1e-12 if exact else 1e-6) * float(hessian.diagonal().mean()) + 1e-300
    identity = torch.eye(size, dtype=x.dtype, device=x.device)
    return torch.linalg.solve(hessian + ridge * identity, gradient.reshape(-1)).reshape(gradient.shape)


def newton_softmax_regression(x: torch.Tensor, target: torch.Tensor, theta: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The minimum of the mean cross-entropy of θ (C × (d + 1), ``x`` with a column of ones appended), by Newton
    steps with a backtracking (Armijo) line search, the loss and gradient in float64; returns θ and the steps.

    Softmax ignores a common shift of the classes, so the steps move β = θ_c − θ_0 (c ≥ 1) with θ_0 kept: the
    Hessian of β is then definite (one block for two classes). It is built in float32 (:func:`_newton_direction`);
    a step whose direction is not one of descent is recomputed from the float64 Hessian.
    """
    n = x.shape[0]
    classes = theta.shape[0]
    beta = theta[1:] - theta[0]
    onehot = F.one_hot(target, classes).to(x.dtype)[:, 1:]
    loss, p = _relative_fit(x, target, beta)
    for step in range(NEWTON_MAX_STEPS):
        gradient = (p[:, 1:] - onehot).T @ x / n
        if float(gradient.abs().max()) <= LBFGS_TOLERANCE_GRAD:
            return torch.cat([theta[:1], theta[:1] + beta], 0), step
        direction = _newton_direction(x, p, gradient, exact=False)
        slope = float((gradient * direction).sum())
        if not slope > 0.0:  # float32 rounding made the Hessian indefinite along the step
            direction = _newton_direction(x, p, gradient, exact=True)
            slope = float((gradient * direction).sum())
        t = 1.0
        while True:  # halve until the loss falls by the Armijo share of the predicted decrease
            candidate = beta - t * direction
            candidate_loss, candidate_p = _relative_fit(x, target, candidate)
            if float(candidate_loss) <= float(loss) - 1e-4 * t * slope or t < 1e-12:
                break
            t *= 0.5
        progress = float(loss - candidate_loss)
        if progress > 0:
            beta, loss, p = candidate, candidate_loss, candidate_p
        if progress <= 1e-15 * max(1.0, abs(float(loss))):  # no further progress in float64
            return torch.cat([theta[:1], theta[:1] + beta], 0), step + 1
    return torch.cat([theta[:1], theta[:1] + beta], 0), NEWTON_MAX_STEPS


def fit_linear_head(head: ReadoutHead, features: torch.Tensor, y: torch.Tensor, warm_start: bool, seed: int) -> int:
    """Fit a linear ``head`` to the minimum of the mean cross-entropy on ``features`` (standardised with their own
    mean and std) in float64: Newton's method for heads of at most ``NEWTON_MAX_PARAMETERS`` parameters, else
    full-batch L-BFGS with a strong-Wolfe line search; returns the steps (iterations) used.

    Softmax regression is convex, so the minimum does not depend on the start: ``warm_start`` keeps the head's
    current weights (the previous epoch's fit, usually a few iterations away), else they are re-initialised
    (seeded). The probabilities are unique at the minimum; the weights only up to a common shift of the classes.
    """
    if warm_start:
        head.standardise(features)
    else:
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            head.reset(features)
    x = ((features - head.mean) / head.std).double()
    target = y.long()
    if head.out.weight.numel() + head.out.bias.numel() <= NEWTON_MAX_PARAMETERS:
        with torch.no_grad():
            ones = x.new_ones(x.shape[0], 1)
            theta = torch.cat([head.out.weight.double(), head.out.bias.double().unsqueeze(1)], 1)
            theta, steps = newton_softmax_regression(torch.cat([x, ones], 1), target, theta)
            head.out.weight.copy_(theta[:, :-1])
            head.out.bias.copy_(theta[:, -1])
        head.eval()
        return steps
    weight = head.out.weight.detach().double().clone().requires_grad_(True)
    bias = head.out.bias.detach().double().clone().requires_grad_(True)
    optimizer = torch.optim.LBFGS(
        [weight, bias],
        lr=1.0,
        max_iter=LBFGS_MAX_ITER,
        tolerance_grad=LBFGS_TOLERANCE_GRAD,
        tolerance_change=1e-12,
        history_size=20,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(torch.addmm(bias, x, weight.t()), target)
        loss.backward()
        return loss

    with torch.enable_grad():
        optimizer.step(closure)
    with torch.no_grad():
        head.out.weight.copy_(weight)
        head.out.bias.copy_(bias)
    head.eval()
    iterations = optimizer.state[optimizer._params[0]].get("n_iter", 0)
    return int(iterations)


def top2_margin(probs: torch.Tensor) -> torch.Tensor:
    """p_(1) − p_(2) per row."""
    top = probs.topk(2, dim=1).values
    return top[:, 0] - top[:, 1]


def dedier_weights(probs: torch.Tensor, y: torch.Tensor, beta: float, alpha: float, form: str) -> torch.Tensor:
    """w_i = exp(β·m_i^α) (or exp(β·m_i·α)) where the readout's prediction is wrong, else 1."""
    margin = top2_margin(probs).clamp(min=0.0)
    boost = torch.exp(beta * margin**alpha) if form == "power" else torch.exp(beta * margin * alpha)
    wrong = probs.argmax(1) != y
    return torch.where(wrong, boost, torch.ones_like(boost))


def entropy_weights(probs: torch.Tensor, beta: float) -> torch.Tensor:
    """w_i = exp(β·H(p̂_i)/log C) for every example."""
    entropy = -(probs * torch.log(probs.clamp(min=1e-12))).sum(1)
    return torch.exp(beta * entropy / math.log(probs.shape[1]))


@WEIGHTINGS.register("early-readout", options=EarlyReadoutOptions)
class EarlyReadout(IndexedWeighting):
    """DeDiER-style instance weights from an early readout on a student tap (margin or Laplace scores)."""

    options: EarlyReadoutOptions
    #: Buffers (registered in __init__): the online head's last probabilities (NaN where not seen this epoch)
    #: and, for the online Laplace scores, its features (empty otherwise).
    pending_probs: torch.Tensor
    pending_features: torch.Tensor

    def __init__(self, options: EarlyReadoutOptions, context: MethodContext, where: str) -> None:
        super().__init__(options, context, where)
        if not context.student_taps:
            raise ConfigError(
                f"{where}: an early readout needs a student with taps, and model {context.student_model} has none; "
                "use a model with taps (e.g. cnn, mlp) or remove the weighting"
            )
        if options.tap is not None and options.tap not in context.student_taps:
            raise ConfigError(
                f"{where}.tap: the student ({context.student_model}) has no tap {options.tap!r}; "
                f"its taps: {', '.join(context.student_taps)}"
            )
        self.tap = options.tap if options.tap is not None else context.student_taps[0]
        in_features = context.student_tap_dims.get(self.tap) if context.student_tap_dims else None
        if in_features is None:
            raise ConfigError(f"{where}.tap: the width of tap {self.tap!r} is unknown")
        self.head = ReadoutHead(in_features, context.info.num_classes, options.head, options.head_hidden)
        num_train = context.num_train
        self.register_buffer("pending_probs", torch.full((num_train, context.info.num_classes), float("nan")))
        self.register_buffer(
            "pending_features",
            torch.zeros(num_train, in_features)
            if options.refit == "online" and options.score != "margin"
            else torch.zeros(0),
        )
        self._aux: torch.Tensor | None = None
        self._stats: dict[str, float] = {}
        self.laplace: KronLaplace | None = None

    # -- per batch ------------------------------------------------------------------------------------------
    def weights(
        self, batch: Batch, student: ModelOutput, per_example_loss: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        if self.options.refit == "online" and self.training:
            features = pool_tap(student.taps[self.tap]).detach().float()
            logits = self.head(features)
            self._aux = F.cross_entropy(logits, batch.y)
            index = batch.index.cpu()
            self.pending_probs[index] = torch.softmax(logits.detach(), 1).cpu()
            if self.pending_features.numel():
                self.pending_features[index] = features.cpu()
        return super().weights(batch, student, per_example_loss, state)

    def auxiliary_loss(self) -> torch.Tensor | None:
        aux, self._aux = self._aux, None
        return aux

    # -- between epochs --------------------------------------------------------------------------------------
    def combine_processes(self, processes: Processes) -> None:
        """The online head's probabilities (and features) of the whole split: each process holds those of its
        shard (NaN / zero elsewhere, the shards disjoint), so the sum over the processes fills every row seen."""
        if self.options.refit != "online" or not processes.several:
            return
        seen = ~torch.isnan(self.pending_probs).any(1)
        counts = processes.sum(seen.to(torch.float64))
        filled = processes.sum(torch.nan_to_num(self.pending_probs, nan=0.0))
        self.pending_probs.copy_(torch.where((counts > 0).unsqueeze(1), filled, torch.full_like(filled, float("nan"))))
        if self.pending_features.numel():
            self.pending_features.copy_(processes.sum(self.pending_features))

    def on_epoch_end(self, state: TrainState) -> None:
        """The weights of the next epoch, from a readout refit on this epoch's student (``refit: epoch``) or from
        the online head's probabilities; nothing after the last epoch, where no epoch would use them (the
        report's readout is refit on the selected student by :meth:`readout_probabilities`)."""
        if state.is_last_epoch:
            self.pending_probs.fill_(float("nan"))
            return
        y = self.context.train.y.long()
        if self.options.refit == "epoch":
            assert state.model is not None
            features = extract_features(state.model, self.context.train, self.tap, state.device, state.processes)
            # after epoch 1 the head holds the previous epoch's fit: the warm start of this one
            self._fit(features, y, seed=self.context.seed + state.epoch, warm_start=state.epoch > 0)
            probs = self._score_probabilities(features, state)
        else:
            seen = ~torch.isnan(self.pending_probs).any(1)
            probs = self.pending_probs.clone()
            if self.options.score != "margin":
                self._fit_laplace(self.pending_features[seen], y[seen], state)
                probs[seen] = self._laplace_predictive(self.pending_features[seen], seen.nonzero().squeeze(1))
            probs[~seen] = 1.0 / probs.shape[1]
            self.pending_probs.fill_(float("nan"))
        self.table.copy_(self._weights_from(probs, y).to(self.table.dtype))
        self._stats["readout_train_acc"] = float((probs.argmax(1) == y).float().mean())

    def epoch_stats(self, state: TrainState) -> dict[str, float]:
        stats, self._stats = self._stats, {}
        return stats

    def _weights_from(self, probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if self.options.score == "laplace-entropy":
            return entropy_weights(probs, self.options.beta)
        return dedier_weights(probs, y, self.options.beta, self.options.alpha, self.options.form)

    def _fit(self, features: torch.Tensor, y: torch.Tensor, seed: int, warm_start: bool) -> None:
        """A linear head: full-batch L-BFGS to the convex minimum, from the head's current weights when
        ``warm_start`` (the head is part of the method's state, so a resumed run warm-starts from the same
        weights); an MLP head (not convex): re-initialised and fit by minibatch Adam (``head_epochs``, ``head_lr``,
        ``head_batch_size``)."""
        if self.head.is_linear:
            iterations = fit_linear_head(self.head, features, y, warm_start=warm_start, seed=seed)
            self._stats["readout_fit_iterations"] = float(iterations)
            return
        fit_head(
            self.head, features, y, self.options.head_epochs, self.options.head_lr, self.options.head_batch_size, seed
        )

    def _score_probabilities(self, features: torch.Tensor, state: TrainState) -> torch.Tensor:
        if self.options.score == "margin":
            with torch.no_grad():
                return torch.softmax(self.head(features), 1)
        self._fit_laplace(features, self.context.train.y.long(), state)
        return self._laplace_predictive(features)

    # -- Laplace ---------------------------------------------------------------------------------------------
    @torch.no_grad()
    def _fit_laplace(self, features: torch.Tensor, y: torch.Tensor, state: TrainState) -> None:
        last = self.head.last_layer_features(features)
        laplace = KronLaplace.fit(
            self.head.out.weight.detach(), self.head.out.bias.detach(), last, self.options.laplace.prior
        )
        options = self.options.laplace
        if options.tune == "val-nll":
            if self.context.val is None or state.model is None:
                raise ConfigError(f"{self.where}.laplace.tune: val-nll needs a validation split")
            val_features = self.head.last_layer_features(
                extract_features(state.model, self.context.val, self.tap, state.device, state.processes)
            )
            laplace.tau = tune_tau_by_validation(
                laplace, val_features, self.context.val.y, options.predictive, options.samples, self.context.seed
            )
        else:
            laplace.tau = tune_tau_by_evidence(laplace, last, y)
        self.laplace = laplace
        self._stats["laplace_tau"] = laplace.tau

    @torch.no_grad()
    def _laplace_predictive(self, features: torch.Tensor, index: torch.Tensor | None = None) -> torch.Tensor:
        """The Laplace predictive on ``features``; ``index``: their example indices in the split (default: rows)."""
        assert self.laplace is not None
        options = self.options.laplace
        last = self.head.last_layer_features(features)
        return self.laplace.predictive(
            last, options.predictive, options.samples, self.context.seed, index=index
        ).float()

    # -- reporting -------------------------------------------------------------------------------------------
    @torch.no_grad()
    def readout_probabilities(
        self, model: TappedModel, splits: dict[str, SplitDataset], device
    ) -> dict[str, np.ndarray]:
        """The readout's probabilities on each given split, refit on the final (selected) student's train features.

        Uses the Laplace predictive for the Laplace scores, the head's softmax otherwise.
        """
        state = TrainState(model=model, device=device)
        train_features = extract_features(model, self.context.train, self.tap, device)
        y = self.context.train.y.long()
        self._fit(train_features, y, seed=self.context.seed, warm_start=True)
        if self.options.score != "margin":
            self._fit_laplace(train_features, y, state)
        result = {}
        for name, split in splits.items():
            features = extract_features(model, split, self.tap, device)
            probs = (
                self._laplace_predictive(features)
                if self.options.score != "margin"
                else torch.softmax(self.head(features), 1)
            )
            result[name] = probs.cpu().numpy()
        self._stats = {}
        return result
