"""Bring your own text data: ``text-table`` reads a CSV, Parquet or JSONL table with one example per row.

Files
    Either one file (``path:``), split into train/val/test here, or separate files (``train:`` and ``test:``,
    optionally ``val:``). The format comes from the extension (``.csv``; ``.tsv`` = tab-separated CSV;
    ``.parquet`` / ``.pq``; ``.jsonl`` / ``.ndjson`` / ``.json`` = one JSON object per line) unless ``format:``
    says. CSV cells are read as text with :func:`pandas.read_csv` (first line = header; ``sep`` overrides the
    separator), so an empty CSV cell is an empty string; Parquet is read with :func:`pandas.read_parquet`;
    JSONL line by line (blank lines skipped). Relative paths are resolved against the current directory; the
    absolute paths, sha256 and row counts go into the provenance.

Columns
    ``text:`` (required) and ``text_pair:`` (optional, e.g. the hypothesis of a premise/hypothesis pair) hold
    the strings; ``label:`` (required) the class; ``attr:`` (optional) the protected attribute. Other columns are
    ignored. Without ``attr:`` every example has attr 0 (attr name ``"all"``), the groups are the classes and
    the dataset says it has no group labels (methods that need them refuse to run).

Label and attribute values
    If every value of the column (over all files) is an integer (as a number or as text such as ``"2"``), the
    values are ids 0..C-1 with names ``"0"``, ``"1"``, ...; C is ``num_classes`` (``num_attrs``) when given and
    otherwise the largest value + 1, in which case every id 0..C-1 must occur (a gap is an error suggesting
    ``num_classes``). Otherwise the values are class names, mapped to ids in their sorted order as text (e.g.
    ``"contradiction" < "entailment" < "neutral"``). The label needs at least 2 classes. Groups are
    (label, attr): group = y * num_attrs + attr, names ``"<label>|<attr>"``.

Splits
    One file: stratified by group, seeded by ``split_seed``, ``split_fractions`` (default 60/20/20) of the rows
    in train/val/test. ``train:`` and ``test:`` without ``val:``: ``val_fraction`` (default 20%) of the train file
    is held out as val, stratified and seeded the same way. All three: used as they are. ``max_examples`` then
    draws a group-stratified subsample of each split, proportional to the split sizes.

Errors (:class:`DataError`, naming the file, the column and the first rows)
    A missing or unreadable file, a JSONL line that is not a JSON object, a named column the file lacks (the
    file's columns are listed), a missing value (null / NaN; in CSV only a label or attr cell can be missing,
    i.e. empty) in a used column, a non-string text value in Parquet/JSONL, negative or out-of-range integer ids.
    A label/attr cell holding a list, a struct (dict), bytes or another non-scalar value (Parquet list/struct
    columns, JSON arrays/objects) is refused too, and so is an integer id above 2**53. Rows are numbered as a
    spreadsheet shows a CSV (row 1 is the header), as data rows from 1 for Parquet, and as line numbers for
    JSONL; each message says which. Booleans are names, not ids: ``False`` < ``True`` (ids 0 and 1).

Inputs
    No encodings: each split carries ``texts = {"text": [...]}`` (plus ``"text_pair"``); the model's tokenizer
    encodes them.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, field_validator, model_validator

from fairdistill.data.core import DATASETS, DatasetInfo, DatasetOptions, Splits, label_attr_groups
from fairdistill.data.sampling import stratified_partition
from fairdistill.data.source_files import json_objects, resolve_path, sha256_file
from fairdistill.data.text_common import (
    SPLIT_NAMES,
    first_rows,
    group_counts,
    subsample_splits,
    text_split,
)
from fairdistill.errors import DataError, shown_value

Format = Literal["csv", "parquet", "jsonl"]
_EXTENSIONS: dict[str, tuple[Format, str | None]] = {
    ".csv": ("csv", None),
    ".tsv": ("csv", "\t"),
    ".parquet": ("parquet", None),
    ".pq": ("parquet", None),
    ".jsonl": ("jsonl", None),
    ".ndjson": ("jsonl", None),
    ".json": ("jsonl", None),
}
_INTEGER = re.compile(r"^[+-]?\d+$")
#: Label/attr values a cell may hold; lists, structs (dicts), bytes and other objects are refused.
_SCALAR_TYPES: tuple[type, ...] = (str, bool, int, float, np.bool_, np.integer, np.floating)
#: Integer ids above this are refused (not exact in float64, and far beyond any class count).
MAX_ID = 2**53


class TextTableOptions(DatasetOptions):
    """Options of the ``text-table`` dataset."""

    #: One file, split here; or ``train`` + ``test`` (+ optional ``val``) files.
    path: str | None = None
    train: str | None = None
    val: str | None = None
    test: str | None = None
    #: File format; ``auto`` goes by the extension.
    format: Literal["auto", "csv", "parquet", "jsonl"] = "auto"
    #: CSV separator (default: tab for ``.tsv``, else comma).
    sep: str | None = None
    text: str = Field(min_length=1)
    text_pair: str | None = None
    label: str = Field(min_length=1)
    attr: str | None = None
    #: Number of classes / attribute values when they are integer ids (default: the largest id + 1).
    num_classes: int | None = Field(default=None, ge=2)
    num_attrs: int | None = Field(default=None, ge=1)
    #: Train/val/test fractions for a single ``path``.
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    #: Fraction of the train file held out as val when ``train`` and ``test`` are given without ``val``.
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    #: Subsample train/val/test proportionally (group-stratified, seeded) to about this many rows in total.
    max_examples: int | None = Field(default=None, ge=3)

    @field_validator("split_fractions")
    @classmethod
    def _positive(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f <= 0 for f in value):
            raise ValueError("every fraction must be > 0")
        return value

    @model_validator(mode="after")
    def _files(self) -> "TextTableOptions":
        if self.path is not None and any(f is not None for f in (self.train, self.val, self.test)):
            raise ValueError("give either path: (one file, split here) or train:/test: (and optionally val:), not both")
        if self.path is None and (self.train is None or self.test is None):
            raise ValueError("no data: set path: to one file, or train: and test: (and optionally val:)")
        return self


@dataclass
class _File:
    role: str
    path: Path
    fmt: Format
    frame: pd.DataFrame
    #: The number each row has in error messages (CSV: spreadsheet row; Parquet: data row; JSONL: line).
    rows: np.ndarray

    def where(self, idx: np.ndarray) -> str:
        numbers = first_rows(self.rows[idx])
        if self.fmt == "csv":
            return f"row(s) {numbers} (row 1 = header)"
        if self.fmt == "parquet":
            return f"data row(s) {numbers} (counted from 1)"
        return f"line(s) {numbers}"


def _format_of(path: Path, options: TextTableOptions) -> tuple[Format, str | None]:
    if options.format != "auto":
        return options.format, options.sep
    found = _EXTENSIONS.get(path.suffix.lower())
    if found is None:
        raise DataError(
            f"text-table: cannot tell the format of {path} from its extension; set format: csv, parquet or jsonl"
        )
    fmt, sep = found
    return fmt, options.sep if options.sep is not None else sep


def _read_jsonl(path: Path) -> tuple[pd.DataFrame, np.ndarray]:
    records: list[dict] = []
    lines: list[int] = []
    for line_no, obj in json_objects(path, "text-table"):
        records.append(obj)
        lines.append(line_no)
    return pd.DataFrame.from_records(records), np.asarray(lines, dtype=np.int64)


def _read(role: str, text: str, options: TextTableOptions) -> _File:
    path = resolve_path(text)
    if not path.is_file():
        raise DataError(f"text-table: {role} file {path} does not exist" + (" (it is a folder)" if path.is_dir() else ""))
    fmt, sep = _format_of(path, options)
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, sep=sep or ",", dtype=str, keep_default_na=False)
            rows = np.arange(len(frame), dtype=np.int64) + 2
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
            rows = np.arange(len(frame), dtype=np.int64) + 1
        else:
            frame, rows = _read_jsonl(path)
    except DataError:
        raise
    except UnicodeDecodeError as exc:
        raise DataError(f"text-table: {path} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except Exception as exc:  # noqa: BLE001 - pandas/pyarrow raise many types for unreadable files
        raise DataError(f"text-table: cannot read {path} as {fmt}: {type(exc).__name__}: {exc}") from None
    if len(frame) == 0:
        raise DataError(f"text-table: {role} file {path} has no rows")
    columns = [options.text, options.text_pair, options.label, options.attr]
    missing = [c for c in columns if c is not None and c not in frame.columns]
    if missing:
        raise DataError(
            f"text-table: {path} has no column(s) {missing}; its columns are {[str(c) for c in frame.columns]}"
        )
    return _File(role, path, fmt, frame, rows)


def _texts(file: _File, column: str) -> list[str]:
    values = file.frame[column].tolist()
    missing = np.flatnonzero([v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) for v in values])
    if len(missing):
        raise DataError(f"text-table: {file.path}: column {column!r} has no value at {file.where(missing)}")
    bad = np.flatnonzero([not isinstance(v, str) for v in values])
    if len(bad):
        v = values[bad[0]]
        raise DataError(
            f"text-table: {file.path}: column {column!r} is not text at {file.where(bad)} "
            f"(first: {type(v).__name__} {shown_value(v)})"
        )
    return values


def _is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, str) and v.strip() == "") or (isinstance(v, float) and np.isnan(v))


def _check_scalars(file: _File, column: str, what: str, raw: list[Any]) -> None:
    """A label/attr cell must be one number, text or boolean (or missing); a list or struct would otherwise be
    coded by its text."""
    bad = np.flatnonzero([not (isinstance(v, _SCALAR_TYPES) or v is None or v is pd.NA) for v in raw])
    if len(bad):
        first = raw[bad[0]]
        shown = first.tolist() if isinstance(first, np.ndarray) else first
        kind = "list" if isinstance(first, (list, tuple, np.ndarray)) else (
            "struct" if isinstance(first, dict) else type(first).__name__
        )
        raise DataError(
            f"text-table: {file.path}: {what} column {column!r} holds {kind} values at {file.where(bad)} "
            f"(first: {shown_value(shown)}); a {what} must be one number or text per row: choose another column or "
            "flatten this one"
        )


def _as_int(v: Any) -> int | None:
    """``v`` as an int if it is one (a number with no fraction, or integer text), else None."""
    if isinstance(v, (bool, np.bool_)):
        return None
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    if isinstance(v, str) and _INTEGER.match(v.strip()):
        return int(v.strip())
    return None


def _code(files: list[_File], column: str, size: int | None, what: str, size_option: str) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Integer ids per file and the value names for a label/attr column coded over all files together."""
    values = []
    for file in files:
        raw = file.frame[column].tolist()
        _check_scalars(file, column, what, raw)
        missing = np.flatnonzero([_is_missing(v) for v in raw])
        if len(missing):
            raise DataError(f"text-table: {file.path}: {what} column {column!r} is empty at {file.where(missing)}")
        values.append(raw)
    as_ints = [[_as_int(v) for v in raw] for raw in values]
    if all(i is not None for ints in as_ints for i in ints):
        for file, ints in zip(files, as_ints):
            huge = np.flatnonzero([abs(i) > MAX_ID for i in ints])
            if len(huge):
                raise DataError(
                    f"text-table: {file.path}: {what} column {column!r} has id {ints[huge[0]]} at "
                    f"{file.where(huge)}; integer ids must be 0..C-1 (at most {MAX_ID})"
                )
        coded = [np.asarray(ints, dtype=np.int64) for ints in as_ints]
        for file, ids in zip(files, coded):
            negative = np.flatnonzero(ids < 0)
            if len(negative):
                raise DataError(
                    f"text-table: {file.path}: {what} column {column!r} has negative id {int(ids[negative[0]])} at "
                    f"{file.where(negative)}; integer ids must be 0..C-1"
                )
        largest = max(int(ids.max()) for ids in coded)
        if size is not None:
            for file, ids in zip(files, coded):
                over = np.flatnonzero(ids >= size)
                if len(over):
                    raise DataError(
                        f"text-table: {file.path}: {what} column {column!r} has id {int(ids[over[0]])} at "
                        f"{file.where(over)}, but {size_option} is {size} (ids 0..{size - 1})"
                    )
            count = size
        else:
            count = largest + 1
            seen = set(np.concatenate(coded).tolist())
            gaps = list(itertools.islice((i for i in range(count) if i not in seen), 10))  # stops early
            if gaps:
                raise DataError(
                    f"text-table: {what} column {column!r} has integer ids up to {largest} but no row with id(s) "
                    f"{gaps[:10]}; if the column is coded 0..C-1 with empty classes, set {size_option}"
                )
        return coded, tuple(str(i) for i in range(count))
    names = tuple(sorted({str(v).strip() for raw in values for v in raw}))
    if size is not None and size != len(names):
        raise DataError(
            f"text-table: {what} column {column!r} holds {len(names)} distinct names {list(names)[:20]}, "
            f"but {size_option} is {size}"
        )
    index = {name: i for i, name in enumerate(names)}
    return [np.asarray([index[str(v).strip()] for v in raw], dtype=np.int64) for raw in values], names


