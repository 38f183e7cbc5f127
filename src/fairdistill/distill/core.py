"""Shared types of the distillation methods: the training state they see and the per-example loss interface."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, ClassVar

import numpy as np
import torch
from pydantic import Field
from torch import nn

from fairdistill.data.core import Batch, DatasetInfo, SplitDataset
from fairdistill.models.core import ModelOutput, TappedModel
from fairdistill.processes import SINGLE, Processes
from fairdistill.registry import Options, Registry

#: A distillation temperature τ. Below 0.01 logits/τ overflow float32 (softmax gives NaN); above 1000 every
#: teacher distribution is uniform to float precision, so the term carries nothing.
Temperature = Annotated[float, Field(ge=0.01, le=1000.0)]


@dataclass
class TrainState:
    """Where training is: read by losses (warm-ups, ramps) and by epoch hooks."""

    epoch: int = 0  # 0-based index of the current epoch
    num_epochs: int = 1
    step: int = 0
    steps_per_epoch: int = 1
    #: The student being trained (unwrapped), for components that refit on its features between epochs.
    model: TappedModel | None = None
    device: torch.device | str = "cpu"
    #: Set by a component at the end of an epoch to have the engine re-initialise the student and its
    #: optimiser state before the next epoch (JTT's second stage).
    reinitialize_student: bool = False
    #: First epoch (1-based) eligible for checkpoint selection (JTT excludes its identification stage).
    select_from_epoch: int = 1
    #: The run's processes: components whose state is built from a batch's statistics (GroupDRO's group losses,
    #: the online readout's probabilities) combine them over the processes so that every process holds the same.
    processes: Processes = SINGLE

    @property
    def is_last_epoch(self) -> bool:
        """Whether the current epoch is the last one (refits for a next epoch would serve nothing)."""
        return self.epoch + 1 >= self.num_epochs

    @property
    def progress(self) -> float:
        """Fraction of training done, in [0, 1]."""
        total = max(1, self.num_epochs * self.steps_per_epoch)
        return min(1.0, self.step / total)


@dataclass
class TeacherOutputs:
    """Teacher logits (and embeddings) for every example of one split, looked up by the examples' ``index``."""

    logits: np.ndarray
    embedding: np.ndarray | None = None
    path: Path | None = None
    #: the logits as one in-memory tensor (N × C, small), made at the first lookup: rows are gathered by torch
    _logits_tensor: torch.Tensor | None = field(default=None, init=False, repr=False, compare=False)

    def lookup(self, index: torch.Tensor, device: torch.device | str, embedding: bool = True) -> ModelOutput:
        """The rows ``index`` (the examples' ``index``) on ``device``; ``embedding=False`` leaves the embedding
        out (losses that read only logits: gathering ``B × d`` embedding rows costs more than the logits)."""
        if self._logits_tensor is None:
            self._logits_tensor = torch.from_numpy(np.array(self.logits, dtype=np.float32, copy=True))
        logits = self._logits_tensor.index_select(0, index.cpu()).to(device)
        emb = None
        if embedding and self.embedding is not None:
            emb = torch.from_numpy(np.asarray(self.embedding[index.cpu().numpy()])).to(device)
        return ModelOutput(logits=logits, embedding=emb)


@dataclass(frozen=True)
class MethodContext:
    """What a method component may need when it is built: the data, and the teacher's outputs when there is one.

    ``teacher_train`` / ``teacher_val`` are None in a dry run and for runs whose methods need no teacher;
    components that need them must raise a clear error only when they are actually used.
    """

    info: DatasetInfo
    train: SplitDataset
    val: SplitDataset | None = None
    teacher_train: TeacherOutputs | None = None
    teacher_val: TeacherOutputs | None = None
    num_epochs: int = 1
    seed: int = 0
    #: Width of the student's embedding (None when the student has none), for components that project it.
    student_embedding_dim: int | None = None
    teacher_embedding_dim: int | None = None
    #: Names of the student's taps (for early readouts) and its architecture name, for error messages.
    student_taps: tuple[str, ...] = ()
    student_model: str = "student"
    #: Width of each student tap after pooling (pool_tap), for heads built on taps.
    student_tap_dims: dict[str, int] | None = None

    @property
    def num_train(self) -> int:
        return len(self.train)


@dataclass
class LossTerms:
    """A loss split into a label term and a teacher term: ℓ = label_weight·label + teacher_weight·teacher.

    Mixing rules (Teacher's pet) rebalance or reshape the two terms per example; weights may be floats or
    per-example tensors.
    """

    label: torch.Tensor
    teacher: torch.Tensor
    label_weight: float | torch.Tensor = 1.0
    teacher_weight: float | torch.Tensor = 1.0

    def combine(self) -> torch.Tensor:
        lw, tw = self.label_weight, self.teacher_weight
        if isinstance(lw, torch.Tensor) or isinstance(tw, torch.Tensor):
            return lw * self.label + tw * self.teacher
        # constant weights: one fused multiply-add (two ops fewer on a small model's step)
        label = self.label if lw == 1.0 else self.label * lw
        return torch.add(label, self.teacher, alpha=tw)


class DistillLoss(nn.Module):
    """A distillation loss: returns one loss value per example (so any weighting applies to any loss).

    Subclasses set ``requires_teacher`` and implement ``forward``. Being an ``nn.Module`` lets a loss own
    trainable parameters (e.g. a learnable temperature), which the engine optimises with the student.
    """

    requires_teacher: ClassVar[bool] = True
    #: Whether the loss reads the teacher's embedding; losses of logits only say False, so that a cached
    #: teacher's embedding rows are not gathered for every batch.
    uses_teacher_embedding: ClassVar[bool] = True

    def __init__(self, options: Options, context: MethodContext) -> None:
        super().__init__()
        self.options = options
        self.context = context

    def forward(
        self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState
    ) -> torch.Tensor:  # pragma: no cover - interface
        raise NotImplementedError

    def terms(self, batch: Batch, student: ModelOutput, teacher: ModelOutput | None, state: TrainState) -> LossTerms:
        """The loss as a label (cross-entropy) term and a teacher term, for mixing rules.

        Losses that support mixing implement this (and may then define ``forward`` as ``terms(...).combine()``).
        """
        raise NotImplementedError(f"loss {type(self).__name__} does not expose label/teacher terms")

    @classmethod
    def supports_terms(cls) -> bool:
        return cls.terms is not DistillLoss.terms

    def on_epoch_start(self, state: TrainState) -> None:
        """Called before each epoch (e.g. to update a schedule)."""

    def epoch_stats(self, state: TrainState) -> dict[str, float]:
        """Statistics recorded in the epoch history after each epoch (e.g. a learned temperature)."""
        return {}


#: Distillation losses, by ``loss.kind``.
LOSSES: Registry = Registry("loss")
