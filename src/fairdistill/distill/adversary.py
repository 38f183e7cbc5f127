"""Adversarial debiasing through a gradient-reversal layer (Zhang et al., AIES 2018; Yang et al., npj Digit. Med. 2023).

An MLP adversary predicts the protected attribute from the student's probabilities (demographic parity),
probabilities plus the one-hot label (equalised odds) or the embedding (representation invariance). Student and
adversary share one backward pass: the adversary minimises its cross-entropy while the reversed gradient makes
the student maximise it, scaled by λ (``weight``), constant or on the DANN schedule.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from fairdistill.data.core import Batch
from fairdistill.distill.core import MethodContext, TrainState
from fairdistill.distill.grl import reverse_gradient
from fairdistill.errors import ConfigError
from fairdistill.models.core import ModelOutput
from fairdistill.registry import Options


class AdversaryOptions(Options):
    target: Literal["attr"] = "attr"
    input: Literal["probs", "probs+label", "embedding"] = "probs+label"
    weight: float = Field(default=1.0, ge=0.0)
    schedule: Literal["constant", "dann"] = "constant"
    hidden: int = Field(default=64, gt=0)


def dann_strength(weight: float, progress: float) -> float:
    """λ_p = λ·(2/(1+e^{−10p}) − 1): 0 at the start of training, → λ at the end."""
    return weight * (2.0 / (1.0 + math.exp(-10.0 * progress)) - 1.0)


class Adversary(nn.Module):
    """The attribute adversary and its per-example loss on the reversed student signal."""

    def __init__(self, options: AdversaryOptions, context: MethodContext, where: str) -> None:
        super().__init__()
        self.options = options
        info = context.info
        if info.num_attrs < 2:
            raise ConfigError(f"{where}: the adversary needs an attribute with at least two values")
        if options.input == "embedding":
            if context.student_embedding_dim is None:
                raise ConfigError(
                    f"{where}.input: the student ({context.student_model}) has no embedding; "
                    "use input: probs or probs+label"
                )
            width = context.student_embedding_dim
        else:
            width = info.num_classes * (2 if options.input == "probs+label" else 1)
        self.net = nn.Sequential(nn.Linear(width, options.hidden), nn.ReLU(), nn.Linear(options.hidden, info.num_attrs))
        #: this epoch's (logits, attribute, loss) per batch, detached: read once by epoch_stats (no per-step sync)
        self._seen: list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]] = []
        self._strength = 0.0

    def strength(self, state: TrainState) -> float:
        if self.options.schedule == "dann":
            return dann_strength(self.options.weight, state.progress)
        return self.options.weight

    def signal(self, batch: Batch, student: ModelOutput) -> torch.Tensor:
        if self.options.input == "embedding":
            assert student.embedding is not None
            return student.embedding
        probs = torch.softmax(student.logits, dim=1)
        if self.options.input == "probs":
            return probs
        return torch.cat([probs, F.one_hot(batch.y, probs.shape[1]).to(probs.dtype)], dim=1)

    def forward(self, batch: Batch, student: ModelOutput, state: TrainState) -> torch.Tensor:
        """Per-example adversary cross-entropy; its gradient reaches the student reversed and scaled by λ."""
        self._strength = self.strength(state)
        logits = self.net(reverse_gradient(self.signal(batch, student), self._strength))
        loss = F.cross_entropy(logits, batch.attr, reduction="none")
        self._seen.append((logits.detach(), batch.attr, loss.detach()))
        return loss

    def epoch_stats(self, state: TrainState) -> dict[str, float]:
        """The adversary's accuracy and mean cross-entropy on this epoch's train batches, and its strength λ."""
        stats = {"adversary_acc": 0.0, "adversary_strength": self._strength}
        if self._seen:
            logits, attr, loss = (torch.cat(parts) for parts in zip(*self._seen, strict=True))
            stats["adversary_acc"] = float((logits.argmax(1) == attr).double().mean())
            stats["adversary_loss"] = float(loss.double().mean())
        self._seen = []
        return stats
