"""New, never-reused output directories (``<parent>/<name>-<timestamp>[-k]``) for runs and sweeps."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from fairdistill.errors import FairdistillError


def new_stamped_dir(parent: Path, name: str, what: str = "run") -> Path:
    """Create ``parent/<name>-<YYYYmmdd-HHMMSS>`` (``-1``, ``-2``, ... when taken) and return it resolved.

    An output location that cannot hold it (not writable, a file in the way) is one clear error; ``what``
    names the directory in messages ("run", "sweep").
    """
    stamp = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for suffix in ["", *(f"-{k}" for k in range(1, 100))]:
            candidate = parent / f"{name}-{stamp}{suffix}"
            try:
                candidate.mkdir()
                return candidate.resolve()
            except FileExistsError:
                continue
    except PermissionError:
        raise FairdistillError(f"output directory {parent.resolve()} is not writable") from None
    except (FileExistsError, NotADirectoryError):
        raise FairdistillError(f"output: {parent.resolve()} is not a directory (a file is in the way)") from None
    except OSError as exc:
        raise FairdistillError(
            f"output: cannot create a {what} directory under {parent.resolve()}: {exc.strerror or exc}"
        ) from None
    raise FairdistillError(f"could not create a {what} directory under {parent.resolve()}")


def check_output_parent(parent: Path, what: str = "run") -> None:
    """Check, without creating anything, that ``parent`` could hold a new directory (for ``--dry-run``):
    its nearest existing ancestor must be a writable directory."""
    existing = parent.resolve()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise FairdistillError(f"output: {existing} is not a directory (a file is in the way)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise FairdistillError(f"output directory {existing} is not writable, so no {what} directory can be created")
