"""Seeded stratified sampling shared by the dataset loaders (works for tiny subsets, unlike fixed-ratio splitters)."""

from __future__ import annotations

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
