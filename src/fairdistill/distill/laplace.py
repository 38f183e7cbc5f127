"""KFAC last-layer Laplace approximation for a linear readout head (Meronen et al., WACV 2024; docs/methods.md).

For a head W ∈ R^{C×(D+1)} (bias folded in) on features φ̃ = [φ; 1], the generalised Gauss–Newton Hessian of
the softmax cross-entropy is approximated by the Kronecker product U ⊗ V with V = Σ_i φ̃_i φ̃_iᵀ and
U = (1/N) Σ_i (diag(p_i) − p_i p_iᵀ) (vec(W) row-major). With an isotropic Gaussian prior of precision τ:

- ``exact``: posterior precision U ⊗ V + τ·I, inverted exactly through the eigendecompositions of U and V;
- ``split``: the prior split between the factors, (√N·U + √τ·I)⁻¹ ⊗ (√N·V/N + √τ·I)⁻¹ (the form in the
  early-exit literature).

Written here rather than taken from laplace-torch (which pulls torchvision); the unit tests compare it with a
dense inversion of the explicitly built Kronecker Hessian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Prior = Literal["exact", "split"]
Predictive = Literal["mc", "probit"]

#: The default grid of prior precisions searched when tuning τ.
DEFAULT_TAU_GRID: tuple[float, ...] = tuple(10.0 ** (k / 4) for k in range(-16, 25))


def with_bias(features: torch.Tensor) -> torch.Tensor:
    """φ̃ = [φ; 1] for every row."""
    return torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype, device=features.device)], 1)


@dataclass
class KronLaplace:
    """A fitted Kronecker-factored Laplace posterior over a linear head (all tensors float64)."""

    weight: torch.Tensor  # (C, D+1)
    u: torch.Tensor  # eigenvalues of U, (C,)
    q_u: torch.Tensor  # eigenvectors of U, (C, C)
    v: torch.Tensor  # eigenvalues of V, (D+1,)
    q_v: torch.Tensor  # eigenvectors of V, (D+1, D+1)
    n: int
    tau: float = 1.0
    prior: Prior = "exact"

    @classmethod
    def fit(cls, weight: torch.Tensor, bias: torch.Tensor, features: torch.Tensor, prior: Prior = "exact") -> "KronLaplace":
        """KFAC factors at the MAP head (``weight`` (C, D), ``bias`` (C,)) on the training ``features`` (N, D)."""
        w = torch.cat([weight, bias[:, None]], 1).double()
        phi = with_bias(features.double())
        probs = torch.softmax(phi @ w.T, dim=1)
        u_matrix = torch.diag(probs.mean(0)) - probs.T @ probs / len(probs)
        v_matrix = phi.T @ phi
        u, q_u = torch.linalg.eigh(u_matrix)
        v, q_v = torch.linalg.eigh(v_matrix)
        return cls(w, u.clamp(min=0.0), q_u, v.clamp(min=0.0), q_v, len(features), prior=prior)

    def posterior_precision_eigenvalues(self, tau: float | None = None) -> torch.Tensor:
        """Eigenvalues λ_ab of the posterior precision, (C, D+1)."""
        tau = self.tau if tau is None else tau
        if self.prior == "exact":
            return self.u[:, None] * self.v[None, :] + tau
        root_n, root_tau = math.sqrt(self.n), math.sqrt(tau)
        return (root_n * self.u[:, None] + root_tau) * (root_n * self.v[None, :] / self.n + root_tau)

    def logit_mean(self, features: torch.Tensor) -> torch.Tensor:
        return with_bias(features.double()) @ self.weight.T

    def logit_covariance(self, features: torch.Tensor) -> torch.Tensor:
        """Σ_f for every row of ``features``: (B, C, C)."""
        v_hat_sq = (with_bias(features.double()) @ self.q_v) ** 2  # (B, D+1)
        if self.prior == "exact":
            scale = v_hat_sq @ (1.0 / (self.u[:, None] * self.v[None, :] + self.tau)).T  # (B, C)
            return torch.einsum("ca,ba,da->bcd", self.q_u, scale, self.q_u)
        root_n, root_tau = math.sqrt(self.n), math.sqrt(self.tau)
        v_quad = v_hat_sq @ (1.0 / (root_n * self.v / self.n + root_tau))  # φ̃ᵀ V_post φ̃, (B,)
        u_post = self.q_u @ torch.diag(1.0 / (root_n * self.u + root_tau)) @ self.q_u.T
        return v_quad[:, None, None] * u_post[None]

    def predictive(
        self, features: torch.Tensor, method: Predictive = "mc", samples: int = 32, seed: int = 0
    ) -> torch.Tensor:
        """Predictive class probabilities p̂ (B, C): Monte Carlo over logits, or the probit approximation."""
        mean = self.logit_mean(features)
        cov = self.logit_covariance(features)
        if method == "probit":
            variance = torch.diagonal(cov, dim1=1, dim2=2)
            return torch.softmax(mean / torch.sqrt(1.0 + math.pi / 8.0 * variance), dim=1)
        chol = _cholesky(cov)
        generator = torch.Generator().manual_seed(seed)
        noise = torch.randn(samples, *mean.shape, generator=generator, dtype=mean.dtype)
        logits = mean[None] + torch.einsum("bcd,sbd->sbc", chol, noise)
        return torch.softmax(logits, dim=2).mean(0)

    def log_evidence(self, tau: float, log_likelihood: float) -> float:
        """log p(D|τ) ≈ Σ log p(y|W) − ½τ‖W‖² + ½ Σ_ab log(τ / λ_ab)."""
        eig = self.posterior_precision_eigenvalues(tau)
        return float(log_likelihood - 0.5 * tau * (self.weight**2).sum() + 0.5 * torch.log(tau / eig).sum())


def _cholesky(cov: torch.Tensor) -> torch.Tensor:
    """Batched Cholesky factor with a small relative jitter for (numerically) singular covariances."""
    eye = torch.eye(cov.shape[-1], dtype=cov.dtype)
    jitter = 1e-10 * torch.diagonal(cov, dim1=1, dim2=2).mean(1).clamp(min=1e-12)[:, None, None]
    for _ in range(6):
        factor, info = torch.linalg.cholesky_ex(cov + jitter * eye)
        if not bool(info.any()):
            return factor
        jitter = jitter * 100
    raise RuntimeError("logit covariance is not positive semi-definite")


def log_likelihood(laplace: KronLaplace, features: torch.Tensor, y: torch.Tensor) -> float:
    """Σ_i log p(y_i | W_MAP) of the head on its training features."""
    logp = torch.log_softmax(laplace.logit_mean(features), dim=1)
    return float(logp[torch.arange(len(y)), y.long()].sum())


def tune_tau_by_evidence(
    laplace: KronLaplace, features: torch.Tensor, y: torch.Tensor, grid: tuple[float, ...] = DEFAULT_TAU_GRID
) -> float:
    """The τ on ``grid`` maximising the Laplace evidence."""
    ll = log_likelihood(laplace, features, y)
    return max(grid, key=lambda tau: laplace.log_evidence(tau, ll))


def tune_tau_by_validation(
    laplace: KronLaplace,
    val_features: torch.Tensor,
    val_y: torch.Tensor,
    method: Predictive,
    samples: int,
    seed: int,
    grid: tuple[float, ...] = DEFAULT_TAU_GRID,
) -> float:
    """The τ on ``grid`` minimising the validation negative log-likelihood of the predictive."""
    original = laplace.tau
    best_tau, best_nll = grid[0], math.inf
    rows = torch.arange(len(val_y))
    for tau in grid:
        laplace.tau = tau
        probs = laplace.predictive(val_features, method, samples, seed)
        nll = float(-torch.log(probs[rows, val_y.long()].clamp(min=1e-12)).mean())
        if nll < best_nll:
            best_tau, best_nll = tau, nll
    laplace.tau = original
    return best_tau
