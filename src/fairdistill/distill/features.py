"""Student features and predictions over a whole split, for components that refit between epochs."""

from __future__ import annotations

import numpy as np
import torch

from fairdistill.data.core import SplitDataset, is_lazy
from fairdistill.models.core import TappedModel
from fairdistill.models.inference import iterate_outputs
from fairdistill.processes import SINGLE, Processes

FEATURE_BATCH_SIZE = 512
#: Rows per batch for in-memory table splits: their rows are small and table models are MLPs, so a few large
#: batches cost far less than many (Adult's 24,129 rows: 3 ms against 8 ms at 512).
TABLE_FEATURE_BATCH_SIZE = 8192


def feature_batch_size(split: SplitDataset) -> int:
    """The batch size for running a model over ``split``: larger for in-memory tables (every encoding one 2-D
    floating tensor), :data:`FEATURE_BATCH_SIZE` for images, text and lazy sources."""
    encodings = list(split.encodings.values())
    tabular = bool(encodings) and all(
        isinstance(enc, torch.Tensor) and enc.dim() == 2 and enc.is_floating_point() for enc in encodings
    )
    return TABLE_FEATURE_BATCH_SIZE if tabular and not is_lazy(split) else FEATURE_BATCH_SIZE


def pool_tap(t: torch.Tensor) -> torch.Tensor:
    """A tap's output as one vector per example: CNN maps are global-average-pooled, token sequences give the
    first ([CLS]) position, vectors are kept."""
    if t.dim() == 4:
        return t.mean(dim=(2, 3))
    if t.dim() == 3:
        return t[:, 0]
    if t.dim() == 2:
        return t
    return t.flatten(1)


def extract_features(
    model: TappedModel, split: SplitDataset, tap: str, device: torch.device | str, processes: Processes = SINGLE
) -> torch.Tensor:
    """Pooled features of tap ``tap`` for every example of ``split`` (float32, on the CPU, split order); with
    several ``processes`` (all must call it) each computes its shard and all get every row."""
    positions = processes.shard(len(split))
    parts = [
        pool_tap(out.taps[tap]).float().cpu()
        for _, out in iterate_outputs(model, split, feature_batch_size(split), device, positions)
    ]
    return processes.gather_rows(torch.cat(parts), len(split))


def predict_probabilities(
    model: TappedModel, split: SplitDataset, device: torch.device | str, processes: Processes = SINGLE
) -> np.ndarray:
    """Softmax probabilities of the model for every example of ``split`` (sharded like :func:`extract_features`)."""
    positions = processes.shard(len(split))
    parts = [
        torch.softmax(out.logits.float(), -1).cpu()
        for _, out in iterate_outputs(model, split, feature_batch_size(split), device, positions)
    ]
    return processes.gather_rows(torch.cat(parts), len(split)).numpy()
