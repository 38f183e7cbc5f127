"""Tests of the bring-your-own-table datasets ``csv`` and ``parquet`` (tables generated in tmp_path).

Expected values are computed by hand from the tiny tables written here, not from the loader's output.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from fairdistill.data import DATASETS, DEFAULT_ENCODING, Splits, load_dataset
from fairdistill.errors import ConfigError, DataError


def _x(split) -> torch.Tensor:
    return split.encodings[DEFAULT_ENCODING]


def _write_csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


# ------------------------------------------------------------------------------------------------ encoding


@pytest.fixture()
def three_files(tmp_path: Path) -> dict[str, Path]:
    """Separate train/val/test files; the train split is exactly the 8 train rows."""
    train = pd.DataFrame(
        {
            "x": [2, 4, 4, 4, 5, 5, 7, 9],  # mean 5, population std 2
            "c": [7, 7, 7, 7, 7, 7, 7, 7],  # constant: std 0 -> only centred
            "colour": ["red", "blue", "red", "green", "red", "blue", "red", "green"],
            "flag": [True, False, True, True, False, False, True, False],
            "sex": ["F", "M", "F", "M", "F", "M", "F", "M"],
            "income": ["no", "yes", "yes", "no", "no", "yes", "yes", "no"],
        }
    )
    val = pd.DataFrame(
        {"x": [9, 1], "c": [9, 7], "colour": ["purple", "green"], "flag": [True, False], "sex": ["M", "F"],
         "income": ["yes", "no"]}
    )  # fmt: skip
    test = pd.DataFrame(
        {"x": [5, 3], "c": [7, 6], "colour": ["blue", "red"], "flag": [False, True], "sex": ["F", "M"],
         "income": ["no", "yes"]}
    )  # fmt: skip
    return {name: _write_csv(tmp_path / f"{name}.csv", frame) for name, frame in
            (("train", train), ("val", val), ("test", test))}  # fmt: skip


def _three(files: dict[str, Path], **extra) -> dict:
    return {**{k: str(v) for k, v in files.items()}, "label": "income", "attr": "sex", **extra}


def test_standardisation_and_one_hot_are_hand_computed(three_files: dict[str, Path]) -> None:
    splits = load_dataset("csv", _three(three_files))
    names = ["x", "c", "colour=blue", "colour=green", "colour=red", "flag=False", "flag=True"]
    assert splits.provenance["feature_names"] == names
    assert splits.info.input_shape == (7,) and splits.info.modality == "tabular"
    expected_train = torch.tensor(
        [
            # x std   c    blue green red  False True
            [-1.5, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0],
            [-0.5, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0],
            [-0.5, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0],
            [-0.5, 0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
            [0.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0],
            [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 0.0],
            [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 1.0],
            [2.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0],
        ]
    )
    assert _x(splits.train).dtype == torch.float32
    assert torch.allclose(_x(splits.train), expected_train, atol=1e-6)
    # val/test use the train statistics: x (9-5)/2 = 2, (1-5)/2 = -2; c 9-7 = 2 (std 0 -> 1); unseen purple -> zeros
    expected_val = torch.tensor([[2.0, 2.0, 0, 0, 0, 0, 1], [-2.0, 0.0, 0, 1, 0, 1, 0]])
    assert torch.allclose(_x(splits.val), expected_val, atol=1e-6)
    expected_test = torch.tensor([[0.0, 0.0, 1, 0, 0, 1, 0], [-1.0, -1.0, 0, 0, 1, 0, 1]])
    assert torch.allclose(_x(splits.test), expected_test, atol=1e-6)
    assert splits.provenance["standardisation"] == {"x": {"mean": 5.0, "std": 2.0}, "c": {"mean": 7.0, "std": 1.0}}
    assert splits.provenance["categories"] == {"colour": ["blue", "green", "red"], "flag": ["False", "True"]}
    # labels and attributes: sorted names, no -> 0, yes -> 1, F -> 0, M -> 1
    assert splits.info.class_names == ("no", "yes") and splits.info.attr_names == ("F", "M")
    assert splits.train.y.tolist() == [0, 1, 1, 0, 0, 1, 1, 0]
    assert splits.train.attr.tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    assert splits.val.y.tolist() == [1, 0] and splits.test.attr.tolist() == [0, 1]
    assert splits.info.attr_label == "sex" and splits.info.name == "csv"
    assert [len(s) for _, s in splits.items()] == [8, 2, 2]
    assert splits.provenance["split"] == "separate train, val and test files"
    json.dumps(splits.provenance, allow_nan=False)


def test_attr_is_an_input_only_with_include_attr(three_files: dict[str, Path]) -> None:
    splits = load_dataset("csv", _three(three_files, include_attr=True))
    names = splits.provenance["feature_names"]
    assert names[-2:] == ["sex=F", "sex=M"] and len(names) == 9
    assert _x(splits.train)[:, -1].tolist() == [0, 1, 0, 1, 0, 1, 0, 1]
    # features: picks and orders the columns; ignore: leaves columns out
    chosen = load_dataset("csv", _three(three_files, features=["colour", "x"]))
    assert chosen.provenance["feature_names"] == ["colour=blue", "colour=green", "colour=red", "x"]
    ignored = load_dataset("csv", _three(three_files, ignore=["colour", "flag"]))
    assert ignored.provenance["feature_names"] == ["x", "c"]
    assert torch.equal(_x(ignored.train)[:, 0], torch.tensor([-1.5, -0.5, -0.5, -0.5, 0.0, 0.0, 1.0, 2.0]))


def test_string_labels_map_to_sorted_class_names_and_derived_groups(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"f": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "animal": ["cat", "ant", "bee", "cat", "bee", "ant"],
         "zone": ["south", "north", "north", "south", "south", "north"]}
    )  # fmt: skip
    files = {k: _write_csv(tmp_path / f"{k}.csv", frame) for k in ("train", "val", "test")}
    splits = load_dataset("csv", {**{k: str(v) for k, v in files.items()}, "label": "animal", "attr": "zone"})
    info = splits.info
    assert info.class_names == ("ant", "bee", "cat") and info.num_classes == 3
    assert info.attr_names == ("north", "south")
    assert info.group_names == ("ant|north", "ant|south", "bee|north", "bee|south", "cat|north", "cat|south")
    assert splits.train.y.tolist() == [2, 0, 1, 2, 1, 0]
    assert splits.train.attr.tolist() == [1, 0, 0, 1, 1, 0]
    assert splits.train.group.tolist() == [5, 0, 2, 5, 3, 0]  # y * 2 + attr
    assert splits.provenance["columns"]["groups"] == "(label, attr)"


def test_integer_labels_and_explicit_group_columns(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"f": [0.5, 1.5, 2.5, 3.5], "y": [2, 0, 1, 0], "a": [1, 0, 0, 1], "g": ["late", "early", "late", "mid"]}
    )
    files = {k: _write_csv(tmp_path / f"{k}.csv", frame) for k in ("train", "val", "test")}
    base = {**{k: str(v) for k, v in files.items()}, "label": "y", "attr": "a"}
    splits = load_dataset("csv", {**base, "group": "g"})
    assert splits.info.class_names == ("0", "1", "2") and splits.info.attr_names == ("0", "1")
    assert splits.info.group_names == ("early", "late", "mid")
    assert splits.train.group.tolist() == [1, 0, 1, 2]
    assert splits.train.y.tolist() == [2, 0, 1, 0] and splits.train.attr.tolist() == [1, 0, 0, 1]
    assert splits.provenance["feature_names"] == ["f"]  # the group column is never an input
    assert splits.provenance["group_counts"]["train"] == [1, 2, 1]
    # num_classes leaves room for a class with no rows
    wide = load_dataset("csv", {**base, "num_classes": 4})
    assert wide.info.class_names == ("0", "1", "2", "3") and wide.info.num_groups == 8
    assert wide.train.group.tolist() == [5, 0, 2, 1]
    # integer group ids
    frame.assign(g=[1, 0, 1, 2]).to_csv(files["train"], index=False)
    frame.assign(g=[1, 0, 1, 2]).to_csv(files["val"], index=False)
    frame.assign(g=[1, 0, 1, 2]).to_csv(files["test"], index=False)
    ints = load_dataset("csv", {**base, "group": "g"})
    assert ints.info.group_names == ("0", "1", "2") and ints.train.group.tolist() == [1, 0, 1, 2]


# ------------------------------------------------------------------------------------------------ splitting


def _grouped_table(counts: dict[tuple[str, str], int]) -> pd.DataFrame:
    rows = []
    for (label, attr), n in counts.items():
        rows += [(label, attr) for _ in range(n)]
    frame = pd.DataFrame(rows, columns=["label", "attr"])
    frame.insert(0, "rid", np.arange(len(frame)))  # a numeric feature that identifies the row
    return frame


def _row_ids(splits: Splits, split) -> list[int]:
    stats = splits.provenance["standardisation"]["rid"]
    rid = _x(split)[:, 0].double() * stats["std"] + stats["mean"]
    assert torch.allclose(rid, rid.round(), atol=1e-3)
    return rid.round().long().tolist()


def test_single_file_split_is_stratified_60_20_20(tmp_path: Path) -> None:
    counts = {("no", "a"): 40, ("no", "b"): 30, ("yes", "a"): 20, ("yes", "b"): 10}
    path = _write_csv(tmp_path / "all.csv", _grouped_table(counts))
    splits = load_dataset("csv", {"path": str(path), "label": "label", "attr": "attr"})
    assert [len(s) for _, s in splits.items()] == [60, 20, 20]
    for (_, split), share in zip(splits.items(), (0.6, 0.2, 0.2), strict=True):
        per_group = torch.bincount(split.group, minlength=4).tolist()
        for got, total in zip(per_group, counts.values(), strict=True):
            assert abs(got - total * share) <= 1, (split.name, per_group)
    ids = [_row_ids(splits, s) for _, s in splits.items()]
    assert sorted(sum(ids, [])) == list(range(100))  # the splits partition the file's rows
    # every row keeps its own label: rows 0-69 are "no", 70-99 "yes"; 0-39 and 70-89 are attr "a"
    for (_, split), rid in zip(splits.items(), ids, strict=True):
        assert split.y.tolist() == [int(r >= 70) for r in rid]
        assert split.attr.tolist() == [int(not (r < 40 or 70 <= r < 90)) for r in rid]
    assert splits.provenance["files"]["path"]["path"] == str(path.resolve())

    custom = load_dataset(
        "csv", {"path": str(path), "label": "label", "attr": "attr", "split_fractions": [0.5, 0.3, 0.2]}
    )
    assert [len(s) for _, s in custom.items()] == [50, 30, 20]


def test_split_is_deterministic_per_split_seed(tmp_path: Path) -> None:
    counts = {("no", "a"): 40, ("no", "b"): 30, ("yes", "a"): 20, ("yes", "b"): 10}
    path = _write_csv(tmp_path / "all.csv", _grouped_table(counts))
    options = {"path": str(path), "label": "label", "attr": "attr"}
    first, again = load_dataset("csv", options), load_dataset("csv", {**options, "split_seed": 0})
    for (_, a), (_, b) in zip(first.items(), again.items(), strict=True):
        assert torch.equal(_x(a), _x(b)) and torch.equal(a.y, b.y) and torch.equal(a.group, b.group)
    other = load_dataset("csv", {**options, "split_seed": 1})
    assert sorted(_row_ids(other, other.val)) != sorted(_row_ids(first, first.val))
    assert [len(s) for _, s in other.items()] == [60, 20, 20]


def test_val_is_held_out_of_the_train_file(tmp_path: Path) -> None:
    train = _grouped_table({("no", "a"): 20, ("no", "b"): 15, ("yes", "a"): 10, ("yes", "b"): 5})
    test = _grouped_table({("no", "a"): 3, ("yes", "b"): 4})
    options = {"train": str(_write_csv(tmp_path / "train.csv", train)),
               "test": str(_write_csv(tmp_path / "test.csv", test)), "label": "label", "attr": "attr"}  # fmt: skip
    splits = load_dataset("csv", options)
    assert [len(s) for _, s in splits.items()] == [40, 10, 7]
    val_groups = torch.bincount(splits.val.group, minlength=4).tolist()
    assert all(abs(got - n * 0.2) <= 1 for got, n in zip(val_groups, (20, 15, 10, 5), strict=True))
    assert sorted(_row_ids(splits, splits.train) + _row_ids(splits, splits.val)) == list(range(50))
    assert splits.test.y.tolist() == [0, 0, 0, 1, 1, 1, 1]
    quarter = load_dataset("csv", {**options, "val_fraction": 0.25})
    assert [len(s) for _, s in quarter.items()] == [37, 13, 7] or [len(s) for _, s in quarter.items()] == [38, 12, 7]


def test_max_examples_subsamples_every_split(tmp_path: Path) -> None:
    counts = {("no", "a"): 400, ("no", "b"): 300, ("yes", "a"): 200, ("yes", "b"): 100}
    path = _write_csv(tmp_path / "all.csv", _grouped_table(counts))
    small = load_dataset("csv", {"path": str(path), "label": "label", "attr": "attr", "max_examples": 100})
    assert [len(s) for _, s in small.items()] == [60, 20, 20]
    assert torch.bincount(small.train.group, minlength=4).tolist() == [24, 18, 12, 6]


# ------------------------------------------------------------------------------------------------ parquet


def test_parquet_round_trip_equals_csv(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "height": rng.normal(170, 10, 60).round(1),
            "city": rng.choice(["Oslo", "Lima", "Pune"], 60),
            "smoker": rng.choice([True, False], 60),
            "sex": rng.choice(["F", "M"], 60),
            "outcome": rng.choice(["ill", "well"], 60),
        }
    )
    csv = _write_csv(tmp_path / "t.csv", frame)
    frame.to_parquet(tmp_path / "t.parquet", index=False)
    options = {"label": "outcome", "attr": "sex", "split_seed": 3}
    a = load_dataset("csv", {"path": str(csv), **options})
    b = load_dataset("parquet", {"path": str(tmp_path / "t.parquet"), **options})
    assert b.info.name == "parquet" and b.info.modality == "tabular"
    assert {k: v for k, v in vars(a.info).items() if k != "name"} == {
        k: v for k, v in vars(b.info).items() if k != "name"
    }
    for (_, sa), (_, sb) in zip(a.items(), b.items(), strict=True):
        assert torch.equal(_x(sa), _x(sb))
        assert torch.equal(sa.y, sb.y) and torch.equal(sa.attr, sb.attr) and torch.equal(sa.group, sb.group)
    assert a.provenance["feature_names"] == b.provenance["feature_names"]
    assert b.provenance["files"]["path"]["path"] == str((tmp_path / "t.parquet").resolve())


def test_registry_lists_csv_and_parquet() -> None:
    assert {"csv", "parquet"} <= set(DATASETS.names())
    assert DATASETS.get("csv").meta["modality"] == "tabular" == DATASETS.get("parquet").meta["modality"]


# ------------------------------------------------------------------------------------------------ errors


@pytest.fixture()
def small_csv(tmp_path: Path) -> Path:
    frame = pd.DataFrame(
        {"a": [1.0, 2.0, 3.0, 4.0, 5.0, 6.0], "b": ["u", "v", "u", "v", "u", "v"], "sex": [0, 1, 0, 1, 0, 1],
         "income": [0, 1, 1, 0, 0, 1]}
    )  # fmt: skip
    return _write_csv(tmp_path / "small.csv", frame)


def _error(name: str, options: dict) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(name, options)
    return str(info.value)


def test_missing_column_lists_the_columns(small_csv: Path) -> None:
    message = _error("csv", {"path": str(small_csv), "label": "incme", "attr": "sex"})
    assert f"{small_csv}: no column 'incme' (label)" in message
    assert "columns are: a, b, sex, income" in message and "did you mean 'income'" in message
    message = _error("csv", {"path": str(small_csv), "label": "income", "attr": "gender"})
    assert "no column 'gender' (attr)" in message and str(small_csv) in message
    message = _error("csv", {"path": str(small_csv), "label": "income", "attr": "sex", "group": "g"})
    assert "no column 'g' (group)" in message
    message = _error("csv", {"path": str(small_csv), "label": "income", "attr": "sex", "features": ["a", "zz"]})
    assert "no column 'zz' (features)" in message and "columns are: a, b, sex, income" in message


def test_missing_file_names_the_resolved_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    message = _error("csv", {"path": "data/nope.csv", "label": "y", "attr": "a"})
    assert "file not found" in message and str(tmp_path.resolve() / "data" / "nope.csv") in message
    message = _error("parquet", {"train": "tr.parquet", "test": "te.parquet", "label": "y", "attr": "a"})
    assert str(tmp_path.resolve() / "tr.parquet") in message


def test_relative_paths_resolve_against_the_current_directory(small_csv: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(small_csv.parent)
    splits = load_dataset("csv", {"path": small_csv.name, "label": "income", "attr": "sex"})
    assert splits.provenance["files"]["path"]["path"] == str(small_csv.resolve())
    assert splits.provenance["options"]["path"] == small_csv.name


def test_unreadable_and_empty_files(tmp_path: Path, small_csv: Path) -> None:
    garbage = tmp_path / "garbage.parquet"
    garbage.write_bytes(b"\x00\xffnot a parquet file\x13\x37" * 20)
    message = _error("parquet", {"path": str(garbage), "label": "y", "attr": "a"})
    assert str(garbage) in message and "cannot read" in message and "Parquet" in message
    message = _error("parquet", {"path": str(small_csv), "label": "y", "attr": "a"})
    assert "use data.name: csv" in message
    pd.read_csv(small_csv).to_parquet(tmp_path / "real.parquet")
    (tmp_path / "real.csv").write_bytes((tmp_path / "real.parquet").read_bytes())
    message = _error("csv", {"path": str(tmp_path / "real.csv"), "label": "y", "attr": "a"})
    assert "is a Parquet file" in message
    (tmp_path / "empty.csv").write_text("")
    message = _error("csv", {"path": str(tmp_path / "empty.csv"), "label": "y", "attr": "a"})
    assert str(tmp_path / "empty.csv") in message and "empty" in message
    (tmp_path / "header.csv").write_text("a,y\n")
    message = _error("csv", {"path": str(tmp_path / "header.csv"), "label": "y", "attr": "a"})
    assert "no rows" in message and str(tmp_path / "header.csv") in message
    pd.DataFrame({"y": pd.Series([], dtype="int64"), "a": pd.Series([], dtype="int64")}).to_parquet(
        tmp_path / "zero.parquet"
    )
    assert "no rows" in _error("parquet", {"path": str(tmp_path / "zero.parquet"), "label": "y", "attr": "a"})
    (tmp_path / "bytes.csv").write_bytes(bytes(range(256)) * 4)
    message = _error("csv", {"path": str(tmp_path / "bytes.csv"), "label": "y", "attr": "a"})
    assert str(tmp_path / "bytes.csv") in message


def test_label_out_of_range_names_file_column_and_spreadsheet_rows(tmp_path: Path) -> None:
    frame = pd.DataFrame({"f": [1, 2, 3, 4, 5, 6], "y": [0, 1, 0, 5, 1, -1], "a": [0, 1, 0, 1, 0, 1]})
    path = _write_csv(tmp_path / "bad.csv", frame)
    message = _error("csv", {"path": str(path), "label": "y", "attr": "a", "num_classes": 2})
    # data rows 4 and 6 (1-based) are spreadsheet rows 5 and 7 below the header row
    assert str(path) in message and "label column 'y'" in message and "0..1 (num_classes: 2)" in message
    assert "rows 5 (value 5), 7 (value -1)" in message and "row 1 is the header" in message
    # without num_classes: negative ids are reported the same way
    message = _error("csv", {"path": str(path), "label": "y", "attr": "a"})
    assert "row 7 (value -1)" in message and "label column 'y'" in message


def test_label_gaps_and_fractions_are_errors(tmp_path: Path) -> None:
    frame = pd.DataFrame({"f": [1, 2, 3, 4, 5], "y": [0, 1, 3, 0, 1], "a": [0, 1, 0, 1, 0]})
    path = _write_csv(tmp_path / "gap.csv", frame)
    message = _error("csv", {"path": str(path), "label": "y", "attr": "a"})
    assert "label column 'y'" in message and "num_classes: 4" in message and "row 4" in message
    assert "value(s) 2 never occur" in message
    ok = load_dataset("csv", {"path": str(path), "label": "y", "attr": "a", "num_classes": 4})
    assert ok.info.class_names == ("0", "1", "2", "3")
    frame.assign(y=[0, 1, 0.5, 0, 1]).to_csv(path, index=False)
    message = _error("csv", {"path": str(path), "label": "y", "attr": "a"})
    assert "whole numbers" in message and "row 4 (value 0.5)" in message
    frame.assign(y=[0, 0, 0, 0, 0]).to_csv(path, index=False)
    assert "at least 2" in _error("csv", {"path": str(path), "label": "y", "attr": "a"})


def test_attr_out_of_range_is_reported_like_the_label(tmp_path: Path) -> None:
    frame = pd.DataFrame({"f": [1, 2, 3, 4], "y": [0, 1, 0, 1], "a": [0, 1, 2, 3]})
    path = _write_csv(tmp_path / "attr.csv", frame)
    message = _error("csv", {"path": str(path), "label": "y", "attr": "a", "num_attrs": 2})
    assert str(path) in message and "attr column 'a'" in message and "rows 4 (value 2), 5 (value 3)" in message


def test_missing_values_error_or_drop(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    frame = pd.DataFrame(
        {
            "f": [1.0, None, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0],
            "c": ["p", "q", "p", None, "q", "p", "q", "p", "q", "p"],
            "y": [0, 1] * 5,
            "a": [0, 0, 1, 1] * 2 + [0, 1],
        }
    )
    path = _write_csv(tmp_path / "holes.csv", frame)
    options = {"path": str(path), "label": "y", "attr": "a"}
    message = _error("csv", options)
    assert str(path) in message and "missing values" in message
    assert "'f' at row 3" in message and "'c' at row 5" in message and "row 1 is the header" in message
    assert "missing: drop" in message and "ignore:" in message
    with caplog.at_level(logging.WARNING, logger="fairdistill"):
        splits = load_dataset("csv", {**options, "missing": "drop"})
    assert sum(len(s) for _, s in splits.items()) == 8
    assert "dropped 2 of 10 rows" in caplog.text
    assert splits.provenance["files"]["path"]["rows_dropped_missing"] == 2
    # the ignored column's holes do not matter
    assert sum(len(s) for _, s in load_dataset("csv", {**options, "ignore": ["c"], "missing": "drop"}).items()) == 9


def test_missing_label_is_an_error_too(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "nolabel.csv", pd.DataFrame({"f": [1, 2, 3], "y": ["a", None, "b"], "a": [0, 1, 0]}))
    message = _error("csv", {"path": str(path), "label": "y", "attr": "a"})
    assert "'y' at row 3" in message and str(path) in message
    assert "ignore:" not in message  # the label cannot be left out


def test_infinite_values_list_the_first_ten_rows_and_a_count(tmp_path: Path) -> None:
    values = [1.0] * 30
    bad = [2, 4, 5, 7, 8, 10, 11, 13, 17, 19, 20, 23]  # 0-based data rows; 12 of them
    for i in bad:
        values[i] = math.inf if i % 2 else -math.inf
    frame = pd.DataFrame({"f": values, "y": [0, 1] * 15, "a": [0, 0, 1] * 10})
    path = _write_csv(tmp_path / "inf.csv", frame)
    message = _error("csv", {"path": str(path), "label": "y", "attr": "a"})
    assert str(path) in message and "column 'f' has infinite values" in message
    assert "rows 4 (value -inf), 6 (value -inf), 7 (value inf)" in message
    assert "19 (value inf), 21 (value inf) (first 10 of 12 rows; row 1 is the header)" in message
    assert "22 (value" not in message
    # parquet reports data rows counted from 1
    frame.to_parquet(tmp_path / "inf.parquet")
    message = _error("parquet", {"path": str(tmp_path / "inf.parquet"), "label": "y", "attr": "a"})
    assert "rows 3 (value -inf)" in message and "data rows counted from 1" in message


def test_numeric_train_column_with_text_in_test(tmp_path: Path) -> None:
    train = pd.DataFrame({"f": [1, 2, 3, 4, 5], "y": [0, 1, 0, 1, 0], "a": [0, 1, 1, 0, 0]})
    test = pd.DataFrame({"f": ["1", "?", "3"], "y": [0, 1, 0], "a": [0, 1, 0]})
    options = {"train": str(_write_csv(tmp_path / "train.csv", train)),
               "test": str(_write_csv(tmp_path / "test.csv", test)), "label": "y", "attr": "a"}  # fmt: skip
    message = _error("csv", options)
    assert str(tmp_path / "test.csv") in message and "column 'f'" in message and "row 3 (value '?')" in message
    # na_values turns '?' into a missing value, and missing: drop drops it
    splits = load_dataset("csv", {**options, "na_values": ["?"], "missing": "drop"})
    assert len(splits.test) == 2
    # a test file without a feature column
    _write_csv(tmp_path / "test.csv", test.drop(columns="f"))
    message = _error("csv", options)
    assert f"{tmp_path / 'test.csv'}: no column 'f' (feature)" in message


def test_date_columns_must_be_ignored(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {"when": pd.date_range("2024-01-01", periods=6), "f": range(6), "y": [0, 1] * 3, "a": [0, 0, 1, 1, 0, 1]}
    )
    frame.to_parquet(tmp_path / "dates.parquet")
    message = _error("parquet", {"path": str(tmp_path / "dates.parquet"), "label": "y", "attr": "a"})
    assert "'when'" in message and "ignore:" in message
    ok = load_dataset(
        "parquet", {"path": str(tmp_path / "dates.parquet"), "label": "y", "attr": "a", "ignore": ["when"]}
    )
    assert ok.provenance["feature_names"] == ["f"]


def test_too_few_rows_to_split(tmp_path: Path) -> None:
    path = _write_csv(tmp_path / "two.csv", pd.DataFrame({"f": [1, 2], "y": [0, 1], "a": [0, 1]}))
    message = _error("csv", {"path": str(path), "label": "y", "attr": "a"})
    assert "split would be empty" in message and str(path) in message


def test_options_are_validated(small_csv: Path) -> None:
    base = {"path": str(small_csv), "label": "income", "attr": "sex"}
    cases = [
        ({**base, "bogus": 1}, "data.bogus: unknown field"),
        ({"path": str(small_csv), "attr": "sex"}, "data.label: required field is missing"),
        ({**base, "attr": "income"}, "same column 'income'"),
        ({**base, "train": "x.csv"}, "not both"),
        ({"label": "income", "attr": "sex"}, "no data file"),
        ({"train": "a.csv", "label": "income", "attr": "sex"}, "missing test"),
        ({**base, "features": ["a", "sex"]}, "include_attr: true"),
        ({**base, "features": ["a", "a"]}, "more than once"),
        ({**base, "features": ["a"], "ignore": ["b"]}, "not both"),
        ({**base, "split_fractions": [0.5, 0.5, 0.5]}, "data.split_fractions"),
        ({**base, "val_fraction": 0.3}, "val_fraction applies only"),
        ({**base, "missing": "fill"}, "data.missing"),
        ({**base, "num_classes": 1}, "data.num_classes"),
    ]
    for options, expected in cases:
        with pytest.raises(ConfigError, match=expected):
            load_dataset("csv", options)
    with pytest.raises(ConfigError, match="data.sep: unknown field"):
        load_dataset("parquet", {**base, "sep": ";"})


def test_csv_options_sep_and_encoding(tmp_path: Path) -> None:
    text = "größe;stadt;y;a\n1,5;Köln;0;0\n2,5;Graz;1;1\n3,5;Köln;1;0\n4,5;Graz;0;1\n5,5;Köln;0;1\n"
    (tmp_path / "semi.csv").write_bytes(text.replace(",", ".").encode("latin-1"))
    options = {"path": str(tmp_path / "semi.csv"), "label": "y", "attr": "a", "sep": ";"}
    message = _error("csv", options)
    assert "encoding" in message
    splits = load_dataset("csv", {**options, "encoding": "latin-1"})
    assert splits.provenance["feature_columns"] == {"größe": "numeric", "stadt": "categorical"}


# ------------------------------------------------------------------------------------------------ end to end


def test_a_tiny_run_on_a_csv_table(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from fairdistill.config import load_config
    from fairdistill.experiment import run

    rng = np.random.default_rng(0)
    n = 160
    sex = rng.choice(["F", "M"], n)
    hours = rng.normal(40, 8, n).round()
    job = rng.choice(["clerk", "nurse", "engineer"], n)
    income = np.where(hours + (job == "engineer") * 10 + rng.normal(0, 5, n) > 45, ">50K", "<=50K")
    _write_csv(tmp_path / "people.csv", pd.DataFrame({"hours": hours, "job": job, "sex": sex, "income": income}))
    base = {
        "name": "table",
        "data": {"name": "colored-mnist"},
        "teacher": {"train": {"epochs": 1, "batch_size": 32}},
        "student": {"train": {"epochs": 1, "batch_size": 32}},
        "methods": [{"name": "erm"}, {"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}}],
        "output": str(tmp_path / "runs"),
        "device": "cpu",
    }
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    monkeypatch.chdir(tmp_path)  # the table's path is relative to the current directory
    overrides = ["data.name=csv", "data.path=people.csv", "data.label=income", "data.attr=sex"]
    result = run(load_config(tmp_path / "base.yaml", overrides))
    metrics = json.loads((result.run_dir / "metrics.json").read_text())
    assert metrics["dataset"]["name"] == "csv"
    assert list(metrics["models"]) == ["teacher", "erm", "kd"]
    assert metrics["models"]["teacher"]["params"] > metrics["models"]["kd"]["params"]  # the default MLPs
    text = json.dumps(metrics)
    assert str(tmp_path / "people.csv") in text and "job=engineer" in text
    assert set(metrics["models"]["kd"]["splits"]["test"]["group_accuracy"]) == {
        "<=50K|F", "<=50K|M", ">50K|F", ">50K|M"
    }  # fmt: skip
