"""Official annotation files of the vision benchmarks (``waterbirds``, ``celeba``, ``wider-attribute``), read once.

Each of those loaders turns its download's metadata into a :class:`ParsedImages`: per-split lists of
:class:`~fairdistill.data.images.ImageRecord` (image path relative to the image folder, label, attribute, and the
annotation file and row it comes from) and hands them to :func:`~fairdistill.data.images.image_splits`, which
checks every file exists (a missing one is named with that file and row) and decodes lazily. Shared here:

- :func:`dataset_root`, :func:`find_file`, :func:`find_folder`: the ``root:`` folder and the official files or
  folders in it, looked up under the names the official downloads use; a missing one is a :class:`DataError`
  listing every place looked at.
- :func:`read_csv_strings`, :func:`read_json`: one annotation file read with errors that name it (CSV rows as a
  spreadsheet shows them, row 1 the header; JSON with line and column of a syntax error).
- :func:`integer_codes`: a column of integer codes checked against the allowed values, naming the bad rows.
- :func:`relative_image_path`: an image name checked to stay inside the image folder.
- :func:`rows_by_split`, :func:`subsample_rows`, :func:`split_counts`: rows per split, the optional seeded
  ``max_examples`` subsample, and the per-split counts (examples, groups, dropped) logged and put into the
  provenance.
- :func:`image_dataset_splits`: the :class:`~fairdistill.data.core.Splits` of a parsed dataset.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import pandas as pd

from fairdistill.data.core import DatasetInfo, Splits, label_attr_groups
from fairdistill.data.images import ImageOptions, ImageRecord, image_splits
from fairdistill.data.source_files import resolve_path
from fairdistill.data.table_files import split_generators
from fairdistill.data.text_common import first_rows, subsample_splits
from fairdistill.errors import DataError, shown_value

log = logging.getLogger(__name__)

SPLITS: tuple[str, str, str] = ("train", "val", "test")


def dataset_root(dataset: str, root: str, expected: str) -> Path:
    """``root`` resolved; a DataError when it is not a folder (``expected`` says what it should hold)."""
    path = resolve_path(root)
    if not path.is_dir():
        what = "does not exist" if not path.exists() else "is not a folder"
        raise DataError(f"{dataset}: root {path} {what}; expected the unpacked download with {expected}")
    return path


def find_file(dataset: str, folders: Sequence[Path], names: Sequence[str]) -> Path:
    """The first of ``folder / name`` that is a file (folders in order, then names); a DataError otherwise."""
    tried = [folder / name for folder in folders for name in names]
    for candidate in tried:
        if candidate.is_file():
            return candidate
    raise DataError(f"{dataset}: missing {' or '.join(names)}; looked for {', '.join(map(str, tried))}")


def find_folder(dataset: str, candidates: Sequence[Path], what: str) -> Path:
    """The first candidate that is a folder; a DataError listing them otherwise."""
    for candidate in candidates:
        if candidate.is_dir():
            return candidate
    raise DataError(f"{dataset}: missing the {what} folder; looked for {', '.join(map(str, candidates))}")


def read_json(dataset: str, path: Path) -> Any:
    """The parsed content of a JSON file; unreadable or invalid JSON is a DataError naming the file and place."""
    try:
        with path.open(encoding="utf-8") as fh:
            return json.load(fh)
    except json.JSONDecodeError as exc:
        raise DataError(
            f"{dataset}: {path} is not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{dataset}: cannot read {path}: {exc}") from None


def read_csv_strings(dataset: str, path: Path, columns: Sequence[str], *, sep: str | None = ",") -> pd.DataFrame:
    """A CSV file's ``columns`` as stripped strings (``sep=None``: any run of whitespace separates cells).

    A missing column (all missing ones listed, with the file's columns), an unreadable file or one without rows
    is a DataError naming the file.
    """
    options: dict[str, Any] = {"sep": sep} if sep is not None else {"sep": r"\s+"}
    try:
        header = [str(c).strip() for c in pd.read_csv(path, nrows=0, **options).columns]
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{dataset}: cannot read {path} as CSV: {exc}") from None
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{dataset}: {path} lacks column(s) {missing}; its columns are {header}")
    try:
        frame = pd.read_csv(
            path, dtype=str, keep_default_na=False, usecols=lambda c: str(c).strip() in columns, **options
        )
    except (OSError, ValueError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise DataError(f"{dataset}: cannot read {path} as CSV: {exc}") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty:
        raise DataError(f"{dataset}: {path} has a header but no rows")
    return frame[list(columns)].apply(lambda column: column.str.strip())


def integer_codes(
    dataset: str,
    path: Path,
    values: Sequence[str],
    column: str,
    allowed: Iterable[int],
    row_numbers: np.ndarray,
    unit: str = "row",
) -> np.ndarray:
    """``values`` (text cells of ``column``) as int64 codes; a value that is not one of ``allowed`` is a DataError
    naming the file, the column, the rows (``row_numbers``: the number the user sees for each value, a CSV
    ``row`` counting the header as row 1, or a text file's ``line``) and the first bad value."""
    allowed_set = sorted(set(allowed))
    codes = np.full(len(values), -(2**62), dtype=np.int64)
    for i, text in enumerate(values):
        try:
            number = float(text)
        except ValueError:
            continue
        if number.is_integer():
            codes[i] = int(number)
    bad = np.flatnonzero(~np.isin(codes, allowed_set))
    note = " (row 1 is the header)" if unit == "row" else ""
    if len(bad):
        raise DataError(
            f"{dataset}: {path}: column {column!r} must be one of {allowed_set}; {unit}(s) "
            f"{first_rows(row_numbers[bad])}{note} hold other values (first: {shown_value(values[bad[0]])})"
        )
    return codes


def relative_image_path(dataset: str, file: Path, where: str, name: str) -> str:
    """``name`` as a relative ``/``-separated path inside the image folder; an absolute path, a ``..`` part or an
    empty name is a DataError naming the file and the row (``where``)."""
    text = name.strip().replace("\\", "/")
    parts = PurePosixPath(text).parts
    if not text or text.startswith("/") or ".." in parts or (parts and parts[0].endswith(":")):
        raise DataError(
            f"{dataset}: {file}: {where} names image {shown_value(name)}, which is not a relative path inside the "
            "image folder"
        )
    return str(PurePosixPath(*parts))


def split_counts(
    dataset: str,
    rows: Mapping[str, Sequence[ImageRecord]],
    class_names: Sequence[str],
    attr_names: Sequence[str],
    dropped: Mapping[str, int] | None = None,
) -> dict[str, Any]:
    """Per-split example and (label, attr) group counts, logged and returned for the provenance (with the
    number of annotated images dropped per reason)."""
    num_attrs = len(attr_names)
    counts: dict[str, Any] = {"num_examples": {}, "group_counts": {}}
    for split, items in rows.items():
        groups = np.bincount([r.y * num_attrs + r.attr for r in items], minlength=len(class_names) * num_attrs).tolist()
        counts["num_examples"][split] = len(items)
        names = label_attr_groups(tuple(class_names), tuple(attr_names))
        counts["group_counts"][split] = {g: int(n) for g, n in zip(names, groups, strict=True)}
    summary = ", ".join(f"{split} {n}" for split, n in counts["num_examples"].items())
    if dropped is not None:
        counts["dropped"] = dict(dropped)
        dropped_text = ", ".join(f"{reason}: {n}" for reason, n in dropped.items()) or "none"
        log.info("%s: %s examples; dropped %s", dataset, summary, dropped_text)
    else:
        log.info("%s: %s examples", dataset, summary)
    return counts


@dataclass(frozen=True)
class ParsedImages:
    """A vision benchmark's annotations parsed: per-split rows and what the dataset's info needs."""

    dataset: str
    #: The folder the rows' image paths are relative to.
    image_dir: Path
    rows: dict[str, list[ImageRecord]]
    class_names: tuple[str, ...]
    attr_names: tuple[str, ...]
    attr_label: str
    #: Source, files, split rule, counts (added by :func:`subsample_rows`) for the provenance.
    provenance: dict[str, Any] = field(default_factory=dict)


def rows_by_split(
    dataset: str, file: Path, split_of: np.ndarray, rows: Sequence[ImageRecord], names: Sequence[str] = SPLITS
) -> dict[str, list[ImageRecord]]:
    """``rows`` grouped by ``split_of`` (one split name per row); an empty split is a DataError naming the file."""
    grouped: dict[str, list[ImageRecord]] = {name: [] for name in names}
    for split, row in zip(split_of.tolist(), rows, strict=True):
        grouped[split].append(row)
    for name, items in grouped.items():
        if not items:
            raise DataError(f"{dataset}: {file} has no {name} rows")
    return grouped


def subsample_rows(parsed: ParsedImages, max_examples: int | None, split_seed: int) -> ParsedImages:
    """``parsed`` with, under ``max_examples``, a group-stratified subsample of each split proportional to the
    split sizes (seeded like the table loaders); the counts are logged and added to the provenance."""
    num_attrs = len(parsed.attr_names)
    groups = {
        s: np.asarray([r.y * num_attrs + r.attr for r in rows], dtype=np.int64) for s, rows in parsed.rows.items()
    }
    subsample_rng, _ = split_generators(split_seed)
    kept = subsample_splits(groups, max_examples, subsample_rng)
    rows = {s: [parsed.rows[s][i] for i in kept[s].tolist()] for s in parsed.rows}
    dropped = parsed.provenance.get("dropped")
    counts = split_counts(parsed.dataset, rows, parsed.class_names, parsed.attr_names, dropped)
    provenance = {**parsed.provenance, **counts, "max_examples": max_examples}
    return replace(parsed, rows=rows, provenance=provenance)


def image_dataset_splits(parsed: ParsedImages, options: ImageOptions) -> Splits:
    """The lazy image splits of ``parsed`` (:func:`~fairdistill.data.images.image_splits`), groups (y, attr)."""
    info = DatasetInfo(
        name=parsed.dataset,
        num_classes=len(parsed.class_names),
        class_names=parsed.class_names,
        attr_names=parsed.attr_names,
        group_names=label_attr_groups(parsed.class_names, parsed.attr_names),
        modality="image",
        attr_label=parsed.attr_label,
    )
    provenance = {**parsed.provenance, "options": options.model_dump(mode="json")}
    return image_splits(parsed.rows, parsed.image_dir, options, info, provenance=provenance)
