"""Helpers shared by the text dataset loaders (``multinli``, ``civilcomments``, ``text-table``).

A text dataset gives every split its raw strings in ``SplitDataset.texts`` (``{"text": [...]}`` plus an optional
``"text_pair"``) and no encodings: the tokenising model adds its own encoding later (``ensure_encoding``).
"""

from __future__ import annotations

import numpy as np
import torch

from fairdistill.data.core import SplitDataset, label_attr_group_index
from fairdistill.data.sampling import stratified_subsample

SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")


def subsample_splits(
    groups: dict[str, np.ndarray], max_examples: int | None, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """Indices kept in each split: all of them, or with ``max_examples`` a group-stratified subsample of each
    split, proportional to the split sizes (at least one example per split), about ``max_examples`` in total."""
    if max_examples is None:
        return {name: np.arange(len(g)) for name, g in groups.items()}
    total = sum(len(g) for g in groups.values())
    if max_examples >= total:
        return {name: np.arange(len(g)) for name, g in groups.items()}
    kept = {}
    for name, g in groups.items():
        n = max(1, round(max_examples * len(g) / total)) if len(g) else 0
        kept[name] = stratified_subsample(g, n, rng)
    return kept


def text_split(
    name: str, text: list[str], text_pair: list[str] | None, y: np.ndarray, attr: np.ndarray, num_attrs: int
) -> SplitDataset:
    """A split of a text dataset: raw texts, no encodings; groups (label, attr)."""
    y_t = torch.as_tensor(np.asarray(y, dtype=np.int64))
    attr_t = torch.as_tensor(np.asarray(attr, dtype=np.int64))
    texts = {"text": list(text)}
    if text_pair is not None:
        texts["text_pair"] = list(text_pair)
    return SplitDataset(
        encodings={},
        y=y_t,
        attr=attr_t,
        group=label_attr_group_index(y_t, attr_t, num_attrs),
        name=name,
        texts=texts,
    )


def group_counts(split: SplitDataset, group_names: tuple[str, ...]) -> dict[str, int]:
    counts = np.bincount(split.group.numpy(), minlength=len(group_names))
    return {g: int(c) for g, c in zip(group_names, counts, strict=True)}


def first_rows(rows: np.ndarray, limit: int = 10) -> str:
    """``"2, 5, 9"`` (at most ``limit`` numbers, then ``"and N more"``)."""
    numbers = [int(r) for r in rows]
    shown = ", ".join(map(str, numbers[:limit]))
    return shown + (f" and {len(numbers) - limit} more" if len(numbers) > limit else "")
