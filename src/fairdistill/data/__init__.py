"""Datasets: the shared data types, the built-in loaders and :func:`load_dataset`.

Importing this package registers the built-in loaders in :data:`DATASETS` (``colored-mnist``, ``adult``, and the
bring-your-own-table ``csv`` and ``parquet``; images: ``image-csv``, ``waterbirds``, ``celeba``,
``wider-attribute``; text: ``multinli``, ``civilcomments``,
``text-table``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fairdistill.data import (  # noqa: F401  (registers the loaders)
    adult,
    celeba,
    civilcomments,
    colored_mnist,
    image_csv,
    multinli,
    table,
    text_table,
    waterbirds,
    wider_attribute,
)
from fairdistill.data.core import (
    DATASETS,
    DEFAULT_ENCODING,
    Batch,
    DatasetInfo,
    DatasetOptions,
    SplitDataset,
    Splits,
    collate,
    label_attr_group_index,
    label_attr_groups,
)
from fairdistill.data.long_tail import make_long_tailed
from fairdistill.errors import ConfigError

__all__ = [
    "DATASETS",
    "DEFAULT_ENCODING",
    "Batch",
    "DatasetInfo",
    "DatasetOptions",
    "SplitDataset",
    "Splits",
    "collate",
    "label_attr_group_index",
    "label_attr_groups",
    "load_dataset",
]


def load_dataset(name: str, raw_options: Mapping[str, Any] | None = None) -> Splits:
    """Validate ``raw_options`` against dataset ``name``'s options model and load its splits.

    Unknown names, unknown option keys and bad values raise :class:`~fairdistill.errors.ConfigError` (paths
    prefixed ``data``); missing or malformed files raise :class:`~fairdistill.errors.DataError`. A ``name`` key
    in ``raw_options`` (as in a config's ``data:`` section) is accepted if it matches ``name``. With
    ``long_tail: {imbalance: ρ}`` the loaded splits are then made long-tailed (train) and class-balanced
    (val, test) by :func:`~fairdistill.data.long_tail.make_long_tailed`, whatever the dataset.
    """
    raw = dict(raw_options or {})
    if "name" in raw:
        given = raw.pop("name")
        if given != name:
            raise ConfigError(f"data.name: {given!r} does not match the dataset being loaded ({name!r})")
    options = DATASETS.options(name, raw, where="data")
    splits = DATASETS.get(name, where="data").target(options)
    long_tail = getattr(options, "long_tail", None)
    if long_tail is not None:  # the same post-load transform for every dataset (data/long_tail.py)
        splits = make_long_tailed(splits, long_tail, getattr(options, "split_seed", 0))
    return splits
