"""Running a model over a whole split without gradients, in order, batch by batch."""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import DataLoader

from fairdistill.data.core import Batch, SplitDataset, collate
from fairdistill.models.core import ModelOutput, TappedModel


@torch.no_grad()
def iterate_outputs(
    model: TappedModel, split: SplitDataset, batch_size: int, device: torch.device | str
) -> Iterator[tuple[Batch, ModelOutput]]:
    """Yield (batch, output) over ``split`` in order, in eval mode; the model's mode is restored afterwards."""
    was_training = model.training
    model.eval()
    try:
        for batch in DataLoader(split, batch_size=batch_size, shuffle=False, collate_fn=collate):
            batch = batch.to(device)
            yield batch, model(batch.inputs)
    finally:
        model.train(was_training)
