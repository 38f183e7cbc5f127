"""Gradient reversal: identity in the forward pass, gradient multiplied by −λ in the backward pass."""

from __future__ import annotations

import torch


class _ReverseGradient(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, strength: float) -> torch.Tensor:
        ctx.strength = strength
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.strength * grad, None


def reverse_gradient(x: torch.Tensor, strength: float = 1.0) -> torch.Tensor:
    """GRL_λ(x): returns x; during backpropagation the gradient reaching x is −λ times the incoming one."""
    return _ReverseGradient.apply(x, float(strength))
