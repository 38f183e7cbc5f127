"""KFAC last-layer Laplace: checked against a dense inversion of the explicitly built Kronecker Hessian."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fairdistill.distill.laplace import (
    DEFAULT_TAU_GRID,
    KronLaplace,
    add_lower_gram,
    gram_block_edges,
    keyed_normal,
    log_likelihood,
    symmetric_from_lower,
    tune_tau_by_evidence,
    tune_tau_by_validation,
    validation_nll,
    with_bias,
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
    cov = laplace.logit_covariance(x)[0].numpy()
    projector = np.eye(C) - np.ones((C, C)) / C
    for project, var in ((True, np.diag(projector @ cov @ projector)), (False, np.diag(cov))):
        scaled = mu / np.sqrt(1 + math.pi / 8 * var)
        expected = np.exp(scaled) / np.exp(scaled).sum()
        np.testing.assert_allclose(laplace.predictive(x, "probit", project=project)[0].numpy(), expected, atol=1e-12)
    # the projected covariance of the API is P Σ_f P
    np.testing.assert_allclose(
        laplace.logit_covariance(x, project=True)[0].numpy(), projector @ cov @ projector, atol=1e-12
    )


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
    for phi, label in zip(features.numpy(), y.numpy(), strict=True):
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
    assert tune_tau_by_evidence(laplace, features, y, grid, refine=False) == grid[int(np.argmax(dense))]
    refined = tune_tau_by_evidence(laplace, features, y, grid)
    assert laplace.log_evidence(refined, ll) >= max(dense) - 1e-12


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


# -- (a) the probit with the common-shift direction projected out ------------------------------------------------


def probit_numpy(mu: np.ndarray, cov: np.ndarray, project: bool) -> np.ndarray:
    c = len(mu)
    if project:
        projector = np.eye(c) - np.ones((c, c)) / c
        cov = projector @ cov @ projector
    scaled = mu / np.sqrt(1 + math.pi / 8 * np.diag(cov))
    e = np.exp(scaled - scaled.max())
    return e / e.sum()


def mc_numpy(mu: np.ndarray, cov: np.ndarray, samples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    chol = np.linalg.cholesky(cov + 1e-12 * np.eye(len(mu)))
    logits = mu + rng.standard_normal((samples, len(mu))) @ chol.T
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).mean(0)


def test_projected_probit_tracks_monte_carlo_and_ignores_common_shift_variance() -> None:
    """Σ_f = A + c·11ᵀ: MC (softmax is shift-invariant) and the projected probit do not depend on c; the
    unprojected probit shrinks every logit by √(1 + π/8·(A_kk + c)) and drifts towards uniform."""
    mu = np.array([1.5, 0.2, -0.8])
    a = np.array([[0.6, 0.1, -0.2], [0.1, 0.4, 0.05], [-0.2, 0.05, 0.5]])
    ones = np.ones((3, 3))
    reference = mc_numpy(mu, a, 400_000, 0)
    for c in (0.0, 5.0, 40.0):
        cov = a + c * ones
        # MC is invariant to the common shift (up to its own noise)
        np.testing.assert_allclose(mc_numpy(mu, cov, 400_000, 0), reference, atol=4e-3)
        projected = probit_numpy(mu, cov, project=True)
        np.testing.assert_allclose(projected, probit_numpy(mu, a, project=True), atol=1e-12)
        assert np.abs(projected - reference).max() < 0.025  # measured 0.0187 (the probit's own error)
    unprojected = probit_numpy(mu, a + 40.0 * ones, project=False)
    assert np.abs(unprojected - reference).max() > 0.2


def test_projected_probit_of_a_fit_beats_the_unprojected_one(problem) -> None:
    """A fitted posterior with a weak prior: U·1 = 0 gives the direction 1 prior-only variance Σ v̂²/τ."""
    features, weight, bias, _ = problem
    laplace = KronLaplace.fit(0.3 * weight, 0.3 * bias, features)
    laplace.tau = 0.05
    x = features[:8]
    cov = laplace.logit_covariance(x).numpy()
    ones = np.ones(C) / math.sqrt(C)
    shift = np.einsum("c,bcd,d->b", ones, cov, ones)
    assert float((shift / np.trace(cov, axis1=1, axis2=2)).min()) > 0.5  # the common shift dominates Σ_f
    mc = laplace.predictive(x, "mc", samples=100_000, seed=1).numpy()
    projected = laplace.predictive(x, "probit").numpy()
    unprojected = laplace.predictive(x, "probit", project=False).numpy()
    err_projected, err_unprojected = np.abs(projected - mc).max(), np.abs(unprojected - mc).max()
    # measured: 0.016 projected, 0.144 unprojected, 0.028 for the MAP softmax
    assert err_projected < 0.025 and err_unprojected > 4 * err_projected
    # the diagonal-only fast path equals the projected probit of the full covariance
    mu = laplace.logit_mean(x).numpy()
    for i in range(len(x)):
        np.testing.assert_allclose(projected[i], probit_numpy(mu[i], cov[i], project=True), atol=1e-12)


@pytest.mark.parametrize("prior", ["exact", "split"])
def test_projected_variance_diagonal_matches_the_full_projection(problem, prior: str) -> None:
    features, weight, bias, _ = problem
    laplace = KronLaplace.fit(weight, bias, features, prior=prior)
    laplace.tau = 0.3
    x = features[:5]
    projector = torch.eye(C, dtype=torch.float64) - 1.0 / C
    full = projector @ laplace.logit_covariance(x) @ projector
    scales = laplace._scales(laplace._rotated_squares(x), laplace.tau)
    np.testing.assert_allclose(
        laplace._variance_from(scales, laplace.tau, True).numpy(),
        torch.diagonal(full, dim1=1, dim2=2).numpy(),
        atol=1e-12,
    )


# -- (b) τ refined beyond the grid -------------------------------------------------------------------------------


def dense_log_evidence(laplace: KronLaplace, taus: np.ndarray, ll: float) -> np.ndarray:
    """Σ log p(y|W) − ½τ‖W‖² + ½(K log τ − log det P(τ)) from the eigenvalues of the dense Kronecker Hessian."""
    u = (laplace.q_u @ torch.diag(laplace.u) @ laplace.q_u.T).numpy()
    v = (laplace.q_v @ torch.diag(laplace.v) @ laplace.q_v.T).numpy()
    if laplace.prior == "exact":
        base = np.clip(np.linalg.eigvalsh(np.kron(u, v)), 0, None)
        logdet = np.log(base[None, :] + taus[:, None]).sum(1)
    else:
        n = laplace.n
        eu, ev = np.clip(np.linalg.eigvalsh(u), 0, None), np.clip(np.linalg.eigvalsh(v), 0, None)
        r = np.sqrt(taus)[:, None]
        logdet = len(ev) * np.log(math.sqrt(n) * eu[None] + r).sum(1) + len(eu) * np.log(
            math.sqrt(n) * ev[None] / n + r
        ).sum(1)
    k = len(laplace.u) * len(laplace.v)
    w2 = float((laplace.weight**2).sum())
    return ll - 0.5 * taus * w2 + 0.5 * (k * np.log(taus) - logdet)


@pytest.mark.parametrize("prior", ["exact", "split"])
@pytest.mark.parametrize("scale", [0.3, 1.0, 3.0])
def test_refined_tau_beats_the_grid_and_matches_a_brute_force_search(problem, prior: str, scale: float) -> None:
    features, weight, bias, y = problem
    laplace = KronLaplace.fit(weight * scale, bias * scale, features, prior=prior)
    ll = log_likelihood(laplace, features, y)
    grid_best = max(laplace.log_evidence(t, ll) for t in DEFAULT_TAU_GRID)
    refined = tune_tau_by_evidence(laplace, features, y)
    assert laplace.log_evidence(refined, ll) >= grid_best - 1e-12
    taus = np.logspace(-4, 6, 200_001)
    brute = dense_log_evidence(laplace, taus, ll)
    assert laplace.log_evidence(refined, ll) == pytest.approx(brute.max(), abs=1e-7)
    assert math.log10(refined) == pytest.approx(math.log10(taus[int(np.argmax(brute))]), abs=2e-4)
    if prior == "exact":
        # stationarity (MacKay): Σ_ab λ_ab/(λ_ab + τ) = τ‖W‖², λ_ab = u_a v_b
        lam = (laplace.u[:, None] * laplace.v[None, :]).numpy()
        w2 = float((laplace.weight**2).sum())
        assert (lam / (lam + refined)).sum() == pytest.approx(refined * w2, rel=1e-6)


# -- (c) Monte Carlo noise keyed by example index ----------------------------------------------------------------


def test_mc_noise_follows_the_example_index(problem) -> None:
    features, weight, bias, _ = problem
    laplace = KronLaplace.fit(weight, bias, features)
    laplace.tau = 0.5
    index = torch.arange(100, 100 + N)
    base = laplace.predictive(features, "mc", 16, seed=7, index=index)
    perm = torch.randperm(N, generator=torch.Generator().manual_seed(3))
    permuted = laplace.predictive(features[perm], "mc", 16, seed=7, index=index[perm])
    torch.testing.assert_close(permuted, base[perm], atol=1e-14, rtol=0)
    # chunking does not change the draws
    torch.testing.assert_close(
        laplace.predictive(features, "mc", 16, seed=7, index=index, chunk=7), base, atol=1e-14, rtol=0
    )
    # a different index or seed gives different noise
    assert not torch.allclose(laplace.predictive(features, "mc", 16, seed=7), base)
    assert not torch.allclose(laplace.predictive(features, "mc", 16, seed=8, index=index), base)


def test_keyed_noise_is_standard_normal() -> None:
    noise = keyed_normal(0, torch.arange(2000), 50, 3).numpy().reshape(-1, 3)
    assert abs(noise.mean()) < 0.01 and abs(noise.std() - 1.0) < 0.01
    assert np.abs(np.corrcoef(noise.T) - np.eye(3)).max() < 0.01
    # rows i and i+1 are not shifted copies of each other (no counter overlap)
    n2 = keyed_normal(0, torch.arange(2), 50, 3).numpy()
    assert not np.allclose(n2[:, 0], n2[:, 1])
    np.testing.assert_array_equal(keyed_normal(0, torch.tensor([1]), 50, 3).numpy()[:, 0], n2[:, 1])


# -- (d) validation tuning computes the rotation once ------------------------------------------------------------


@pytest.mark.parametrize("prior", ["exact", "split"])
def test_validation_nll_equals_the_per_grid_computation(problem, prior: str) -> None:
    features, weight, bias, y = problem
    laplace = KronLaplace.fit(weight, bias, features, prior=prior)
    grid = (0.01, 0.3, 1.0, 10.0, 100.0)
    u, v = dense_factors(features.numpy(), weight.numpy(), bias.numpy())
    fast = validation_nll(laplace, features, y, "probit", 1, 0, grid)
    for tau, value in zip(grid, fast, strict=True):
        if prior == "exact":
            covariance = np.linalg.inv(np.kron(u, v) + tau * np.eye(C * (D + 1)))
        else:
            covariance = np.kron(
                np.linalg.inv(math.sqrt(N) * u + math.sqrt(tau) * np.eye(C)),
                np.linalg.inv(math.sqrt(N) * v / N + math.sqrt(tau) * np.eye(D + 1)),
            )
        w = np.concatenate([weight.numpy(), bias.numpy()[:, None]], 1)
        nll = 0.0
        for phi, label in zip(features.numpy(), y.numpy(), strict=True):
            jac = jacobian(phi)
            nll -= math.log(probit_numpy(w @ np.append(phi, 1.0), jac @ covariance @ jac.T, project=True)[label])
        assert value == pytest.approx(nll / N, abs=1e-10)
    chosen = tune_tau_by_validation(laplace, features, y, "probit", 1, 0, grid)
    assert chosen == grid[int(np.argmin(fast))]
    # MC: the shared rotation gives the same NLLs as calling the predictive at every τ (same keyed noise)
    fast_mc = validation_nll(laplace, features, y, "mc", 8, 4, grid, chunk=13)
    for tau, value in zip(grid, fast_mc, strict=True):
        laplace.tau = tau
        probs = laplace.predictive(features, "mc", 8, 4)
        assert value == pytest.approx(float(-torch.log(probs[torch.arange(N), y]).mean()), abs=1e-12)


# -- (f) float32 N-sized work, chunked -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def moderate() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(11)
    n, d, c = 6000, 48, 3
    features = torch.randn(n, d, generator=g, dtype=torch.float64)
    weight = 0.3 * torch.randn(c, d, generator=g, dtype=torch.float64)
    bias = 0.2 * torch.randn(c, generator=g, dtype=torch.float64)
    return features, weight, bias


@pytest.mark.parametrize("prior", ["exact", "split"])
def test_float32_path_matches_float64(moderate, prior: str) -> None:
    features, weight, bias = moderate
    l64 = KronLaplace.fit(weight, bias, features, prior=prior)
    l32 = KronLaplace.fit(weight.float(), bias.float(), features.float(), prior=prior)
    for tau in (1e-2, 1.0, 100.0):
        l64.tau = l32.tau = tau
        p64 = l64.predictive(features, "probit")
        p32 = l32.predictive(features.float(), "probit")
        assert float((p32 - p64).abs().max()) < 3e-5


def test_chunked_equals_unchunked(moderate) -> None:
    features, weight, bias = moderate
    whole = KronLaplace.fit(weight, bias, features, chunk=10**9)
    chunked = KronLaplace.fit(weight, bias, features, chunk=777)
    phi = with_bias(features)
    v_dense = (phi.T @ phi).numpy()
    for laplace in (whole, chunked):
        np.testing.assert_allclose(
            (laplace.q_v @ torch.diag(laplace.v) @ laplace.q_v.T).numpy(), v_dense, rtol=1e-10, atol=1e-8
        )
    chunked.tau = whole.tau = 0.7
    torch.testing.assert_close(
        chunked.predictive(features, "probit", chunk=333),
        whole.predictive(features, "probit", chunk=10**9),
        atol=1e-12,
        rtol=0,
    )
    assert log_likelihood(whole, features, torch.zeros(len(features), dtype=torch.long), chunk=500) == pytest.approx(
        log_likelihood(whole, features, torch.zeros(len(features), dtype=torch.long), chunk=10**9), abs=1e-8
    )


def test_readout_defaults_to_the_deterministic_probit() -> None:
    from fairdistill.distill.readout import LaplaceOptions

    assert LaplaceOptions().predictive == "probit"


def test_gram_blocks_by_hand() -> None:
    assert gram_block_edges(3) == [0, 3]
    assert gram_block_edges(255) == [0, 255]
    assert gram_block_edges(300) == [0, 150, 300]
    assert gram_block_edges(768) == [0, 192, 384, 576, 768]
    assert gram_block_edges(4000) == [0, 1000, 2000, 3000, 4000]


@pytest.mark.parametrize("d", [300, 520])
def test_blocked_lower_gram_equals_the_full_product(d: int) -> None:
    """Only the blocks on and below the diagonal are multiplied; the completed matrix is xᵀx (numpy, float64),
    also when accumulated over chunks, and the fitted V is φ̃ᵀφ̃ with several blocks."""
    g = torch.Generator().manual_seed(3)
    x = torch.randn(90, d, generator=g, dtype=torch.float64) + 0.5
    edges = gram_block_edges(d)
    assert len(edges) > 2
    target = torch.zeros(d, d, dtype=torch.float64)
    for rows in (slice(0, 40), slice(40, 90)):
        add_lower_gram(target, x[rows], edges)
    assert bool((target[: edges[1], edges[1] :] == 0).all())  # above the block diagonal: never written
    reference = np.einsum("ni,nj->ij", x.numpy(), x.numpy())
    np.testing.assert_allclose(symmetric_from_lower(target).numpy(), reference, rtol=1e-12, atol=1e-10)
    weight = 0.1 * torch.randn(2, d, generator=g, dtype=torch.float64)
    laplace = KronLaplace.fit(weight, torch.zeros(2, dtype=torch.float64), x, chunk=32)
    phi = with_bias(x).numpy()
    np.testing.assert_allclose(
        (laplace.q_v @ torch.diag(laplace.v) @ laplace.q_v.T).numpy(), phi.T @ phi, rtol=1e-9, atol=1e-7
    )
