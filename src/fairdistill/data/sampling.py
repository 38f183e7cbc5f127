"""Seeded stratified sampling shared by the dataset loaders (works for tiny subsets, unlike fixed-ratio splitters)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def stratified_order(strata: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices sorted by stratum, in random order within each stratum."""
    return np.lexsort((rng.random(len(strata)), strata))


def stratified_subsample(strata: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """A systematic sample of ``n`` indices, proportional to the strata sizes (sorted indices)."""
    if n >= len(strata):
        return np.arange(len(strata))
    order = stratified_order(strata, rng)
    positions = np.floor((np.arange(n) + rng.random()) * len(strata) / n).astype(np.int64)
    return np.sort(order[positions])


def proportional_sizes(n: int, fractions: Sequence[float]) -> np.ndarray:
    """Integer part sizes summing to ``n``, proportional to ``fractions`` (largest remainder; ties to the first)."""
    weights = np.asarray(fractions, dtype=np.float64)
    raw = n * weights / weights.sum()
    sizes = np.floor(raw).astype(np.int64)
    leftover = n - int(sizes.sum())
    sizes[np.argsort(-(raw - sizes), kind="stable")[:leftover]] += 1
    return sizes


def stratified_partition(strata: np.ndarray, fractions: Sequence[float], rng: np.random.Generator) -> list[np.ndarray]:
    """Split all indices into parts of :func:`proportional_sizes`, each stratum shared proportionally.

    Every part takes evenly spaced positions along the stratum-sorted random order (a systematic sample), so a
    stratum of ``m`` rows puts about ``m * fraction`` rows (±1) in each part. Returns sorted indices per part.
    """
    sizes = proportional_sizes(len(strata), fractions)
    if len(strata) == 0:
        return [np.zeros(0, dtype=np.int64) for _ in sizes]
    order = stratified_order(strata, rng)
    times = np.concatenate([(np.arange(s) + rng.random()) / s for s in sizes if s > 0])
    parts = np.concatenate([np.full(s, k) for k, s in enumerate(sizes) if s > 0])
    assignment = parts[np.argsort(times, kind="stable")]
    return [np.sort(order[assignment == k]) for k in range(len(sizes))]
