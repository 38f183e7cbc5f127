"""Optional experiment tracking (``log_with: tensorboard | mlflow | wandb``) through Accelerate's trackers.

Each trained model's per-epoch records are logged (step = epoch) under ``<model>/<key>`` (``seed<k>/<model>/<key>``
with several seeds), and the headline test metrics at the end. The tracker library is an optional install: asking
for one that is not installed is a config error naming the package.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

from fairdistill.errors import ConfigError

#: Tracker name → the package that must be importable (the pip name is the same).
TRACKER_PACKAGES: dict[str, str] = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}

#: Test metrics logged at the end of a run.
FINAL_KEYS = (
    "accuracy",
    "worst_group_accuracy",
    "balanced_accuracy",
    "recall_disparity_mad",
    "eo_difference",
    "dp_difference",
    "ece",
)


def check_tracker(log_with: str | None) -> None:
    """Raise a ConfigError when ``log_with`` names a tracker whose library is not installed."""
    if log_with is None:
        return
    package = TRACKER_PACKAGES.get(log_with)
    if package is None:
        raise ConfigError(f"log_with: unknown tracker {log_with!r}; choices: {', '.join(TRACKER_PACKAGES)}")
    if importlib.util.find_spec(package) is None:
        raise ConfigError(
            f"log_with: {log_with} needs the {package!r} package, which is not installed; "
            f"install it (pip install -c constraints.txt {package}) or remove log_with"
        )


class RunTracker:
    """One Accelerate tracker for the whole run (main process only, as Accelerate's trackers are)."""

    def __init__(self, tracker: Any) -> None:
        self.tracker = tracker

    @classmethod
    def open(cls, log_with: str | None, run_name: str, run_dir: Path, config: dict[str, Any]) -> RunTracker | None:
        """Start the tracker named by ``log_with`` (None: no tracking) and store the flattened config."""
        if log_with is None:
            return None
        check_tracker(log_with)
        from accelerate import tracking

        if log_with == "tensorboard":
            tracker = tracking.TensorBoardTracker(run_name, run_dir / "tracking")
        elif log_with == "mlflow":
            tracker = tracking.MLflowTracker(
                experiment_name=run_name, logging_dir=str(run_dir / "tracking"), run_name=run_dir.name
            )
        else:
            tracker = tracking.WandBTracker(run_name)
        tracker.start()
        tracker.store_init_configuration(flatten(config))
        return cls(tracker)

    def log_history(self, prefix: str, history: list[dict[str, Any]]) -> None:
        """Log each per-epoch record's numbers under ``<prefix>/<key>`` at step = epoch."""
        for record in history:
            values = {
                f"{prefix}/{k}": float(v)
                for k, v in record.items()
                if k != "epoch" and isinstance(v, (int, float)) and not isinstance(v, bool)
            }
            if values:
                self.tracker.log(values, step=int(record.get("epoch", 0)))

    def log_final(self, metrics: dict[str, Any]) -> None:
        """Log every model's headline test metrics (means over seeds)."""
        values = {}
        for name, model in metrics["models"].items():
            test = model["splits"].get("test", {})
            values.update({f"test/{name}/{k}": float(test[k]) for k in FINAL_KEYS if test.get(k) is not None})
        if values:
            self.tracker.log(values)

    def finish(self) -> None:
        self.tracker.finish()


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested config → ``{"a.b.c": value}`` with str/int/float/bool/None values (lists as their text)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, path + "."))
        elif isinstance(value, list):
            flat[path] = str(value)
        else:
            flat[path] = value
    return flat
