"""UCI Adult (Census Income): predict whether a person's income exceeds $50K a year; attribute = sex (or race).

Source, licence and attribution
    UCI Machine Learning Repository, "Adult" — Becker, B. & Kohavi, R. (1996), https://doi.org/10.24432/C5XW20,
    licensed CC BY 4.0. The original files ``adult.data`` and ``adult.test`` (gzip-compressed) and
    ``adult.names`` ship inside this package in ``fairdistill/data/files/adult/`` together with an
    ``ATTRIBUTION.md``; the option ``path:`` reads them (``.gz`` or uncompressed) from another folder instead.
    The sha256 of the uncompressed content is checked for the packaged copy and recorded in the provenance.

Rows
    Columns: age, workclass, fnlwgt, education, education-num, marital-status, occupation, relationship, race,
    sex, capital-gain, capital-loss, hours-per-week, native-country, income. Rows with any missing value
    (``?``) are dropped: 30,162 of 32,561 rows of ``adult.data`` and 15,060 of 16,281 rows of ``adult.test``.

Label, attribute and groups
    y = 1 if income > 50K (class names ``"<=50K"``, ``">50K"``). The attribute is ``sex`` (attr names
    ``"Female"``, ``"Male"``: Female = 0, Male = 1) or, with ``protected: race``, ``race`` (the five race values
    in sorted order: Amer-Indian-Eskimo, Asian-Pac-Islander, Black, Other, White). Groups are (y, attr):
    group = y * num_attrs + attr, names ``"<label>|<attr>"``.

Splits
    test = ``adult.test``. ``adult.data`` is split into train and val by holding out 20% as val, stratified by
    group and seeded by ``split_seed`` (24,129 or 24,130 train / 6,033 or 6,032 val rows). ``max_examples``
    then draws a group-stratified subsample of each split, proportional to the split sizes (for quick tests).

Inputs (encoding ``"x"``, float32, shape (n_features,))
    Numeric columns age, education-num, capital-gain, capital-loss, hours-per-week (and fnlwgt, a census
    sampling weight rather than a property of the person, only with ``include_fnlwgt: true``) standardised with
    the train split's mean and standard deviation; the categorical columns one-hot encoded with the categories
    seen in the train split (a category unseen in train encodes as all zeros). The protected column is left out
    of the inputs unless ``include_protected: true`` (note that other columns, e.g. relationship = Husband/Wife,
    remain proxies of sex). Income is never an input. With the defaults there are 101 features (100 for the
    split seeds that hold out the single ``native-country = Holand-Netherlands`` row as val, since categories
    come from the train split); their names (``"age"``, ``"workclass=Private"``, ...) are in
    ``provenance["feature_names"]``.
"""

from __future__ import annotations

import gzip
import hashlib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from fairdistill.data.core import (
    DATASETS,
    DEFAULT_ENCODING,
    DatasetInfo,
    DatasetOptions,
    SplitDataset,
    Splits,
    label_attr_group_index,
    label_attr_groups,
)
from fairdistill.data.sampling import stratified_order
from fairdistill.data.table_files import split_generators
from fairdistill.data.text_common import subsample_splits
from fairdistill.errors import DataError

COLUMNS: tuple[str, ...] = (
    "age",
    "workclass",
    "fnlwgt",
    "education",
    "education-num",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "capital-gain",
    "capital-loss",
    "hours-per-week",
    "native-country",
    "income",
)
NUMERIC_COLUMNS: tuple[str, ...] = ("age", "fnlwgt", "education-num", "capital-gain", "capital-loss", "hours-per-week")
CATEGORICAL_COLUMNS: tuple[str, ...] = (
    "workclass",
    "education",
    "marital-status",
    "occupation",
    "relationship",
    "race",
    "sex",
    "native-country",
)
CLASS_NAMES: tuple[str, str] = ("<=50K", ">50K")
ATTR_VALUES: dict[str, tuple[str, ...]] = {
    "sex": ("Female", "Male"),
    "race": ("Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White"),
}
MISSING = "?"
VAL_FRACTION = 0.2

#: sha256 of the uncompressed UCI files (checked for the packaged copy, recorded for any copy).
SHA256: dict[str, str] = {
    "adult.data": "5b00264637dbfec36bdeaab5676b0b309ff9eb788d63554ca0a249491c86603d",
    "adult.test": "a2a9044bc167a35b2361efbabec64e89d69ce82d9790d2980119aac5fd7e9c05",
}


class AdultOptions(DatasetOptions):
    """Options of the ``adult`` dataset."""

    #: Folder with adult.data[.gz] and adult.test[.gz]; None uses the copy shipped with the package.
    path: str | None = None
    #: The attribute defining the groups.
    protected: Literal["sex", "race"] = "sex"
    #: Also feed the protected column to the model (one-hot).
    include_protected: bool = False
    #: Also feed fnlwgt (the census sampling weight) to the model.
    include_fnlwgt: bool = False
    #: Subsample train/val/test proportionally (group-stratified, seeded) to about this many rows in total.
    max_examples: int | None = Field(default=None, ge=3)


