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

Reading the files, the row numbers in messages, the label/attr ids (``integers="integer values"``: CSV cells are
text) and the splits are :mod:`fairdistill.data.table_files`, shared with ``csv`` / ``parquet``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from fairdistill.data.core import DATASETS, DatasetInfo, Splits, label_attr_groups
from fairdistill.data.table_files import (
    CsvReading,
    Format,
    SplitFileOptions,
    TableFile,
    code_ids,
    find_file,
    non_scalar_cells,
    read_table_file,
    split_files,
    value_kind,
)
from fairdistill.data.text_common import group_counts, text_split
from fairdistill.errors import DataError, shown_value

_EXTENSIONS: dict[str, tuple[Format, str | None]] = {
    ".csv": ("csv", None),
    ".tsv": ("csv", "\t"),
    ".parquet": ("parquet", None),
    ".pq": ("parquet", None),
    ".jsonl": ("jsonl", None),
    ".ndjson": ("jsonl", None),
    ".json": ("jsonl", None),
}


class TextTableOptions(SplitFileOptions):
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

    @model_validator(mode="after")
    def _files(self) -> TextTableOptions:
        if self.path is not None and any(f is not None for f in (self.train, self.val, self.test)):
            raise ValueError("give either path: (one file, split here) or train:/test: (and optionally val:), not both")
        if self.path is None and (self.train is None or self.test is None):
            raise ValueError("no data: set path: to one file, or train: and test: (and optionally val:)")
        return self


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


def _read(role: str, text: str, options: TextTableOptions) -> TableFile:
    fmt, sep = _format_of(find_file("text-table", role, text), options)
    csv = CsvReading(sep=sep or ",", as_text=True)
    file = read_table_file("text-table", role, text, fmt, csv=csv, format_option="data.format", style="short")
    columns = [options.text, options.text_pair, options.label, options.attr]
    missing = [c for c in columns if c is not None and c not in file.frame.columns]
    if missing:
        raise DataError(
            f"{file.where()} has no column(s) {missing}; its columns are {[str(c) for c in file.frame.columns]}"
        )
    return file


def _texts(file: TableFile, column: str) -> list[str]:
    values = file.frame[column].tolist()
    missing = np.flatnonzero([v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)) for v in values])
    if len(missing):
        raise DataError(f"{file.where()}: column {column!r} has no value at {file.at(file.frame.index[missing])}")
    bad = np.flatnonzero([not isinstance(v, str) for v in values])
    if len(bad):
        v = values[bad[0]]
        raise DataError(
            f"{file.where()}: column {column!r} is not text at {file.at(file.frame.index[bad])} "
            f"(first: {type(v).__name__} {shown_value(v)})"
        )
    return values


def _is_missing(v: Any) -> bool:
    return v is None or v is pd.NA or (isinstance(v, str) and v.strip() == "") or (isinstance(v, float) and np.isnan(v))


def _check_cells(files: list[TableFile], column: str, what: str) -> None:
    """Every label/attr cell is one number, text or boolean (a list or struct would otherwise be coded by its
    text) and not empty."""
    for file in files:
        raw = file.frame[column].tolist()
        bad = np.flatnonzero(non_scalar_cells(raw))
        if len(bad):
            first = raw[bad[0]]
            shown = first.tolist() if isinstance(first, np.ndarray) else first
            raise DataError(
                f"{file.where()}: {what} column {column!r} holds {value_kind(first)} values at "
                f"{file.at(file.frame.index[bad])} (first: {shown_value(shown)}); a {what} must be one number or text "
                "per row: choose another column or flatten this one"
            )
        missing = np.flatnonzero([_is_missing(v) for v in raw])
        if len(missing):
            raise DataError(
                f"{file.where()}: {what} column {column!r} is empty at {file.at(file.frame.index[missing])}"
            )


def _code(
    files: list[TableFile], column: str, what: str, option: str, size: int | None, minimum: int
) -> tuple[list[np.ndarray], tuple[str, ...]]:
    _check_cells(files, column, what)
    return code_ids(files, column, what, option, size, minimum, integers="integer values")


@DATASETS.register("text-table", options=TextTableOptions, modality="text", offline=True)
def load_text_table(options: TextTableOptions) -> Splits:
    """Your own text classification table (CSV, Parquet or JSONL): text (+ text pair), label, optional attr."""
    sources: dict[str, str | None] = (
        {"path": options.path} if options.path is not None else {"train": options.train, "val": options.val}
    )
    sources["test"] = options.test
    files = [_read(role, text, options) for role, text in sources.items() if text is not None]
    text = [_texts(f, options.text) for f in files]
    pair = [_texts(f, options.text_pair) for f in files] if options.text_pair else None
    ys, class_names = _code(files, options.label, "label", "num_classes", options.num_classes, 2)
    if options.attr is not None:
        attrs, attr_names = _code(files, options.attr, "attr", "num_attrs", options.num_attrs, 1)
    else:
        attrs, attr_names = [np.zeros(len(y), dtype=np.int64) for y in ys], ("all",)
    num_attrs = len(attr_names)

    rows = split_files(
        files,
        [y * num_attrs + a for y, a in zip(ys, attrs, strict=True)],
        fractions=options.split_fractions,
        val_fraction=options.val_fraction,
        split_seed=options.split_seed,
        max_examples=options.max_examples,
    )
    splits = {}
    for s, (k, idx) in rows.parts.items():
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
            ("data" if f.role == "path" else f.role): {
                "path": str(f.path),
                "format": f.fmt,
                "sha256": f.sha256,
                "rows": len(f.frame),
            }
            for f in files
        },
        "columns": {"text": options.text, "text_pair": options.text_pair, "label": options.label, "attr": options.attr},
        "split": rows.description,
        "num_examples": {s: len(split) for s, split in splits.items()},
        "group_counts": {s: group_counts(split, group_names) for s, split in splits.items()},
        "options": options.model_dump(mode="json"),
    }
    return Splits(train=splits["train"], val=splits["val"], test=splits["test"], info=info, provenance=provenance)
