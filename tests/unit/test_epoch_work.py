"""Cheap per-epoch work (issue 12): the blocked rkd angle term, the full-batch readout fit, the selection metrics,
one Adam group without weight decay and the best-epoch weights — each against an independent computation."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegression

from fairdistill.data.core import DatasetInfo, label_attr_groups
from fairdistill.distill.readout import ReadoutHead, fit_linear_head
from fairdistill.distill.relational import rkd_angle
from fairdistill.evaluate.metrics import compute_metrics
from fairdistill.evaluate.selection import selection_metrics


def _angle_by_the_cubic_formula(s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """The straightforward O(B³) definition: per i, the mean over j ≠ i, k ∉ {i, j} of huber(ψ_A^s − ψ_A^t)."""

    def angles(e: torch.Tensor) -> torch.Tensor:
        diff = e.unsqueeze(0) - e.unsqueeze(1)  # diff[j, i] = e_i − e_j
        norm = diff.norm(dim=-1, keepdim=True)
        unit = torch.where(norm > 0, diff / torch.where(norm > 0, norm, torch.ones_like(norm)), torch.zeros_like(diff))
        return torch.einsum("jid,jkd->jik", unit, unit)

    b = s.shape[0]
    d = angles(s) - angles(t)
    huber = torch.where(d.abs() < 1, 0.5 * d**2, d.abs() - 0.5)
    j, i, k = torch.meshgrid(torch.arange(b), torch.arange(b), torch.arange(b), indexing="ij")
    valid = (j != i) & (k != i) & (k != j)
    return (huber * valid).sum(dim=(0, 2)) / ((b - 1) * (b - 2))


def test_rkd_angle_at_batch_256_matches_the_cubic_formula_values_and_gradients() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.randn(256, 16, generator=g, dtype=torch.float64, requires_grad=True)
    t = (2.0 * torch.randn(256, 24, generator=g, dtype=torch.float64)).requires_grad_(True)
    w = torch.rand(256, generator=g, dtype=torch.float64)  # an instance weighting of the per-example values
    ours = rkd_angle(s, t)
    grad_s, grad_t = torch.autograd.grad((w * ours).sum(), (s, t))
    reference = _angle_by_the_cubic_formula(s, t)
    ref_s, ref_t = torch.autograd.grad((w * reference).sum(), (s, t))
    assert torch.allclose(ours, reference, rtol=1e-12, atol=1e-15)
    assert torch.allclose(grad_s, ref_s, rtol=1e-9, atol=1e-14)
    assert torch.allclose(grad_t, ref_t, rtol=1e-9, atol=1e-14)
    assert bool((reference > 0).all())  # a real test: every example has a non-zero angle loss
    # A duplicate embedding (zero difference vectors, no angle at e_j = e_i): the values still agree.
    duplicated = s.detach().clone()
    duplicated[7] = duplicated[3]
    assert torch.allclose(rkd_angle(duplicated, t.detach()), _angle_by_the_cubic_formula(duplicated, t.detach()))


def test_rkd_angle_gradcheck_on_a_small_batch() -> None:
    g = torch.Generator().manual_seed(1)
    s = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=True)
    t = torch.randn(6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(rkd_angle, (s, t))


def _noisy_features(n: int, d: int, classes: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g) * torch.linspace(0.5, 3.0, d) + 1.5
    logits = x @ torch.randn(d, classes, generator=g)
    y = torch.multinomial(torch.softmax(logits, 1), 1, generator=g).squeeze(1)  # not separable
    return x, y


@pytest.mark.parametrize("classes", [2, 3])
def test_linear_readout_reaches_the_unregularised_softmax_regression_minimum(classes: int) -> None:
    x, y = _noisy_features(3000, 6, classes, seed=classes)
    head = ReadoutHead(6, classes, "linear", 8)
    iterations = fit_linear_head(head, x, y, warm_start=False, seed=0)
    assert 0 < iterations < 200
    z = ((x - x.mean(0)) / x.std(0)).double().numpy()
    reference = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(z, y.numpy())
    ref_probs = reference.predict_proba(z)
    ref_loss = -np.mean(np.log(ref_probs[np.arange(len(y)), y.numpy()]))
    with torch.no_grad():
        probs = torch.softmax(head(x).double(), 1).numpy()
        loss = float(F.cross_entropy(head(x).double(), y))
    assert loss == pytest.approx(ref_loss, abs=1e-7)
    assert np.abs(probs - ref_probs).max() < 1e-4
    # The weights, up to the common shift softmax ignores (sklearn's binary model has one row: w₁ − w₀).
    weight = head.out.weight.detach().double().numpy()
    if classes == 2:
        assert np.abs((weight[1] - weight[0]) - reference.coef_[0]).max() < 1e-3
    else:
        assert np.abs((weight - weight.mean(0)) - (reference.coef_ - reference.coef_.mean(0))).max() < 1e-3
    # A warm start from that minimum on shifted features (the next epoch) reaches the same minimum as a cold one.
    shifted = x * 1.1 + 0.3 * torch.randn(x.shape, generator=torch.Generator().manual_seed(5))
    warm_iterations = fit_linear_head(head, shifted, y, warm_start=True, seed=0)
    cold = ReadoutHead(6, classes, "linear", 8)
    fit_linear_head(cold, shifted, y, warm_start=False, seed=1)
    with torch.no_grad():
        assert torch.allclose(torch.softmax(head(shifted), 1), torch.softmax(cold(shifted), 1), atol=1e-4)
    assert warm_iterations < iterations


INFO = DatasetInfo(
    "toy", 3, ("a", "b", "c"), ("u", "v"), label_attr_groups(("a", "b", "c"), ("u", "v")), "tabular", (4,)
)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_selection_metrics_equal_the_full_suite(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 200
    y = rng.integers(0, 3, n)
    attr = rng.integers(0, 2, n)
    attr[y == 2] = 0  # group (c, v) absent: the minimum is over the groups present
    group = y * 2 + attr
    probs = rng.dirichlet(np.ones(3), n)
    probs[: n // 2, :] = np.eye(3)[y[: n // 2]] * 0.8 + 0.1  # half right, so accuracies differ between groups
    full = compute_metrics(y, probs, attr, group, INFO)
    ours = selection_metrics(y, probs, group, INFO)
    assert ours == {"val_acc": full["accuracy"], "val_worst_group_acc": full["worst_group_accuracy"]}
    by_hand = min(float(np.mean(probs[group == g].argmax(1) == y[group == g])) for g in range(6) if (group == g).any())
    assert ours["val_worst_group_acc"] == by_hand


def test_adam_has_one_group_without_weight_decay_and_resumes_a_two_group_checkpoint() -> None:
    from fairdistill.config import TrainConfig
    from fairdistill.train.optim import build_optimizer, merge_parameter_groups

    def model() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 2))

    def steps(net: torch.nn.Module, optimizer: torch.optim.Optimizer, n: int) -> None:
        g = torch.Generator().manual_seed(n)
        for _ in range(n):
            loss = net(torch.randn(8, 3, generator=g)).square().mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()

    config = TrainConfig(epochs=1, lr=1e-2, weight_decay=0.0)
    assert len(build_optimizer(model().named_parameters(), config).param_groups) == 1
    decayed = TrainConfig(epochs=1, lr=1e-2, weight_decay=0.1)
    assert [g["weight_decay"] for g in build_optimizer(model().named_parameters(), decayed).param_groups] == [0.1, 0.0]
    # The optimiser of older checkpoints: two groups (matrices, then biases), weight decay 0 in both.
    old_net = model()
    named = list(old_net.named_parameters())
    old = torch.optim.Adam(
        [{"params": [p for _, p in named if p.ndim > 1]}, {"params": [p for _, p in named if p.ndim <= 1]}], lr=1e-2
    )
    steps(old_net, old, 3)
    new_net = model()
    new_net.load_state_dict(old_net.state_dict())
    new = build_optimizer(new_net.named_parameters(), config)
    buffer = io.BytesIO()  # through a file, as a checkpoint (a state dict shares its step tensors otherwise)
    torch.save(old.state_dict(), buffer)
    buffer.seek(0)
    new.load_state_dict(merge_parameter_groups(torch.load(buffer, weights_only=True), new))
    steps(old_net, old, 2)
    steps(new_net, new, 2)
    for a, b in zip(old_net.parameters(), new_net.parameters(), strict=True):
        assert torch.equal(a, b)
    decayed_old = old.state_dict()
    decayed_old["param_groups"][0]["weight_decay"] = 0.1
    with pytest.raises(ValueError, match="weight decay"):
        merge_parameter_groups(decayed_old, new)


@pytest.mark.parametrize("classes", [2, 4])
def test_newton_and_lbfgs_reach_the_same_readout_minimum(classes: int, monkeypatch) -> None:
    import fairdistill.distill.readout as readout_module

    x, y = _noisy_features(2000, 7, classes, seed=10 + classes)
    newton = ReadoutHead(7, classes, "linear", 8)
    newton_steps = fit_linear_head(newton, x, y, warm_start=False, seed=0)
    monkeypatch.setattr(readout_module, "NEWTON_MAX_PARAMETERS", 0)  # the L-BFGS path
    lbfgs = ReadoutHead(7, classes, "linear", 8)
    lbfgs_iterations = fit_linear_head(lbfgs, x, y, warm_start=False, seed=0)
    with torch.no_grad():
        newton_loss = float(F.cross_entropy(newton(x).double(), y))
        lbfgs_loss = float(F.cross_entropy(lbfgs(x).double(), y))
        assert torch.allclose(torch.softmax(newton(x), 1), torch.softmax(lbfgs(x), 1), atol=1e-4)
    assert newton_loss == pytest.approx(lbfgs_loss, abs=1e-8)
    assert newton_steps < lbfgs_iterations  # both stop at the same gradient tolerance


def test_newton_readout_stops_on_separable_classes_with_finite_weights() -> None:
    x = torch.randn(200, 3, generator=torch.Generator().manual_seed(2))
    y = (x[:, 0] > 0).long()  # separable: the unregularised optimum lies at infinity
    head = ReadoutHead(3, 2, "linear", 8)
    steps = fit_linear_head(head, x, y, warm_start=False, seed=0)
    assert 0 < steps <= 50 and bool(torch.isfinite(head.out.weight).all())
    with torch.no_grad():
        assert bool((head(x).argmax(1) == y).all())  # it separates them


def test_newton_falls_back_to_the_float64_hessian_when_a_step_is_not_descent(monkeypatch) -> None:
    import fairdistill.distill.readout as readout_module

    x, y = _noisy_features(1500, 5, 2, seed=3)
    reference = ReadoutHead(5, 2, "linear", 8)
    fit_linear_head(reference, x, y, warm_start=False, seed=0)
    exact_calls = []
    direction = readout_module._newton_direction

    def ascent_in_float32(x, p, gradient, exact):
        exact_calls.append(exact)
        found = direction(x, p, gradient, exact)
        return found if exact else -found  # a float32 direction pointing uphill: it must be refused

    monkeypatch.setattr(readout_module, "_newton_direction", ascent_in_float32)
    guarded = ReadoutHead(5, 2, "linear", 8)
    fit_linear_head(guarded, x, y, warm_start=False, seed=0)
    assert True in exact_calls and exact_calls.count(True) == exact_calls.count(False)
    z = ((x - x.mean(0)) / x.std(0)).double().numpy()
    sklearn = LogisticRegression(C=np.inf, tol=1e-12, max_iter=10_000).fit(z, y.numpy())
    sklearn_loss = -np.mean(np.log(sklearn.predict_proba(z)[np.arange(len(y)), y.numpy()]))
    with torch.no_grad():
        assert float(F.cross_entropy(guarded(x).double(), y)) == pytest.approx(sklearn_loss, abs=1e-7)
        assert torch.allclose(torch.softmax(guarded(x), 1), torch.softmax(reference(x), 1), atol=1e-5)
