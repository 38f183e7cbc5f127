"""Per-example predictions of a model on a split."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from fairdistill.data.core import SplitDataset, collate
from fairdistill.models.core import TappedModel


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


@torch.no_grad()
def predict(model: TappedModel, split: SplitDataset, batch_size: int, device: torch.device | str) -> Predictions:
    """Class probabilities of ``model`` on every example of ``split`` (eval mode, no gradients)."""
    was_training = model.training
    model.eval()
    loader = DataLoader(split, batch_size=batch_size, shuffle=False, collate_fn=collate)
    probs = []
    for batch in loader:
        logits = model(batch.to(device).inputs).logits
        probs.append(torch.softmax(logits.float(), dim=-1).cpu().numpy())
    model.train(was_training)
    return Predictions(
        index=np.arange(len(split)),
        y=split.y.numpy(),
        attr=split.attr.numpy(),
        group=split.group.numpy(),
        probs=np.concatenate(probs) if probs else np.zeros((0, 0), dtype=np.float32),
    )
