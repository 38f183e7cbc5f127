"""Users' table files, handled once for every loader that reads them: ``csv`` / ``parquet`` (:mod:`.table`,
tabular features) and ``text-table`` (:mod:`.text_table`, a text column); ``adult`` shares the seeding.

Reading (:func:`read_table_file`)
    The path is resolved against the current directory (``~`` expanded). A missing path, a folder, an empty
    (0-byte) or unreadable file, a Parquet file read as CSV or JSON lines (or a CSV file read as Parquet) and a
    file with a header but no rows are each one :class:`DataError` naming the file and the option that gave it.
    CSV is read with :func:`pandas.read_csv` as :class:`CsvReading` says (separator, encoding, extra missing
    markers; or every cell as text, an empty cell as ``""``), Parquet with :func:`pandas.read_parquet`, JSON
    lines line by line (blank lines skipped). Column names become strings; a pandas index stored in a Parquet
    file becomes columns. The file's sha256 is taken as it is read.

Row numbers (:class:`TableFile`)
    Messages number rows 1-based, the way the user finds them in the file: CSV as a spreadsheet shows it (row 1
    is the header, so the first data row is row 2), Parquet as data rows counted from 1, JSON lines by line
    number. ``frame.index`` keeps each row's 0-based position in the file through dropped rows and splits, so a
    message about any subset names rows of the file. :meth:`TableFile.at` words a list of rows in the file's
    style: ``long`` (the tabular loaders: ``rows 5 (value 5), 7 (value -1) (2 rows; row 1 is the header)``, at
    most 10 listed, plus a count) or ``short`` (the text loaders: ``row(s) 4, 7 (row 1 = header)``).

Label, attribute and group ids (:func:`code_ids`)
    A column holds integer ids 0..C-1 (names ``"0"``, ``"1"``, ...) or names. Which one is decided over all
    files, by ``integers``: ``"numeric columns"`` — the column is stored as numbers (a numeric dtype other than
    boolean) in every file; numbers in some files and text in others is an error — or ``"integer values"`` (for
    cells read as text) — every value is a whole number or integer text such as ``" 2"`` (booleans are not).
    Ids must be whole, at most 2**53 and not negative. C is ``given`` (``num_classes`` ...) when set — then an id
    may have no rows, and one of C or more is an error — and otherwise the largest id + 1, in which case every id
    below it must occur. Names are the distinct values as text (stripped of spaces for ``"integer values"``) in
    sorted order, over all files; ``given`` must then equal their number. At least ``minimum`` ids or names.
    Every error names the file, the column and its first rows.

Splits (:func:`split_files`, :func:`split_generators`)
    One file is split into train/val/test by ``fractions``, stratified by group (each group shared
    proportionally, ±1 row); train and test files without a val file: ``val_fraction`` of the train file is held
    out as val, stratified the same way; three files are used as they are. An empty split is an error naming the
    file. ``max_examples`` then keeps a group-stratified subsample of each split, proportional to the split sizes
    (:func:`~fairdistill.data.text_common.subsample_splits`). The split and the subsample draw from two
    generators spawned from ``split_seed`` (the same for every loader, so a seed means the same draws).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import pandas as pd
from pydantic import Field, field_validator

from fairdistill.data.core import DatasetOptions, label_attr_groups
from fairdistill.data.sampling import stratified_partition
from fairdistill.data.source_files import json_objects, resolve_path, sha256_file
from fairdistill.data.text_common import first_rows, subsample_splits
from fairdistill.errors import DataError

Format = Literal["csv", "parquet", "jsonl"]
RowStyle = Literal["long", "short"]
ColumnKind = Literal["numeric", "categorical", "unsupported"]
IdSource = Literal["numeric columns", "integer values"]

SPLITS: tuple[str, str, str] = ("train", "val", "test")
#: At most this many row numbers are listed in a ``long`` message (plus a count).
MAX_ROWS_SHOWN = 10
#: Integer ids above this are refused: a float64 holds every integer exactly only up to 2**53.
MAX_ID = 2**53
#: Cell values a column may hold besides missing ones; lists, structs (dicts), bytes and other objects are not.
SCALAR_TYPES: tuple[type, ...] = (str, bool, int, float, np.bool_, np.integer, np.floating)

_KIND_NAMES: dict[Format, str] = {"csv": "CSV", "parquet": "Parquet", "jsonl": "JSON lines"}
_INTEGER_TEXT = re.compile(r"^[+-]?\d+$")


# --------------------------------------------------------------------------------------------------- files


class SplitFileOptions(DatasetOptions):
    """Options every dataset read from users' table files shares: integer-id sizes, how the rows are split and
    subsampled (csv / parquet, text-table, image-csv)."""

    #: Number of classes / attribute values when they are integer ids (default: the largest id + 1, every id
    #: must occur).
    num_classes: int | None = Field(default=None, ge=2)
    num_attrs: int | None = Field(default=None, ge=1)
    #: Train/val/test fractions of a single ``path`` file (each > 0, summing to 1).
    split_fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    #: Fraction of the ``train`` file held out as val when no ``val`` file is given.
    val_fraction: float = Field(default=0.2, gt=0.0, lt=1.0)
    #: Subsample train/val/test proportionally (group-stratified, seeded) to about this many rows in total.
    max_examples: int | None = Field(default=None, ge=3)

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, value: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f <= 0 for f in value) or abs(sum(value) - 1.0) > 1e-6:
            raise ValueError("expected three fractions (train, val, test), each > 0, summing to 1")
        return value


@dataclass
class TableFile:
    """One user file read into ``frame``, whose index keeps each row's 0-based position in the file."""

    #: The loader's name, which starts every message (``csv``, ``parquet``, ``text-table``).
    dataset: str
    #: The option that named the file (``path``, ``train``, ``val``, ``test``), or the split it was cut into.
    role: str
    path: Path
    fmt: Format
    frame: pd.DataFrame
    sha256: str
    #: The 1-based number the user sees for the row at each position of the file.
    numbers: np.ndarray
    style: RowStyle = "long"
    #: Rows dropped after reading (``missing: drop``).
    rows_dropped: int = 0

    @property
    def rows_read(self) -> int:
        return len(self.numbers)

    def where(self) -> str:
        return f"{self.dataset}: {self.path}"

    def at(self, positions: Iterable[int], values: Iterable[Any] | None = None) -> str:
        """The rows at 0-based file ``positions`` as the user numbers them, in the file's style (``values``,
        shown next to each row, only in the ``long`` style)."""
        numbers = [int(n) for n in self.numbers[np.asarray(list(positions), dtype=np.int64)]]
        if self.style == "short":
            listed = first_rows(np.asarray(numbers))
            if self.fmt == "csv":
                return f"row(s) {listed} (row 1 = header)"
            return f"data row(s) {listed} (counted from 1)" if self.fmt == "parquet" else f"line(s) {listed}"
        shown = [str(n) for n in numbers[:MAX_ROWS_SHOWN]]
        if values is not None:
            shown = [f"{s} (value {v!r})" for s, v in zip(shown, list(values)[:MAX_ROWS_SHOWN], strict=True)]
        unit = "line" if self.fmt == "jsonl" else "row"
        word = unit if len(numbers) == 1 else f"{unit}s"
        count = f"{len(numbers)} {word}"
        if len(numbers) > MAX_ROWS_SHOWN:
            count = f"first {MAX_ROWS_SHOWN} of {len(numbers)} {unit}s"
        numbering = {"csv": "row 1 is the header", "parquet": "data rows counted from 1", "jsonl": "lines of the file"}
        return f"{word} {', '.join(shown)} ({count}; {numbering[self.fmt]})"

    def subset(self, positions: np.ndarray, role: str) -> TableFile:
        """The rows at ``positions`` of ``frame`` (row numbers unchanged), as split ``role``."""
        return replace(self, role=role, frame=self.frame.iloc[positions])

    def meta(self) -> dict[str, Any]:
        return {
            "path": str(self.path),
            "sha256": self.sha256,
            "rows_read": self.rows_read,
            "rows_dropped_missing": self.rows_dropped,
            "rows_kept": self.rows_read - self.rows_dropped,
        }


