"""Per-example predictions of a model on a split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from fairdistill.data.core import SplitDataset
from fairdistill.models.core import TappedModel
from fairdistill.models.inference import iterate_outputs
from fairdistill.processes import SINGLE, Processes


@dataclass
class Predictions:
    """Labels, attributes, groups and class probabilities of every example of a split, in split order."""

    index: np.ndarray
    y: np.ndarray
    attr: np.ndarray
    group: np.ndarray
    probs: np.ndarray

    @property
    def pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1)

    def to_frame(self) -> pd.DataFrame:
        """One row per example: index, y, attr, group, pred, prob_0 … prob_{C-1}."""
        frame = pd.DataFrame(
            {"index": self.index, "y": self.y, "attr": self.attr, "group": self.group, "pred": self.pred}
        )
        for c in range(self.probs.shape[1]):
            frame[f"prob_{c}"] = self.probs[:, c]
        return frame


def predict(
    model: TappedModel,
    split: SplitDataset,
    batch_size: int,
    device: torch.device | str,
    processes: Processes = SINGLE,
) -> Predictions:
    """Class probabilities of ``model`` on every example of ``split`` (eval mode, no gradients).

    With several ``processes`` (every one must call it) each predicts its shard and all get the whole split's
    rows, each example once, in split order."""
    positions = processes.shard(len(split))
    probs = [
        torch.softmax(out.logits.float(), dim=-1).cpu()
        for _, out in iterate_outputs(model, split, batch_size, device, positions)
    ]
    local = torch.cat(probs) if probs else torch.zeros((0, 0), dtype=torch.float32)
    return Predictions(
        index=np.arange(len(split)),
        y=split.y.numpy(),
        attr=split.attr.numpy(),
        group=split.group.numpy(),
        probs=processes.gather_rows(local, len(split)).numpy(),
    )
