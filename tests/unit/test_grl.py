"""The gradient-reversal layer: identity forward, −λ·gradient backward."""

from __future__ import annotations

import pytest
import torch

from fairdistill.distill.grl import reverse_gradient


@pytest.mark.parametrize("strength", [0.0, 0.5, 1.0, 150.0])
def test_gradient_is_reversed_and_scaled(strength: float) -> None:
    x = torch.tensor([1.0, -2.0, 3.0], requires_grad=True)
    weights = torch.tensor([0.5, 2.0, -1.0])
    y = reverse_gradient(x, strength)
    assert torch.equal(y, x.detach())
    (y * weights).sum().backward()
    # d/dx of sum(w * x) is w; reversed and scaled: -strength * w
    assert torch.allclose(x.grad, -strength * weights)


def test_composed_with_a_function_the_chain_rule_holds() -> None:
    x = torch.tensor([0.3, -0.7], requires_grad=True)
    (reverse_gradient(x, 2.0) ** 2).sum().backward()
    assert torch.allclose(x.grad, -2.0 * 2 * x.detach())
