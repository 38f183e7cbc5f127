"""Decoupled knowledge distillation, ``dkd`` (Zhao et al., CVPR 2022; docs/methods.md).

Zhao et al. rewrite the classical KD loss as the sum of two parts: a *target-class* part (TCKD), which compares
how much probability the teacher and the student put on the true class against all other classes together, and
a *non-target-class* part (NCKD), which compares how the remaining probability is shared among the other
classes. In classical KD the NCKD part is scaled down by the teacher's confidence; DKD weights the two parts
independently (α_d, β_d) and ramps them in with a linear warm-up.
"""

from __future__ import annotations

import logging
import warnings

import torch
import torch.nn.functional as F
from pydantic import Field

from fairdistill.data.core import Batch
from fairdistill.distill.checks import require_teacher
from fairdistill.distill.core import LOSSES, DistillLoss, LossTerms, MethodContext, Temperature, TrainState
from fairdistill.models.core import ModelOutput
from fairdistill.registry import Options

log = logging.getLogger(__name__)


class DKDOptions(Options):
    #: α_d, the weight of the target-class term TCKD.
    alpha: float = Field(default=1.0, ge=0.0)
    #: β_d, the weight of the non-target-class term NCKD.
    beta: float = Field(default=8.0, ge=0.0)
    tau: Temperature = 4.0
    #: Fraction of the run's epochs over which the distillation terms ramp linearly up to full weight.
    warmup_fraction: float = Field(default=0.2, ge=0.0, le=1.0)


def non_target(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The (B, C−1) logits of every class except each example's label, in class order."""
    keep = torch.ones_like(logits, dtype=torch.bool)
    keep[torch.arange(len(y), device=logits.device), y] = False
    return logits[keep].view(logits.shape[0], logits.shape[1] - 1)


def binary_log_probs(logits: torch.Tensor, y: torch.Tensor, tau: float) -> torch.Tensor:
    """log b = [log p_y, log(1 − p_y)] at temperature τ, computed in log space, shape (B, 2)."""
    z = logits / tau
    log_all = torch.logsumexp(z, dim=1)
    log_target = z.gather(1, y[:, None]).squeeze(1) - log_all
    log_rest = torch.logsumexp(non_target(z, y), dim=1) - log_all
    return torch.stack([log_target, log_rest], dim=1)


def _kl_from_log(log_p: torch.Tensor, log_q: torch.Tensor) -> torch.Tensor:
    return (log_p.exp() * (log_p - log_q)).sum(dim=1)


def dkd_parts(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, tau: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example (TCKD, NCKD), each already multiplied by τ². NCKD is 0 when there are only two classes."""
    tckd = tau**2 * _kl_from_log(binary_log_probs(teacher_logits, y, tau), binary_log_probs(student_logits, y, tau))
    if student_logits.shape[1] <= 2:
        return tckd, torch.zeros_like(tckd)
    log_t = F.log_softmax(non_target(teacher_logits, y) / tau, dim=1)
    log_s = F.log_softmax(non_target(student_logits, y) / tau, dim=1)
    return tckd, tau**2 * _kl_from_log(log_t, log_s)


def dkd_warmup(state: TrainState, fraction: float) -> float:
    """min(1, e / (fraction · E)) where e = state.epoch + 1 is the 1-based number of the epoch in progress.

    Epochs are counted from 1, as in the released DKD training code (``min(epoch / warmup, 1)`` with
    ``epoch`` starting at 1): the first epoch already uses weight 1/(fraction·E), and the weight is constant
    within an epoch. ``fraction = 0`` switches the warm-up off.
    """
    if fraction <= 0.0:
        return 1.0
    return min(1.0, (state.epoch + 1) / (fraction * max(1, state.num_epochs)))


@LOSSES.register("dkd", options=DKDOptions)
class DKDLoss(DistillLoss):
    """Zhao et al. (2022), decoupled KD: CE + warm·(α_d·TCKD + β_d·NCKD), per example.

    b = [p_y, 1 − p_y] is the target-vs-rest distribution at temperature τ and p̂ the softmax over the
    non-target classes; TCKD = τ²·KL(b_t ‖ b_s), NCKD = τ²·KL(p̂_t ‖ p̂_s). The warm-up weight rises linearly
    to 1 over the first ``warmup_fraction`` of the epochs (see :func:`dkd_warmup`). With two classes there is
    a single non-target class, NCKD is not informative and is taken as 0 (one warning per loss instance).
    """

    uses_teacher_embedding = False

    options: DKDOptions

    def __init__(self, options: DKDOptions, context: MethodContext) -> None:
        super().__init__(options, context)
        self._warned_binary = False

    def _warn_binary(self) -> None:
        if self._warned_binary:
            return
        self._warned_binary = True
        message = "dkd: with 2 classes the non-target term NCKD is undefined; it is set to 0 (only TCKD distils)"
        warnings.warn(message, UserWarning, stacklevel=3)
        log.warning(message)

    def terms(self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState) -> LossTerms:
        teacher = require_teacher("dkd", teacher)
        if student.logits.shape[1] <= 2:
            self._warn_binary()
        o = self.options
        ce = F.cross_entropy(student.logits, batch.y, reduction="none")
        tckd, nckd = dkd_parts(student.logits, teacher.logits.to(student.logits.dtype), batch.y, o.tau)
        return LossTerms(
            label=ce,
            teacher=o.alpha * tckd + o.beta * nckd,
            label_weight=1.0,
            teacher_weight=dkd_warmup(state, o.warmup_fraction),
        )

    def forward(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:
        return self.terms(batch, student, teacher, state).combine()