@dataclass(frozen=True)
class CsvReading:
    """How a CSV file is read."""

    sep: str = ","
    #: The file's encoding; None: UTF-8, and the loader has no option to change it.
    encoding: str | None = None
    #: Extra cell values read as missing, besides empty cells and pandas' default markers.
    na_values: tuple[str, ...] = ()
    #: Every cell as text, an empty cell as ``""`` (no missing markers): ids are then found by value.
    as_text: bool = False


def listing(values: Iterable[Any], limit: int = 40) -> str:
    """``a, b, c, ... (N columns in all)``: at most ``limit`` values, comma-separated."""
    values = [str(v) for v in values]
    text = ", ".join(values[:limit])
    return text + (f", ... ({len(values)} columns in all)" if len(values) > limit else "")


def find_file(dataset: str, role: str, text: str) -> Path:
    """The absolute path option ``data.<role>`` gives as ``text``; a DataError unless it is an existing file."""
    path = resolve_path(text)
    option = f"data.{role}"
    if not path.exists():
        raise DataError(f"{dataset}: file not found: {path} (from {option}: {text!r}, relative to {Path.cwd()})")
    if not path.is_file():
        raise DataError(f"{dataset}: {path} (from {option}: {text!r}) is not a file")
    return path


def read_table_file(
    dataset: str,
    role: str,
    text: str,
    fmt: Format,
    *,
    csv: CsvReading | None = None,
    format_option: str = "data.name",
    style: RowStyle = "long",
) -> TableFile:
    """Read the file option ``data.<role>`` names (``text``) as ``fmt``; every failure is a DataError naming it.

    ``format_option`` is the option that chooses the format (named when the file looks like another format).
    """
    path = find_file(dataset, role, text)
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
        digest = sha256_file(path)
    except OSError as exc:
        raise DataError(f"{dataset}: cannot read {path}: {exc.strerror or exc}") from None
    if not head:
        raise DataError(f"{dataset}: {path} is empty (0 bytes)")
    if fmt != "parquet" and head == b"PAR1":
        raise DataError(f"{dataset}: {path} is a Parquet file, not {_KIND_NAMES[fmt]}; use {format_option}: parquet")
    reading = csv or CsvReading()
    lines: np.ndarray | None = None
    try:
        if fmt == "csv":
            frame = _read_csv(path, reading)
        elif fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame, lines = _read_jsonl(path, dataset)
    except (DataError, MemoryError):
        raise
    except pd.errors.EmptyDataError:
        raise DataError(f"{dataset}: {path} has no header and no rows") from None
    except Exception as exc:  # every reader failure (parser, decoding, corrupt parquet, ...) is a user error
        detail = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        hint = ""
        if fmt == "parquet" and "magic bytes" in detail.lower():
            hint = f" (is it a CSV file? then use {format_option}: csv)"
        elif isinstance(exc, UnicodeDecodeError):
            hint = " (set data.encoding, e.g. latin-1)" if reading.encoding is not None else " (it must be UTF-8)"
        raise DataError(f"{dataset}: cannot read {path} as {_KIND_NAMES[fmt]}: {detail}{hint}") from None
    if not isinstance(frame.index, pd.RangeIndex):  # a pandas index stored in the parquet file becomes columns
        frame = frame.reset_index()
    frame = frame.reset_index(drop=True)
    frame.columns = [str(c) for c in frame.columns]
    if len(frame) == 0:
        if len(frame.columns):
            raise DataError(f"{dataset}: {path} has a header ({listing(frame.columns)}) but no rows")
        raise DataError(f"{dataset}: {path} has no rows")
    if lines is None:
        lines = np.arange(len(frame), dtype=np.int64) + (2 if fmt == "csv" else 1)
    return TableFile(dataset, role, path, fmt, frame, digest, lines, style)