# --------------------------------------------------------------------------------------------------- reading


def _data_folder(options: AdultOptions) -> tuple[Traversable, bool]:
    """The folder to read from and whether it is the packaged copy."""
    if options.path is None:
        return resources.files("fairdistill.data") / "files" / "adult", True
    folder = Path(options.path).expanduser()
    if not folder.is_dir():
        raise DataError(
            f"adult: data folder {folder} does not exist or is not a folder "
            "(expected a folder with adult.data[.gz] and adult.test[.gz])"
        )
    return folder, False


def _find(folder: Traversable, stem: str) -> Traversable:
    for name in (f"{stem}.gz", stem):
        candidate = folder / name
        if candidate.is_file():
            return candidate
    raise DataError(f"adult: missing file {folder}/{stem}.gz (or uncompressed {stem}) — expected the UCI Adult file")


def _read_text(file: Traversable) -> tuple[str, str]:
    """Decoded content and sha256 of the uncompressed bytes."""
    try:
        with file.open("rb") as fh:
            raw = fh.read()
        if file.name.endswith(".gz"):
            raw = gzip.decompress(raw)
        return raw.decode("utf-8"), hashlib.sha256(raw).hexdigest()
    except (OSError, EOFError, UnicodeDecodeError, gzip.BadGzipFile) as exc:
        raise DataError(f"adult: cannot read {file}: {exc}") from None


def _parse(file: Traversable, text: str) -> tuple[dict[str, np.ndarray], dict]:
    """Columns of the complete rows of one UCI file (strings, numbers parsed) and row counts.

    Blank lines and comment lines (starting with ``|``) are skipped; the label's trailing period (adult.test)
    is removed. A row with the wrong number of columns, a non-numeric number or an unknown label is a DataError.
    """
    rows: list[list[str]] = []
    read = 0
    numeric_positions = [COLUMNS.index(c) for c in NUMERIC_COLUMNS]
    for line_no, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("|"):
            continue
        read += 1
        values = [v.strip() for v in stripped.split(",")]
        if len(values) != len(COLUMNS):
            raise DataError(
                f"adult: {file}: line {line_no} has {len(values)} comma-separated columns, expected {len(COLUMNS)} "
                f"({', '.join(COLUMNS)})"
            )
        if MISSING in values:
            continue
        label = values[-1].rstrip(".")
        if label not in CLASS_NAMES:
            raise DataError(f"adult: {file}: line {line_no}: income {values[-1]!r} is not one of {CLASS_NAMES}")
        values[-1] = label
        for pos in numeric_positions:
            try:
                float(values[pos])
            except ValueError:
                raise DataError(
                    f"adult: {file}: line {line_no}: column {COLUMNS[pos]!r} = {values[pos]!r} is not a number"
                ) from None
        rows.append(values)
    if not rows:
        raise DataError(f"adult: {file} has no complete rows")
    table = list(zip(*rows, strict=True))
    columns: dict[str, np.ndarray] = {}
    for i, name in enumerate(COLUMNS):
        columns[name] = np.array(table[i], dtype=np.float64) if name in NUMERIC_COLUMNS else np.array(table[i])
    return columns, {"rows_read": read, "rows_kept": len(rows), "rows_dropped_missing": read - len(rows)}


def _load_file(file: Traversable, stem: str, packaged: bool) -> tuple[dict[str, np.ndarray], dict]:
    text, digest = _read_text(file)
    if packaged and digest != SHA256[stem]:
        raise DataError(
            f"adult: packaged file {file} is corrupted: sha256 of its content is {digest}, expected {SHA256[stem]}"
        )
    columns, counts = _parse(file, text)
    return columns, {"path": str(file), "sha256": digest, "sha256_matches_uci": digest == SHA256[stem], **counts}


# --------------------------------------------------------------------------------------------------- splitting


