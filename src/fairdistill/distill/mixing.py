"""Teacher's pet mitigations (Lukasik et al., TMLR 2022): soften the teacher where it is unreliable.

The paper's exact equations were not available to us; these are fairdistill's documented instantiations
(docs/methods.md, "Mixing rules"). Reliability r_k is the teacher's accuracy on subgroup k of the **validation**
split, where the
subgroup of an example is its class, its group or its attribute (``by``). A subgroup without validation
examples gets the teacher's overall validation accuracy.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from fairdistill.data.core import Batch, SplitDataset
from fairdistill.distill.core import LossTerms, MethodContext, TrainState
from fairdistill.errors import ConfigError
from fairdistill.models.core import ModelOutput
from fairdistill.registry import Options, Registry

#: Label/teacher mixing rules, by ``mixing.kind``.
MIXINGS: Registry = Registry("mixing")

SubgroupKind = Literal["class", "group", "attr"]


def subgroup_of(split: SplitDataset | Batch, by: SubgroupKind) -> torch.Tensor:
    return {"class": split.y, "group": split.group, "attr": split.attr}[by].long()


def subgroup_count(context: MethodContext, by: SubgroupKind) -> int:
    info = context.info
    return {"class": info.num_classes, "group": info.num_groups, "attr": info.num_attrs}[by]


def teacher_reliability(context: MethodContext, by: SubgroupKind, where: str) -> torch.Tensor:
    """r_k: teacher accuracy on each subgroup k of the validation split."""
    if context.teacher_val is None or context.val is None:
        raise ConfigError(f"{where}: needs the teacher's predictions on the validation split (a teacher is required)")
    correct = (torch.from_numpy(context.teacher_val.logits.argmax(1)) == context.val.y).double()
    keys = subgroup_of(context.val, by)
    k = subgroup_count(context, by)
    totals = torch.bincount(keys, minlength=k).double()
    hits = torch.zeros(k, dtype=torch.float64).index_add_(0, keys, correct)
    overall = float(correct.mean()) if len(correct) else 1.0
    return torch.where(totals > 0, hits / totals.clamp(min=1), torch.full_like(totals, overall))


class MixingRule(nn.Module):
    """Recombines a loss's label and teacher terms per example."""

    def __init__(self, options: Options, context: MethodContext, where: str) -> None:
        super().__init__()
        self.options = options
        self.context = context
        self.where = where
        self._table: torch.Tensor | None = None

    def mix(self, batch: Batch, terms: LossTerms, student: ModelOutput, state: TrainState) -> torch.Tensor:
        raise NotImplementedError  # pragma: no cover - interface

    def epoch_stats(self, state: TrainState) -> dict[str, float]:
        return {}


class PerGroupAlphaOptions(Options):
    by: SubgroupKind = "class"
    alpha_max: float = Field(default=0.9, ge=0.0, le=1.0)
    gamma: float = Field(default=1.0, ge=0.0)


def _is_balance(label_weight: float | torch.Tensor, teacher_weight: float | torch.Tensor) -> bool:
    """Whether a loss's weights are its own label/teacher balance (1 − α, α), as kd and ctkd give."""
    if isinstance(label_weight, torch.Tensor) or isinstance(teacher_weight, torch.Tensor):
        return False
    return math.isclose(float(label_weight) + float(teacher_weight), 1.0, rel_tol=0.0, abs_tol=1e-9)


@MIXINGS.register("per-group-alpha", options=PerGroupAlphaOptions)
class PerGroupAlpha(MixingRule):
    """α_k = α_max·r_k^γ; ℓ_i = (1−α_{k_i})·λ_l·label_i + α_{k_i}·λ_t·teacher_i (our instantiation of Teacher's pet).

    The per-group α_k takes the place of the loss's own balance and composes with the rest of its weights
    (λ_l, λ_t): when the loss's weights are a balance (1 − α, α) — kd, ctkd — α_k replaces it (λ_l = λ_t = 1);
    any other weights are kept as factors, so dkd's warm-up still ramps its teacher term in
    (ℓ = (1 − α_k)·CE + α_k·warm·(α_d·TCKD + β_d·NCKD)); kdpp and rkd have weights 1.
    """

    options: PerGroupAlphaOptions

    def alphas(self) -> torch.Tensor:
        if self._table is None:
            reliability = teacher_reliability(self.context, self.options.by, self.where)
            self._table = self.options.alpha_max * reliability**self.options.gamma
        return self._table

    def mix(self, batch: Batch, terms: LossTerms, student: ModelOutput, state: TrainState) -> torch.Tensor:
        alpha = self.alphas().to(terms.label.device, terms.label.dtype)[subgroup_of(batch, self.options.by)]
        label_weight, teacher_weight = terms.label_weight, terms.teacher_weight
        if _is_balance(label_weight, teacher_weight):
            label_weight = teacher_weight = 1.0
        return (1.0 - alpha) * label_weight * terms.label + alpha * teacher_weight * terms.teacher

    def epoch_stats(self, state: TrainState) -> dict[str, float]:
        return {"alpha_min": float(self.alphas().min()), "alpha_max": float(self.alphas().max())}


class AdaptiveMarginOptions(Options):
    by: SubgroupKind = "class"
    kappa: float = Field(default=1.0, ge=0.0)


@MIXINGS.register("adaptive-margin", options=AdaptiveMarginOptions)
class AdaptiveMargin(MixingRule):
    """Teacher's pet, LDAM-style: Δ_k = κ·(1 − r_k) subtracted from the true-class logit of the label term.

    Subgroups the teacher gets wrong thus demand a larger label margin; the teacher term is unchanged (our
    instantiation)."""

    options: AdaptiveMarginOptions

    def margins(self) -> torch.Tensor:
        if self._table is None:
            reliability = teacher_reliability(self.context, self.options.by, self.where)
            self._table = self.options.kappa * (1.0 - reliability)
        return self._table

    def mix(self, batch: Batch, terms: LossTerms, student: ModelOutput, state: TrainState) -> torch.Tensor:
        margin = self.margins().to(student.logits.device, student.logits.dtype)[subgroup_of(batch, self.options.by)]
        shifted = student.logits - margin[:, None] * F.one_hot(batch.y, student.logits.shape[1]).to(
            student.logits.dtype
        )
        label = F.cross_entropy(shifted, batch.y, reduction="none")
        return terms.label_weight * label + terms.teacher_weight * terms.teacher

    def epoch_stats(self, state: TrainState) -> dict[str, float]:
        return {"margin_max": float(self.margins().max())}
