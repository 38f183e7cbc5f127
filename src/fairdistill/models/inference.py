"""Running a model over a whole split without gradients, in order, batch by batch.

Batches are gathered by index (``BatchLoader``), so prediction, feature extraction and the teacher-cache build
cost about a bare forward pass over the split's tensors.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from fairdistill.data.core import Batch, BatchLoader, SplitDataset
from fairdistill.models.core import ModelOutput, TappedModel


@torch.no_grad()
def iterate_outputs(
    model: TappedModel,
    split: SplitDataset,
    batch_size: int,
    device: torch.device | str,
    positions: torch.Tensor | None = None,
) -> Iterator[tuple[Batch, ModelOutput]]:
    """Yield (batch, output) over ``split`` in order (only the examples at ``positions``, in that order, when
    given), in eval mode; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        for batch in BatchLoader(split, batch_size, positions):
            batch = batch.to(device)
            yield batch, model(batch.inputs)
    finally:
        model.train(was_training)
