"""Instance weightings: a weight per example multiplying its whole loss (docs/methods.md).

Built-in kinds: ``group-balanced`` (oracle baseline), ``groupdro`` (online group weights), ``jtt`` (two stages)
and, in readout.py, ``early-readout`` (DeDiER and its Laplace variants).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import torch
from pydantic import Field

from fairdistill.data.core import Batch
from fairdistill.distill.core import MethodContext, TrainState
from fairdistill.errors import ConfigError
from fairdistill.models.core import ModelOutput
from fairdistill.processes import Processes
from fairdistill.registry import Options, Registry

#: Instance weightings, by ``weighting.kind``.
WEIGHTINGS: Registry = Registry("weighting")


class WeightingOptions(Options):
    """Options every weighting accepts."""

    #: Divide the batch loss by Σw instead of the batch size.
    normalize: bool = False


class InstanceWeighting(torch.nn.Module):
    """Gives each example of a batch a weight; hooks run between epochs for weightings that refit."""

    #: Whether the weighting reads the train split's group labels (refused on data without them).
    requires_groups: ClassVar[bool] = False

    def __init__(self, options: WeightingOptions, context: MethodContext, where: str) -> None:
        super().__init__()
        self.options = options
        self.context = context
        self.where = where
        if self.requires_groups and not context.info.groups_known:
            raise ConfigError(
                f"{where}: weighting {type(self).__name__} needs group labels, but dataset {context.info.name} "
                "has none; remove the weighting or give the data attribute/group columns"
            )

    @property
    def normalize(self) -> bool:
        return self.options.normalize

    def weights(
        self, batch: Batch, student: ModelOutput, per_example_loss: torch.Tensor, state: TrainState
    ) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def auxiliary_loss(self) -> torch.Tensor | None:
        """A loss for the weighting's own trainable parts, added to the batch loss (None when there is none)."""
        return None

    def on_epoch_start(self, state: TrainState) -> None:
        """Called before each epoch."""

    def combine_processes(self, processes: Processes) -> None:
        """Before :meth:`on_epoch_end` with several processes: merge what each process collected from its own
        shard during the epoch (nothing for most weightings)."""

    def on_epoch_end(self, state: TrainState) -> None:
        """Called after each epoch (refits happen here)."""

    def epoch_stats(self, state: TrainState) -> dict[str, float]:
        """Extra statistics for the epoch history (the weight statistics themselves are recorded by Method)."""
        return {}


