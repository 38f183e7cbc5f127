"""Distillation losses for long-tailed training data: ``logit-adjusted-kd`` and ``ltkd`` (docs/methods.md).

A teacher trained on long-tailed data is biased towards the frequent (head) classes, and classical KD hands that
bias to the student: *Teacher's pet* (Lukasik et al., TMLR 2022) finds the classes with few examples hurt most.
Both losses here keep the per-example form of :class:`~fairdistill.distill.losses.KDLoss`, with a label term and
a teacher term (``terms()``), so weightings and the Teacher's pet mixings compose with them.

- ``logit-adjusted-kd`` follows Menon et al. (ICLR 2021, "Long-tail learning via logit adjustment"): the
  student's logits plus τ_a·log π_y (π the train class frequencies) are fit to the training distribution, so
  the raw logits, used at test time, estimate the class-balanced posterior.
- ``ltkd`` follows Kim (CVPR 2026, "Distilling Balanced Knowledge from a Biased Teacher"): the KD divergence is
  split into a cross-group part (how the teacher spreads its mass over the head, medium and tail classes) and
  within-group parts (how it spreads it inside each group); the teacher's group-level distribution is
  rebalanced and every group's within-group part counts equally. The paper's exact equations were not
  available to us: this is our instantiation of that description, stated in full in docs/methods.md.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field

from fairdistill.data.core import Batch
from fairdistill.data.long_tail import frequency_groups
from fairdistill.distill.checks import require_teacher
from fairdistill.distill.core import LOSSES, DistillLoss, LossTerms, MethodContext, Temperature, TrainState
from fairdistill.distill.losses import soft_kl
from fairdistill.errors import ConfigError
from fairdistill.models.core import ModelOutput
from fairdistill.registry import Options


def train_class_counts(context: MethodContext) -> np.ndarray:
    """Examples of each class in the training split, shape (C,)."""
    return np.bincount(context.train.y.numpy().astype(np.int64), minlength=context.info.num_classes)


def log_class_priors(counts: np.ndarray, loss: str, class_names: tuple[str, ...]) -> torch.Tensor:
    """log π_k = log(n_k / N) from the train class counts (float64); ConfigError when a class has no example."""
    missing = [class_names[k] for k in np.flatnonzero(counts == 0)]
    if missing:
        raise ConfigError(
            f"loss {loss}: class {missing[0]!r} has no training example, so its prior π is 0 and log π is "
            "undefined; every class needs at least one training example"
        )
    return torch.from_numpy(np.log(counts / counts.sum()))


# --------------------------------------------------------------------------------------------------- logit adjustment


class LogitAdjustedKDOptions(Options):
    #: Temperature of the KD term.
    tau: Temperature = 2.0
    #: Weight α of the teacher term; the label term has weight 1 − α.
    alpha: float = Field(default=0.9, ge=0.0, le=1.0)
    #: τ_a, the strength of the logit adjustment (Menon et al.'s τ; 1 is their default, 0 gives plain kd).
    adjustment: float = Field(default=1.0, ge=0.0, le=10.0)
    #: ``adjusted``: the teacher is matched by the student's adjusted logits (as the label is);
    #: ``plain``: by its raw logits (the student's test-time scorer then copies the teacher's class bias).
    kd_term: Literal["adjusted", "plain"] = "adjusted"


@LOSSES.register("logit-adjusted-kd", options=LogitAdjustedKDOptions)
class LogitAdjustedKDLoss(DistillLoss):
    """Menon et al. (ICLR 2021): KD whose label and teacher terms see the logits plus τ_a·log π, per example.

    ℓ = (1 − α)·CE(y, z_s + τ_a·log π) + α·τ²·KL(σ(z_t/τ) ‖ σ((z_s + τ_a·log π)/τ))   (``kd_term: adjusted``)

    with π the class frequencies of the training split. The adjusted logits z_s + τ_a·log π fit the training
    distribution (the labels and the teacher, itself trained on that distribution), so the raw logits z_s that
    the student predicts with estimate the class-balanced posterior, up to a constant (Menon et al., Thm. 1).
    ``kd_term: plain`` compares the teacher with the raw z_s instead (the adjustment only in the label term).
    The ``adaptive-margin`` mixing recomputes the label term from the raw logits, dropping the adjustment there.
    """

    uses_teacher_embedding = False

    options: LogitAdjustedKDOptions

    def __init__(self, options: LogitAdjustedKDOptions, context: MethodContext) -> None:
        super().__init__(options, context)
        self.log_prior = log_class_priors(train_class_counts(context), "logit-adjusted-kd", context.info.class_names)

    def terms(self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState) -> LossTerms:
        teacher = require_teacher("logit-adjusted-kd", teacher)
        o = self.options
        logits = student.logits
        adjusted = logits + o.adjustment * self.log_prior.to(logits.device, logits.dtype)
        ce = F.cross_entropy(adjusted, batch.y, reduction="none")
        kl = soft_kl(teacher.logits.to(logits.dtype), adjusted if o.kd_term == "adjusted" else logits, o.tau)
        return LossTerms(label=ce, teacher=o.tau**2 * kl, label_weight=1.0 - o.alpha, teacher_weight=o.alpha)

    def forward(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:
        return self.terms(batch, student, teacher, state).combine()


# --------------------------------------------------------------------------------------------------- LTKD


class LTKDOptions(Options):
    tau: Temperature = 2.0
    #: Weight α of the teacher term; the label term has weight 1 − α.
    alpha: float = Field(default=0.9, ge=0.0, le=1.0)
    #: Weight of the cross-group term KL(P̃_t ‖ P_s).
    cross_weight: float = Field(default=1.0, ge=0.0)
    #: Weight of the within-group terms, Σ_g KL(q_t,g ‖ q_s,g), each group counting once.
    within_weight: float = Field(default=1.0, ge=0.0)
    #: How the teacher's group distribution P_t is rebalanced into P̃_t: ``batch`` divides it by its mean over the
    #: batch, ``prior`` by the groups' train frequencies, ``none`` keeps it (then renormalised).
    rebalance: Literal["batch", "prior", "none"] = "batch"


def group_log_probs(
    logits: torch.Tensor, tau: float, groups: list[torch.Tensor]
) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """log P (B, G): the log-probability mass σ(z/τ) puts on each group; and per group g the (B, |g|)
    log-probabilities log q_g = log p_c − log P_g of the distribution renormalised inside the group."""
    log_p = F.log_softmax(logits / tau, dim=1)
    members = [log_p[:, idx.to(logits.device)] for idx in groups]
    log_mass = torch.stack([torch.logsumexp(m, dim=1) for m in members], dim=1)
    within = [m - log_mass[:, g : g + 1] for g, m in enumerate(members)]
    return log_mass, within


def _kl_from_log(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def rebalanced_group_log_probs(
    log_mass: torch.Tensor, how: str, log_group_prior: torch.Tensor | None = None
) -> torch.Tensor:
    """log P̃_t: the teacher's group distribution divided by a per-group scale, then renormalised per example.

    ``batch``: the scale is the group's mean teacher mass over the batch, (1/B)·Σ_i P_t,i,g; ``prior``: the
    group's train frequency π_g = Σ_{c∈g} π_c; ``none``: 1 (P̃_t = P_t).
    """
    if how == "none":
        return log_mass
    if how == "batch":
        scale = torch.logsumexp(log_mass, dim=0, keepdim=True) - math.log(log_mass.shape[0])
    else:
        assert log_group_prior is not None, "rebalance: prior needs the group priors"
        scale = log_group_prior.to(log_mass.device, log_mass.dtype)[None, :]
    return F.log_softmax(log_mass - scale, dim=1)


@LOSSES.register("ltkd", options=LTKDOptions)
class LTKDLoss(DistillLoss):
    """Kim (CVPR 2026), long-tailed KD (our instantiation): CE + rebalanced cross-group + per-group KL, per example.

    ℓ = (1 − α)·CE(y, z_s) + α·τ²·[ w_c·KL(P̃_t ‖ P_s) + w_w·Σ_g KL(q_t,g ‖ q_s,g) ]

    over the head / medium / tail groups g of the classes (thirds by train count,
    :func:`~fairdistill.data.long_tail.frequency_groups`), with p = σ(z/τ), P_g = Σ_{c∈g} p_c the group mass and
    q_g = p restricted to g and renormalised. Classical KD is exactly KL(P_t ‖ P_s) + Σ_g P_t,g·KL(q_t,g ‖ q_s,g):
    its within-group parts are weighted by the teacher's (head-heavy) group mass; here each group counts once
    (w_w·1), and the teacher's group distribution is rebalanced (``rebalance``, :func:`rebalanced_group_log_probs`)
    before the student matches it. With ``rebalance: batch`` an example's loss depends on its batch (through the
    batch mean of the teacher's group mass), which is fixed data (teacher outputs), so no gradient flows there.
    """

    uses_teacher_embedding = False

    options: LTKDOptions

    def __init__(self, options: LTKDOptions, context: MethodContext) -> None:
        super().__init__(options, context)
        counts = train_class_counts(context)
        self.groups = [torch.from_numpy(g.astype(np.int64)) for g in frequency_groups(counts) if len(g)]
        self.log_group_prior: torch.Tensor | None = None
        if options.rebalance == "prior":
            log_prior = log_class_priors(counts, "ltkd (rebalance: prior)", context.info.class_names)
            self.log_group_prior = torch.stack([torch.logsumexp(log_prior[g], dim=0) for g in self.groups])

    def parts(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-example (cross-group KL(P̃_t ‖ P_s), Σ_g within-group KL(q_t,g ‖ q_s,g)), before τ² and weights."""
        tau = self.options.tau
        mass_t, within_t = group_log_probs(teacher_logits, tau, self.groups)
        mass_s, within_s = group_log_probs(student_logits, tau, self.groups)
        target = rebalanced_group_log_probs(mass_t, self.options.rebalance, self.log_group_prior)
        cross = _kl_from_log(target, mass_s)
        within = torch.stack([_kl_from_log(t, s) for t, s in zip(within_t, within_s, strict=True)], dim=1).sum(1)
        return cross, within

    def terms(self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState) -> LossTerms:
        teacher = require_teacher("ltkd", teacher)
        o = self.options
        ce = F.cross_entropy(student.logits, batch.y, reduction="none")
        cross, within = self.parts(student.logits, teacher.logits.to(student.logits.dtype))
        teacher_term = o.tau**2 * (o.cross_weight * cross + o.within_weight * within)
        return LossTerms(label=ce, teacher=teacher_term, label_weight=1.0 - o.alpha, teacher_weight=o.alpha)

    def forward(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:
        return self.terms(batch, student, teacher, state).combine()
