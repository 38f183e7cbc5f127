"""Bring your own images: ``image-csv``, a CSV or Parquet table with one row per image.

Files
    One table (``path:``), split into train/val/test here, or separate tables (``train:`` and ``test:``,
    optionally ``val:``), read by :func:`~fairdistill.data.table_files.read_table_file` (same errors and row
    numbers as the ``csv`` / ``parquet`` datasets). ``format: auto`` reads ``.parquet`` / ``.pq`` files as Parquet
    and anything else as CSV. Image paths (column ``image:``) are resolved against ``root:`` when given, else
    against the folder of the table that lists them; absolute paths are used as they are.

Columns
    ``image:`` the image path, ``label:`` the class, ``attr:`` the protected attribute, optional ``group:``
    explicit group ids (default groups = (label, attr)); ids or names coded as in the table datasets
    (:func:`~fairdistill.data.table_files.code_ids`). An empty cell in any of them is an error naming the rows.

Splits
    With ``split_column:`` the rows whose value is ``train`` / ``val`` / ``test`` (or 0 / 1 / 2, the WILDS
    coding) form those splits; otherwise as the table datasets (stratified by group, seeded by ``split_seed``).
    ``max_examples`` keeps a group-stratified subsample. A listed image that does not exist is an error naming its
    table row; an image that cannot be decoded is an error naming its path (when it is first read, or at load
    with ``cache: true``). The image options (size, normalisation, augmentation, cache, workers) are
    :class:`~fairdistill.data.images.ImageOptions`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError

from fairdistill.data.core import DATASETS, DatasetInfo, Splits
from fairdistill.data.images import ImageOptions, ImageRecord, image_splits
from fairdistill.data.table_files import (
    SPLITS,
    SplitFileOptions,
    SplitRows,
    TableFile,
    code_label_attr_group,
    listing,
    read_table_file,
    split_files,
    split_generators,
)
from fairdistill.data.text_common import subsample_splits
from fairdistill.errors import DataError

NAME = "image-csv"
_SPLIT_VALUES = {"train": "train", "0": "train", "val": "val", "valid": "val", "1": "val", "test": "test", "2": "test"}


class ImageCsvOptions(ImageOptions, SplitFileOptions):
    """Options of the ``image-csv`` dataset (plus the image options)."""

    #: One table holding all rows (split here, or by ``split_column``).
    path: str | None = None
    #: Separate tables instead of ``path``: train and test required, val optional (held out of train).
    train: str | None = None
    val: str | None = None
    test: str | None = None
    #: ``csv``, ``parquet`` or ``auto`` (by the file's extension).
    format: Literal["auto", "csv", "parquet"] = "auto"
    #: Folder the image paths are relative to (default: the folder of the table).
    root: str | None = None
    #: The image path column.
    image: str = Field(default="image", min_length=1)
    label: str = Field(min_length=1)
    attr: str = Field(min_length=1)
    group: str | None = Field(default=None, min_length=1)
    #: Column giving each row's split (train/val/test or 0/1/2); only with ``path``.
    split_column: str | None = Field(default=None, min_length=1)
    num_groups: int | None = Field(default=None, ge=1)

    @model_validator(mode="after")
    def _files(self) -> ImageCsvOptions:
        separate = [k for k in SPLITS if getattr(self, k) is not None]
        problems = []
        if self.path is not None and separate:
            problems.append("give either path: (one table) or train:/val:/test: (separate tables), not both")
        elif self.path is None and set(separate) not in ({"train", "test"}, {"train", "val", "test"}):
            problems.append("no table: give path: (one table) or train: and test: (and optionally val:)")
        if self.split_column is not None and self.path is None:
            problems.append("split_column applies to a single path: table only")
        if len({self.image, self.label, self.attr}) < 3:
            problems.append("image, label and attr must be three different columns")
        if problems:
            raise PydanticCustomError("image_csv_options", "; ".join(problems))
        return self


def _format(options: ImageCsvOptions, text: str) -> Literal["csv", "parquet"]:
    if options.format != "auto":
        return options.format
    return "parquet" if Path(text).suffix.lower() in {".parquet", ".pq"} else "csv"


def _check(file: TableFile, columns: list[tuple[str, str]]) -> None:
    present = list(file.frame.columns)
    absent = [f"no column {c!r} ({role})" for c, role in columns if c not in present]
    if absent:
        raise DataError(f"{file.where()}: {'; '.join(absent)}; columns are: {listing(present)}")
    for column, role in columns:
        empty = file.frame[column].isna().to_numpy().copy()
        if role == "image":
            empty |= file.frame[column].astype(str).str.strip().eq("").to_numpy()
        if empty.any():
            raise DataError(f"{file.where()}: empty {role} column {column!r} at {file.at(file.frame.index[empty])}")


def _split_by_column(file: TableFile, column: str, groups: np.ndarray, options: ImageCsvOptions) -> SplitRows:
    values = file.frame[column].astype(str).str.strip().str.lower().to_numpy()
    unknown = np.flatnonzero(~np.isin(values, list(_SPLIT_VALUES)))
    if len(unknown):
        raise DataError(
            f"{file.where()}: split column {column!r} must be train/val/test or 0/1/2; other values at "
            f"{file.at(file.frame.index[unknown], values[unknown])}"
        )
    mapped = np.array([_SPLIT_VALUES[v] for v in values])
    parts = {name: np.flatnonzero(mapped == name) for name in SPLITS}
    for name, idx in parts.items():
        if len(idx) == 0:
            raise DataError(f"{file.where()}: no row has split {name!r} in column {column!r}")
    subsample_rng, _ = split_generators(options.split_seed)
    kept = subsample_splits({n: groups[idx] for n, idx in parts.items()}, options.max_examples, subsample_rng)
    return SplitRows({n: (0, idx[kept[n]]) for n, idx in parts.items()}, f"by column {column!r}")


@DATASETS.register(NAME, options=ImageCsvOptions, modality="image", offline=True)
def load_image_csv(options: ImageCsvOptions) -> Splits:
    """Your own images listed in a CSV/Parquet table (image path, label, attr, optional group), decoded lazily."""
    sources = (
        {"path": options.path}
        if options.path is not None
        else {k: getattr(options, k) for k in SPLITS if getattr(options, k) is not None}
    )
    files = [read_table_file(NAME, role, text, _format(options, text)) for role, text in sources.items()]
    columns = [(options.image, "image"), (options.label, "label"), (options.attr, "attr")]
    columns += [(options.group, "group")] if options.group is not None else []
    if options.split_column is not None:
        columns.append((options.split_column, "split"))
    for f in files:
        _check(f, columns)

    y_codes, a_codes, g_codes, class_names, attr_names, group_names = code_label_attr_group(
        files, options.label, options.attr, options.group, options.num_classes, options.num_attrs, options.num_groups
    )
    if options.split_column is not None:
        rows = _split_by_column(files[0], options.split_column, g_codes[0], options)
    else:
        rows = split_files(
            files,
            g_codes,
            fractions=options.split_fractions,
            val_fraction=options.val_fraction,
            split_seed=options.split_seed,
            max_examples=options.max_examples,
        )

    records: dict[str, list[ImageRecord]] = {}
    for name, (k, idx) in rows.parts.items():
        f = files[k]
        root = Path(options.root).expanduser().resolve() if options.root is not None else f.path.parent
        images = f.frame[options.image].astype(str).str.strip().to_numpy()
        positions = f.frame.index.to_numpy()
        records[name] = [
            ImageRecord(
                path=root / images[i],
                y=int(y_codes[k][i]),
                attr=int(a_codes[k][i]),
                group=int(g_codes[k][i]),
                source=f"{f.path} {f.at([positions[i]])}",
            )
            for i in idx
        ]
    info = DatasetInfo(
        name=NAME,
        num_classes=len(class_names),
        class_names=class_names,
        attr_names=attr_names,
        group_names=group_names,
        modality="image",
        attr_label=options.attr,
    )
    provenance = {
        "dataset": NAME,
        "source": "user image table",
        "files": {f.role: f.meta() for f in files},
        "split": rows.description,
        "columns": {"image": options.image, "label": options.label, "attr": options.attr, "group": options.group},
        "group_counts": {
            name: np.bincount(g_codes[k][idx], minlength=len(group_names)).tolist()
            for name, (k, idx) in rows.parts.items()
        },
        "options": options.model_dump(mode="json"),
    }
    return image_splits(records, Path("."), options, info, provenance=provenance)
