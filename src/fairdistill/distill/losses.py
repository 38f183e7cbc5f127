"""Per-example distillation losses (docs/methods.md)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from fairdistill.data.core import Batch
from fairdistill.distill.core import LOSSES, DistillLoss, LossTerms, Temperature, TrainState
from fairdistill.models.core import ModelOutput
from fairdistill.registry import Options


def soft_kl(teacher_logits: torch.Tensor, student_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """Per-example KL(σ(z_t/τ) ‖ σ(z_s/τ)), summed over classes."""
    log_p_t = F.log_softmax(teacher_logits / tau, dim=-1)
    log_p_s = F.log_softmax(student_logits / tau, dim=-1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=-1)


@LOSSES.register("erm")
class CrossEntropyLoss(DistillLoss):
    """Cross-entropy on the labels only: the student trained without a teacher (ERM)."""

    uses_teacher_embedding = False

    requires_teacher = False

    def forward(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:
        return F.cross_entropy(student.logits, batch.y, reduction="none")


class KDOptions(Options):
    tau: Temperature = 2.0
    alpha: float = Field(default=0.9, ge=0.0, le=1.0)


@LOSSES.register("kd", options=KDOptions)
class KDLoss(DistillLoss):
    """Hinton et al. (2015): (1−α)·CE(y, z_s) + α·τ²·KL(σ(z_t/τ) ‖ σ(z_s/τ)), per example."""

    uses_teacher_embedding = False

    options: KDOptions

    def terms(self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState) -> LossTerms:
        assert teacher is not None, "kd needs teacher outputs"
        tau, alpha = self.options.tau, self.options.alpha
        ce = F.cross_entropy(student.logits, batch.y, reduction="none")
        kl = soft_kl(teacher.logits, student.logits, tau)
        return LossTerms(label=ce, teacher=tau**2 * kl, label_weight=1.0 - alpha, teacher_weight=alpha)

    def forward(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:
        return self.terms(batch, student, teacher, state).combine()
