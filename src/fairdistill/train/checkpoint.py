"""Checkpoints: a model's selected weights (``checkpoints/<model>.pt``, loadable as ``teacher.checkpoint``),
and training checkpoints, everything needed to continue a fit exactly where it stopped.

Written atomically (training checkpoints at the end of every epoch); read with ``torch.load(weights_only=True)``,
so a file holds only tensors and plain Python values (RNG states are converted to tensors), and no code runs
when loading. Files are written through an open file object, so a full disk raises ``OSError(ENOSPC)``
(which the command line reports as such) rather than torch's opaque ``unexpected pos`` error.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fairdistill.atomic_io import atomic_path
from fairdistill.errors import FairdistillError

TRAINING_CHECKPOINT_FORMAT = 2  # 2: with the learning-rate scheduler's state
#: Format of a model checkpoint (``checkpoints/<model>.pt``).
MODEL_CHECKPOINT_FORMAT = 1


def save_torch_file(path: Path, payload: Any) -> None:
    """``torch.save`` to ``path`` atomically, through a file object (see the module docstring)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as handle:
        torch.save(payload, handle)


def save_model_checkpoint(path: Path, model: torch.nn.Module, spec: dict[str, Any], num_classes: int) -> None:
    """A model's weights with its architecture spec and class count."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    save_torch_file(
        path, {"format": MODEL_CHECKPOINT_FORMAT, "model": spec, "num_classes": num_classes, "state_dict": state}
    )


def load_model_checkpoint(path: Path, model: torch.nn.Module, num_classes: int) -> None:
    """Load weights saved by a run into ``model``; a damaged, foreign, mismatched or non-finite file is one
    clear error naming it (a NaN teacher would only fill the teacher cache with NaN outputs)."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise FairdistillError(
            f"teacher.checkpoint {path}: not a readable checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(payload, dict) or not isinstance(payload.get("state_dict"), dict):
        raise FairdistillError(f"teacher.checkpoint {path}: expected a fairdistill checkpoint with a state_dict")
    saved_classes = payload.get("num_classes")
    if saved_classes != num_classes:
        raise FairdistillError(
            f"teacher.checkpoint {path}: the teacher predicts {saved_classes} classes but the data has {num_classes}"
        )
    state = payload["state_dict"]
    broken = [
        name
        for name, t in state.items()
        if isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if broken:
        more = f" and {len(broken) - 3} more" if len(broken) > 3 else ""
        raise FairdistillError(
            f"teacher.checkpoint {path}: weights hold NaN or infinite values "
            f"({', '.join(broken[:3])}{more}); the checkpoint is damaged or its training diverged"
        )
    try:
        model.load_state_dict(state)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0]
        raise FairdistillError(
            f"teacher.checkpoint {path}: weights do not fit teacher.model {payload.get('model')} ({first})"
        ) from None


def capture_rng() -> dict[str, Any]:
    """The states of torch's, numpy's and Python's global generators as tensors and plain values."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state(legacy=True)
    version, internal, gauss_next = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next},
    }


def restore_rng(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = state["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


def save_training_checkpoint(path: Path, payload: dict[str, Any]) -> None:
    save_torch_file(path, {"format": TRAINING_CHECKPOINT_FORMAT, **payload})


def load_training_checkpoint(path: Path) -> dict[str, Any]:
    """Read a training checkpoint; a corrupt or foreign file is one clear error naming it."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt files
        raise FairdistillError(
            f"checkpoint {path} is corrupt or not a fairdistill checkpoint "
            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
        ) from None
    if not isinstance(payload, dict) or "format" not in payload:
        raise FairdistillError(f"checkpoint {path} is not a fairdistill training checkpoint")
    if payload["format"] != TRAINING_CHECKPOINT_FORMAT:
        raise FairdistillError(
            f"checkpoint {path} has format {payload['format']}, this version reads format "
            f"{TRAINING_CHECKPOINT_FORMAT}; delete it to retrain that model from the start"
        )
    return payload
