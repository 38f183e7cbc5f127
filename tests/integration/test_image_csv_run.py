"""End to end: ``fairdistill run`` on an ``image-csv`` table of generated JPEGs, small CNNs, kd."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from cli_runner import TINY_RUN, run_cli, tiny_config


def _image_table(root: Path, n: int = 90) -> pd.DataFrame:
    """Red-ish (y = 1) or blue-ish (y = 0) noisy JPEGs of varied sizes; attr = brightness; split by a column."""
    rng = np.random.default_rng(0)
    (root / "images").mkdir(parents=True)
    rows = []
    for k in range(n):
        y, attr = k % 2, (k // 2) % 2
        h, w = int(rng.integers(18, 30)), int(rng.integers(18, 30))
        pixels = rng.integers(0, 80, (h, w, 3)) + (100 if attr else 40)
        pixels[..., 0 if y else 2] += 100
        Image.fromarray(pixels.clip(0, 255).astype(np.uint8)).save(root / "images" / f"{k}.jpg", quality=90)
        rows.append({"file": f"images/{k}.jpg", "bird": ["blue", "red"][y], "light": attr, "part": k % 3})
    frame = pd.DataFrame(rows)
    frame["part"] = frame["part"].map({0: "train", 1: "val", 2: "test"})
    return frame


def image_csv_data(table: Path, **options) -> dict:
    """The ``data:`` section reading ``table`` (written from :func:`_image_table`): 16 px crop-flip views."""
    return {
        "name": "image-csv",
        "path": str(table),
        "image": "file",
        "label": "bird",
        "attr": "light",
        "split_column": "part",
        "image_size": 16,
        "resize": 20,
        "train_augment": "crop-flip",
        **options,
    }


def test_image_csv_run_end_to_end(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _image_table(tmp_path / "data")
    table = tmp_path / "data" / "images.csv"
    frame.to_csv(table, index=False)
    data = image_csv_data(table, cache=True)
    config = tiny_config(tmp_path / "run.yaml", data=data)
    assert TINY_RUN["teacher"]["model"]["name"] == "cnn"
    assert run_cli(monkeypatch, "run", str(config), "--output", str(tmp_path / "runs")) == 0
    (run_dir,) = list((tmp_path / "runs").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["dataset"]["modality"] == "image"
    assert list(metrics["models"]) == ["teacher", "kd"]
    test = frame[frame["part"] == "test"]
    counts = metrics["models"]["kd"]["splits"]["test"]["group_count"]
    expected = test.groupby(["bird", "light"]).size()
    assert counts == {f"{b}|{a}": int(expected.loc[(b, a)]) for b, a in expected.index}
    predictions = pd.read_parquet(run_dir / "predictions" / "kd-test.parquet")
    assert len(predictions) == len(test) == 30
    assert sorted(predictions["y"].tolist()) == sorted((test["bird"] == "red").astype(int).tolist())
    # the decoded cache holds one entry per split, under the test-wide cache folder
    assert len(list((Path(os.environ["FAIRDISTILL_CACHE"]) / "images").glob("*.npy"))) >= 3


def test_peers_on_images_read_from_files_are_refused_before_training(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "table.csv"
    _image_table(tmp_path).to_csv(table, index=False)
    path = tiny_config(
        tmp_path / "run.yaml",
        data=image_csv_data(table),
        peers=[{"kind": "expgrad", "constraint": "equalized-odds"}],
        output=str(tmp_path / "runs"),
    )
    assert run_cli(monkeypatch, "run", str(path)) == 2
    err = " ".join(capsys.readouterr().err.split())
    assert "peers: split train reads its examples from files one at a time" in err, err
    assert "teacher epoch" not in err and "Traceback" not in err
