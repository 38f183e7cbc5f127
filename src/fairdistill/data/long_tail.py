"""Long-tailed splits for any labelled dataset, and the head / medium / tail classes of a long-tailed run.

*Teacher's pet* (Lukasik et al., TMLR 2022) finds distillation hurting most the classes with few examples. To
study that on any dataset, ``long_tail: {imbalance: ρ}`` in the dataset's options rewrites the splits once they
are loaded (by :func:`~fairdistill.data.load_dataset`, the same for every dataset), following the exponential
profile of the CIFAR-LT benchmarks (Cui et al., CVPR 2019; Cao et al., NeurIPS 2019):

- **train**: class k (classes ordered by class index: class 0 is the largest, class C−1 the smallest) keeps
  n_k = ⌊n_max · ρ^(−k/(C−1))⌋ examples, so n_0 / n_(C−1) ≈ ρ. n_max is the largest head size that every
  class can supply, n_max = ⌊min_k a_k · ρ^(k/(C−1))⌋ with a_k the examples of class k in the loaded train
  split (with balanced source data, n_max = a_0). A class that would keep no example is a ConfigError
  (lower ``imbalance`` or use more data).
- **val and test**: balanced, every class subsampled to the size of the split's smallest class, so overall
  accuracy there is the class-balanced accuracy long-tail work reports.

Which examples a class keeps is drawn uniformly without replacement, seeded by the dataset's ``split_seed``
(one stream per split), and the kept examples stay in their loaded order: the same options give the same
splits. The counts are logged and recorded in the provenance (``long_tail``), and
``DatasetInfo.train_class_counts`` carries the train counts to the metrics.

Head / medium / tail (:func:`frequency_groups`): the classes sorted by train count, most frequent first (ties
by class index), cut into three contiguous thirds; when C is not a multiple of three the first thirds take one
class more (C = 10: 4 head, 3 medium, 3 tail classes). Thirds by rank, not absolute thresholds such as
ImageNet-LT's many-shot (> 100) / few-shot (< 20), because they do not depend on the dataset's size.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence

import numpy as np
import torch

from fairdistill.data.core import LongTailOptions, SplitDataset, Splits
from fairdistill.errors import ConfigError

log = logging.getLogger(__name__)

#: Names of the three class-frequency groups, most frequent first.
FREQUENCY_GROUPS: tuple[str, str, str] = ("head", "medium", "tail")

#: Tags the random streams of this transform, so they never coincide with a loader's streams of the same seed.
_STREAM_TAG = 0x4C54


def long_tail_counts(available: Sequence[int], imbalance: float, class_names: Sequence[str] | None = None) -> list[int]:
    """n_k = ⌊n_max·ρ^(−k/(C−1))⌋ per class k, with n_max = ⌊min_k a_k·ρ^(k/(C−1))⌋ (see the module docstring).

    ``available``: a_k, the train examples of each class. ConfigError when ρ < 1 or a class would keep none.
    """
    if not math.isfinite(imbalance) or imbalance < 1.0:
        raise ConfigError(f"data.long_tail.imbalance: must be a number >= 1 (1 = balanced), got {imbalance!r}")
    names = list(class_names) if class_names is not None else [str(k) for k in range(len(available))]
    c = len(available)
    if c <= 1:
        return [int(a) for a in available]
    # ρ^(−k/(C−1)) for each class; exp/log keeps it exact for k = 0 (1.0) and k = C−1 (1/ρ to rounding).
    ratios = [math.exp(-math.log(imbalance) * k / (c - 1)) for k in range(c)]
    n_max = math.floor(min(a / r for a, r in zip(available, ratios, strict=True)) + 1e-9)
    counts = [min(int(a), math.floor(n_max * r + 1e-9)) for a, r in zip(available, ratios, strict=True)]
    empty = [k for k, n in enumerate(counts) if n == 0]
    if empty:
        k = empty[0]
        raise ConfigError(
            f"data.long_tail.imbalance: with imbalance {imbalance:g} class {names[k]!r} would keep no training "
            f"example (largest class {n_max}, class {names[k]!r} keeps {n_max}·{imbalance:g}^(-{k}/{c - 1}) < 1; "
            f"train examples per class: {[int(a) for a in available]}); lower the imbalance or use more data"
        )
    return counts


def balanced_count(available: Sequence[int], split: str, class_names: Sequence[str]) -> int:
    """The per-class size of a balanced ``split``: its smallest class; ConfigError when a class is absent."""
    missing = [class_names[k] for k, a in enumerate(available) if a == 0]
    if missing:
        raise ConfigError(
            f"data.long_tail: the {split} split has no example of class {missing[0]!r}, so it cannot be "
            "class-balanced; use more data (max_examples) or another split_seed"
        )
    return int(min(available))


def sample_per_class(y: np.ndarray, counts: Sequence[int], rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of ``counts[k]`` examples of each class k, drawn uniformly without replacement."""
    kept = [rng.choice(np.flatnonzero(y == k), size=int(n), replace=False) for k, n in enumerate(counts)]
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)