def _read_csv(path: Path, reading: CsvReading) -> pd.DataFrame:
    encoding = reading.encoding or "utf-8"
    if reading.as_text:
        return pd.read_csv(path, sep=reading.sep, encoding=encoding, dtype=str, keep_default_na=False)
    na_values = list(reading.na_values) or None
    return pd.read_csv(path, sep=reading.sep, encoding=encoding, na_values=na_values, low_memory=False)


def _read_jsonl(path: Path, dataset: str) -> tuple[pd.DataFrame, np.ndarray]:
    """The objects of a JSON-lines file as rows, and the line number of each."""
    records: list[dict] = []
    lines: list[int] = []
    for line_no, obj in json_objects(path, dataset):
        records.append(obj)
        lines.append(line_no)
    return pd.DataFrame.from_records(records), np.asarray(lines, dtype=np.int64)


# --------------------------------------------------------------------------------------------------- cells


def column_kind(series: pd.Series) -> ColumnKind:
    """How a column's dtype is encoded: numbers, categories (text, booleans, pandas categories) or not at all."""
    dtype = series.dtype
    if pd.api.types.is_bool_dtype(dtype) or isinstance(dtype, pd.CategoricalDtype):
        return "categorical"
    if pd.api.types.is_complex_dtype(dtype):
        return "unsupported"
    if pd.api.types.is_numeric_dtype(dtype):
        return "numeric"
    if pd.api.types.is_datetime64_any_dtype(dtype) or pd.api.types.is_timedelta64_dtype(dtype):
        return "unsupported"
    if isinstance(dtype, (pd.PeriodDtype, pd.IntervalDtype)):
        return "unsupported"
    if pd.api.types.is_string_dtype(dtype) or pd.api.types.is_object_dtype(dtype):
        return "categorical"
    return "unsupported"


