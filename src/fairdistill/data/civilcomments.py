"""CivilComments (WILDS): is an online comment toxic? attribute = whether it mentions an identity.

Source
    The CivilComments data (Borkan et al., "Nuanced metrics for measuring unintended bias with real data for
    text classification", 2019; Jigsaw, CC0) in the format of the WILDS benchmark (Koh et al. 2021): the file
    ``all_data_with_identities.csv`` of WILDS' ``civilcomments_v1.0`` download. Nothing is downloaded here: the
    option ``path:`` names that CSV file or a folder holding it (directly or in a ``civilcomments_v1.0/``
    subfolder). Columns used: ``comment_text``, ``toxicity`` (fraction of annotators rating the comment toxic),
    ``split`` (``train`` / ``val`` / ``test``, WILDS' split, used as it is) and the eight identity columns
    WILDS evaluates: ``male``, ``female``, ``LGBTQ``, ``christian``, ``muslim``, ``other_religions``, ``black``,
    ``white`` (fractions of annotators saying the comment mentions the identity); other columns are ignored.

Label, attribute and groups
    y = 1 (``"toxic"``) if toxicity >= 0.5, else 0 (``"non-toxic"``). The attribute is the mention of
    ``identity:`` — one of the eight identity columns (mentioned = value >= 0.5) or ``any`` (default: at least
    one of the eight is >= 0.5). attr names ``"<identity> not mentioned"``, ``"<identity> mentioned"`` (with
    ``any``: ``"identity not mentioned"`` / ``"identity mentioned"``). Groups are (y, attr): group = y * 2 + attr,
    4 groups named ``"<label>|<attr>"``. (WILDS itself reports 16 overlapping groups, toxicity × each identity;
    here each run uses one binary attribute so that groups partition the data, as the methods require.)

Splits
    WILDS' own ``split`` column (about 269k train / 45k val / 134k test comments). ``max_examples`` draws a
    group-stratified subsample of each split, proportional to the split sizes (for quick tests).

Errors
    A missing file or folder, a missing column (all missing ones listed, with the file's columns), a non-numeric
    or empty toxicity / identity value or an unknown split value is a :class:`DataError`
    naming the file, the column and the first rows, numbered as a spreadsheet shows them (row 1 is the header).

Inputs
    No encodings: every split carries ``texts = {"text": comments}`` (an empty comment stays an empty string);
    the model's tokenizer encodes them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field

from fairdistill.data.core import DATASETS, DatasetInfo, DatasetOptions, Splits, label_attr_groups
from fairdistill.data.source_files import resolve_path, sha256_file
from fairdistill.data.text_common import (
    SPLIT_NAMES,
    first_rows,
    group_counts,
    subsample_splits,
    text_split,
)
from fairdistill.errors import DataError

FILE_NAME = "all_data_with_identities.csv"
IDENTITIES: tuple[str, ...] = ("male", "female", "LGBTQ", "christian", "muslim", "other_religions", "black", "white")
CLASS_NAMES: tuple[str, str] = ("non-toxic", "toxic")
THRESHOLD = 0.5

Identity = Literal["any", "male", "female", "LGBTQ", "christian", "muslim", "other_religions", "black", "white"]


class CivilCommentsOptions(DatasetOptions):
    """Options of the ``civilcomments`` dataset."""

    #: ``all_data_with_identities.csv`` or a folder holding it (or holding ``civilcomments_v1.0/`` with it).
    path: str
    #: The identity whose mention is the attribute, or ``any`` of the eight.
    identity: Identity = "any"
    #: Subsample train/val/test proportionally (group-stratified, seeded) to about this many comments in total.
    max_examples: int | None = Field(default=None, ge=3)


def _find_file(path: str) -> Path:
    target = resolve_path(path)
    if target.is_file():
        return target
    if target.is_dir():
        for candidate in (target / FILE_NAME, target / "civilcomments_v1.0" / FILE_NAME):
            if candidate.is_file():
                return candidate
        raise DataError(f"civilcomments: no {FILE_NAME} in {target} (nor in {target / 'civilcomments_v1.0'})")
    raise DataError(f"civilcomments: path {target} does not exist (expected {FILE_NAME} or a folder holding it)")


def _read(file: Path) -> pd.DataFrame:
    wanted = ["comment_text", "toxicity", "split", *IDENTITIES]
    try:
        header = pd.read_csv(file, nrows=0).columns.tolist()
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"civilcomments: cannot read {file} as CSV: {exc}") from None
    missing = [c for c in wanted if c not in header]
    if missing:
        raise DataError(f"civilcomments: {file} lacks column(s) {missing}; its columns are {header}")
    try:
        frame = pd.read_csv(file, usecols=wanted, dtype=str, keep_default_na=False)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"civilcomments: cannot read {file} as CSV: {exc}") from None
    if frame.empty:
        raise DataError(f"civilcomments: {file} has no rows")
    return frame


def _numeric(frame: pd.DataFrame, column: str, file: Path) -> np.ndarray:
    values = pd.to_numeric(frame[column].str.strip(), errors="coerce").to_numpy(dtype=np.float64)
    bad = np.flatnonzero(~np.isfinite(values))
    if len(bad):
        shown = frame[column].iloc[bad[0]]
        raise DataError(
            f"civilcomments: {file}: column {column!r} is empty or not a number at row(s) {first_rows(bad + 2)} "
            f"(row 1 = header; first bad value {shown!r})"
        )
    return values


@DATASETS.register("civilcomments", options=CivilCommentsOptions, modality="text", offline=True)
def load_civilcomments(options: CivilCommentsOptions) -> Splits:
    """CivilComments (WILDS files): toxic comment or not; attribute = mention of an identity (or of any)."""
    file = _find_file(options.path)
    frame = _read(file)

    text = frame["comment_text"].tolist()
    y = (_numeric(frame, "toxicity", file) >= THRESHOLD).astype(np.int64)
    mentions = np.stack([_numeric(frame, c, file) >= THRESHOLD for c in IDENTITIES], axis=1)
    if options.identity == "any":
        attr = np.asarray(mentions.any(axis=1), dtype=np.int64)  # (rows,): numpy's stubs allow a scalar here
        subject = "identity"
    else:
        attr = mentions[:, IDENTITIES.index(options.identity)].astype(np.int64)
        subject = options.identity
    split_of = frame["split"].str.strip().to_numpy()
    unknown = np.flatnonzero(~np.isin(split_of, SPLIT_NAMES))
    if len(unknown):
        raise DataError(
            f"civilcomments: {file}: column 'split' has value {split_of[unknown[0]]!r} at row(s) "
            f"{first_rows(unknown + 2)} (row 1 = header); expected one of {list(SPLIT_NAMES)}"
        )
    group = y * 2 + attr
    indices = {s: np.flatnonzero(split_of == s) for s in SPLIT_NAMES}
    for s, idx in indices.items():
        if len(idx) == 0:
            raise DataError(f"civilcomments: {file} has no rows with split == {s!r}")
    rng = np.random.default_rng(np.random.SeedSequence(options.split_seed))
    kept = subsample_splits({s: group[idx] for s, idx in indices.items()}, options.max_examples, rng)
    indices = {s: idx[np.asarray(kept[s])] for s, idx in indices.items()}

    attr_names = (f"{subject} not mentioned", f"{subject} mentioned")
    group_names = label_attr_groups(CLASS_NAMES, attr_names)
    splits = {s: text_split(s, [text[i] for i in idx], None, y[idx], attr[idx], 2) for s, idx in indices.items()}
    info = DatasetInfo(
        name="civilcomments",
        num_classes=2,
        class_names=CLASS_NAMES,
        attr_names=attr_names,
        group_names=group_names,
        modality="text",
        attr_label=f"mentions {'any identity' if options.identity == 'any' else options.identity}",
    )
    provenance = {
        "dataset": "civilcomments",
        "source": "CivilComments (Borkan et al. 2019) in the WILDS format (Koh et al. 2021)",
        "file": {"path": str(file), "sha256": sha256_file(file), "rows": len(frame)},
        "split": "WILDS split column",
        "identity": options.identity,
        "identities": list(IDENTITIES) if options.identity == "any" else [options.identity],
        "threshold": THRESHOLD,
        "num_examples": {s: len(split) for s, split in splits.items()},
        "group_counts": {s: group_counts(split, group_names) for s, split in splits.items()},
        "options": options.model_dump(mode="json"),
    }
    return Splits(train=splits["train"], val=splits["val"], test=splits["test"], info=info, provenance=provenance)
