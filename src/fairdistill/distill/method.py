"""A method is the composition of a per-example distillation loss with optional instance weighting.

Built from one ``methods:`` entry of the config; new losses or weightings are registered classes, never
branches here.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from fairdistill.config import MethodConfig
from fairdistill.data.core import Batch
from fairdistill.distill.core import LOSSES, DistillLoss, MethodContext, TrainState
from fairdistill.errors import ConfigError
from fairdistill.models.core import ModelOutput
from fairdistill.registry import Options


class Method(nn.Module):
    """One student's training objective: ``mean_i(w_i · ℓ_i)`` over a batch."""

    def __init__(self, name: str, loss: DistillLoss) -> None:
        super().__init__()
        self.name = name
        self.distill_loss = loss

    @property
    def requires_teacher(self) -> bool:
        return self.distill_loss.requires_teacher

    def loss(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> tuple[torch.Tensor, dict[str, float]]:
        """Per-example losses (already weighted) and scalar logs for the progress bar and history."""
        per_example = self.distill_loss(batch, student, teacher, state)
        return per_example, {}

    def batch_loss(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> tuple[torch.Tensor, dict[str, float]]:
        per_example, logs = self.loss(batch, student, teacher, state)
        return per_example.mean(), logs

    def on_epoch_start(self, state: TrainState) -> None:
        """Hook for components refit or rescheduled per epoch."""
        self.distill_loss.on_epoch_start(state)

    def on_epoch_end(self, state: TrainState) -> dict[str, Any]:
        """Hook for components refit per epoch; returns statistics recorded in the epoch history."""
        return dict(self.distill_loss.epoch_stats(state))


def resolve_loss(config: MethodConfig, where: str) -> tuple[str, Options]:
    """The loss kind and validated options of a method entry (``loss`` omitted: the kind named like the method)."""
    kind = config.loss_kind
    if config.loss is None and kind not in LOSSES:
        raise ConfigError(
            f"{where}: no `loss` given and {kind!r} is not a loss kind; add `loss: {{kind: ...}}` "
            f"(loss kinds: {', '.join(LOSSES.names())})"
        )
    raw = config.loss.options() if config.loss is not None else {}
    return kind, LOSSES.options(kind, raw, where=f"{where}.loss")


def reject_unavailable_parts(config: MethodConfig, where: str) -> None:
    """Weighting, mixing and adversary parts are not available yet: say so instead of ignoring them."""
    for part in ("weighting", "mixing", "adversary"):
        if getattr(config, part) is not None:
            raise ConfigError(f"{where}.{part}: no {part} kinds are available in this version of fairdistill")


def build_method(config: MethodConfig, context: MethodContext, where: str) -> Method:
    """Build the method of one config entry."""
    reject_unavailable_parts(config, where)
    kind, options = resolve_loss(config, where)
    loss_cls = LOSSES.get(kind).target
    return Method(config.name, loss_cls(options, context))
