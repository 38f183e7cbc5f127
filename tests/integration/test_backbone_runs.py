"""Vision backbones end to end through the CLI: EfficientNet-b0 as a student with KD and an early readout on a
stage tap, resnet-small with RKD and the adversary, and the dry runs of the vision recipes."""

from __future__ import annotations

import importlib
import importlib.util
import json
from pathlib import Path

import pandas as pd
import pytest

from cli_runner import TINY_RUN, run_cli, tiny_config

REPO = Path(__file__).parents[2]
TINY_RESNET = {"name": "resnet-small", "widths": [4, 8, 8, 8], "depths": [1, 1, 1, 1]}


def _metrics(output: Path) -> dict:
    (run_dir,) = list(output.iterdir())
    return json.loads((run_dir / "metrics.json").read_text())


def test_efficientnet_b0_student_with_kd_and_an_early_readout(tmp_path: Path, monkeypatch) -> None:
    config = tiny_config(
        tmp_path / "b0.yaml",
        data={"name": "colored-mnist", "max_examples": 120},  # 3×28×28: stage3 is 40 × 4 × 4
        teacher={"model": TINY_RESNET, "train": {"epochs": 1, "batch_size": 40}},
        student={"model": {"name": "efficientnet", "variant": "b0"}, "train": {"epochs": 1, "batch_size": 40}},
        methods=[
            {"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}},
            {
                "name": "dedier",
                "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9},
                "weighting": {"kind": "early-readout", "tap": "stage3", "beta": 3.0, "alpha": 0.2},
            },
        ],
    )
    assert run_cli(monkeypatch, "run", str(config), "--output", str(tmp_path / "runs")) == 0
    models = _metrics(tmp_path / "runs")["models"]
    assert list(models) == ["teacher", "kd", "dedier"]
    # b0's parameters at 2 classes: counted by the package's own model, not by the run
    from efficientnet_pytorch import EfficientNet

    b0 = EfficientNet.from_name("efficientnet-b0", num_classes=2, image_size=[28, 28])
    assert models["kd"]["params"] == sum(p.numel() for p in b0.parameters())
    (epoch,) = models["dedier"]["history"]
    assert epoch["weight_max"] == 1.0 and "readout_train_acc" not in epoch  # one epoch: w = 1, no refit after it
    # the readout on stage3 is fit on the trained student for the report
    (run_dir,) = list((tmp_path / "runs").iterdir())
    frame = pd.read_parquet(run_dir / "predictions" / "dedier-test.parquet")
    readout = frame[["readout_stage3_prob_0", "readout_stage3_prob_1"]]
    assert (readout.sum(axis=1) - 1.0).abs().max() < 1e-5
    for name in ("kd", "dedier"):
        assert 0.0 <= models[name]["splits"]["test"]["accuracy"] <= 1.0


def test_resnet_small_with_rkd_kdpp_and_the_adversary(tmp_path: Path, monkeypatch) -> None:
    config = tiny_config(
        tmp_path / "resnet.yaml",
        data={"name": "colored-mnist", "max_examples": 150},
        teacher={"model": {**TINY_RESNET, "widths": [8, 8, 16, 16]}, "train": {"epochs": 1, "batch_size": 50}},
        student={"model": TINY_RESNET, "train": {"epochs": 1, "batch_size": 50}},
        methods=[
            {"name": "rkd", "loss": {"kind": "rkd", "lambda_distance": 25.0, "lambda_angle": 50.0}},
            {"name": "kdpp", "loss": {"kind": "kdpp", "kd_weight": 1.0, "nd_weight": 2.0, "tau": 4.0}},
            {
                "name": "adversarial",
                "loss": {"kind": "kd"},
                "adversary": {"target": "attr", "input": "embedding", "weight": 0.5},
            },
        ],
    )
    assert run_cli(monkeypatch, "run", str(config), "--output", str(tmp_path / "runs")) == 0
    models = _metrics(tmp_path / "runs")["models"]
    assert list(models) == ["teacher", "rkd", "kdpp", "adversarial"]
    assert all("adversary_acc" in e for e in models["adversarial"]["history"])


def test_dry_run_names_what_only_a_missing_library_can_check(tmp_path: Path, monkeypatch, capsys) -> None:
    if importlib.util.find_spec("timm") is not None:
        pytest.skip("timm is installed here: the dry run builds the model instead")
    config = tiny_config(tmp_path / "timm.yaml", student={"model": {"name": "timm:resnet18"}})
    assert run_cli(monkeypatch, "run", str(config), "--dry-run") == 0
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "checkable only with the model libraries installed:" in out
    assert "student.model (timm {'arch': 'resnet18'}): timm is not installed (pip install timm)" in out
    assert "methods (their taps and widths are read from the models)" in out
    assert "config OK as far as it can be checked offline" in out


def test_dry_run_with_a_missing_root_names_the_files(tmp_path: Path, monkeypatch, capsys) -> None:
    table = tmp_path / "images.csv"
    table.write_text("path,label,attr\na.png,0,0\n")
    data = {"name": "image-csv", "path": str(table), "label": "label", "attr": "attr", "image_size": 32}
    data["root"] = str(tmp_path / "absent")
    base = {**TINY_RUN, "teacher": {"model": TINY_RESNET}, "student": {"model": {"name": "efficientnet"}}}
    config = tiny_config(tmp_path / "csv.yaml", base, data=data)
    assert run_cli(monkeypatch, "run", str(config), "--dry-run") == 0
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "checkable only with the dataset's files:" in out
    assert f"data (image-csv): its root folder {tmp_path / 'absent'} does not exist" in out
    assert "models and methods (they need the data's classes and inputs)" in out
    assert "Hugging Face hub" not in out


# the datasets' loaders register on import (data/__init__ may not import the newest ones yet)
RECIPES = {
    "wider-efficientnet": ("fairdistill.data.wider_attribute", "efficientnet-pytorch"),
    "waterbirds-dedier": ("fairdistill.data.waterbirds", "torchvision"),
    "celeba-dedier": ("fairdistill.data.celeba", "timm"),
}


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_vision_recipes_dry_run_offline(recipe: str, tmp_path: Path, monkeypatch, capsys) -> None:
    module, library = RECIPES[recipe]
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not written yet (the dataset is being added)")
    importlib.import_module(module)
    monkeypatch.chdir(tmp_path)  # the recipes' root: data/... does not exist here
    assert run_cli(monkeypatch, "run", str(REPO / "configs" / f"{recipe}.yaml"), "--dry-run") == 0
    out = " ".join(capsys.readouterr().out.split())  # the console wraps long lines
    assert "checkable only with the dataset's files:" in out and "does not exist" in out
    if importlib.util.find_spec(library.replace("-", "_")) is None:
        assert "checkable only with the model libraries installed:" in out
        assert f"{library} is not installed (pip install {library})" in out
    assert "config OK as far as it can be checked offline" in out