def non_scalar_cells(values: Sequence[Any]) -> np.ndarray:
    """Boolean mask of the cells that are neither a scalar (:data:`SCALAR_TYPES`) nor missing."""
    return np.fromiter(
        (not (isinstance(v, SCALAR_TYPES) or v is None or v is pd.NA or v is pd.NaT) for v in values),
        dtype=bool,
        count=len(values),
    )


def value_kind(value: Any) -> str:
    """A short name of a non-scalar cell's type: list, struct, bytes or the Python type's name."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return "list"
    if isinstance(value, dict):
        return "struct"
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "bytes"
    return type(value).__name__


# --------------------------------------------------------------------------------------------------- ids


class CodedColumns(NamedTuple):
    """A dataset's label, attribute and group ids (one array per file) and their names."""

    y: list[np.ndarray]
    attr: list[np.ndarray]
    group: list[np.ndarray]
    class_names: tuple[str, ...]
    attr_names: tuple[str, ...]
    group_names: tuple[str, ...]


def code_label_attr_group(
    files: Sequence[TableFile],
    label: str,
    attr: str,
    group: str | None,
    num_classes: int | None,
    num_attrs: int | None,
    num_groups: int | None,
) -> CodedColumns:
    """:func:`code_ids` of the label and attribute columns, and of the ``group`` column when there is one;
    without one, the groups are the (label, attribute) pairs (``label_attr_groups``)."""
    y_codes, class_names = code_ids(files, label, "label", "num_classes", num_classes, 2)
    a_codes, attr_names = code_ids(files, attr, "attr", "num_attrs", num_attrs, 1)
    if group is not None:
        g_codes, group_names = code_ids(files, group, "group", "num_groups", num_groups, 1)
    else:
        g_codes = [y * len(attr_names) + a for y, a in zip(y_codes, a_codes, strict=True)]
        group_names = label_attr_groups(class_names, attr_names)
    return CodedColumns(y_codes, a_codes, g_codes, class_names, attr_names, group_names)


