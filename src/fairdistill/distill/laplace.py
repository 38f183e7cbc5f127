"""KFAC last-layer Laplace approximation for a linear readout head (Meronen et al., WACV 2024; docs/methods.md).

For a head W ∈ R^{C×(D+1)} (bias folded in) on features φ̃ = [φ; 1], the generalised Gauss–Newton Hessian of
the softmax cross-entropy is approximated by the Kronecker product U ⊗ V with V = Σ_i φ̃_i φ̃_iᵀ and
U = (1/N) Σ_i (diag(p_i) − p_i p_iᵀ) (vec(W) row-major). With an isotropic Gaussian prior of precision τ:

- ``exact``: posterior precision U ⊗ V + τ·I, inverted exactly through the eigendecompositions of U and V;
- ``split``: the prior split between the factors, (√N·U + √τ·I)⁻¹ ⊗ (√N·V/N + √τ·I)⁻¹ (the form in the
  early-exit literature).

Written here rather than taken from laplace-torch (which pulls torchvision); the unit tests compare it with a
dense inversion of the explicitly built Kronecker Hessian. On centred features the ``exact`` posterior equals
laplace-torch 0.3's ``KronLLLaplace``; on uncentred features ours keeps the weight–bias cross terms in V.

Everything runs on the CPU (features on another device are copied chunk by chunk). Numerics: the N-sized work (the
Gram matrix φ̃ᵀφ̃, the logits, the rotation φ̃ᵀQ_V of the predictive) runs in the
features' dtype (float32 for float32 features, float64 for float64) in row chunks of ``chunk`` rows, so memory
stays bounded in N; the factors U and V are accumulated, eigendecomposed and kept in float64. The bias column is
never materialised: φ̃ᵀQ_V = φᵀQ_V[:D] + Q_V[D].

The probit predictive projects out the common-shift direction 1 of the logits before the probit: softmax ignores
a shift of all logits, and U·1 = 0 leaves that direction with prior-only variance, which would otherwise shrink
every logit. The Monte Carlo predictive draws its noise from a counter-based generator keyed by (seed, example
index, sample, class), so a row's samples do not depend on its position in the batch or on the chunking.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

Prior = Literal["exact", "split"]
Predictive = Literal["mc", "probit"]

#: The default grid of prior precisions searched when tuning τ.
DEFAULT_TAU_GRID: tuple[float, ...] = tuple(10.0 ** (k / 4) for k in range(-16, 25))

#: Rows per chunk of the N-sized work (a (chunk, D+1) block of the features' dtype at a time).
CHUNK = 32768

#: Column blocks of the Gram matrix φᵀφ: only the blocks on and below the diagonal are multiplied (5/8 of the
#: full product's work at 4 blocks); blocks are kept at least this wide so each product stays efficient.
GRAM_BLOCK_MIN_WIDTH = 128
GRAM_MAX_BLOCKS = 4


def with_bias(features: torch.Tensor) -> torch.Tensor:
    """φ̃ = [φ; 1] for every row."""
    return torch.cat([features, torch.ones(len(features), 1, dtype=features.dtype, device=features.device)], 1)


def _work_dtype(features: torch.Tensor) -> torch.dtype:
    return torch.float64 if features.dtype == torch.float64 else torch.float32


def _chunks(n: int, chunk: int):
    for start in range(0, n, max(int(chunk), 1)):
        yield slice(start, min(start + chunk, n))


def gram_block_edges(d: int) -> list[int]:
    """Column boundaries of the Gram matrix's blocks for ``d`` features (one block for small ``d``)."""
    blocks = max(1, min(GRAM_MAX_BLOCKS, d // GRAM_BLOCK_MIN_WIDTH))
    return [round(k * d / blocks) for k in range(blocks + 1)]


def add_lower_gram(target: torch.Tensor, x: torch.Tensor, edges: list[int]) -> None:
    """Add xᵀx to ``target`` (D, D) on and below the block diagonal only: block row [lo, hi) gets
    x[:, lo:hi]ᵀ x[:, :hi]. ``symmetric_from_lower`` completes the matrix once all rows are in."""
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        target[lo:hi, :hi] += (x[:, lo:hi].T @ x[:, :hi]).to(target.dtype)


def symmetric_from_lower(lower_blocks: torch.Tensor) -> torch.Tensor:
    """The symmetric matrix whose lower triangle is that of ``lower_blocks`` (whose diagonal blocks are full and
    symmetric, and whose blocks above the diagonal were never written)."""
    lower = torch.tril(lower_blocks)
    return lower + torch.tril(lower_blocks, -1).T


def centring_projector(num_classes: int) -> torch.Tensor:
    """I − 11ᵀ/C (float64)."""
    return torch.eye(num_classes, dtype=torch.float64) - 1.0 / num_classes


@dataclass
class KronLaplace:
    """A fitted Kronecker-factored Laplace posterior over a linear head (factors in float64)."""

    weight: torch.Tensor  # (C, D+1)
    u: torch.Tensor  # eigenvalues of U, (C,)
    q_u: torch.Tensor  # eigenvectors of U, (C, C)
    v: torch.Tensor  # eigenvalues of V, (D+1,)
    q_v: torch.Tensor  # eigenvectors of V, (D+1, D+1)
    n: int
    tau: float = 1.0
    prior: Prior = "exact"

    @classmethod
    def fit(
        cls,
        weight: torch.Tensor,
        bias: torch.Tensor,
        features: torch.Tensor,
        prior: Prior = "exact",
        chunk: int = CHUNK,
    ) -> KronLaplace:
        """KFAC factors at the MAP head (``weight`` (C, D), ``bias`` (C,)) on the training ``features`` (N, D)."""
        w = torch.cat([weight, bias[:, None]], 1).double().cpu()
        n, d = features.shape
        dtype = _work_dtype(features)
        w_t, b = w[:, :d].T.to(dtype).contiguous(), w[:, d].to(dtype)
        u_matrix = torch.zeros(len(w), len(w), dtype=torch.float64)
        v_matrix = torch.zeros(d + 1, d + 1, dtype=torch.float64)
        edges = gram_block_edges(d)
        for rows in _chunks(n, chunk):
            x = features[rows].to(device="cpu", dtype=dtype)
            probs = torch.softmax(torch.addmm(b, x, w_t).double(), dim=1)
            u_matrix += torch.diag(probs.sum(0)) - probs.T @ probs
            add_lower_gram(v_matrix[:d, :d], x, edges)
            v_matrix[:d, d] += x.sum(0).double()  # summed in the work dtype: a float64 reduction is 9x slower
        v_matrix[:d, :d] = symmetric_from_lower(v_matrix[:d, :d])
        v_matrix[d, :d] = v_matrix[:d, d]
        v_matrix[d, d] = n
        u_matrix /= max(n, 1)
        u, q_u = torch.linalg.eigh(u_matrix)
        v, q_v = torch.linalg.eigh(v_matrix)
        return cls(w, u.clamp(min=0.0), q_u, v.clamp(min=0.0), q_v, n, prior=prior)

    # -- posterior -------------------------------------------------------------------------------------------
    def posterior_precision_eigenvalues(self, tau: float | None = None) -> torch.Tensor:
        """Eigenvalues λ_ab of the posterior precision, (C, D+1)."""
        tau = self.tau if tau is None else tau
        if self.prior == "exact":
            return self.u[:, None] * self.v[None, :] + tau
        root_n, root_tau = math.sqrt(self.n), math.sqrt(tau)
        return (root_n * self.u[:, None] + root_tau) * (root_n * self.v[None, :] / self.n + root_tau)

    def _rotated_squares(self, x: torch.Tensor) -> torch.Tensor:
        """v̂² = (Q_Vᵀ φ̃)² per row, (b, D+1), in the features' work dtype (τ-independent)."""
        dtype = _work_dtype(x)
        q = self.q_v.to(dtype)
        d = x.shape[1]
        return torch.addmm(q[d], x.to(device="cpu", dtype=dtype), q[:d]).square_()

    def _mean(self, x: torch.Tensor) -> torch.Tensor:
        dtype = _work_dtype(x)
        d = x.shape[1]
        x = x.to(device="cpu", dtype=dtype)
        return torch.addmm(self.weight[:, d].to(dtype), x, self.weight[:, :d].T.to(dtype)).double()

    def _scales(self, v_hat_sq: torch.Tensor, tau: float) -> torch.Tensor:
        """``exact``: s_ba = Σ_b' v̂²/(u_a v_b' + τ), (b, C); ``split``: φ̃ᵀ V_post φ̃, (b, 1). float64."""
        if self.prior == "exact":
            inverse = 1.0 / (self.u[:, None] * self.v[None, :] + tau)  # (C, D+1)
            return (v_hat_sq @ inverse.T.to(v_hat_sq.dtype)).double()
        root_n, root_tau = math.sqrt(self.n), math.sqrt(tau)
        inverse = 1.0 / (root_n * self.v / self.n + root_tau)
        return (v_hat_sq @ inverse.to(v_hat_sq.dtype)).double()[:, None]

    def _u_post(self, tau: float) -> torch.Tensor:
        root_n, root_tau = math.sqrt(self.n), math.sqrt(tau)
        return self.q_u @ torch.diag(1.0 / (root_n * self.u + root_tau)) @ self.q_u.T

    def _covariance_from(self, scales: torch.Tensor, tau: float) -> torch.Tensor:
        if self.prior == "exact":
            return torch.einsum("ca,ba,da->bcd", self.q_u, scales, self.q_u)
        return scales[:, :, None] * self._u_post(tau)[None]

    def _variance_from(self, scales: torch.Tensor, tau: float, project: bool) -> torch.Tensor:
        """The diagonal of Σ_f (or of (I − 11ᵀ/C) Σ_f (I − 11ᵀ/C)) without building Σ_f, (b, C)."""
        projector = centring_projector(len(self.u)) if project else torch.eye(len(self.u), dtype=torch.float64)
        if self.prior == "exact":
            return scales @ ((projector @ self.q_u) ** 2).T
        return scales * torch.diagonal(projector @ self._u_post(tau) @ projector)[None]

    def logit_mean(self, features: torch.Tensor) -> torch.Tensor:
        return self._mean(features)

    def logit_covariance(self, features: torch.Tensor, project: bool = False) -> torch.Tensor:
        """Σ_f for every row of ``features``: (B, C, C); ``project``: (I − 11ᵀ/C) Σ_f (I − 11ᵀ/C)."""
        cov = self._covariance_from(self._scales(self._rotated_squares(features), self.tau), self.tau)
        if project:
            projector = centring_projector(len(self.u))
            cov = projector @ cov @ projector
        return cov

    def predictive(
        self,
        features: torch.Tensor,
        method: Predictive = "probit",
        samples: int = 32,
        seed: int = 0,
        index: torch.Tensor | None = None,
        project: bool = True,
        chunk: int = CHUNK,
    ) -> torch.Tensor:
        """Predictive class probabilities p̂ (B, C), float64: the (projected) probit approximation, or Monte Carlo
        over logits with noise keyed by ``index`` (default: the row numbers)."""
        index = torch.arange(len(features)) if index is None else torch.as_tensor(index).reshape(-1)
        out = torch.empty(len(features), len(self.u), dtype=torch.float64)
        for rows in _chunks(len(features), chunk):
            x = features[rows]
            mean, v_hat_sq = self._mean(x), self._rotated_squares(x)
            out[rows] = self._predictive_from(mean, v_hat_sq, self.tau, method, samples, seed, index[rows], project)
        return out

    def _predictive_from(
        self,
        mean: torch.Tensor,
        v_hat_sq: torch.Tensor,
        tau: float,
        method: Predictive,
        samples: int,
        seed: int,
        index: torch.Tensor,
        project: bool = True,
        noise: torch.Tensor | None = None,
    ) -> torch.Tensor:
        scales = self._scales(v_hat_sq, tau)
        if method == "probit":
            variance = self._variance_from(scales, tau, project)
            return torch.softmax(mean / torch.sqrt(1.0 + math.pi / 8.0 * variance), dim=1)
        chol = _cholesky(self._covariance_from(scales, tau))
        if noise is None:
            noise = keyed_normal(seed, index, samples, mean.shape[1])
        logits = mean[None] + torch.einsum("bcd,sbd->sbc", chol, noise)
        return torch.softmax(logits, dim=2).mean(0)

    def log_evidence(self, tau: float, log_likelihood: float) -> float:
        """log p(D|τ) ≈ Σ log p(y|W) − ½τ‖W‖² + ½ Σ_ab log(τ / λ_ab)."""
        eig = self.posterior_precision_eigenvalues(tau)
        return float(log_likelihood - 0.5 * tau * (self.weight**2).sum() + 0.5 * torch.log(tau / eig).sum())


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = x + np.uint64(0x9E3779B97F4A7C15)
    x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def keyed_normal(seed: int, index: torch.Tensor, samples: int, num_classes: int) -> torch.Tensor:
    """Standard normal noise (samples, len(index), num_classes), float64, a pure function of (seed, index_i, s, c).

    Counter-based (splitmix64 of the counter, Box–Muller), so a row's draws follow its example index.
    """
    with np.errstate(over="ignore"):
        key = _splitmix64(np.asarray([seed], dtype=np.int64).astype(np.uint64))
        idx = index.cpu().numpy().astype(np.int64).astype(np.uint64)
        s = np.arange(samples, dtype=np.uint64)[:, None, None]
        c = np.arange(num_classes, dtype=np.uint64)[None, None, :]
        counter = ((idx[None, :, None] * np.uint64(samples) + s) * np.uint64(num_classes) + c) * np.uint64(2)
        base = _splitmix64(counter ^ key)
        u1 = ((_splitmix64(base) >> np.uint64(11)).astype(np.float64) + 1.0) / 2.0**53  # (0, 1]
        u2 = (_splitmix64(base + np.uint64(1)) >> np.uint64(11)).astype(np.float64) / 2.0**53  # [0, 1)
    return torch.from_numpy(np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * math.pi * u2))


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


def log_likelihood(laplace: KronLaplace, features: torch.Tensor, y: torch.Tensor, chunk: int = CHUNK) -> float:
    """Σ_i log p(y_i | W_MAP) of the head on its training features."""
    total = 0.0
    for rows in _chunks(len(features), chunk):
        logp = torch.log_softmax(laplace.logit_mean(features[rows]), dim=1)
        total += float(logp.gather(1, y[rows].long().cpu()[:, None]).sum())
    return total


def refine_tau(
    laplace: KronLaplace, log_likelihood_value: float, grid: tuple[float, ...] = DEFAULT_TAU_GRID, tol: float = 1e-10
) -> float:
    """The τ maximising the evidence: the best grid value refined by a golden-section search in log τ between its
    grid neighbours (the ``exact`` evidence is unimodal in τ: its derivative ½(Σ_ab λ_ab/(τ(λ_ab+τ)) − ‖W‖²),
    λ_ab = u_a v_b, decreases in τ; so the bracket holds the maximum over the grid's range)."""

    def evidence(log_tau: float) -> float:
        return laplace.log_evidence(math.exp(log_tau), log_likelihood_value)

    values = [laplace.log_evidence(tau, log_likelihood_value) for tau in grid]
    k = int(np.argmax(values))
    if len(grid) < 2:
        return grid[k]
    lo, hi = math.log(grid[max(k - 1, 0)]), math.log(grid[min(k + 1, len(grid) - 1)])
    ratio = (math.sqrt(5.0) - 1.0) / 2.0
    a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = evidence(a), evidence(b)
    while hi - lo > tol:
        if fa >= fb:
            hi, b, fb = b, a, fa
            a = hi - ratio * (hi - lo)
            fa = evidence(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = evidence(b)
    best = a if fa >= fb else b
    return math.exp(best) if max(fa, fb) >= values[k] else grid[k]


def tune_tau_by_evidence(
    laplace: KronLaplace,
    features: torch.Tensor,
    y: torch.Tensor,
    grid: tuple[float, ...] = DEFAULT_TAU_GRID,
    refine: bool = True,
) -> float:
    """The τ maximising the Laplace evidence: on ``grid``, then (``refine``) by a 1-D search around its best value."""
    ll = log_likelihood(laplace, features, y)
    if refine:
        return refine_tau(laplace, ll, grid)
    return max(grid, key=lambda tau: laplace.log_evidence(tau, ll))


def validation_nll(
    laplace: KronLaplace,
    val_features: torch.Tensor,
    val_y: torch.Tensor,
    method: Predictive,
    samples: int,
    seed: int,
    grid: tuple[float, ...] = DEFAULT_TAU_GRID,
    chunk: int = CHUNK,
) -> list[float]:
    """The validation NLL of the predictive at every τ on ``grid``; the τ-independent mean, rotation φ̃ᵀQ_V (and
    Monte Carlo noise) are computed once per chunk of rows and shared by all grid values."""
    totals = [0.0] * len(grid)
    for rows in _chunks(len(val_features), chunk):
        x = val_features[rows]
        mean, v_hat_sq = laplace._mean(x), laplace._rotated_squares(x)
        labels = val_y[rows].long().cpu()[:, None]
        index = torch.arange(rows.start, rows.stop)
        noise = keyed_normal(seed, index, samples, mean.shape[1]) if method == "mc" else None
        for k, tau in enumerate(grid):
            probs = laplace._predictive_from(mean, v_hat_sq, tau, method, samples, seed, index, noise=noise)
            totals[k] += float(-torch.log(probs.gather(1, labels).clamp(min=1e-12)).sum())
    return [total / max(len(val_y), 1) for total in totals]


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
    nlls = validation_nll(laplace, val_features, val_y, method, samples, seed, grid)
    return grid[int(np.argmin(nlls))]
