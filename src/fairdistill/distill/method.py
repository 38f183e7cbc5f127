"""A method composes a per-example distillation loss with an optional instance weighting, an optional
label/teacher mixing rule and an optional adversary (docs/methods.md).

Built from one ``methods:`` entry of the config; new losses, weightings or mixing rules are registered classes,
never branches here.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from fairdistill.config import MethodConfig
from fairdistill.data.core import Batch, SplitDataset
from fairdistill.distill.adversary import Adversary, AdversaryOptions
from fairdistill.distill.core import LOSSES, DistillLoss, MethodContext, TrainState
from fairdistill.distill.mixing import MIXINGS, MixingRule
from fairdistill.distill.weighting import WEIGHTINGS, InstanceWeighting
from fairdistill.errors import ConfigError
from fairdistill.models.core import ModelOutput, TappedModel
from fairdistill.processes import Processes
from fairdistill.registry import Options, validate_options


class WeightStatistics:
    """Statistics of the instance weights seen during one epoch.

    Each step only keeps its batch's weights (no reduction, no device synchronisation); the mean, maximum and
    share above 1 are taken once, when the epoch's statistics are read."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._batches: list[torch.Tensor] = []
        self.count = 0
        self.total = 0.0
        self.maximum = 0.0
        self.upweighted = 0

    def update(self, weights: torch.Tensor) -> None:
        self._batches.append(weights.detach().reshape(-1))

    def _reduce(self) -> None:
        """Fold the kept batches into count, total, maximum and upweighted."""
        if not self._batches:
            return
        w = torch.cat(self._batches).double()
        self._batches = []
        self.count += w.numel()
        self.total += float(w.sum())
        self.maximum = max(self.maximum, float(w.max())) if w.numel() else self.maximum
        self.upweighted += int((w > 1.0 + 1e-9).sum())

    def combine(self, processes: Processes) -> None:
        """The statistics of every process's batches (sums and the maximum over the processes)."""
        self._reduce()
        if not processes.several:
            return
        sums = processes.sum(torch.tensor([self.count, self.total, self.upweighted], dtype=torch.float64)).tolist()
        self.count, self.total, self.upweighted = int(sums[0]), sums[1], int(sums[2])
        self.maximum = float(processes.max(torch.tensor([self.maximum], dtype=torch.float64))[0])

    def summary(self) -> dict[str, float]:
        self._reduce()
        if not self.count:
            return {}
        return {
            "weight_mean": self.total / self.count,
            "weight_max": self.maximum,
            "weight_share_upweighted": self.upweighted / self.count,
        }


