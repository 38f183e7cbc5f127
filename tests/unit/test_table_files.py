"""Tests of :mod:`fairdistill.data.table_files`, the reading, row numbering, id coding and splitting shared by the
``csv`` / ``parquet`` and ``text-table`` loaders, on tiny files written here; expected values are worked out by
hand from those files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fairdistill.data.table_files import (
    CsvReading,
    TableFile,
    code_ids,
    read_table_file,
    split_files,
    split_generators,
)
from fairdistill.errors import DataError


def _read(path: Path, fmt, role: str = "path", **kwargs) -> TableFile:
    return read_table_file("csv" if fmt == "csv" else fmt, role, str(path), fmt, **kwargs)


# ------------------------------------------------------------------------------------------------ row numbers


def test_row_numbers_are_what_the_user_sees_in_csv_parquet_and_jsonl(tmp_path: Path) -> None:
    frame = pd.DataFrame({"f": [10, 20, 30], "y": ["a", "b", "a"]})
    frame.to_csv(tmp_path / "t.csv", index=False)
    frame.to_parquet(tmp_path / "t.parquet")
    (tmp_path / "t.jsonl").write_text('{"f": 10, "y": "a"}\n\n{"f": 20, "y": "b"}\n{"f": 30, "y": "a"}\n')

    csv = _read(tmp_path / "t.csv", "csv")
    # line 1 of the CSV is the header: the data rows are spreadsheet rows 2, 3, 4
    assert csv.numbers.tolist() == [2, 3, 4] and csv.rows_read == 3
    assert csv.at([0, 2], [10, 30]) == "rows 2 (value 10), 4 (value 30) (2 rows; row 1 is the header)"
    parquet = _read(tmp_path / "t.parquet", "parquet")
    assert parquet.numbers.tolist() == [1, 2, 3]
    assert parquet.at([1]) == "row 2 (1 row; data rows counted from 1)"
    jsonl = _read(tmp_path / "t.jsonl", "jsonl", style="short")
    assert jsonl.numbers.tolist() == [1, 3, 4]  # line 2 is blank
    assert jsonl.at([1, 2]) == "line(s) 3, 4"
    short_csv = _read(tmp_path / "t.csv", "csv", style="short")
    assert short_csv.at([0, 2], [10, 30]) == "row(s) 2, 4 (row 1 = header)"  # the short style shows no values
    assert _read(tmp_path / "t.parquet", "parquet", style="short").at([0]) == "data row(s) 1 (counted from 1)"


def test_a_subset_still_names_the_rows_of_the_file(tmp_path: Path) -> None:
    pd.DataFrame({"f": range(14)}).to_csv(tmp_path / "t.csv", index=False)
    file = _read(tmp_path / "t.csv", "csv")
    part = file.subset(np.array([1, 3, 13]), "val")
    assert part.role == "val" and part.frame["f"].tolist() == [1, 3, 13]
    assert part.at(part.frame.index) == "rows 3, 5, 15 (3 rows; row 1 is the header)"
    # at most 10 rows are listed, then a count
    assert file.at(file.frame.index) == (
        "rows 2, 3, 4, 5, 6, 7, 8, 9, 10, 11 (first 10 of 14 rows; row 1 is the header)"
    )


def test_reading_errors_name_the_file_and_option(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match=r"csv: file not found: .*missing\.csv \(from data\.train: 'missing\.csv'"):
        read_table_file("csv", "train", "missing.csv", "csv")
    (tmp_path / "empty.csv").write_bytes(b"")
    with pytest.raises(DataError, match=r"empty\.csv is empty \(0 bytes\)"):
        read_table_file("csv", "path", "empty.csv", "csv")
    (tmp_path / "header.csv").write_text("f,y\n")
    with pytest.raises(DataError, match=r"header\.csv has a header \(f, y\) but no rows"):
        read_table_file("csv", "path", "header.csv", "csv")
    pd.DataFrame({"f": [1]}).to_parquet(tmp_path / "real.parquet")
    with pytest.raises(DataError, match=r"is a Parquet file, not CSV; use data\.format: parquet"):
        read_table_file("text-table", "path", "real.parquet", "csv", format_option="data.format")


def test_csv_as_text_keeps_cells_as_written(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text("y;n\n 2;NA\n;x\n")
    typed = _read(tmp_path / "t.csv", "csv", csv=CsvReading(sep=";"))
    assert typed.frame["y"].isna().tolist() == [False, True] and typed.frame["n"].isna().tolist() == [True, False]
    text = _read(tmp_path / "t.csv", "csv", csv=CsvReading(sep=";", as_text=True))
    assert text.frame["y"].tolist() == [" 2", ""] and text.frame["n"].tolist() == ["NA", "x"]


# ------------------------------------------------------------------------------------------------ ids


def _file(tmp_path: Path, name: str, **columns) -> TableFile:
    path = tmp_path / name
    pd.DataFrame(columns).to_parquet(path)
    return read_table_file("parquet", name.split(".")[0], str(path), "parquet")


def test_text_values_are_coded_in_sorted_order_over_all_files(tmp_path: Path) -> None:
    train = _file(tmp_path, "train.parquet", y=["pear", "apple", "fig", "apple"])
    test = _file(tmp_path, "test.parquet", y=["banana", "pear"])
    codes, names = code_ids([train, test], "y", "label", "num_classes", None, 2)
    # apple < banana < fig < pear (banana only occurs in the test file)
    assert names == ("apple", "banana", "fig", "pear")
    assert codes[0].tolist() == [3, 0, 2, 0] and codes[1].tolist() == [1, 3]
    # text sorts as text: "10" < "2" < "9"
    codes, names = code_ids([_file(tmp_path, "n.parquet", y=["9", "10", "2"])], "y", "label", "num_classes", None, 2)
    assert names == ("10", "2", "9") and codes[0].tolist() == [2, 0, 1]
    # booleans are names: False = 0, True = 1
    codes, names = code_ids([_file(tmp_path, "b.parquet", y=[True, False, True])], "y", "label", "num_classes", None, 2)
    assert names == ("False", "True") and codes[0].tolist() == [1, 0, 1]


def test_integer_ids_and_their_count(tmp_path: Path) -> None:
    file = _file(tmp_path, "t.parquet", y=[2, 0, 1, 0])
    codes, names = code_ids([file], "y", "label", "num_classes", None, 2)
    assert names == ("0", "1", "2") and codes[0].tolist() == [2, 0, 1, 0]
    codes, names = code_ids([file], "y", "label", "num_classes", 5, 2)  # num_classes leaves room for empty ids
    assert names == ("0", "1", "2", "3", "4") and codes[0].tolist() == [2, 0, 1, 0]
    gap = _file(tmp_path, "gap.parquet", y=[0, 3, 1, 3])
    with pytest.raises(DataError) as info:
        code_ids([gap], "y", "label", "num_classes", None, 2)
    message = str(info.value)
    # the largest id, 3, sits in data rows 2 and 4; id 2 has no row
    assert "holds integer ids up to 3" in message and "rows 2, 4 (2 rows; data rows counted from 1)" in message
    assert "no row with id(s) [2]" in message and "set num_classes: 4" in message
    negative = _file(tmp_path, "neg.parquet", y=[0, 1, -1, 1])
    with pytest.raises(DataError, match=r"negative id -1 at row 3 \(value -1\) \(1 row; data rows counted from 1\)"):
        code_ids([negative], "y", "label", "num_classes", None, 2)
    with pytest.raises(DataError, match=r"outside 0\.\.1 \(num_classes: 2\) at rows 2 \(value 3\), 4 \(value 3\)"):
        code_ids([gap], "y", "label", "num_classes", 2, 2)


def test_integer_values_are_found_in_text_cells(tmp_path: Path) -> None:
    """Cells read as text: integer text (spaces and a sign allowed) and whole numbers are ids; names are stripped."""
    ints = _file(tmp_path, "i.parquet", y=[" 2", "0", "+1", "1"])
    codes, names = code_ids([ints], "y", "label", "num_classes", None, 2, integers="integer values")
    assert names == ("0", "1", "2") and codes[0].tolist() == [2, 0, 1, 1]
    mixed = _file(tmp_path, "m.parquet", y=[" b", "a ", "2", "a"])  # one non-integer: all are names
    codes, names = code_ids([mixed], "y", "label", "num_classes", None, 2, integers="integer values")
    assert names == ("2", "a", "b") and codes[0].tolist() == [2, 1, 0, 1]
    with pytest.raises(DataError, match="has only 1 distinct value"):
        code_ids([_file(tmp_path, "o.parquet", y=["x", " x"])], "y", "label", "num_classes", None, 2,
                 integers="integer values")  # fmt: skip


# ------------------------------------------------------------------------------------------------ splits


def _grouped(tmp_path: Path, name: str, sizes: list[int]) -> tuple[TableFile, np.ndarray]:
    """A CSV file whose rows are group 0 (sizes[0] rows), then group 1, ...; and its group ids."""
    groups = np.repeat(np.arange(len(sizes)), sizes)
    pd.DataFrame({"g": groups}).to_csv(tmp_path / name, index=False)
    role = name.split(".")[0]
    return read_table_file("csv", role, str(tmp_path / name), "csv"), groups


def test_one_file_is_split_60_20_20_within_every_group(tmp_path: Path) -> None:
    sizes = [10, 20, 30, 40]
    file, groups = _grouped(tmp_path, "path.csv", sizes)
    rows = split_files([file], [groups], fractions=(0.6, 0.2, 0.2), val_fraction=0.2, split_seed=0, max_examples=None)
    assert [len(rows.parts[s][1]) for s in ("train", "val", "test")] == [60, 20, 20]
    for name, share in (("train", 0.6), ("val", 0.2), ("test", 0.2)):
        k, idx = rows.parts[name]
        per_group = np.bincount(groups[idx], minlength=4)
        assert k == 0 and all(abs(got - m * share) <= 1 for got, m in zip(per_group, sizes, strict=True)), per_group
    everything = np.concatenate([rows.parts[s][1] for s in ("train", "val", "test")])
    assert sorted(everything.tolist()) == list(range(100))  # a partition of the file's rows
    assert rows.description.startswith("one file split 0.6/0.2/0.2 into train/val/test")
    again = split_files([file], [groups], fractions=(0.6, 0.2, 0.2), val_fraction=0.2, split_seed=0, max_examples=None)
    assert all(np.array_equal(rows.parts[s][1], again.parts[s][1]) for s in rows.parts)


def test_val_held_out_of_the_train_file_and_three_files_as_given(tmp_path: Path) -> None:
    train, g_train = _grouped(tmp_path, "train.csv", [25, 25])
    test, g_test = _grouped(tmp_path, "test.csv", [3, 4])
    rows = split_files(
        [train, test], [g_train, g_test], fractions=(0.6, 0.2, 0.2), val_fraction=0.2, split_seed=1, max_examples=None
    )
    assert [len(rows.parts[s][1]) for s in ("train", "val", "test")] == [40, 10, 7]
    assert rows.parts["val"][0] == 0 and rows.parts["test"] == (1, rows.parts["test"][1])
    assert all(abs(c - 5) <= 1 for c in np.bincount(g_train[rows.parts["val"][1]]))  # 20% of 25 per group
    assert rows.parts["test"][1].tolist() == list(range(7))
    val, g_val = _grouped(tmp_path, "val.csv", [2, 2])
    three = split_files(
        [train, val, test], [g_train, g_val, g_test], fractions=(0.6, 0.2, 0.2), val_fraction=0.2, split_seed=1,
        max_examples=None,
    )  # fmt: skip
    assert {s: (k, len(idx)) for s, (k, idx) in three.parts.items()} == {
        "train": (0, 50),
        "val": (1, 4),
        "test": (2, 7),
    }
    assert three.description == "separate train, val and test files"


def test_max_examples_subsamples_each_split_and_keeps_the_split(tmp_path: Path) -> None:
    file, groups = _grouped(tmp_path, "path.csv", [400, 300, 200, 100])
    options = {"fractions": (0.6, 0.2, 0.2), "val_fraction": 0.2, "split_seed": 3}
    full = split_files([file], [groups], max_examples=None, **options)
    small = split_files([file], [groups], max_examples=100, **options)
    # 100 of 1000 rows: 60 / 20 / 20, and about 10% of each group of the train split (240, 180, 120, 60 rows)
    assert [len(small.parts[s][1]) for s in ("train", "val", "test")] == [60, 20, 20]
    per_group = np.bincount(groups[small.parts["train"][1]], minlength=4)
    assert all(abs(got - want) <= 1 for got, want in zip(per_group, (24, 18, 12, 6), strict=True)), per_group
    # the split is drawn from its own generator: subsampling only removes rows from each split
    for s in ("train", "val", "test"):
        assert set(small.parts[s][1].tolist()) <= set(full.parts[s][1].tolist())


def test_an_empty_split_names_the_file(tmp_path: Path) -> None:
    file, groups = _grouped(tmp_path, "path.csv", [1, 1])
    with pytest.raises(DataError, match=r"path\.csv: the test split would be empty \(2 usable rows\)"):
        split_files([file], [groups], fractions=(0.6, 0.2, 0.2), val_fraction=0.2, split_seed=0, max_examples=None)


def test_split_generators_are_spawned_from_the_seed() -> None:
    subsample, split = split_generators(7)
    first, second = np.random.SeedSequence(7).spawn(2)
    assert subsample.random() == np.random.default_rng(first).random()
    assert split.random() == np.random.default_rng(second).random()