def _holdout(strata: np.ndarray, fraction: float, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) sorted indices; every ``1/fraction``-th index along the stratum-sorted order is held out."""
    order = stratified_order(strata, rng)
    period = round(1 / fraction)
    held = (np.arange(len(order)) + int(rng.integers(period))) % period == 0
    return np.sort(order[~held]), np.sort(order[held])


def _take(columns: dict[str, np.ndarray], idx: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[idx] for k, v in columns.items()}


# --------------------------------------------------------------------------------------------------- encoding


def _labels(columns: dict[str, np.ndarray], protected: str, file: str) -> tuple[np.ndarray, np.ndarray]:
    y = (columns["income"] == CLASS_NAMES[1]).astype(np.int64)
    values = ATTR_VALUES[protected]
    attr = np.full(len(y), -1, dtype=np.int64)
    for i, value in enumerate(values):
        attr[columns[protected] == value] = i
    if (attr < 0).any():
        unknown = sorted(set(columns[protected][attr < 0].tolist()))
        raise DataError(f"adult: {file}: unexpected {protected} value(s) {unknown}; expected one of {list(values)}")
    return y, attr


class _Encoder:
    """Standardise numeric columns and one-hot encode categorical ones, fitted on the train split."""

    def __init__(self, train: dict[str, np.ndarray], numeric: list[str], categorical: list[str]) -> None:
        self.numeric = numeric
        self.mean = {c: float(train[c].mean()) for c in numeric}
        # A constant column (possible in tiny subsamples) is only centred.
        self.std = {c: float(train[c].std()) or 1.0 for c in numeric}
        self.categories = {c: sorted(set(train[c].tolist())) for c in categorical}
        self.feature_names = list(numeric) + [f"{c}={v}" for c, cats in self.categories.items() for v in cats]

    def __call__(self, columns: dict[str, np.ndarray]) -> torch.Tensor:
        parts = [((columns[c] - self.mean[c]) / self.std[c])[:, None] for c in self.numeric]
        for c, cats in self.categories.items():
            parts.append(columns[c][:, None] == np.array(cats)[None, :])
        x = np.concatenate([p.astype(np.float32) for p in parts], axis=1)
        return torch.from_numpy(x)


# --------------------------------------------------------------------------------------------------- loader


@DATASETS.register("adult", options=AdultOptions, modality="tabular", offline=True)
def load_adult(options: AdultOptions) -> Splits:
    """UCI Adult census income (> 50K), attribute sex or race; test = adult.test, 20% of adult.data as val."""
    folder, packaged = _data_folder(options)
    train_path, test_path = _find(folder, "adult.data"), _find(folder, "adult.test")
    train_cols, train_meta = _load_file(train_path, "adult.data", packaged)
    test_cols, test_meta = _load_file(test_path, "adult.test", packaged)

    protected = options.protected
    num_attrs = len(ATTR_VALUES[protected])
    y_full, attr_full = _labels(train_cols, protected, train_meta["path"])
    group_full = y_full * num_attrs + attr_full

    subsample_rng, split_rng = split_generators(options.split_seed)
    train_idx, val_idx = _holdout(group_full, VAL_FRACTION, split_rng)
    parts = {"train": _take(train_cols, train_idx), "val": _take(train_cols, val_idx), "test": test_cols}
    labels = {
        "train": (y_full[train_idx], attr_full[train_idx]),
        "val": (y_full[val_idx], attr_full[val_idx]),
        "test": _labels(test_cols, protected, test_meta["path"]),
    }

    groups = {name: y * num_attrs + attr for name, (y, attr) in labels.items()}
    for name, keep in subsample_splits(groups, options.max_examples, subsample_rng).items():
        parts[name] = _take(parts[name], keep)
        labels[name] = (labels[name][0][keep], labels[name][1][keep])

    numeric = [c for c in NUMERIC_COLUMNS if c != "fnlwgt" or options.include_fnlwgt]
    categorical = [c for c in CATEGORICAL_COLUMNS if c != protected or options.include_protected]
    encoder = _Encoder(parts["train"], numeric, categorical)

    splits: dict[str, SplitDataset] = {}
    positive_rate: dict[str, float] = {}
    for name, cols in parts.items():
        y_t = torch.from_numpy(labels[name][0])
        attr_t = torch.from_numpy(labels[name][1])
        splits[name] = SplitDataset(
            encodings={DEFAULT_ENCODING: encoder(cols)},
            y=y_t,
            attr=attr_t,
            group=label_attr_group_index(y_t, attr_t, num_attrs),
            name=name,
        )
        positive_rate[name] = float(y_t.float().mean())

    attr_names = ATTR_VALUES[protected]
    info = DatasetInfo(
        name="adult",
        num_classes=2,
        class_names=CLASS_NAMES,
        attr_names=attr_names,
        group_names=label_attr_groups(CLASS_NAMES, attr_names),
        modality="tabular",
        input_shape=(len(encoder.feature_names),),
        attr_label=protected,
    )
    provenance = {
        "dataset": "adult",
        "source": "UCI Machine Learning Repository, Adult (Becker & Kohavi 1996)",
        "doi": "10.24432/C5XW20",
        "licence": "CC BY 4.0",
        "files": {"adult.data": train_meta, "adult.test": test_meta},
        "split": "test = adult.test; 20% of adult.data held out as val, stratified by group, seeded by split_seed",
        "num_examples": {name: len(split) for name, split in splits.items()},
        "positive_rate": positive_rate,
        "num_features": len(encoder.feature_names),
        "feature_names": encoder.feature_names,
        "standardisation": {c: {"mean": encoder.mean[c], "std": encoder.std[c]} for c in numeric},
        "options": options.model_dump(mode="json"),
    }
    return Splits(train=splits["train"], val=splits["val"], test=splits["test"], info=info, provenance=provenance)