@DATASETS.register("text-table", options=TextTableOptions, modality="text", offline=True)
def load_text_table(options: TextTableOptions) -> Splits:
    """Your own text classification table (CSV, Parquet or JSONL): text (+ text pair), label, optional attr."""
    if options.path is not None:
        files = [_read("data", options.path, options)]
    else:
        files = [_read(role, getattr(options, role), options) for role in SPLIT_NAMES if getattr(options, role)]
    text = [_texts(f, options.text) for f in files]
    pair = [_texts(f, options.text_pair) for f in files] if options.text_pair else None
    ys, class_names = _code(files, options.label, options.num_classes, "label", "num_classes")
    if len(class_names) < 2:
        raise DataError(f"text-table: label column {options.label!r} has only the class {list(class_names)}; need at least 2")
    if options.attr is not None:
        attrs, attr_names = _code(files, options.attr, options.num_attrs, "attr", "num_attrs")
    else:
        attrs, attr_names = [np.zeros(len(y), dtype=np.int64) for y in ys], ("all",)
    num_attrs = len(attr_names)

    subsample_rng, split_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(options.split_seed).spawn(2))
    # (file number, row indices) of each split
    if options.path is not None:
        group = ys[0] * num_attrs + attrs[0]
        parts = stratified_partition(group, options.split_fractions, split_rng)
        where = {s: (0, idx) for s, idx in zip(SPLIT_NAMES, parts)}
        protocol = f"one file split {options.split_fractions} stratified by group, seeded by split_seed"
    elif options.val is None:
        group = ys[0] * num_attrs + attrs[0]
        keep, held = stratified_partition(group, (1 - options.val_fraction, options.val_fraction), split_rng)
        where = {"train": (0, keep), "val": (0, held), "test": (1, np.arange(len(ys[1])))}
        protocol = f"train file with {options.val_fraction:g} held out as val (stratified by group, seeded); test file"
    else:
        where = {s: (k, np.arange(len(ys[k]))) for k, s in enumerate(SPLIT_NAMES)}
        protocol = "train, val and test files as given"
    for s, (_, idx) in where.items():
        if len(idx) == 0:
            raise DataError(f"text-table: the {s} split is empty; the data has too few rows")
    kept = subsample_splits(
        {s: ys[k][idx] * num_attrs + attrs[k][idx] for s, (k, idx) in where.items()}, options.max_examples, subsample_rng
    )
    splits = {}
    for s, (k, idx) in where.items():
        idx = idx[kept[s]]
        splits[s] = text_split(
            s,
            [text[k][i] for i in idx],
            None if pair is None else [pair[k][i] for i in idx],
            ys[k][idx],
            attrs[k][idx],
            num_attrs,
        )
    group_names = label_attr_groups(class_names, attr_names)
    info = DatasetInfo(
        name="text-table",
        num_classes=len(class_names),
        class_names=class_names,
        attr_names=attr_names,
        group_names=group_names,
        modality="text",
        attr_label=options.attr or "none",
        groups_known=options.attr is not None,
    )
    provenance = {
        "dataset": "text-table",
        "files": {
            f.role: {"path": str(f.path), "format": f.fmt, "sha256": sha256_file(f.path), "rows": len(f.frame)}
            for f in files
        },
        "columns": {"text": options.text, "text_pair": options.text_pair, "label": options.label, "attr": options.attr},
        "split": protocol,
        "num_examples": {s: len(split) for s, split in splits.items()},
        "group_counts": {s: group_counts(split, group_names) for s, split in splits.items()},
        "options": options.model_dump(mode="json"),
    }
    return Splits(train=splits["train"], val=splits["val"], test=splits["test"], info=info, provenance=provenance)