def code_ids(
    files: Sequence[TableFile],
    column: str,
    role: str,
    option: str,
    given: int | None,
    minimum: int,
    *,
    integers: IdSource = "numeric columns",
) -> tuple[list[np.ndarray], tuple[str, ...]]:
    """Integer ids (one array per file, in frame order) and the names of a label / attr / group ``column``,
    coded over all ``files`` together (rules: the module docstring). ``option`` names the option that sets the
    count (``num_classes``); ``given`` is its value. Cells must already be scalars and not missing."""
    if integers == "numeric columns":
        kinds = {f.path: ("integer" if column_kind(f.frame[column]) == "numeric" else "text") for f in files}
        if len(set(kinds.values())) > 1:
            listed = ", ".join(f"{p.name}: {k}" for p, k in kinds.items())
            raise DataError(
                f"{files[0].dataset}: {role} column {column!r} holds integer ids in some files and text in others "
                f"({listed}); use one kind in every file"
            )
        codes = [_whole_numbers(f, column, role) for f in files] if "integer" in kinds.values() else None
    else:
        codes = _integer_values(files, column, role)
    if codes is None:
        texts = [_texts(f, column, strip=integers == "integer values") for f in files]
        names = tuple(sorted(set().union(*(set(t.tolist()) for t in texts))))
        if given is not None and given != len(names):
            raise DataError(
                f"{files[0].dataset}: {role} column {column!r} has {len(names)} distinct values "
                f"({listing(names, 20)}) but {option} is {given}"
            )
        codes = [pd.Index(names).get_indexer(t).astype(np.int64) for t in texts]
    else:
        names = tuple(str(i) for i in range(_id_count(files, codes, column, role, option, given)))
    if len(names) < minimum:
        raise DataError(
            f"{files[0].dataset}: {role} column {column!r} has only {len(names)} distinct value(s) "
            f"({listing(names, 20)}); at least {minimum} are needed"
        )
    return codes, names


def _texts(file: TableFile, column: str, strip: bool) -> np.ndarray:
    if strip:
        return np.asarray([str(v).strip() for v in file.frame[column].tolist()], dtype=object)
    return file.frame[column].astype(str).to_numpy(dtype=object)


def _whole_numbers(file: TableFile, column: str, role: str) -> np.ndarray:
    """A numeric column's values as int64 ids; fractions, infinities and values beyond 2**53 are errors."""
    values = file.frame[column].to_numpy(dtype=np.float64)
    # beyond 2**53 a float64 is not an exact integer (and 1e308 would not fit in int64)
    bad = ~np.isfinite(values) | (values != np.round(values)) | (np.abs(values) > MAX_ID)
    if bad.any():
        raise DataError(
            f"{file.where()}: {role} column {column!r} must hold whole numbers (ids 0, 1, ...) or text; "
            f"not at {file.at(file.frame.index[bad], values[bad].tolist())}"
        )
    return values.astype(np.int64)


def _as_int(value: Any) -> int | None:
    """``value`` as an int if it is one (a number with no fraction, or integer text), else None."""
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return int(value)
    if isinstance(value, str) and _INTEGER_TEXT.match(value.strip()):
        return int(value.strip())
    return None


def _integer_values(files: Sequence[TableFile], column: str, role: str) -> list[np.ndarray] | None:
    """Every file's values as int64 ids when all values of all files are integers, else None."""
    parsed = [[_as_int(v) for v in f.frame[column].tolist()] for f in files]
    if any(i is None for values in parsed for i in values):
        return None
    codes = []
    for file, values in zip(files, parsed, strict=True):
        ints = [i for i in values if i is not None]
        huge = np.flatnonzero([abs(i) > MAX_ID for i in ints])
        if len(huge):
            raise DataError(
                f"{file.where()}: {role} column {column!r} has id {ints[huge[0]]} at "
                f"{file.at(file.frame.index[huge])}; integer ids must be 0..C-1 (at most {MAX_ID})"
            )
        codes.append(np.asarray(ints, dtype=np.int64))
    return codes


