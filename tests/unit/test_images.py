"""The image pipeline: transforms, seeded views, lazy loading with workers, the decoded cache, image-csv errors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from fairdistill.data import images as images_module
from fairdistill.data import load_dataset
from fairdistill.data.core import BatchLoader, DatasetInfo, label_attr_groups
from fairdistill.data.images import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ImageOptions,
    ImageRecord,
    ImageTransform,
    decode_image,
    image_splits,
    resize_shorter,
)
from fairdistill.errors import ConfigError, DataError
from fairdistill.train.engine import EpochShuffleSampler


def _write(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array.astype(np.uint8)).save(path)
    return path


def _random_images(folder: Path, n: int, size: tuple[int, int] = (20, 24), seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    return [_write(folder / f"img{k}.png", rng.integers(0, 256, (*size, 3))) for k in range(n)]


INFO = DatasetInfo(
    name="toy",
    num_classes=2,
    class_names=("0", "1"),
    attr_names=("0", "1"),
    group_names=label_attr_groups(("0", "1"), ("0", "1")),
    modality="image",
)


def _splits(folder: Path, n: int = 12, **options: object):
    paths = _random_images(folder, n)
    return _load(folder, paths, **options)


def _load(folder: Path, paths: list[Path], **options: object):
    records = [ImageRecord(p.name, k % 2, (k // 2) % 2) for k, p in enumerate(paths)]
    opts = ImageOptions(image_size=12, resize=16, **options)  # type: ignore[arg-type]
    return image_splits({"train": records, "val": records[:4], "test": records[4:8]}, folder, opts, INFO)


def test_normalisation_of_a_constant_image_matches_the_hand_computation(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.png", np.broadcast_to(np.array([100, 150, 200]), (30, 40, 3)))
    transform = ImageTransform(image_size=16, resize=20, base_size=18)
    out = transform.view(transform.base(decode_image(path)))
    assert out.shape == (3, 16, 16) and out.dtype == torch.float32
    for c, value in enumerate((100, 150, 200)):
        expected = (value / 255 - IMAGENET_MEAN[c]) / IMAGENET_STD[c]
        assert torch.allclose(out[c], torch.full((16, 16), expected), atol=1e-6)


def test_resize_keeps_the_aspect_and_values_in_range(tmp_path: Path) -> None:
    image = decode_image(_write(tmp_path / "r.jpg", np.random.default_rng(1).integers(0, 256, (30, 60, 3))))
    assert image.shape == (3, 30, 60) and image.dtype == torch.uint8
    small = resize_shorter(image, 10)
    assert small.shape == (3, 10, 20) and small.dtype == torch.uint8
    transform = ImageTransform(image_size=8, resize=10, base_size=10, mean=(0, 0, 0), std=(1, 1, 1))
    view = transform.view(transform.base(image))
    assert view.shape == (3, 8, 8) and float(view.min()) >= 0.0 and float(view.max()) <= 1.0


def test_centre_crop_is_the_middle_of_the_base_image() -> None:
    base = torch.arange(3 * 6 * 6, dtype=torch.int64).view(3, 6, 6).to(torch.uint8)
    transform = ImageTransform(image_size=2, resize=6, base_size=6, mean=(0, 0, 0), std=(1, 1, 1))
    assert torch.equal((transform.view(base) * 255).round().to(torch.uint8), base[:, 2:4, 2:4])


def test_seeded_random_crop_is_deterministic_and_changes_with_the_epoch(tmp_path: Path) -> None:
    splits = _splits(tmp_path, train_augment="crop-flip")
    train = splits.train
    same = [train.example(3, seed=7, epoch=1)["inputs"]["x"] for _ in range(2)]
    assert torch.equal(same[0], same[1])
    views = {train.example(3, seed=7, epoch=e)["inputs"]["x"].numpy().tobytes() for e in range(6)}
    assert len(views) > 1  # 5×5 offsets × 2 flips: six epochs all equal would be a constant view
    # a view is a crop (possibly mirrored) of the base image
    base = train.transform.normalise(train.base(3))
    view = train.example(3, seed=7, epoch=2)["inputs"]["x"]
    crops = [base[:, t : t + 12, s : s + 12] for t in range(5) for s in range(5)]
    assert any(torch.equal(view, c) or torch.equal(view, c.flip(-1)) for c in crops)
    # without a seed (prediction, split[i]) the view is the centre crop
    assert torch.equal(train[3]["inputs"]["x"], base[:, 2:14, 2:14])


def test_lazy_batches_with_two_workers_equal_those_with_none(tmp_path: Path) -> None:
    plain = _splits(tmp_path / "a", train_augment="crop-flip")
    workers = _splits(tmp_path / "a", train_augment="crop-flip", workers=2)
    sampler = EpochShuffleSampler(len(plain.train), seed=3)
    sampler.set_epoch(1)
    first = list(BatchLoader(plain.train, 5, sampler))
    second = list(BatchLoader(workers.train, 5, sampler))
    assert [len(b) for b in first] == [5, 5, 2]
    assert torch.equal(torch.cat([b.index for b in first]), sampler.indices())
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.index, b.index) and torch.equal(a.y, b.y)
        assert torch.equal(a.inputs["x"], b.inputs["x"])
    # the training views are the seeded ones of (seed 3, epoch 1)
    k = int(first[0].index[0])
    assert torch.equal(first[0].inputs["x"][0], plain.train.example(k, seed=3, epoch=1)["inputs"]["x"])


def test_decoded_cache_is_reused_and_invalidated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRDISTILL_CACHE", str(tmp_path / "cache"))
    decoded: list[Path] = []
    real = images_module.decode_image

    def counting(path: Path) -> torch.Tensor:
        decoded.append(path)
        return real(path)

    monkeypatch.setattr(images_module, "decode_image", counting)
    folder = tmp_path / "imgs"
    paths = _random_images(folder, 12)
    uncached = _load(folder, paths)
    expected = [uncached.train[i]["inputs"]["x"] for i in range(12)]
    decoded.clear()

    cached = _load(folder, paths, cache=True)
    assert len(decoded) == 12 + 4 + 4  # built once per split (train 12, val 4, test 4 examples)
    assert all(torch.equal(cached.train[i]["inputs"]["x"], expected[i]) for i in range(12))
    decoded.clear()
    again = _load(folder, paths, cache=True)  # a second load (another run) decodes nothing
    list(BatchLoader(again.train, 4))
    assert decoded == []

    _write(paths[5], np.zeros((20, 24, 3)))  # img5 is in train and test, not in val
    decoded.clear()
    changed = _load(folder, paths, cache=True)
    assert sorted(decoded) == sorted(paths + paths[4:8])
    assert changed.train.cache_file != cached.train.cache_file and changed.val.cache_file == cached.val.cache_file
    assert float(changed.train[5]["inputs"]["x"].max()) < 0  # black, normalised: negative everywhere
    assert not list((tmp_path / "cache" / "images").glob(".*.tmp"))


def test_image_options_are_validated() -> None:
    with pytest.raises(ValueError, match="cache_size"):
        ImageOptions(image_size=32, resize=40, cache_size=16)
    with pytest.raises(ValueError, match="resize"):
        ImageOptions(image_size=32, resize=16)
    assert ImageOptions().resized_side == 256 and ImageOptions(image_size=112).resized_side == 128


def _table(tmp_path: Path, n: int = 12) -> Path:
    paths = _random_images(tmp_path / "pics", n)
    frame = pd.DataFrame(
        {
            "file": [f"pics/{p.name}" for p in paths],
            "y": [k % 2 for k in range(n)],
            "a": [(k // 2) % 2 for k in range(n)],
        }
    )
    frame.to_csv(tmp_path / "table.csv", index=False)
    return tmp_path / "table.csv"


def test_image_csv_loads_lazy_splits(tmp_path: Path) -> None:
    table = _table(tmp_path)
    splits = load_dataset(
        "image-csv", {"path": str(table), "image": "file", "label": "y", "attr": "a", "image_size": 8}
    )
    assert splits.info.input_shape == (3, 8, 8) and splits.info.modality == "image"
    assert len(splits.train) + len(splits.val) + len(splits.test) == 12
    batch = next(iter(BatchLoader(splits.test, 10)))
    assert batch.inputs["x"].shape == (len(splits.test), 3, 8, 8)
    frame = pd.read_csv(table)
    k = int(batch.index[0])
    row = frame.index[frame["file"] == f"pics/{splits.test.paths[k].name}"][0]
    assert int(batch.y[0]) == frame.loc[row, "y"] and int(batch.attr[0]) == frame.loc[row, "a"]


def test_image_csv_split_column(tmp_path: Path) -> None:
    table = _table(tmp_path)
    frame = pd.read_csv(table)
    frame["split"] = ["train"] * 6 + ["val"] * 3 + ["2"] * 3
    frame.to_csv(table, index=False)
    options = {"path": str(table), "image": "file", "label": "y", "attr": "a", "split_column": "split"}
    splits = load_dataset("image-csv", options)
    assert [p.name for p in splits.val.paths] == ["img6.png", "img7.png", "img8.png"]
    assert len(splits.train) == 6 and len(splits.test) == 3


def test_image_csv_missing_file_is_named_by_row(tmp_path: Path) -> None:
    table = _table(tmp_path)
    (tmp_path / "pics" / "img4.png").unlink()
    with pytest.raises(DataError, match=r"table\.csv row 6 .*img4\.png"):
        load_dataset("image-csv", {"path": str(table), "image": "file", "label": "y", "attr": "a"})


def test_image_csv_undecodable_image_is_named_by_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FAIRDISTILL_CACHE", str(tmp_path / "cache"))
    table = _table(tmp_path)
    (tmp_path / "pics" / "img3.png").write_bytes(b"not an image")
    options = {"path": str(table), "image": "file", "label": "y", "attr": "a"}
    splits = load_dataset("image-csv", options)
    holder = next(s for s in (splits.train, splits.val, splits.test) if any(p.name == "img3.png" for p in s.paths))
    k = [p.name for p in holder.paths].index("img3.png")
    with pytest.raises(DataError, match=r"cannot decode image .*pics/img3\.png"):
        holder[k]
    with pytest.raises(DataError, match=r"cannot decode image .*pics/img3\.png"):
        load_dataset("image-csv", {**options, "cache": True})


def test_image_csv_option_errors(tmp_path: Path) -> None:
    table = _table(tmp_path)
    with pytest.raises(ConfigError, match="data.train_augment"):
        load_dataset("image-csv", {"path": str(table), "label": "y", "attr": "a", "train_augment": "mixup"})
    with pytest.raises(DataError, match="no column 'image'"):
        load_dataset("image-csv", {"path": str(table), "label": "y", "attr": "a"})
