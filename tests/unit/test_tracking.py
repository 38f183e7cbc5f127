"""Optional experiment tracking: a missing tracker library is a config error; what is logged, and at which step."""

from __future__ import annotations

import importlib.util

import pytest

from fairdistill.errors import ConfigError
from fairdistill.tracking import RunTracker, check_tracker, flatten


class RecordingTracker:
    """Stands in for an Accelerate tracker and records every call."""

    def __init__(self) -> None:
        self.logged: list[tuple[dict, int | None]] = []
        self.finished = False

    def log(self, values: dict, step: int | None = None) -> None:
        self.logged.append((values, step))

    def finish(self) -> None:
        self.finished = True


def test_a_tracker_that_is_not_installed_is_a_config_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a, **k: None)
    with pytest.raises(ConfigError, match=r"log_with: mlflow needs the 'mlflow' package, which is not installed"):
        check_tracker("mlflow")
    check_tracker(None)  # no tracking asked: nothing to check


def test_unknown_tracker_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match="choices: tensorboard, mlflow, wandb"):
        check_tracker("comet")


def test_history_is_logged_per_epoch_with_numbers_only() -> None:
    fake = RecordingTracker()
    tracker = RunTracker(fake)
    tracker.log_history(
        "seed1/kd",
        [
            {"epoch": 1, "train_loss": 0.5, "val_acc": 0.7, "note": "text", "resumed": True},
            {"epoch": 2, "train_loss": 0.25, "val_acc": 0.8, "up_weighted_share": 3},
        ],
    )
    assert fake.logged == [
        ({"seed1/kd/train_loss": 0.5, "seed1/kd/val_acc": 0.7}, 1),
        ({"seed1/kd/train_loss": 0.25, "seed1/kd/val_acc": 0.8, "seed1/kd/up_weighted_share": 3.0}, 2),
    ]


def test_final_metrics_skip_missing_values() -> None:
    fake = RecordingTracker()
    metrics = {
        "models": {
            "teacher": {"splits": {"test": {"accuracy": 0.9, "worst_group_accuracy": 0.5, "ece": None}}},
            "kd": {"splits": {"test": {"accuracy": 0.8}}},
            "broken": {"splits": {}},
        }
    }
    RunTracker(fake).log_final(metrics)
    assert fake.logged == [
        ({"test/teacher/accuracy": 0.9, "test/teacher/worst_group_accuracy": 0.5, "test/kd/accuracy": 0.8}, None)
    ]
    RunTracker(fake).finish()
    assert fake.finished


def test_flatten_hand_case() -> None:
    nested = {"name": "r", "data": {"name": "adult", "opts": {"protected": "race"}}, "seeds": [0, 1], "x": None}
    assert flatten(nested) == {
        "name": "r",
        "data.name": "adult",
        "data.opts.protected": "race",
        "seeds": "[0, 1]",
        "x": None,
    }