def _id_count(
    files: Sequence[TableFile], codes: list[np.ndarray], column: str, role: str, option: str, given: int | None
) -> int:
    """C: ``given``, or the largest id + 1 when every id below it occurs; negative or out-of-range ids are errors."""
    for file, ids in zip(files, codes, strict=True):
        bad = ((ids < 0) | (ids >= given)) if given is not None else ids < 0
        if bad.any():
            at = file.at(file.frame.index[bad], ids[bad].tolist())
            if given is not None:
                raise DataError(
                    f"{file.where()}: {role} column {column!r} has values outside 0..{given - 1} ({option}: {given}) "
                    f"at {at}"
                )
            raise DataError(
                f"{file.where()}: {role} column {column!r} has negative id {int(ids[bad][0])} at {at}; integer ids "
                "must be 0..C-1"
            )
    if given is not None:
        return given
    n = max(int(ids.max()) for ids in codes) + 1
    present = set().union(*(set(np.unique(ids).tolist()) for ids in codes))
    # the first few gaps only: the scan stops early even when the largest id is huge
    absent = list(itertools.islice((i for i in range(n) if i not in present), 20))
    if absent:
        missing = n - len(present)
        absent_text = ", ".join(map(str, absent)) + (f", ... ({missing} in all)" if missing > len(absent) else "")
        first_ids = ", ".join(map(str, absent[:3])) + (", ..." if missing > 3 else "")
        holder = next(k for k, ids in enumerate(codes) if int(ids.max()) == n - 1)
        file = files[holder]
        largest_at = file.at(file.frame.index[codes[holder] == n - 1])
        raise DataError(
            f"{files[0].dataset}: {role} column {column!r} holds integer ids up to {n - 1} ({file.path}, {largest_at}) "
            f"but no row with id(s) [{first_ids}]; integer ids must be 0..C-1: if value(s) {absent_text} never occur "
            f"because those {role} values simply have no rows, set {option}: {n}; otherwise recode the column (text "
            "values are mapped to ids automatically)"
        )
    return n


# --------------------------------------------------------------------------------------------------- splits


def split_generators(split_seed: int) -> tuple[np.random.Generator, np.random.Generator]:
    """``(subsample, split)`` generators spawned from ``split_seed``: the split's draws do not depend on
    ``max_examples``, and the subsample's do not depend on how the split was made."""
    subsample, split = (np.random.default_rng(s) for s in np.random.SeedSequence(split_seed).spawn(2))
    return subsample, split


@dataclass(frozen=True)
class SplitRows:
    """Which rows each split holds: split name → (index into the files, positions in that file's frame)."""

    parts: dict[str, tuple[int, np.ndarray]]
    #: How the split was made, for the provenance.
    description: str


def split_files(
    files: Sequence[TableFile],
    groups: Sequence[np.ndarray],
    *,
    fractions: Sequence[float],
    val_fraction: float,
    split_seed: int,
    max_examples: int | None,
) -> SplitRows:
    """Train/val/test rows of ``files`` (one file; train and test; or train, val and test, by ``role``) with
    ``groups`` (one group id per row of each file's frame): the rules in the module docstring."""
    subsample_rng, split_rng = split_generators(split_seed)
    roles = [f.role for f in files]
    if len(files) == 1:
        pieces = stratified_partition(groups[0], fractions, split_rng)
        parts = {name: (0, idx) for name, idx in zip(SPLITS, pieces, strict=True)}
        description = (
            f"one file split {'/'.join(f'{f:g}' for f in fractions)} into train/val/test, stratified by group, "
            "seeded by split_seed"
        )
    elif "val" in roles:
        parts = {name: (roles.index(name), np.arange(len(groups[roles.index(name)]))) for name in SPLITS}
        description = "separate train, val and test files"
    else:
        train, test = roles.index("train"), roles.index("test")
        kept, held = stratified_partition(groups[train], (1 - val_fraction, val_fraction), split_rng)
        parts = {"train": (train, kept), "val": (train, held), "test": (test, np.arange(len(groups[test])))}
        description = (
            f"test = the test file; {val_fraction:g} of the train file held out as val, stratified by group, "
            "seeded by split_seed"
        )
    for name, (k, idx) in parts.items():
        if len(idx) == 0:
            raise DataError(
                f"{files[k].where()}: the {name} split would be empty ({len(files[k].frame)} usable rows); use more "
                "rows or change split_fractions / val_fraction"
            )
    kept_rows = subsample_splits(
        {name: groups[k][idx] for name, (k, idx) in parts.items()}, max_examples, subsample_rng
    )
    return SplitRows({name: (k, idx[kept_rows[name]]) for name, (k, idx) in parts.items()}, description)
