"""Shared types of the distillation methods: the training state they see and the per-example loss interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import torch
from torch import nn

from fairdistill.data.core import Batch, DatasetInfo
from fairdistill.models.core import ModelOutput
from fairdistill.registry import Options, Registry


@dataclass
class TrainState:
    """Where training is: read by losses (warm-ups, ramps) and by epoch hooks."""

    epoch: int = 0  # 0-based index of the current epoch
    num_epochs: int = 1
    step: int = 0
    steps_per_epoch: int = 1

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1]."""
        total = max(1, self.num_epochs * self.steps_per_epoch)
        return min(1.0, self.step / total)


@dataclass(frozen=True)
class MethodContext:
    """What a method component may need when it is built."""

    info: DatasetInfo
    num_train: int
    extras: dict = field(default_factory=dict)


class DistillLoss(nn.Module):
    """A distillation loss: returns one loss value per example (so any weighting applies to any loss).

    Subclasses set ``requires_teacher`` and implement ``forward``. Being an ``nn.Module`` lets a loss own
    trainable parameters (e.g. a learnable temperature), which the engine optimises with the student.
    """

    requires_teacher: ClassVar[bool] = True

    def __init__(self, options: Options, context: MethodContext) -> None:
        super().__init__()
        self.options = options
        self.context = context

    def forward(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError


#: Distillation losses, by ``loss.kind``.
LOSSES: Registry = Registry("loss")
