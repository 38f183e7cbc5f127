"""Requirement checks shared by the distillation losses: clear errors instead of ``None`` attribute errors."""

from __future__ import annotations

import torch

from fairdistill.errors import ConfigError
from fairdistill.models.core import ModelOutput


def require_teacher(kind: str, teacher: ModelOutput | None) -> ModelOutput:
    """The teacher's outputs for the batch; a loss that distils from a teacher cannot run without them."""
    if teacher is None:
        raise RuntimeError(f"loss {kind} needs the teacher's outputs for every batch, but none were given")
    return teacher


def require_embedding(kind: str, output: ModelOutput, role: str) -> torch.Tensor:
    """The embedding (penultimate features) of the student or teacher, or a ConfigError naming the loss."""
    if output.embedding is None:
        raise ConfigError(
            f"loss {kind} works on embeddings (penultimate features), but the {role} model gives none; "
            f"use a {role}.model that exposes an embedding (the built-in mlp and cnn do)"
        )
    return output.embedding


def safe_norm(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Euclidean norm along ``dim`` that is exactly 0 for a zero vector and has a finite (zero) gradient there."""
    sq = (x * x).sum(dim=dim)
    positive = sq > 0
    return torch.where(positive, sq.clamp_min(torch.finfo(x.dtype).tiny).sqrt(), torch.zeros_like(sq))


def safe_unit(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """x / ‖x‖ along ``dim``; a zero vector stays zero."""
    norm = safe_norm(x, dim).unsqueeze(dim)
    return x / torch.where(norm > 0, norm, torch.ones_like(norm))