def frequency_groups(train_counts: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Class indices of the head, medium and tail thirds (by train count, most frequent first; ties by index)."""
    order = np.argsort(-np.asarray(train_counts, dtype=np.int64), kind="stable")
    head, medium, tail = np.array_split(order, 3)
    return head, medium, tail


def subset_split(split: SplitDataset, index: np.ndarray) -> SplitDataset:
    """The examples ``index`` of ``split`` (every encoding, label, attribute, group and raw text), through the
    split's own :meth:`~fairdistill.data.core.SplitDataset.subset`, so a lazy split (decoded images) keeps its
    kind and reads the kept examples' files."""
    return split.subset(torch.from_numpy(np.asarray(index, dtype=np.int64)))


def make_long_tailed(splits: Splits, options: LongTailOptions, seed: int) -> Splits:
    """``splits`` with a long-tailed train split and class-balanced val / test splits (module docstring)."""
    info = splits.info
    names = list(info.class_names)
    rngs = [np.random.default_rng(s) for s in np.random.SeedSequence([seed, _STREAM_TAG]).spawn(3)]
    before: dict[str, list[int]] = {}
    new: dict[str, SplitDataset] = {}
    per_class: dict[str, list[int]] = {}
    for (name, split), rng in zip(splits.items(), rngs, strict=True):
        y = split.y.numpy().astype(np.int64)
        available = np.bincount(y, minlength=info.num_classes).tolist()
        before[name] = available
        if name == "train":
            counts = long_tail_counts(available, options.imbalance, names)
        else:
            counts = [balanced_count(available, name, names)] * info.num_classes
        per_class[name] = counts
        new[name] = subset_split(split, sample_per_class(y, counts, rng))
    train_counts = tuple(per_class["train"])
    log.info(
        "long_tail (imbalance %g): train examples per class %s; val %d and test %d per class",
        options.imbalance,
        list(train_counts),
        per_class["val"][0],
        per_class["test"][0],
    )
    groups = frequency_groups(train_counts)
    provenance = dict(splits.provenance)
    provenance["long_tail"] = {
        "imbalance": options.imbalance,
        "class_order": "by class index: class 0 keeps the most train examples",
        "train_class_counts": dict(zip(names, train_counts, strict=True)),
        "val_per_class": per_class["val"][0],
        "test_per_class": per_class["test"][0],
        "class_counts_before": {split: dict(zip(names, c, strict=True)) for split, c in before.items()},
        "frequency_groups": {g: [names[k] for k in ks] for g, ks in zip(FREQUENCY_GROUPS, groups, strict=True)},
        "split_seed": seed,
    }
    return dataclasses.replace(
        splits,
        train=new["train"],
        val=new["val"],
        test=new["test"],
        info=dataclasses.replace(info, train_class_counts=train_counts),
        provenance=provenance,
    )
