"""Curriculum temperature knowledge distillation, ``ctkd`` (Li et al., AAAI 2023; docs/methods.md).

Li et al. make the KD temperature a learnable parameter that plays *against* the student: the temperature is
updated to make the distillation loss larger (through a gradient-reversal layer), while the student minimises
it. The strength of the reversal grows over the first epochs along a cosine curve, so the task becomes harder
progressively — a curriculum. The temperature is either one global value or predicted per example by a small
network from the teacher's and the student's logits. It only shapes training: it is not part of the student.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn

from fairdistill.data.core import Batch
from fairdistill.distill.checks import require_teacher
from fairdistill.distill.core import LOSSES, DistillLoss, LossTerms, MethodContext, TrainState
from fairdistill.distill.grl import reverse_gradient
from fairdistill.models.core import ModelOutput
from fairdistill.registry import Options

#: τ = TAU_MIN + TAU_RANGE·sigmoid(θ) ∈ (1, 21).
TAU_MIN = 1.0
TAU_RANGE = 20.0


class CTKDOptions(Options):
    #: Weight of the KD term; the cross-entropy term has weight 1 − α.
    alpha: float = Field(default=0.9, ge=0.0, le=1.0)
    #: ``global``: one learnable θ; ``instance``: a 2-layer MLP maps [z_t, z_s] to one θ_i per example.
    scope: Literal["global", "instance"] = "global"
    #: Epochs over which the reversal strength λ ramps from 0 to 1 (capped at the run's epochs; 0: λ = 1).
    ramp_epochs: int = Field(default=10, ge=0)
    #: Temperature at initialisation (global θ, or the bias of the instance MLP's output layer).
    init_tau: float = 4.0
    #: Hidden width of the instance-scope MLP.
    hidden: int = Field(default=64, gt=0)

    @field_validator("init_tau")
    @classmethod
    def _inside_range(cls, value: float) -> float:
        if not TAU_MIN < value < TAU_MIN + TAU_RANGE:
            raise ValueError(f"must lie strictly between {TAU_MIN:g} and {TAU_MIN + TAU_RANGE:g}")
        return value


def temperature(theta: torch.Tensor) -> torch.Tensor:
    """τ = 1 + 20·sigmoid(θ)."""
    return TAU_MIN + TAU_RANGE * torch.sigmoid(theta)


def theta_for(tau: float) -> float:
    """The θ with temperature(θ) = τ."""
    u = (tau - TAU_MIN) / TAU_RANGE
    return math.log(u / (1.0 - u))


def grl_strength(epoch: int, ramp_epochs: int, num_epochs: int) -> float:
    """Cosine ramp λ_n = (1 − cos(π·n/N)) / 2 with n = min(epoch, N), N = min(ramp_epochs, num_epochs).

    ``epoch`` is the 1-based number of the epoch in progress (``state.epoch + 1``), as in the released CTKD
    training loop: λ = 0 only before training, the first epoch already trains θ a little, and λ reaches 1 at
    epoch N — inside the run, since N is capped at its number of epochs. λ is constant within an epoch.
    """
    n_total = min(ramp_epochs, num_epochs)
    if n_total <= 0:
        return 1.0
    n = min(max(epoch, 0), n_total)
    return 0.5 * (1.0 - math.cos(math.pi * n / n_total))


def ctkd_per_example(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, theta: torch.Tensor, alpha: float
) -> torch.Tensor:
    """(1 − α)·CE(y, z_s) + α·τ²·KL(σ(z_t/τ) ‖ σ(z_s/τ)) with τ = 1 + 20·sigmoid(θ); θ scalar or per example."""
    label, kd, _ = _ctkd_terms(student_logits, teacher_logits, y, theta)
    return (1.0 - alpha) * label + alpha * kd


def _ctkd_terms(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, y: torch.Tensor, theta: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    tau = temperature(theta)
    tau_col = tau.reshape(-1, 1) if tau.dim() > 0 else tau
    log_p_t = F.log_softmax(teacher_logits / tau_col, dim=1)
    log_p_s = F.log_softmax(student_logits / tau_col, dim=1)
    kl = (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1)
    ce = F.cross_entropy(student_logits, y, reduction="none")
    return ce, tau**2 * kl, tau


@LOSSES.register("ctkd", options=CTKDOptions)
class CTKDLoss(DistillLoss):
    """Li et al. (2023), curriculum temperature KD: kd with a learnable temperature trained adversarially.

    ℓ_i = (1 − α)·CE + α·τ²·KL(σ(z_t/τ) ‖ σ(z_s/τ)), τ = 1 + 20·sigmoid(θ). θ (``scope: global``) or the
    instance MLP's weights (``scope: instance``, θ_i = MLP([z_t, z_s])) receive the loss gradient through a
    gradient-reversal layer of strength λ (:func:`grl_strength`), so the optimiser moves them to *increase* the
    KD loss while the student decreases it. The instance MLP reads the student logits detached: the
    temperature network never pushes on the student through its input. The epoch history records
    ``ctkd_tau`` (global: τ at the end of the epoch; instance: the mean τ_i over the epoch's training examples,
    with ``ctkd_tau_min``/``ctkd_tau_max``) and the epoch's reversal strength ``ctkd_grl_strength``.
    """

    uses_teacher_embedding = False

    options: CTKDOptions

    def __init__(self, options: CTKDOptions, context: MethodContext) -> None:
        super().__init__(options, context)
        theta0 = theta_for(options.init_tau)
        self.theta: nn.Parameter | None = None
        self.temperature_net: nn.Sequential | None = None
        if options.scope == "global":
            self.theta = nn.Parameter(torch.tensor(theta0))
        else:
            c = context.info.num_classes
            self.temperature_net = nn.Sequential(
                nn.Linear(2 * c, options.hidden), nn.ReLU(), nn.Linear(options.hidden, 1)
            )
            # Start from τ = init_tau for every example: zero output weights, bias θ0.
            output = self.temperature_net[2]
            assert isinstance(output, nn.Linear)
            nn.init.zeros_(output.weight)
            nn.init.constant_(output.bias, theta0)
        self._tau_sum = 0.0
        self._tau_count = 0
        self._tau_min = math.inf
        self._tau_max = -math.inf

    def strength(self, state: TrainState) -> float:
        """λ of the current epoch (see :func:`grl_strength`)."""
        return grl_strength(state.epoch + 1, self.options.ramp_epochs, state.num_epochs)

    def raw_theta(self, student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> torch.Tensor:
        """θ (scalar) or θ_i (shape (B,)), before the gradient-reversal layer."""
        if self.theta is not None:
            return self.theta.to(student_logits.dtype)
        assert self.temperature_net is not None
        features = torch.cat([teacher_logits, student_logits.detach()], dim=1)
        net = self.temperature_net
        first = net[0]
        assert isinstance(first, nn.Linear)
        dtype = first.weight.dtype
        return net(features.to(dtype)).squeeze(1).to(student_logits.dtype)

    def terms(self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState) -> LossTerms:
        teacher = require_teacher("ctkd", teacher)
        t_logits = teacher.logits.to(student.logits.dtype)
        theta = reverse_gradient(self.raw_theta(student.logits, t_logits), self.strength(state))
        ce, kd, tau = _ctkd_terms(student.logits, t_logits, batch.y, theta)
        self._record(tau.detach(), len(batch.y))
        alpha = self.options.alpha
        return LossTerms(label=ce, teacher=kd, label_weight=1.0 - alpha, teacher_weight=alpha)

    def forward(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:
        return self.terms(batch, student, teacher, state).combine()

    def _record(self, tau: torch.Tensor, n: int) -> None:
        values = tau.reshape(-1).float()
        if values.numel() == 1:
            values = values.expand(n)
        self._tau_sum += float(values.sum())
        self._tau_count += int(values.numel())
        self._tau_min = min(self._tau_min, float(values.min()))
        self._tau_max = max(self._tau_max, float(values.max()))

    def current_temperature(self) -> float | None:
        """The global temperature now (None for ``scope: instance``)."""
        return None if self.theta is None else float(temperature(self.theta.detach()))

    def on_epoch_start(self, state: TrainState) -> None:
        self._tau_sum, self._tau_count = 0.0, 0
        self._tau_min, self._tau_max = math.inf, -math.inf

    def epoch_stats(self, state: TrainState) -> dict[str, float]:
        stats: dict[str, float] = {"ctkd_grl_strength": self.strength(state)}
        tau = self.current_temperature()
        if tau is not None:
            stats["ctkd_tau"] = tau
        elif self._tau_count:
            stats["ctkd_tau"] = self._tau_sum / self._tau_count
            stats["ctkd_tau_min"] = self._tau_min
            stats["ctkd_tau_max"] = self._tau_max
        return stats
