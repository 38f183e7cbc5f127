"""Optimiser construction from a TrainConfig."""

from __future__ import annotations

from typing import Iterable

import torch

from fairdistill.config import TrainConfig


def build_optimizer(params: Iterable[torch.nn.Parameter], config: TrainConfig) -> torch.optim.Optimizer:
    """Adam (L2 weight decay) or AdamW (decoupled weight decay) with the config's learning rate."""
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.Adam(params, lr=config.lr, weight_decay=config.weight_decay)
