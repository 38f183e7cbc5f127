"""Relational knowledge distillation, ``rkd`` (Park et al., CVPR 2019; docs/methods.md).

Instead of matching each example's output, Park et al. transfer the *structure* of the teacher's embedding
space: the student is asked to reproduce the teacher's pairwise distances (normalised by their mean, so the two
spaces may have different scales and widths) and the angles formed by triplets of examples. Both are compared
with a Huber (smooth-L1) loss. Here the batch-level losses are split into per-example values so that any
instance weighting applies: example i receives the mean over the pairs (i, j) and the triplets (i, j, k) in
which it is the first index.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from pydantic import Field

from fairdistill.data.core import Batch
from fairdistill.distill.checks import require_embedding, require_teacher, safe_norm, safe_unit
from fairdistill.distill.core import LOSSES, DistillLoss, LossTerms, Temperature, TrainState
from fairdistill.distill.losses import soft_kl
from fairdistill.models.core import ModelOutput
from fairdistill.registry import Options


class RKDOptions(Options):
    #: λ_D, the weight of the distance term.
    lambda_distance: float = Field(default=25.0, ge=0.0)
    #: λ_A, the weight of the angle term.
    lambda_angle: float = Field(default=50.0, ge=0.0)
    #: Weight of an optional Hinton KD term τ²·KL(σ(z_t/τ) ‖ σ(z_s/τ)) added to the loss (0: off).
    kd_weight: float = Field(default=0.0, ge=0.0)
    #: Temperature of the optional KD term.
    tau: Temperature = 4.0


def huber(x: torch.Tensor) -> torch.Tensor:
    """Smooth-L1 with δ = 1: ½x² where |x| < 1, |x| − ½ elsewhere (element-wise)."""
    return F.smooth_l1_loss(x, torch.zeros_like(x), reduction="none", beta=1.0)


def normalized_distances(embedding: torch.Tensor) -> torch.Tensor:
    """ψ_D(i, j) = ‖e_i − e_j‖ / μ, shape (B, B); μ = mean of the non-zero distances between distinct examples.

    μ depends on the embeddings (no detach), as in the paper. When every distance is zero, μ = 1.
    """
    diff = embedding.unsqueeze(0) - embedding.unsqueeze(1)  # diff[j, i] = e_i − e_j
    dist = safe_norm(diff, dim=-1)
    nonzero = (dist > 0).detach()
    count = nonzero.sum()
    mu = (dist * nonzero).sum() / count if count > 0 else torch.ones((), dtype=dist.dtype, device=dist.device)
    return dist / mu


def rkd_distance(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Per example i: mean over j ≠ i of huber(ψ_D^s(i, j) − ψ_D^t(i, j)); 0 for a batch of one."""
    b = student_emb.shape[0]
    if b < 2:
        return student_emb.sum(dim=1) * 0.0
    loss = huber(normalized_distances(student_emb) - normalized_distances(teacher_emb))
    # The diagonal (i = j) is 0 for both models and adds nothing to the sum.
    return loss.sum(dim=1) / (b - 1)


def triplet_angles(embedding: torch.Tensor) -> torch.Tensor:
    """A[j, i, k] = ψ_A(i, j, k) = ⟨(e_i − e_j)/‖·‖, (e_k − e_j)/‖·‖⟩, the cosine of the angle at e_j."""
    units = safe_unit(embedding.unsqueeze(0) - embedding.unsqueeze(1), dim=-1)  # units[j, i] = unit(e_i − e_j)
    return torch.bmm(units, units.transpose(1, 2))


def rkd_angle(student_emb: torch.Tensor, teacher_emb: torch.Tensor) -> torch.Tensor:
    """Per example i: mean over distinct j, k (j ≠ i, k ∉ {i, j}) of huber(ψ_A^s(i, j, k) − ψ_A^t(i, j, k)).

    0 for batches of fewer than three examples (there are no triplets).
    """
    b = student_emb.shape[0]
    if b < 3:
        return student_emb.sum(dim=1) * 0.0
    loss = huber(triplet_angles(student_emb) - triplet_angles(teacher_emb))  # (j, i, k)
    # Entries with j = i or j = k vanish for both models (zero unit vector); only k = i must be masked out.
    off_diagonal = 1.0 - torch.eye(b, dtype=loss.dtype, device=loss.device)
    return (loss * off_diagonal).sum(dim=(0, 2)) / ((b - 1) * (b - 2))


@LOSSES.register("rkd", options=RKDOptions)
class RKDLoss(DistillLoss):
    """Park et al. (2019), relational KD: CE + λ_D·distance + λ_A·angle (+ kd_weight·τ²·KL), per example.

    Distances and angles are computed on the embeddings (penultimate features) of the student and of the
    teacher within the batch; the embeddings may have different widths. The optional KD term (``kd_weight``,
    off by default) is the classical logit term, as in the paper's RKD + KD combination.
    """

    options: RKDOptions

    def terms(self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState) -> LossTerms:
        teacher = require_teacher("rkd", teacher)
        s_emb = require_embedding("rkd", student, "student")
        t_emb = require_embedding("rkd", teacher, "teacher").to(s_emb.dtype)
        o = self.options
        ce = F.cross_entropy(student.logits, batch.y, reduction="none")
        relational = o.lambda_distance * rkd_distance(s_emb, t_emb) + o.lambda_angle * rkd_angle(s_emb, t_emb)
        if o.kd_weight > 0:
            kl = soft_kl(teacher.logits.to(student.logits.dtype), student.logits, o.tau)
            relational = relational + o.kd_weight * o.tau**2 * kl
        return LossTerms(label=ce, teacher=relational)

    def forward(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:
        return self.terms(batch, student, teacher, state).combine()
