"""Bring your own table: ``csv`` and ``parquet`` datasets read from your own files, one row per example.

Files
    Either one file (``path:``), split into train/val/test here, or separate files (``train:`` and ``test:``,
    optionally ``val:``). ``csv`` reads with :func:`pandas.read_csv` (first line = header; options ``sep``,
    ``encoding`` and ``na_values``), ``parquet`` with :func:`pandas.read_parquet` (pyarrow). Relative paths are
    resolved against the current directory; the resolved absolute paths, the files' sha256 and row counts are
    recorded in the provenance. A missing, empty (no rows) or unreadable file is a :class:`DataError`.

Columns
    ``label:`` (required) is the class, ``attr:`` (required) the protected attribute, ``group:`` (optional)
    explicit group ids. Inputs are the ``features:`` columns, or by default every other column of the (train)
    file except the label, attribute, group and ``ignore:`` columns, in file order. The attribute column is left
    out of the inputs unless ``include_attr: true`` (then it is encoded like any other column; other columns may
    still be proxies of it). A named column that a file lacks is one DataError listing the file's columns.

Label, attribute and group values
    A column stored as numbers holds integer ids 0..C-1 (class names ``"0"``, ``"1"``, ...). C is
    ``num_classes`` (``num_attrs``, ``num_groups``) when given — then a class may have no rows — and otherwise
    inferred as the largest value + 1, in which case every id 0..C-1 must occur in the files (a gap is an error
    telling you to set ``num_classes``; it usually means the column is not coded 0..C-1). Negative,
    fractional or out-of-range ids are errors naming the file, column and first offending rows. A column stored
    as text (or booleans, or a pandas category) is mapped to ids in the sorted order of its distinct values, as
    text (``"no" < "yes"``; ``"10" < "2"``), taken over all files; those values are the class names. Booleans are
    therefore ids ``False`` = 0 and ``True`` = 1, named ``"False"`` and ``"True"``, in every file. The label
    needs at least 2 classes. Without ``group:`` the groups are (label, attr): group = y * num_attrs + attr,
    names ``"<label>|<attr>"``, as in the other loaders; with ``group:`` they are that column's ids and names.

Splits
    With one file: stratified by group, seeded by ``split_seed``, ``split_fractions`` of the rows (default
    60/20/20) in train/val/test (each group is shared proportionally, ±1 row). With ``train:`` and ``test:`` but
    no ``val:``: ``val_fraction`` (default 20%) of the train file is held out as val, stratified by group and
    seeded the same way. With all three files, they are used as they are. ``max_examples`` then draws a
    group-stratified subsample of each split, proportional to the split sizes (for quick tests).

Missing and invalid values
    Empty cells (and pandas' default NA markers such as ``NA``, ``NaN``, ``null``, plus ``na_values``) in any
    used column (label, attr, group, features) are an error listing the column and the first rows (at most 10,
    plus a count) unless ``missing: drop``, which drops those rows (the number dropped per file is logged as a
    warning and recorded in the provenance). An infinite value (``inf``, ``-inf``) in a numeric feature is always
    an error. Row numbers in messages are 1-based: for CSV as a spreadsheet shows them (row 1 is the header, so
    the first data row is row 2), for Parquet the data rows counted from 1; every message says which. Date/time
    columns are not encoded: drop them with ``ignore:`` (or leave them out of ``features:``). A numeric feature
    whose magnitude exceeds what float32 holds (about 3.4e38, e.g. a ``1e308`` sentinel) is an error too: the
    inputs are float32. A column holding lists, structs (dicts), bytes or other non-scalar values (as Parquet
    list/struct/binary columns do) is refused whatever its role: drop it with ``ignore:`` or flatten it into
    columns of numbers or text.

Inputs (encoding ``"x"``, float32, shape (n_features,))
    Numeric feature columns are standardised with the train split's mean and standard deviation (population
    std, computed in float64; a constant column is only centred). A val/test value that lies so many standard
    deviations from the train mean that it does not fit in float32 is an error naming the rows. Text, boolean
    and category columns are one-hot encoded with the values seen in the train split, in sorted order (a value
    unseen in train encodes as all zeros). Each column
    contributes its feature(s) in column order; the names (``"age"``, ``"colour=red"``, ...) are in
    ``provenance["feature_names"]``. The default tabular models (MLPs) read this encoding, so ``--set
    data.name=csv --set data.path=... --set data.label=... --set data.attr=...`` is a complete dataset.

Reading the files, the row numbers in messages, the label/attr/group ids and the splits are
:mod:`fairdistill.data.table_files` (shared with ``text-table``); this module checks and encodes the features.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import torch
from pydantic import Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from fairdistill.data.core import (
    DATASETS,
    DEFAULT_ENCODING,
    DatasetInfo,
    SplitDataset,
    Splits,
    label_attr_group_index,
)
from fairdistill.data.table_files import (
    SPLITS,
    ColumnKind,
    CsvReading,
    SplitFileOptions,
    TableFile,
    code_label_attr_group,
    column_kind,
    listing,
    non_scalar_cells,
    read_table_file,
    split_files,
    value_kind,
)
from fairdistill.errors import DataError, shown_value

log = logging.getLogger(__name__)

#: A text column with more distinct train values than this (and than half the train rows) gets a warning.
MANY_CATEGORIES = 50
#: The largest magnitude a float32 input holds; larger feature values (raw or standardised) are refused.
FLOAT32_MAX = float(np.finfo(np.float32).max)


# --------------------------------------------------------------------------------------------------- options


class TableOptions(SplitFileOptions):
    """Options shared by the ``csv`` and ``parquet`` datasets."""

    #: One file holding all rows; it is split into train/val/test (``split_fractions``).
    path: str | None = None
    #: Separate files instead of ``path``: train and test are required, val is optional (held out of train).
    train: str | None = None
    val: str | None = None
    test: str | None = None
    #: The class column.
    label: str = Field(min_length=1)
    #: The protected-attribute column.
    attr: str = Field(min_length=1)
    #: Optional column of explicit group ids (integers or text); default groups = (label, attr).
    group: str | None = Field(default=None, min_length=1)
    #: Input columns (default: every column except label, attr, group and ``ignore``).
    features: list[str] | None = Field(default=None, min_length=1)
    #: Columns left out of the default inputs (e.g. ids, free text, dates).
    ignore: list[str] = Field(default_factory=list)
    #: Also feed the attribute column to the model.
    include_attr: bool = False
    #: Number of groups of an integer group column (default: largest value + 1, every id must occur).
    num_groups: int | None = Field(default=None, ge=1)
    #: Rows with a missing value in a used column: ``error`` (default) or ``drop`` them (with a warning).
    missing: Literal["error", "drop"] = "error"

    @field_validator("features", "ignore")
    @classmethod
    def _no_repeats(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            repeated = sorted({c for c in value if value.count(c) > 1})
            if repeated:
                raise ValueError(f"lists column(s) {', '.join(map(repr, repeated))} more than once")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> TableOptions:
        given = self.model_fields_set
        problems: list[str] = []
        separate = [k for k in SPLITS if getattr(self, k) is not None]
        if self.path is not None and separate:
            problems.append("give either path: (one file) or train:/val:/test: (separate files), not both")
        elif self.path is None and set(separate) not in ({"train", "test"}, {"train", "val", "test"}):
            missing = [k for k in ("train", "test") if getattr(self, k) is None]
            problems.append(
                "no data file: give path: (one file, split into train/val/test) or train: and test: "
                f"(and optionally val:) — missing {' and '.join(missing)}"
            )
        if "split_fractions" in given and self.path is None:
            problems.append("split_fractions applies to a single path: file only")
        if "val_fraction" in given and (self.path is not None or self.val is not None):
            problems.append("val_fraction applies only when train: and test: are given without val:")
        if self.label == self.attr:
            problems.append(f"label and attr are the same column {self.label!r}")
        roles = {self.label: "label", self.attr: "attr"}
        if self.group is not None:
            roles.setdefault(self.group, "group")
        if self.features is not None:
            if self.ignore:
                problems.append("give features: (the input columns) or ignore: (columns to leave out), not both")
            for column in self.features:
                if column == self.attr:
                    problems.append(
                        f"features lists the attr column {column!r}; use include_attr: true to feed it to the model"
                    )
                elif column in roles:
                    problems.append(f"features lists the {roles[column]} column {column!r}, which is never an input")
        for column in self.ignore:
            if column in roles:
                problems.append(f"ignore lists the {roles[column]} column {column!r}")
        if problems:
            raise PydanticCustomError("table_options", "; ".join(problems))
        return self


class CsvOptions(TableOptions):
    """Options of the ``csv`` dataset."""

    #: Column separator (e.g. ``";"`` or ``"\\t"``).
    sep: str = Field(default=",", min_length=1)
    #: Text encoding of the files.
    encoding: str = "utf-8"
    #: Extra cell values read as missing (e.g. ``["?"]``), besides empty cells and pandas' defaults.
    na_values: list[str] = Field(default_factory=list)


class ParquetOptions(TableOptions):
    """Options of the ``parquet`` dataset."""


# --------------------------------------------------------------------------------------------------- checks


def _read(fmt: Literal["csv", "parquet"], role: str, text: str, options: TableOptions) -> TableFile:
    csv = None
    if isinstance(options, CsvOptions):
        csv = CsvReading(sep=options.sep, encoding=options.encoding, na_values=tuple(options.na_values))
    return read_table_file(fmt, role, text, fmt, csv=csv)


def _check_columns(file: TableFile, wanted: list[tuple[str, str]]) -> None:
    """Every (column, role) must exist in the file; one DataError lists all that do not."""
    present = list(file.frame.columns)
    problems = []
    for column, role in wanted:
        if column in present:
            continue
        close = difflib.get_close_matches(column, present, n=1, cutoff=0.75)
        stripped = [c for c in present if c.strip().lower() == column.strip().lower()]
        guess = stripped[0] if stripped else (close[0] if close else None)
        problems.append(f"no column {column!r} ({role})" + (f" — did you mean {guess!r}?" if guess else ""))
    if problems:
        raise DataError(f"{file.where()}: {'; '.join(problems)}; columns are: {listing(present)}")


def _handle_missing(file: TableFile, used: list[str], roles: int, policy: str) -> None:
    """Rows with a missing value in a ``used`` column (the first ``roles`` are label/attr/group): error or drop."""
    frame = file.frame
    na = frame[used].isna()
    bad_rows = na.any(axis=1)
    if not bad_rows.any():
        return
    per_column = {c: frame.index[na[c].to_numpy()] for c in used if na[c].any()}
    if policy == "error":
        parts = [f"{c!r} at {file.at(rows)}" for c, rows in per_column.items()]
        only_features = not set(per_column) & set(used[:roles])
        leave_out = ", leave the column out of the inputs (ignore:)" if only_features else ""
        raise DataError(
            f"{file.where()}: missing values in column {'; in column '.join(parts)}. Fill them in{leave_out} or set "
            "missing: drop to drop those rows"
        )
    dropped = int(bad_rows.sum())
    counts = ", ".join(f"{c} ({len(rows)})" for c, rows in per_column.items())
    log.warning(
        "%s: dropped %d of %d rows with missing values (missing: drop); columns: %s",
        file.where(),
        dropped,
        len(frame),
        counts,
    )
    file.frame = frame[~bad_rows.to_numpy()]
    file.rows_dropped = dropped
    if len(file.frame) == 0:
        raise DataError(f"{file.where()}: every row has a missing value (columns: {counts}); no rows left")


def _numeric_values(file: TableFile, column: str) -> np.ndarray:
    """The column as float64; non-numeric cells (a numeric train column read as text here) are an error."""
    series = file.frame[column]
    if pd.api.types.is_bool_dtype(series.dtype):
        return series.to_numpy(dtype=np.float64)
    converted = pd.to_numeric(series, errors="coerce")
    bad = converted.isna().to_numpy()
    if bad.any():
        raise DataError(
            f"{file.where()}: column {column!r} is numeric in the train data but has non-numeric values at "
            f"{file.at(series.index[bad], series[bad].tolist())}"
        )
    return converted.to_numpy(dtype=np.float64)


def _check_finite(file: TableFile, column: str, values: np.ndarray) -> None:
    """Numeric feature values must be finite and fit in float32 (the inputs' type).

    Bounded this way, the float64 mean and variance of a column cannot overflow (n * 3.4e38 and
    (6.8e38)^2 are far below float64's 1.8e308).
    """
    bad = ~np.isfinite(values)
    if bad.any():
        raise DataError(
            f"{file.where()}: column {column!r} has infinite values at "
            f"{file.at(file.frame.index[bad], values[bad].tolist())}; replace them with finite numbers"
        )
    bad = np.abs(values) > FLOAT32_MAX
    if bad.any():
        sentinel = "; if such a value marks a missing cell, list it in na_values:" if file.fmt == "csv" else ""
        raise DataError(
            f"{file.where()}: column {column!r} has values beyond what the float32 inputs hold (|value| > "
            f"{FLOAT32_MAX:.3g}) at {file.at(file.frame.index[bad], values[bad].tolist())}; rescale the column "
            f"(another unit, a log) or leave it out with ignore:{sentinel}"
        )


def _parquet_type(path: Path, column: str) -> str | None:
    """The column's type in a Parquet file's schema (e.g. ``list<element: int64>``), if it can be read."""
    try:
        import pyarrow.parquet as pq

        schema = pq.read_schema(path)
        return str(schema.field(column).type) if column in schema.names else None
    except Exception:  # only used to enrich an error message
        return None


def _non_scalar(file: TableFile, column: str) -> str | None:
    """How ``column`` holds non-scalar cells (lists, structs, bytes, ...) or None when every cell is a scalar."""
    series = file.frame[column]
    if series.dtype != object:
        return None
    values = series.to_numpy()
    bad = non_scalar_cells(values)
    if not bad.any():
        return None
    first = values[np.flatnonzero(bad)[0]]
    kinds = sorted({value_kind(v) for v in values[bad]})
    stored = _parquet_type(file.path, column) if file.fmt == "parquet" else None
    typed = f"Parquet type {stored}" if stored else f"{', '.join(kinds)} values"
    shown = first.tolist() if isinstance(first, np.ndarray) else first
    return f"{column!r} ({typed}; {file.at(series.index[bad])}, first {shown_value(shown)})"


def _check_scalars(file: TableFile, columns: list[tuple[str, str]]) -> None:
    """Every used (column, role) must hold scalars; list/struct/bytes cells would be one-hot encoded by their
    text. One DataError lists every offending column."""
    problems = [(role, found) for column, role in columns if (found := _non_scalar(file, column)) is not None]
    if not problems:
        return
    roles = {role for role, _ in problems}
    listed = "; ".join(f"{role} column {found}" for role, found in problems)
    advice = "leave it out with ignore: or flatten it into columns of numbers or text"
    if roles - {"feature"}:
        advice = "choose (or make) a column of numbers or text for the label/attr/group; " + advice + " for inputs"
    raise DataError(
        f"{file.where()}: {listed}: a cell must hold one number, text or boolean, not a list, struct or bytes; {advice}"
    )


# --------------------------------------------------------------------------------------------------- encoding


class _Encoder:
    """Standardise numeric columns and one-hot encode the others, fitted on the train split."""

    def __init__(self, train: TableFile, columns: list[str], kinds: Mapping[str, ColumnKind]) -> None:
        self.columns = columns
        self.kinds = kinds
        self.mean: dict[str, float] = {}
        self.std: dict[str, float] = {}
        self.categories: dict[str, list[str]] = {}
        self.feature_names: list[str] = []
        for c in columns:
            if kinds[c] == "numeric":
                values = _numeric_values(train, c)  # float64, finite, |value| <= FLOAT32_MAX: no overflow
                self.mean[c] = float(values.mean())
                self.std[c] = float(values.std()) or 1.0  # a constant column is only centred
                self.feature_names.append(c)
            else:
                cats = sorted(set(train.frame[c].astype(str).tolist()))
                self.categories[c] = cats
                self.feature_names.extend(f"{c}={v}" for v in cats)
                if len(cats) > max(MANY_CATEGORIES, len(train.frame) // 2):
                    log.warning(
                        "%s: column %r has %d distinct values in %d train rows (%d one-hot features); if it is an "
                        "identifier or free text, leave it out with ignore:",
                        train.where(),
                        c,
                        len(cats),
                        len(train.frame),
                        len(cats),
                    )

    def __call__(self, file: TableFile) -> torch.Tensor:
        parts = []
        for c in self.columns:
            if self.kinds[c] == "numeric":
                parts.append(self._standardised(file, c)[:, None])
            else:
                cats = self.categories[c]
                codes = pd.Index(cats).get_indexer(file.frame[c].astype(str))  # -1: unseen in train
                onehot = np.zeros((len(codes), len(cats)))
                seen = codes >= 0
                onehot[np.flatnonzero(seen), codes[seen]] = 1.0
                parts.append(onehot)
        x = np.concatenate([p.astype(np.float32) for p in parts], axis=1)
        return torch.from_numpy(x)

    def _standardised(self, file: TableFile, column: str) -> np.ndarray:
        """``(value - mean) / std`` in float64; a result float32 cannot hold (a val/test value far outside the
        train range, or a near-constant train column) is a DataError naming the rows."""
        mean, std = self.mean[column], self.std[column]
        with np.errstate(over="ignore"):
            z = (_numeric_values(file, column) - mean) / std
        bad = ~np.isfinite(z) | (np.abs(z) > FLOAT32_MAX)
        if bad.any():
            raw = _numeric_values(file, column)[bad]
            raise DataError(
                f"{file.where()}: column {column!r} standardised with the train split's mean {mean:.6g} and std "
                f"{std:.6g} does not fit in the float32 inputs at {file.at(file.frame.index[bad], raw.tolist())}; "
                "rescale the column (another unit, a log) or leave it out with ignore:"
            )
        return z


# --------------------------------------------------------------------------------------------------- loader


def _load_table(fmt: Literal["csv", "parquet"], options: TableOptions) -> Splits:
    sources = (
        {"path": options.path}
        if options.path is not None
        else {k: getattr(options, k) for k in SPLITS if getattr(options, k) is not None}
    )
    files = [_read(fmt, role, text, options) for role, text in sources.items()]
    first = files[0]  # the single file or the train file: it defines the feature columns

    named = [(options.label, "label"), (options.attr, "attr")]
    if options.group is not None:
        named.append((options.group, "group"))
    named += [(c, "ignore") for c in options.ignore]
    features_given = [(c, "features") for c in (options.features or [])]
    _check_columns(first, named + features_given)
    if options.features is not None:
        features = list(options.features) + ([options.attr] if options.include_attr else [])
    else:
        excluded = {options.label, *options.ignore}
        excluded |= {options.group} if options.group is not None else set()
        excluded |= set() if options.include_attr else {options.attr}
        features = [c for c in first.frame.columns if c not in excluded]
    if not features:
        raise DataError(
            f"{first.where()}: no feature columns left (columns: {listing(first.frame.columns)}; label, attr, "
            "group and ignore: columns are not inputs)"
        )
    for f in files[1:]:
        _check_columns(f, [(c, r) for c, r in named if r != "ignore"] + [(c, "feature") for c in features])

    role_columns = [(options.label, "label"), (options.attr, "attr")]
    role_columns += [(options.group, "group")] if options.group is not None else []
    for f in files:
        _check_scalars(f, role_columns + [(c, "feature") for c in features if c not in dict(role_columns)])
    kinds = {c: column_kind(first.frame[c]) for c in features}
    unsupported = [f"{c!r} ({first.frame[c].dtype})" for c in features if kinds[c] == "unsupported"]
    if unsupported:
        raise DataError(
            f"{first.where()}: column(s) {', '.join(unsupported)} cannot be encoded as inputs; convert them to "
            "numbers or text, or leave them out with ignore:"
        )

    used = [options.label, options.attr] + ([options.group] if options.group else [])
    roles = len(used)
    used += [c for c in features if c not in used]
    for f in files:
        _handle_missing(f, used, roles, options.missing)
        for c in features:
            if kinds[c] == "numeric":
                _check_finite(f, c, _numeric_values(f, c))

    y_codes, a_codes, g_codes, class_names, attr_names, group_names = code_label_attr_group(
        files, options.label, options.attr, options.group, options.num_classes, options.num_attrs, options.num_groups
    )

    rows = split_files(
        files,
        g_codes,
        fractions=options.split_fractions,
        val_fraction=options.val_fraction,
        split_seed=options.split_seed,
        max_examples=options.max_examples,
    )
    parts = {
        name: (files[k].subset(idx, name), y_codes[k][idx], a_codes[k][idx], g_codes[k][idx])
        for name, (k, idx) in rows.parts.items()
    }

    train_groups = np.bincount(parts["train"][3], minlength=len(group_names))
    if (train_groups == 0).any():
        empty = [group_names[i] for i in np.flatnonzero(train_groups == 0)]
        log.warning("%s: group(s) %s have no rows in the train split", first.where(), listing(empty, 20))

    encoder = _Encoder(parts["train"][0], features, kinds)
    splits: dict[str, SplitDataset] = {}
    for name, (f, y, a, g) in parts.items():
        y_t, a_t = torch.from_numpy(y), torch.from_numpy(a)
        if options.group is not None:
            group_t = torch.from_numpy(g)
        else:
            group_t = label_attr_group_index(y_t, a_t, len(attr_names))
        splits[name] = SplitDataset(encodings={DEFAULT_ENCODING: encoder(f)}, y=y_t, attr=a_t, group=group_t, name=name)

    info = DatasetInfo(
        name=fmt,
        num_classes=len(class_names),
        class_names=class_names,
        attr_names=attr_names,
        group_names=group_names,
        modality="tabular",
        input_shape=(len(encoder.feature_names),),
        attr_label=options.attr,
    )

    def counts(values: np.ndarray, n: int) -> list[int]:
        return np.bincount(values, minlength=n).tolist()

    provenance = {
        "dataset": fmt,
        "source": "user table",
        "files": {f.role: f.meta() for f in files},
        "split": rows.description,
        "columns": {
            "label": options.label,
            "attr": options.attr,
            "group": options.group,
            "groups": f"column {options.group!r}" if options.group is not None else "(label, attr)",
        },
        "num_examples": {name: len(split) for name, split in splits.items()},
        "class_counts": {name: counts(p[1], len(class_names)) for name, p in parts.items()},
        "group_counts": {name: counts(p[3], len(group_names)) for name, p in parts.items()},
        "num_features": len(encoder.feature_names),
        "feature_names": encoder.feature_names,
        "feature_columns": {c: kinds[c] for c in features},
        "standardisation": {c: {"mean": encoder.mean[c], "std": encoder.std[c]} for c in encoder.mean},
        "categories": encoder.categories,
        "options": options.model_dump(mode="json"),
    }
    return Splits(train=splits["train"], val=splits["val"], test=splits["test"], info=info, provenance=provenance)


@DATASETS.register("csv", options=CsvOptions, modality="tabular", offline=True)
def load_csv(options: CsvOptions) -> Splits:
    """Your own CSV table: label, attr and optional group columns; numeric features standardised, text one-hot."""
    return _load_table("csv", options)


@DATASETS.register("parquet", options=ParquetOptions, modality="tabular", offline=True)
def load_parquet(options: ParquetOptions) -> Splits:
    """Your own Parquet table: label, attr and optional group columns; numeric features standardised, text one-hot."""
    return _load_table("parquet", options)
