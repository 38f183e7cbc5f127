"""Where a run directory keeps its files, and reading its per-example predictions back.

Single-seed runs: ``predictions/<model>-<split>.parquet`` and ``checkpoints/<model>.pt``. Runs with several
seeds put each seed's files one level down: ``predictions/seed<k>/<model>-<split>.parquet`` and
``checkpoints/seed<k>/<model>.pt``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from fairdistill.errors import FairdistillError

FIGURES = "figures"


def seed_part(seed: int, several: bool) -> str:
    """The sub-folder of one seed's files ("" for a single-seed run)."""
    return f"seed{seed}" if several else ""


def predictions_dir(run_dir: Path, seed: int, several: bool) -> Path:
    return run_dir / "predictions" / seed_part(seed, several)


def checkpoints_dir(run_dir: Path, seed: int, several: bool) -> Path:
    return run_dir / "checkpoints" / seed_part(seed, several)


def run_seeds(metrics: dict[str, Any]) -> list[int]:
    """The seeds of a run from its metrics (``run.seeds``, or ``[run.seed]`` for files written before seeds)."""
    run = metrics.get("run", {})
    return list(run.get("seeds") or [run.get("seed", 0)])


def load_frames(run_dir: Path, metrics: dict[str, Any], split: str = "test") -> dict[int, dict[str, pd.DataFrame]]:
    """Predictions of every model on ``split``, per seed: ``{seed: {model: frame}}`` (models in run order)."""
    seeds = run_seeds(metrics)
    several = len(seeds) > 1
    frames: dict[int, dict[str, pd.DataFrame]] = {}
    for seed in seeds:
        folder = predictions_dir(run_dir, seed, several)
        frames[seed] = {}
        for name in metrics["models"]:
            path = folder / f"{name}-{split}.parquet"
            if not path.is_file():
                raise FairdistillError(f"{run_dir}: predictions file missing: {path.relative_to(run_dir)}")
            frames[seed][name] = pd.read_parquet(path)
    return frames


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """A run directory's metrics.json content; a readable error when it is not a run directory."""
    import json

    path = Path(run_dir) / "metrics.json"
    if not Path(run_dir).is_dir():
        raise FairdistillError(f"run directory not found: {Path(run_dir).resolve()}")
    if not path.is_file():
        raise FairdistillError(f"{Path(run_dir).resolve()}: no metrics.json (is this a fairdistill run directory?)")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FairdistillError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(metrics, dict) or "models" not in metrics or "dataset" not in metrics:
        raise FairdistillError(f"{path}: not a fairdistill metrics file (no models / dataset sections)")
    return metrics