class Method(nn.Module):
    """One student's training objective: mean_i(w_i · ℓ_i) (+ the adversary's loss)."""

    def __init__(
        self,
        name: str,
        loss: DistillLoss,
        weighting: InstanceWeighting | None = None,
        mixing: MixingRule | None = None,
        adversary: Adversary | None = None,
    ) -> None:
        super().__init__()
        self.name = name
        self.distill_loss = loss
        self.weighting = weighting
        self.mixing = mixing
        self.adversary = adversary
        self._weight_stats = WeightStatistics()

    @property
    def requires_teacher(self) -> bool:
        return self.distill_loss.requires_teacher

    @property
    def uses_teacher_embedding(self) -> bool:
        """Whether a batch's teacher outputs must carry the teacher's embedding (only the loss reads it)."""
        return self.distill_loss.uses_teacher_embedding

    def numeric_options(self) -> dict[str, float]:
        """The numeric options of every part (``loss.tau``, ``weighting.beta``, ...), for messages."""
        found: dict[str, float] = {}
        parts = {
            "loss": self.distill_loss,
            "weighting": self.weighting,
            "mixing": self.mixing,
            "adversary": self.adversary,
        }
        for part, component in parts.items():
            options = getattr(component, "options", None)
            if isinstance(options, Options):
                found.update(
                    {
                        f"{part}.{k}": v
                        for k, v in options.model_dump().items()
                        if isinstance(v, (int, float)) and not isinstance(v, bool)
                    }
                )
        return found

    def per_example_loss(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:
        """ℓ_i before weighting: the loss itself, or its terms recombined by the mixing rule."""
        if self.mixing is not None:
            return self.mixing.mix(batch, self.distill_loss.terms(batch, student, teacher, state), student, state)
        return self.distill_loss(batch, student, teacher, state)

    def batch_loss(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:
        """The scalar to minimise for one batch (statistics are kept by the parts and read at the epoch's end)."""
        per_example = self.per_example_loss(batch, student, teacher, state)
        # means as dot products with constant coefficients: one operation each way (mean's backward costs more)
        if self.weighting is None:
            loss = torch.dot(torch.full_like(per_example.detach(), 1.0 / max(per_example.numel(), 1)), per_example)
        else:
            weights = self.weighting.weights(batch, student, per_example.detach(), state).to(per_example.dtype)
            self._weight_stats.update(weights)
            total = weights.sum().clamp(min=1e-12) if self.weighting.normalize else per_example.numel()
            loss = torch.dot(weights / total, per_example)
            auxiliary = self.weighting.auxiliary_loss()
            if auxiliary is not None:
                loss = loss + auxiliary
        if self.adversary is not None:
            loss = loss + self.adversary(batch, student, state).mean()
        return loss

    def on_epoch_start(self, state: TrainState) -> None:
        """Hook for components refit or rescheduled per epoch."""
        self.distill_loss.on_epoch_start(state)
        if self.weighting is not None:
            self.weighting.on_epoch_start(state)
        self._weight_stats.reset()

    def on_epoch_end(self, state: TrainState) -> dict[str, Any]:
        """Refits for the next epoch; returns this epoch's statistics for the history (weights, τ, ...).

        With several processes every process refits from the same model and data (each weighting first combines
        what it gathered from its own shard), and then takes process 0's state, so that the next epoch starts
        from identical method state everywhere even where floating-point reductions differ."""
        stats: dict[str, Any] = dict(self.distill_loss.epoch_stats(state))
        if self.weighting is not None:
            self._weight_stats.combine(state.processes)
            stats.update(self._weight_stats.summary())
            self.weighting.combine_processes(state.processes)
            self.weighting.on_epoch_end(state)
            stats.update(self.weighting.epoch_stats(state))
        state.processes.broadcast_state(self)
        if self.mixing is not None:
            stats.update(self.mixing.epoch_stats(state))
        if self.adversary is not None:
            stats.update(self.adversary.epoch_stats(state))
        return stats

    def readout_probabilities(
        self, model: TappedModel, splits: dict[str, SplitDataset], device: torch.device | str
    ) -> dict[str, dict[str, np.ndarray]]:
        """Early-readout probabilities per tap and split (empty for methods without a readout)."""
        readout = getattr(self.weighting, "readout_probabilities", None)
        tap = getattr(self.weighting, "tap", None)
        if readout is None or not isinstance(tap, str):
            return {}
        return {tap: readout(model, splits, device)}


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


def validate_parts(config: MethodConfig, where: str) -> None:
    """Check every part's kind and options without building anything (for dry runs and planning)."""
    kind, _ = resolve_loss(config, where)
    if config.weighting is not None:
        WEIGHTINGS.options(config.weighting.kind, config.weighting.options(), where=f"{where}.weighting")
    if config.mixing is not None:
        MIXINGS.options(config.mixing.kind, config.mixing.options(), where=f"{where}.mixing")
        loss_cls = LOSSES.get(kind).target
        if not loss_cls.supports_terms() or not loss_cls.requires_teacher:
            able = [n for n in LOSSES.names() if LOSSES.get(n).target.supports_terms()]
            raise ConfigError(
                f"{where}.mixing: mixing {config.mixing.kind!r} rebalances a loss's label and teacher terms, and "
                f"loss {kind!r} has no teacher term; use one of the losses: {', '.join(able)}"
            )
    if config.adversary is not None:
        validate_options(AdversaryOptions, config.adversary, where=f"{where}.adversary")


def build_method(config: MethodConfig, context: MethodContext, where: str) -> Method:
    """Build the method of one config entry."""
    validate_parts(config, where)
    kind, options = resolve_loss(config, where)
    loss = LOSSES.get(kind).target(options, context)
    weighting = mixing = adversary = None
    if config.weighting is not None:
        w_options = WEIGHTINGS.options(config.weighting.kind, config.weighting.options(), where=f"{where}.weighting")
        weighting = WEIGHTINGS.get(config.weighting.kind).target(w_options, context, f"{where}.weighting")
    if config.mixing is not None:
        m_options = MIXINGS.options(config.mixing.kind, config.mixing.options(), where=f"{where}.mixing")
        mixing = MIXINGS.get(config.mixing.kind).target(m_options, context, f"{where}.mixing")
    if config.adversary is not None:
        a_options = validate_options(AdversaryOptions, config.adversary, where=f"{where}.adversary")
        assert isinstance(a_options, AdversaryOptions)
        adversary = Adversary(a_options, context, f"{where}.adversary")
    return Method(config.name, loss, weighting, mixing, adversary)