class IndexedWeighting(InstanceWeighting):
    """A weighting that keeps one weight per training example, looked up by the examples' ``index``."""

    table: torch.Tensor  # a buffer: one weight per training example

    def __init__(self, options: WeightingOptions, context: MethodContext, where: str) -> None:
        super().__init__(options, context, where)
        self.register_buffer("table", torch.ones(context.num_train), persistent=True)

    def weights(
        self, batch: Batch, student: ModelOutput, per_example_loss: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        return self.table[batch.index.to(self.table.device)].to(per_example_loss.device)


@WEIGHTINGS.register("group-balanced", options=WeightingOptions)
class GroupBalanced(IndexedWeighting):
    """Oracle baseline: w_i = N / (G · N_{g_i}) from the train split's group counts (G = groups present)."""

    requires_groups = True

    def __init__(self, options: WeightingOptions, context: MethodContext, where: str) -> None:
        super().__init__(options, context, where)
        groups = context.train.group.long()
        counts = torch.bincount(groups, minlength=context.info.num_groups).double()
        present = int((counts > 0).sum())
        table = len(groups) / (present * counts[groups])
        self.table.copy_(table.to(self.table.dtype))


class GroupDROOptions(WeightingOptions):
    eta: float = Field(default=0.01, gt=0.0)


@WEIGHTINGS.register("groupdro", options=GroupDROOptions)
class GroupDRO(InstanceWeighting):
    """Sagawa et al. (2020): q ← q·exp(η·L_g) per step over the batch's groups; loss Σ_g q_g·L_g.

    Expressed as per-example weights w_i = B·q_{g_i}/n_{g_i}, so mean_i(w_i·ℓ_i) = Σ_g q_g·L_g for the groups
    present in the batch; it therefore composes with any per-example loss. With several processes the group
    counts and losses are summed over the processes' batches first (one global batch, one q everywhere).
    """

    requires_groups = True
    options: GroupDROOptions
    q: torch.Tensor  # a buffer: the group distribution

    def __init__(self, options: GroupDROOptions, context: MethodContext, where: str) -> None:
        super().__init__(options, context, where)
        g = context.info.num_groups
        self.register_buffer("q", torch.full((g,), 1.0 / g, dtype=torch.float64))

    def weights(
        self, batch: Batch, student: ModelOutput, per_example_loss: torch.Tensor, state: TrainState
    ) -> torch.Tensor:
        groups = batch.group.to(per_example_loss.device)
        q = self.q
        num_groups = q.numel()
        # the batch's per-group counts and loss sums in the loss's dtype (sums of at most a batch of losses; q,
        # which accumulates every step, stays float64)
        counts = torch.bincount(groups, minlength=num_groups).to(per_example_loss.dtype)
        sums = torch.bincount(groups, weights=per_example_loss.detach(), minlength=num_groups)
        processes = state.processes
        if processes.several:  # the group losses of the global batch: the same q on every process
            both = processes.sum(torch.stack([counts, sums]))
            counts, sums = both[0], both[1]
        # a group absent from the batch has sum 0, so loss 0: its q only moves by the normalisation
        denominators = counts.clamp_(min=1)
        # q·exp(η·L) normalised, computed as a softmax of log q + η·L so that a large η cannot overflow
        logits = torch.log(q.to(groups.device)).add_(sums.div_(denominators), alpha=self.options.eta)
        updated = torch.softmax(logits, dim=0)
        q.copy_(updated)
        # ×world: DDP averages the processes' gradients, so Σ over processes of (1/B_r)·Σ_i w_i·ℓ_i / world must
        # be Σ_g q_g·L_g with the global counts (absent groups are never indexed)
        per_group = updated.to(per_example_loss.dtype).div_(denominators).mul_(len(groups) * processes.world)
        return per_group.index_select(0, groups)

    def epoch_stats(self, state: TrainState) -> dict[str, float]:
        return {
            f"groupdro_q_{name}": float(v)
            for name, v in zip(self.context.info.group_names, self.q.tolist(), strict=True)
        }


class JTTOptions(WeightingOptions):
    #: Epochs of the identification stage (plain loss, w = 1).
    identify_epochs: int = Field(default=1, ge=1)
    #: λ_up: weight of the training examples the stage-1 model gets wrong.
    upweight: float = Field(default=6.0, gt=0.0, le=1.0e4)
    #: Re-initialise the student before stage 2 (faithful JTT trains the final model from scratch).
    reinitialize: bool = True


@WEIGHTINGS.register("jtt", options=JTTOptions)
class JustTrainTwice(IndexedWeighting):
    """Liu et al. (2021): train T epochs, up-weight the examples then misclassified by λ_up, train again.

    Both stages run inside one fit: after epoch T the error set is recorded, the student is re-initialised
    (option), and only stage-2 epochs are eligible for checkpoint selection.
    """

    options: JTTOptions

    def __init__(self, options: JTTOptions, context: MethodContext, where: str) -> None:
        super().__init__(options, context, where)
        if options.identify_epochs >= context.num_epochs:
            raise ConfigError(
                f"{where}.identify_epochs: must be smaller than the student's epochs ({context.num_epochs}) so "
                "that a second stage remains"
            )
        self.error_share: float | None = None

    def on_epoch_start(self, state: TrainState) -> None:
        state.select_from_epoch = max(state.select_from_epoch, self.options.identify_epochs + 1)

    def on_epoch_end(self, state: TrainState) -> None:
        if state.epoch + 1 != self.options.identify_epochs:
            return
        from fairdistill.distill.features import predict_probabilities

        assert state.model is not None
        probs = predict_probabilities(state.model, self.context.train, state.device, state.processes)
        wrong = torch.from_numpy(np.asarray(probs.argmax(1) != self.context.train.y.numpy()))
        self.table.copy_(torch.where(wrong, self.options.upweight, 1.0).to(self.table.dtype))
        self.error_share = float(wrong.float().mean())
        if self.options.reinitialize:
            state.reinitialize_student = True

    def epoch_stats(self, state: TrainState) -> dict[str, float]:
        """The share of training examples in the error set, reported once (after the identification stage)."""
        share, self.error_share = self.error_share, None
        return {} if share is None else {"jtt_error_share": share}
