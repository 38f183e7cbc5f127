"""The two numbers epoch selection reads, without the full metric suite.

Per-epoch validation only needs the validation accuracy and the worst-group accuracy (``select: val_acc`` or
``val_worst_group_acc``); :func:`fairdistill.evaluate.metrics.compute_metrics` computes both among dozens of
others (fairlearn frames, calibration, parity gaps) at the cost of about an epoch. Here one ``bincount`` per
group gives the same values (the mean of ``argmax(probs) == y`` overall and within each group present, the
minimum over the groups present); the full suite is still computed once on the final model.
"""

from __future__ import annotations

import numpy as np

from fairdistill.data.core import DatasetInfo


def selection_metrics(y: np.ndarray, probs: np.ndarray, group: np.ndarray, info: DatasetInfo) -> dict[str, float]:
    """``{"val_acc": ..., "val_worst_group_acc": ...}`` of the predictions ``argmax(probs)``.

    ``y``, ``group``: int arrays (N,); ``probs``: (N, C). Equal to ``compute_metrics``'s ``accuracy`` and
    ``worst_group_accuracy`` (the minimum over the groups with at least one example).
    """
    y = np.asarray(y).astype(np.int64).reshape(-1)
    group = np.asarray(group).astype(np.int64).reshape(-1)
    probs = np.asarray(probs)
    n = len(y)
    if n == 0:
        raise ValueError("metrics of an empty split are undefined")
    if probs.shape != (n, info.num_classes) or len(group) != n:
        raise ValueError(
            f"probs {probs.shape} and group ({len(group)},) do not match y ({n},) and {info.num_classes} classes"
        )
    if group.min() < 0 or group.max() >= info.num_groups:
        raise ValueError(f"group values must lie in [0, {info.num_groups})")
    correct = (probs.argmax(axis=1) == y).astype(np.float64)
    hits = np.bincount(group, weights=correct, minlength=info.num_groups)
    counts = np.bincount(group, minlength=info.num_groups)
    present = counts > 0
    return {
        "val_acc": float(correct.sum() / n),
        "val_worst_group_acc": float(np.min(hits[present] / counts[present])),
    }
