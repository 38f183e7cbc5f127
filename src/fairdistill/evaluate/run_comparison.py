"""Run B − run A on the same examples: paired-bootstrap intervals from two runs' saved predictions.

Each side gives one predictions frame per seed (columns ``index``, ``y``, ``attr``, ``group``, ``pred``); seed k of
A is paired with seed k of B. Every frame is matched example by example (by ``index``) to the order of A's first
frame, and must hold the same examples with the same labels, attributes and groups. The resampling is
:func:`~fairdistill.evaluate.amplification.paired_bootstrap`'s: every resample draws one set of examples for A's
and B's models and all seeds, so the interval is that of the difference on this split.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from fairdistill.errors import FairdistillError
from fairdistill.evaluate.amplification import LabelArrays, paired_bootstrap


def paired_run_intervals(
    frames_a: Sequence[pd.DataFrame],
    frames_b: Sequence[pd.DataFrame],
    dataset: Mapping[str, Any],
    *,
    metrics: Sequence[str],
    resamples: int,
    confidence: float,
    seed: int,
) -> dict[str, dict[str, Any]]:
    """:func:`paired_bootstrap` of B − A for ``metrics`` (``dataset``: the metrics.json ``dataset`` section, for
    the number of classes, attribute values and groups). A FairdistillError when the frames do not pair up."""
    labels, preds_a, preds_b = aligned_predictions(frames_a, frames_b, dataset)
    return paired_bootstrap(
        labels, preds_a, preds_b, metrics=metrics, resamples=resamples, confidence=confidence, seed=seed
    )


def aligned_predictions(
    frames_a: Sequence[pd.DataFrame], frames_b: Sequence[pd.DataFrame], dataset: Mapping[str, Any]
) -> tuple[LabelArrays, list[np.ndarray], list[np.ndarray]]:
    """The labels of A's first frame and every frame's predictions in that example order (matched by index)."""
    reference = frames_a[0].sort_values("index").reset_index(drop=True)
    order = reference["index"].to_numpy()
    preds: list[list[np.ndarray]] = [[], []]
    for side, frames in enumerate((frames_a, frames_b)):
        for frame in frames:
            indexed = frame.set_index("index")
            if len(indexed) != len(order) or not indexed.index.isin(order).all():
                raise FairdistillError("the runs' predictions are not on the same examples (column index)")
            indexed = indexed.loc[order]
            if any(not np.array_equal(indexed[c].to_numpy(), reference[c].to_numpy()) for c in ("y", "attr", "group")):
                raise FairdistillError("the runs' predictions give the same examples different labels or attributes")
            preds[side].append(indexed["pred"].to_numpy())
    labels = LabelArrays.from_predictions(reference, dataset)
    return labels, preds[0], preds[1]
