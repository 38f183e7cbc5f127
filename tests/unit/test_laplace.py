"""KFAC last-layer Laplace: checked against a dense inversion of the explicitly built Kronecker Hessian."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fairdistill.distill.laplace import (
    KronLaplace,
    log_likelihood,
    tune_tau_by_evidence,
    tune_tau_by_validation,
)

N, D, C = 40, 3, 3


@pytest.fixture()
def problem() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    features = torch.randn(N, D, generator=g, dtype=torch.float64)
    weight = torch.randn(C, D, generator=g, dtype=torch.float64)
    bias = torch.randn(C, generator=g, dtype=torch.float64)
    y = torch.randint(0, C, (N,), generator=g)
    return features, weight, bias, y


def dense_factors(features: np.ndarray, weight: np.ndarray, bias: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """U and V with explicit loops over examples (independent of the vectorised code)."""
    w = np.concatenate([weight, bias[:, None]], 1)
    u = np.zeros((C, C))
    v = np.zeros((D + 1, D + 1))
    for phi in features:
        phi_t = np.append(phi, 1.0)
        z = w @ phi_t
        p = np.exp(z - z.max())
        p /= p.sum()
        u += (np.diag(p) - np.outer(p, p)) / len(features)
        v += np.outer(phi_t, phi_t)
    return u, v


def jacobian(phi: np.ndarray) -> np.ndarray:
    """d f / d vec(W) for f = W φ̃ with vec row-major: J[c, c*(D+1)+d] = φ̃_d."""
    phi_t = np.append(phi, 1.0)
    jac = np.zeros((C, C * (D + 1)))
    for c in range(C):
        jac[c, c * (D + 1) : (c + 1) * (D + 1)] = phi_t
    return jac


@pytest.mark.parametrize("tau", [0.01, 1.0, 30.0])
def test_exact_prior_matches_dense_inverse(problem, tau: float) -> None:
    features, weight, bias, _ = problem
    laplace = KronLaplace.fit(weight, bias, features, prior="exact")
    laplace.tau = tau
    u, v = dense_factors(features.numpy(), weight.numpy(), bias.numpy())
    precision = np.kron(u, v) + tau * np.eye(C * (D + 1))
    covariance = np.linalg.inv(precision)
    ours = laplace.logit_covariance(features[:5]).numpy()
    for i in range(5):
        jac = jacobian(features[i].numpy())
        np.testing.assert_allclose(ours[i], jac @ covariance @ jac.T, atol=1e-6, rtol=1e-6)


def test_split_prior_matches_its_dense_form(problem) -> None:
    features, weight, bias, _ = problem
    tau = 2.0
    laplace = KronLaplace.fit(weight, bias, features, prior="split")
    laplace.tau = tau
    u, v = dense_factors(features.numpy(), weight.numpy(), bias.numpy())
    u_post = np.linalg.inv(math.sqrt(N) * u + math.sqrt(tau) * np.eye(C))
    v_post = np.linalg.inv(math.sqrt(N) * v / N + math.sqrt(tau) * np.eye(D + 1))
    ours = laplace.logit_covariance(features[:4]).numpy()
    for i in range(4):
        phi_t = np.append(features[i].numpy(), 1.0)
        np.testing.assert_allclose(ours[i], (phi_t @ v_post @ phi_t) * u_post, atol=1e-8)
        # the split form is also J (U_post ⊗ V_post) Jᵀ
        jac = jacobian(features[i].numpy())
        np.testing.assert_allclose(ours[i], jac @ np.kron(u_post, v_post) @ jac.T, atol=1e-8)


def test_logit_mean_is_the_map_head(problem) -> None:
    features, weight, bias, _ = problem
    laplace = KronLaplace.fit(weight, bias, features)
    np.testing.assert_allclose(laplace.logit_mean(features).numpy(), (features @ weight.T + bias).numpy(), atol=1e-12)


def test_monte_carlo_approaches_the_closed_forms(problem) -> None:
    features, weight, bias, _ = problem
    laplace = KronLaplace.fit(weight * 0.3, bias * 0.3, features)
    laplace.tau = 20.0
    x = features[:6]
    mean, cov = laplace.logit_mean(x), laplace.logit_covariance(x)
    # moments of the MC logit samples → the Gaussian's mean and covariance
    chol = torch.linalg.cholesky(cov + 1e-12 * torch.eye(C))
    noise = torch.randn(200_000, 6, C, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    samples = mean[None] + torch.einsum("bcd,sbd->sbc", chol, noise)
    np.testing.assert_allclose(samples.mean(0).numpy(), mean.numpy(), atol=5e-3)
    centred = samples - samples.mean(0)
    sample_cov = torch.einsum("sbc,sbd->bcd", centred, centred) / len(samples)
    np.testing.assert_allclose(sample_cov.numpy(), cov.numpy(), atol=5e-3)
    # the MC predictive with many samples approaches the probit approximation when the variance is small
    mc = laplace.predictive(x, "mc", samples=20_000, seed=3)
    probit = laplace.predictive(x, "probit")
    assert float(cov.diagonal(dim1=1, dim2=2).max()) < 0.5
    np.testing.assert_allclose(mc.numpy(), probit.numpy(), atol=0.03)
    np.testing.assert_allclose(mc.sum(1).numpy(), 1.0, atol=1e-9)


def test_probit_formula_by_hand(problem) -> None:
    features, weight, bias, _ = problem
    laplace = KronLaplace.fit(weight, bias, features)
    laplace.tau = 0.5
    x = features[:1]
    mu = laplace.logit_mean(x)[0].numpy()
    var = np.diag(laplace.logit_covariance(x)[0].numpy())
    scaled = mu / np.sqrt(1 + math.pi / 8 * var)
    expected = np.exp(scaled) / np.exp(scaled).sum()
    np.testing.assert_allclose(laplace.predictive(x, "probit")[0].numpy(), expected, atol=1e-12)


def test_predictive_is_seeded(problem) -> None:
    features, weight, bias, _ = problem
    laplace = KronLaplace.fit(weight, bias, features)
    a = laplace.predictive(features[:3], "mc", 16, seed=5)
    b = laplace.predictive(features[:3], "mc", 16, seed=5)
    assert torch.equal(a, b)


def test_evidence_matches_a_dense_computation_and_tuning_maximises_it(problem) -> None:
    features, weight, bias, y = problem
    laplace = KronLaplace.fit(weight, bias, features)
    u, v = dense_factors(features.numpy(), weight.numpy(), bias.numpy())
    w = np.concatenate([weight.numpy(), bias.numpy()[:, None]], 1)
    ll = 0.0
    for phi, label in zip(features.numpy(), y.numpy()):
        z = w @ np.append(phi, 1.0)
        ll += z[label] - math.log(np.exp(z).sum())
    assert log_likelihood(laplace, features, y) == pytest.approx(ll, abs=1e-9)
    grid = (0.01, 0.1, 1.0, 10.0, 100.0)
    dense = []
    for tau in grid:
        precision = np.kron(u, v) + tau * np.eye(C * (D + 1))
        _, logdet = np.linalg.slogdet(precision)
        k = C * (D + 1)
        dense.append(ll - 0.5 * tau * (w**2).sum() + 0.5 * (k * math.log(tau) - logdet))
        assert laplace.log_evidence(tau, ll) == pytest.approx(dense[-1], abs=1e-6)
    assert tune_tau_by_evidence(laplace, features, y, grid) == grid[int(np.argmax(dense))]


def test_validation_tuning_picks_the_lowest_nll(problem) -> None:
    features, weight, bias, y = problem
    laplace = KronLaplace.fit(weight, bias, features)
    grid = (0.01, 1.0, 100.0)
    chosen = tune_tau_by_validation(laplace, features, y, "probit", 1, 0, grid)
    nlls = []
    for tau in grid:
        laplace.tau = tau
        probs = laplace.predictive(features, "probit")
        nlls.append(float(-torch.log(probs[torch.arange(N), y]).mean()))
    assert chosen == grid[int(np.argmin(nlls))]
