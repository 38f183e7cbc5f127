"""The debiasing methods of the default config, end to end on a tiny colored-mnist, and their config errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pandas as pd
import pytest

from fairdistill.cli import main
from fairdistill.config import load_config
from fairdistill.errors import ConfigError
from fairdistill.experiment import dry_run, run

TINY = [
    "data.max_examples=300",
    "teacher.model={name: cnn, width: 8, blocks: 2}",
    "teacher.train.epochs=2",
    "student.model={name: cnn, width: 4, blocks: 2}",
    "student.train.epochs=3",
]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    output = tmp_path_factory.mktemp("methods")
    config = load_config(None, [*TINY, f"output={output}"])
    return run(config).run_dir


def test_every_default_method_trains_and_is_evaluated(default_run: Path) -> None:
    metrics = json.loads((default_run / "metrics.json").read_text())
    assert list(metrics["models"]) == [
        "teacher",
        "erm",
        "kd",
        "dedier",
        "dedier-laplace",
        "teachers-pet",
        "adversarial",
        "groupdro",
    ]
    for name, model in metrics["models"].items():
        assert 0.0 <= model["splits"]["test"]["accuracy"] <= 1.0, name


def test_weighting_statistics_are_recorded_per_epoch(default_run: Path) -> None:
    models = json.loads((default_run / "metrics.json").read_text())["models"]
    dedier = models["dedier"]["history"]
    assert [e["epoch"] for e in dedier] == [1, 2, 3]
    # epoch 1 trains with w = 1; the readout refit after it sets the weights of epoch 2
    assert dedier[0]["weight_mean"] == pytest.approx(1.0) and dedier[0]["weight_share_upweighted"] == 0.0
    for epoch in dedier[:-1]:
        assert epoch["weight_max"] >= 1.0 and 0.0 <= epoch["readout_train_acc"] <= 1.0
    # no refit after the last epoch (no epoch would train with its weights)
    assert dedier[-1]["weight_max"] >= 1.0 and "readout_train_acc" not in dedier[-1]
    laplace = models["dedier-laplace"]["history"]
    assert all(e["laplace_tau"] > 0 for e in laplace[:-1]) and "laplace_tau" not in laplace[-1]
    assert all("adversary_acc" in e for e in models["adversarial"]["history"])
    assert all(0.0 <= e["alpha_min"] <= e["alpha_max"] <= 0.9 for e in models["teachers-pet"]["history"])
    q = [v for k, v in models["groupdro"]["history"][-1].items() if k.startswith("groupdro_q_")]
    assert len(q) == 4 and sum(q) == pytest.approx(1.0)


def test_readout_probabilities_are_in_the_predictions(default_run: Path) -> None:
    frame = pd.read_parquet(default_run / "predictions" / "dedier-test.parquet")
    columns = [c for c in frame.columns if c.startswith("readout_")]
    assert columns == ["readout_block1_prob_0", "readout_block1_prob_1"]
    assert (frame[columns].sum(axis=1) - 1.0).abs().max() < 1e-5
    plain = pd.read_parquet(default_run / "predictions" / "kd-test.parquet")
    assert not any(c.startswith("readout_") for c in plain.columns)


def test_adult_runs_with_the_modality_defaults_and_first_tap() -> None:
    text = dry_run(load_config(None, ["data.name=adult"]))
    assert "adult (tabular)" in text and "config OK" in text


def test_unknown_tap_is_one_clear_error(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr(
        sys, "argv", ["fairdistill", "run", "--dry-run", "--set", "methods.dedier.weighting.tap=block9"]
    )
    with pytest.raises(SystemExit) as exit_info:
        main()
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert (
        "methods.2(dedier).weighting.tap: the student (cnn) has no tap 'block9'; its taps: block1, block2, block3"
        in err
    )
    assert "Traceback" not in err


def test_unknown_weighting_and_mixing_kinds_list_the_choices() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown weighting 'early-exit'.*early-readout, fair-constraint, group-balanced, groupdro, jtt",
    ):
        dry_run(load_config(None, ["methods.dedier.weighting.kind=early-exit"]))
    with pytest.raises(ConfigError, match=r"unknown mixing 'per-class'.*adaptive-margin, per-group-alpha"):
        dry_run(load_config(None, ["methods.teachers-pet.mixing.kind=per-class"]))
    with pytest.raises(ConfigError, match=r"methods\.5\(adversarial\)\.adversary\.input"):
        dry_run(load_config(None, ["methods.adversarial.adversary.input=logits"]))


def test_jtt_runs_two_stages(tmp_path: Path) -> None:
    config = load_config(
        None,
        [
            *TINY,
            f"output={tmp_path}",
            "student.train.epochs=3",
            "methods=[{name: jtt, loss: {kind: erm}, weighting: {kind: jtt, identify_epochs: 1, upweight: 4}},"
            " {name: balanced, loss: {kind: kd}, weighting: {kind: group-balanced}}]",
        ],
    )
    metrics = run(config).metrics["models"]
    jtt = metrics["jtt"]
    assert jtt["selected_epoch"] >= 2  # the identification epoch is not eligible
    assert "jtt_error_share" in jtt["history"][0]
    assert jtt["history"][1]["weight_max"] == pytest.approx(4.0) or jtt["history"][0]["jtt_error_share"] == 0.0
    assert metrics["balanced"]["history"][0]["weight_share_upweighted"] > 0
