"""KD++: knowledge distillation with the ND (norm and direction) loss, ``kdpp`` (Wang et al., NeurIPS 2023).

Wang et al. observe that a student generalises better when its embedding (penultimate features) points in the
direction of its class's centre in the *teacher's* embedding space and has a large norm. Their ND loss rewards
the projection of the student embedding onto the unit vector of the teacher's class mean, divided by the larger
of the student's and the teacher's embedding norms, and is added to classical KD ("KD++"). The class means are
computed once, from the teacher's embeddings of the training split. When the student's embedding is narrower or
wider than the teacher's, a trainable linear map projects it to the teacher's width first.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from fairdistill.data.core import Batch
from fairdistill.distill.checks import require_embedding, require_teacher, safe_norm, safe_unit
from fairdistill.distill.core import (
    LOSSES,
    DistillLoss,
    LossTerms,
    MethodContext,
    TeacherOutputs,
    Temperature,
    TrainState,
)
from fairdistill.distill.losses import soft_kl
from fairdistill.errors import ConfigError
from fairdistill.models.core import ModelOutput
from fairdistill.registry import Options


class KDPPOptions(Options):
    #: w_kd, the weight of the KD term τ²·KL(σ(z_t/τ) ‖ σ(z_s/τ)) once warmed up.
    kd_weight: float = Field(default=1.0, ge=0.0)
    #: w_nd, the weight of the ND term.
    nd_weight: float = Field(default=2.0, ge=0.0)
    tau: Temperature = 4.0
    #: warm: epochs over which the KD term ramps up, weight min(1, epoch/warm) with 0-based epochs (0: off).
    warmup_epochs: float = Field(default=2.0, ge=0.0)


def class_means(embedding: np.ndarray | torch.Tensor, y: np.ndarray | torch.Tensor, num_classes: int) -> torch.Tensor:
    """c_k = mean of the embeddings of the examples of class k, shape (C, D) float32; 0 for an absent class."""
    emb = np.asarray(embedding, dtype=np.float64)
    labels = np.asarray(y, dtype=np.int64)
    sums = np.zeros((num_classes, emb.shape[1]), dtype=np.float64)
    np.add.at(sums, labels, emb)
    counts = np.bincount(labels, minlength=num_classes).astype(np.float64)
    means = sums / np.maximum(counts, 1.0)[:, None]
    return torch.from_numpy(means.astype(np.float32))


def nd_loss(
    student_emb: torch.Tensor, teacher_emb: torch.Tensor, centers: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """ND_i = 1 − ⟨s_i, c_{y_i}/‖c_{y_i}‖⟩ / max(‖s_i‖, ‖t_i‖), per example (s already in the teacher's width)."""
    direction = safe_unit(centers[y].to(student_emb.dtype), dim=1)
    scale = torch.maximum(safe_norm(student_emb, dim=1), safe_norm(teacher_emb, dim=1))
    scale = scale.clamp_min(torch.finfo(scale.dtype).eps)
    return 1.0 - (student_emb * direction).sum(dim=1) / scale


def kdpp_warmup(state: TrainState, warmup_epochs: float) -> float:
    """min(1, e / warm) with e = ``state.epoch``, the 0-based index of the epoch in progress.

    Epochs are counted from 0, as in the released KD++ training script (``min(1.0, epoch / warm_up)`` inside
    ``for epoch in range(epochs)``): the KD term is off during the first epoch (the student learns from the
    labels and the ND term only), then ramps up and has full weight from epoch index ``warm`` on.
    ``warmup_epochs = 0`` switches the warm-up off.
    """
    if warmup_epochs <= 0.0:
        return 1.0
    return min(1.0, state.epoch / warmup_epochs)


@LOSSES.register("kdpp", options=KDPPOptions)
class KDPPLoss(DistillLoss):
    """Wang et al. (2023), KD++: CE + w_kd·min(1, epoch/warm)·τ²·KL + w_nd·ND (norm-and-direction), per example.

    c_y is the mean teacher embedding of class y over the train split (from the teacher cache, computed once).
    A trainable ``nn.Linear`` projects the student embedding to the teacher's width when the two differ; it is
    optimised with the student and discarded after training. See :func:`kdpp_warmup` for the epoch convention.
    """

    options: KDPPOptions

    def __init__(self, options: KDPPOptions, context: MethodContext) -> None:
        super().__init__(options, context)
        s_dim, t_dim = context.student_embedding_dim, context.teacher_embedding_dim
        self.projection: nn.Linear | None = None
        if s_dim is not None and t_dim is not None and s_dim != t_dim:
            self.projection = nn.Linear(s_dim, t_dim)
        self.register_buffer("centers", None, persistent=False)
        if context.teacher_train is not None and context.teacher_train.embedding is not None:
            self.centers = self._compute_centers(context.teacher_train)

    def _compute_centers(self, cache: TeacherOutputs) -> torch.Tensor:
        if cache.embedding is None:
            raise ConfigError(
                "loss kdpp needs the teacher's embeddings of the train split (for the class means), but the teacher "
                "model gives none; use a teacher.model that exposes an embedding"
            )
        return class_means(cache.embedding, self.context.train.y.numpy(), self.context.info.num_classes)

    def class_centers(self, device: torch.device | str) -> torch.Tensor:
        """c (C, D): computed at construction when the teacher cache was given, else on first use."""
        if self.centers is None:
            if self.context.teacher_train is None:
                raise RuntimeError(
                    "loss kdpp: the class means c_y come from the teacher's outputs on the train split, but this "
                    "method was built without them (MethodContext.teacher_train is None)"
                )
            self.centers = self._compute_centers(self.context.teacher_train).to(device)
        return self.centers.to(device)

    def project(self, student_emb: torch.Tensor, teacher_dim: int) -> torch.Tensor:
        """The student embedding in the teacher's width (through the projection when the widths differ)."""
        if self.projection is not None:
            return self.projection(student_emb.to(self.projection.weight.dtype)).to(student_emb.dtype)
        if student_emb.shape[1] != teacher_dim:
            raise ConfigError(
                f"loss kdpp: the student embedding has width {student_emb.shape[1]} and the teacher's {teacher_dim}, "
                "but no projection was built (the method context did not give both embedding widths)"
            )
        return student_emb

    def terms(self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState) -> LossTerms:
        teacher = require_teacher("kdpp", teacher)
        s_emb = require_embedding("kdpp", student, "student")
        t_emb = require_embedding("kdpp", teacher, "teacher").to(s_emb.dtype)
        o = self.options
        s_proj = self.project(s_emb, t_emb.shape[1])
        nd = nd_loss(s_proj, t_emb, self.class_centers(s_emb.device), batch.y)
        kl = soft_kl(teacher.logits.to(student.logits.dtype), student.logits, o.tau)
        ce = F.cross_entropy(student.logits, batch.y, reduction="none")
        teacher_term = o.kd_weight * kdpp_warmup(state, o.warmup_epochs) * o.tau**2 * kl + o.nd_weight * nd
        return LossTerms(label=ce, teacher=teacher_term)

    def forward(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:
        return self.terms(batch, student, teacher, state).combine()
