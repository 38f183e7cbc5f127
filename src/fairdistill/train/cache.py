"""Teacher outputs for every example of a split, computed once and stored as numpy memmaps.

The cache key hashes the teacher's weights, the dataset description and the split, so a changed teacher or
dataset never reads stale outputs. An entry is the folder ``<cache>/teacher/<key>/`` holding ``logits.npy``,
``embedding.npy`` (when the teacher has one) and ``meta.json``.

Several processes (parallel runs, sweep points) may compute the same entry at once, so an entry only ever
appears by ``os.rename`` of a complete folder and a valid entry is never deleted:

* a writer fills a private folder ``.<key>.tmp-*`` next to the entry (same file system, so the rename is
  atomic), then, holding an exclusive ``fcntl.flock`` on ``.<key>.lock``, looks at what is in place: a valid
  entry wins (the writer drops its folder and uses that entry); a damaged one is renamed aside to
  ``.<key>.damaged-*`` and deleted there; then the writer renames its folder in. Only the lock holder touches
  the entry; it removes the lock file on release (a waiter that locked a removed file locks again);
* readers take no lock and delete nothing. Since files being written live only in dot-folders, a reader sees
  either no entry (a miss) or a complete one; only a complete ``meta.json`` that disagrees with the files or
  the expected shape is reported as damage, and the next writer replaces that entry.

Cache I/O problems never cost a run: :func:`usable_cache_dir` checks the folder before training and falls
back to a temporary one, and a write that fails keeps the computed outputs in memory (both with a warning).
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from fairdistill.data.core import SplitDataset
from fairdistill.distill.core import TeacherOutputs
from fairdistill.errors import FairdistillError
from fairdistill.models.core import TappedModel
from fairdistill.models.inference import iterate_outputs

log = logging.getLogger(__name__)

CACHE_FORMAT = 1
#: Sub-folder of the cache folder that holds the teacher entries.
TEACHER_DIR = "teacher"
#: Rows checked for finiteness at a time, so a memory-mapped entry is never loaded whole.
_FINITE_BLOCK = 65536


def default_cache_dir() -> Path:
    """``$FAIRDISTILL_CACHE`` (``$VARS`` and ``~`` expanded) or ``~/.cache/fairdistill``."""
    value = os.environ.get("FAIRDISTILL_CACHE")
    if not value:
        return Path.home() / ".cache" / "fairdistill"
    return Path(os.path.expanduser(os.path.expandvars(value)))


def usable_cache_dir(cache_dir: Path) -> Path:
    """``cache_dir`` when ``<cache_dir>/teacher`` is, or can be made, a writable folder; else a private temporary one.

    Call it before training: a cache folder that is a file, read-only or not permitted then costs a warning
    (naming the folder and the reason) instead of a traceback once the teacher has trained. The fallback,
    ``fairdistill-cache-*`` in the system's temporary folder, is removed when the process exits, so its teacher
    outputs are not reused across runs. Should no temporary folder be creatable either, ``cache_dir`` is
    returned and :func:`load_or_compute` keeps the outputs in memory.
    """
    cache_dir = Path(cache_dir).expanduser()
    teacher_dir = cache_dir / TEACHER_DIR
    try:
        _check_writable(teacher_dir)
        return cache_dir
    except OSError as exc:
        reason = _why(exc)
    try:
        fallback = Path(tempfile.mkdtemp(prefix="fairdistill-cache-"))
    except OSError as exc:
        log.warning(
            "the teacher cache folder %s is not usable (%s) and no temporary folder can be made (%s); "
            "teacher outputs will be kept in memory and not reused across runs",
            teacher_dir,
            reason,
            _why(exc),
        )
        return cache_dir
    atexit.register(shutil.rmtree, fallback, ignore_errors=True)
    log.warning(
        "the teacher cache folder %s is not usable (%s); caching teacher outputs in the temporary folder %s "
        "instead, so they will not be reused across runs",
        teacher_dir,
        reason,
        fallback,
    )
    return fallback


def _check_writable(folder: Path) -> None:
    """Raise OSError unless ``folder`` is (made) a folder in which a file can be created and removed."""
    folder.mkdir(parents=True, exist_ok=True)
    fd, probe = tempfile.mkstemp(prefix=".probe-", dir=folder)
    os.close(fd)
    os.unlink(probe)


def _why(exc: OSError) -> str:
    """A short reason for a cache I/O failure, naming the path involved."""
    what = "a file is in the way" if isinstance(exc, (FileExistsError, NotADirectoryError)) else exc.strerror
    what = what or str(exc)
    return f"{what}: {exc.filename}" if exc.filename else what


def weights_digest(model: torch.nn.Module) -> str:
    """sha256 of a model's parameters and buffers (names, shapes and values)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        t = tensor.detach().cpu().contiguous()
        digest.update(str((tuple(t.shape), str(t.dtype))).encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()


def compute_teacher_outputs(
    teacher: TappedModel, split: SplitDataset, batch_size: int, device: torch.device | str
) -> tuple[np.ndarray, np.ndarray | None]:
    """Run the teacher over a split in order; returns logits (N, C) and embeddings (N, D) or None."""
    logits, embeddings = [], []
    outputs = iterate_outputs(teacher, split, batch_size, device)
    total = -(-len(split) // batch_size)
    for _, out in tqdm(outputs, total=total, desc=f"teacher outputs ({split.name})", leave=False, disable=None):
        logits.append(out.logits.float().cpu().numpy())
        if out.embedding is not None:
            embeddings.append(out.embedding.float().cpu().numpy())
    return np.concatenate(logits), (np.concatenate(embeddings) if embeddings else None)


def split_digest(split: SplitDataset) -> str:
    """sha256 of a split's content (every encoding and the labels), so edited data files never hit the cache."""
    digest = hashlib.sha256()
    parts: list[tuple[str, torch.Tensor]] = [("y", split.y)]
    for key, encoding in sorted(split.encodings.items()):
        items = sorted(encoding.items()) if isinstance(encoding, dict) else [("", encoding)]
        parts += [(f"{key}/{name}", tensor) for name, tensor in items]
    for name, tensor in parts:
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}{tuple(t.shape)}{t.dtype}".encode())
        digest.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    return digest.hexdigest()


def cache_key(teacher_digest: str, dataset_description: dict[str, Any], split: SplitDataset) -> str:
    payload = json.dumps(
        {
            "format": CACHE_FORMAT,
            "teacher": teacher_digest,
            "data": dataset_description,
            "split": split.name,
            "n": len(split),
            "content": split_digest(split),
        },
        sort_keys=True,
        default=str,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:24]


def load_or_compute(
    teacher: TappedModel,
    split: SplitDataset,
    dataset_description: dict[str, Any],
    cache_dir: Path,
    batch_size: int,
    device: torch.device | str,
    *,
    num_classes: int | None = None,
) -> TeacherOutputs:
    """The split's teacher outputs, read from the cache or computed and stored there for the next run.

    ``num_classes``, when given, is the class count the outputs must have (a cached entry with another one is
    stale). Cache I/O problems cost a warning, never the outputs; non-finite outputs raise FairdistillError
    rather than being cached.
    """
    entry = Path(cache_dir) / TEACHER_DIR / cache_key(weights_digest(teacher), dataset_description, split)
    cached = read_entry(entry, len(split), num_classes)
    if cached is not None:
        log.info("teacher cache hit: %s", entry)
        return cached
    logits, embedding = compute_teacher_outputs(teacher, split, batch_size, device)
    _check_outputs(split.name, logits, embedding, num_classes)
    try:
        return _write_entry(entry, logits, embedding)
    except OSError as exc:
        log.warning(
            "could not write the teacher cache %s (%s); using the outputs from memory, they will not be "
            "reused across runs",
            entry,
            _why(exc),
        )
        return TeacherOutputs(logits=logits, embedding=embedding)


def _check_outputs(split_name: str, logits: np.ndarray, embedding: np.ndarray | None, num_classes: int | None) -> None:
    """Refuse outputs that must not be cached: non-finite rows (a damaged teacher) or a wrong class count."""
    bad = _nonfinite_rows(logits, embedding)
    if bad:
        raise FairdistillError(
            f"{bad} of {len(logits)} rows of the teacher's outputs on the {split_name!r} split are NaN or infinite: "
            "the teacher's outputs are not finite — is its checkpoint damaged?"
        )
    if num_classes is not None and logits.shape[1] != num_classes:
        raise FairdistillError(
            f"the teacher gives {logits.shape[1]} class scores on the {split_name!r} split but "
            f"the data has {num_classes} classes"
        )


def _nonfinite_rows(logits: np.ndarray, embedding: np.ndarray | None) -> int:
    """Rows with a NaN or infinite value in the logits or the embedding, read a block of rows at a time."""
    arrays = [a for a in (logits, embedding) if a is not None]
    bad = 0
    for start in range(0, len(logits), _FINITE_BLOCK):
        rows = np.zeros(min(_FINITE_BLOCK, len(logits) - start), dtype=bool)
        for array in arrays:
            block = np.asarray(array[start : start + _FINITE_BLOCK])
            rows |= ~np.isfinite(block.reshape(len(block), -1)).all(axis=1)
        bad += int(rows.sum())
    return bad


class _DamagedEntry(Exception):
    """A complete cache entry whose content is unreadable or disagrees with what was expected."""


def read_entry(entry: Path, n: int, num_classes: int | None = None) -> TeacherOutputs | None:
    """The valid entry (memory-mapped), or None when it is missing or damaged (a warning; nothing is deleted)."""
    try:
        return _open_entry(entry, n, num_classes)
    except _DamagedEntry as exc:
        log.warning("teacher cache %s is unreadable or stale (%s); recomputing it", entry, exc)
        return None


def _open_entry(entry: Path, n: int, num_classes: int | None) -> TeacherOutputs | None:
    """The entry with ``n`` rows (and ``num_classes`` columns when given); None when it has no ``meta.json``.

    Raises _DamagedEntry when the entry is there but unreadable or inconsistent.
    """
    try:
        meta = json.loads((entry / "meta.json").read_text())
    except (FileNotFoundError, NotADirectoryError):  # no entry, or a file in the way (a writer's problem)
        return None
    except (OSError, ValueError) as exc:  # json's decode error is a ValueError
        raise _DamagedEntry(f"meta.json: {exc}") from None
    classes = _expected_meta(meta, n, num_classes)
    try:
        logits = np.load(entry / "logits.npy", mmap_mode="r")
        embedding = np.load(entry / "embedding.npy", mmap_mode="r") if meta["embedding"] else None
    except (OSError, ValueError) as exc:
        raise _DamagedEntry(str(exc)) from None
    if logits.shape != (n, classes):
        raise _DamagedEntry(f"logits.npy has shape {logits.shape}, expected {(n, classes)}")
    if embedding is not None and (embedding.ndim != 2 or embedding.shape[0] != n):
        raise _DamagedEntry(f"embedding.npy has shape {embedding.shape}, expected {n} rows")
    bad = _nonfinite_rows(logits, embedding)
    if bad:
        raise _DamagedEntry(f"{bad} rows are not finite")
    return TeacherOutputs(logits=logits, embedding=embedding, path=entry)


def _expected_meta(meta: object, n: int, num_classes: int | None) -> int:
    """The class count recorded in ``meta``; raises _DamagedEntry unless it describes an entry of this format
    with ``n`` rows (and ``num_classes`` classes when given)."""
    if not isinstance(meta, dict):
        raise _DamagedEntry(f"meta.json holds a {type(meta).__name__}, not an object")
    if meta.get("format") != CACHE_FORMAT or not isinstance(meta.get("embedding"), bool):
        raise _DamagedEntry(f"meta.json is not of format {CACHE_FORMAT}")
    rows, classes = meta.get("n"), meta.get("classes")
    if type(rows) is not int or rows != n:
        raise _DamagedEntry(f"meta.json says {rows!r} rows, expected {n}")
    if type(classes) is not int or classes < 1 or (num_classes is not None and classes != num_classes):
        raise _DamagedEntry(f"meta.json says {classes!r} classes, expected {num_classes or 'a positive count'}")
    return classes


def _write_entry(entry: Path, logits: np.ndarray, embedding: np.ndarray | None) -> TeacherOutputs:
    """Store the outputs as ``entry`` atomically; returns the entry now in place.

    That is these outputs, or the valid entry another process installed first (kept: it holds the same
    teacher's outputs). Raises OSError when the cache cannot be written; no temporary folder is left behind.
    """
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}.tmp-", dir=entry.parent))
    installed = False
    try:
        np.save(tmp / "logits.npy", logits)
        if embedding is not None:
            np.save(tmp / "embedding.npy", embedding)
        meta = {
            "format": CACHE_FORMAT,
            "n": int(logits.shape[0]),
            "classes": int(logits.shape[1]),
            "embedding": embedding is not None,
        }
        (tmp / "meta.json").write_text(json.dumps(meta))
        with _entry_lock(entry):
            existing = _existing_or_cleared(entry, *logits.shape)
            if existing is not None:
                log.info("teacher cache written by another process meanwhile: %s", entry)
                return existing
            os.rename(tmp, entry)
            installed = True
    finally:
        if not installed:
            shutil.rmtree(tmp, ignore_errors=True)
    log.info("teacher cache written: %s", entry)
    return TeacherOutputs(logits=logits, embedding=embedding, path=entry)


def _existing_or_cleared(entry: Path, n: int, classes: int) -> TeacherOutputs | None:
    """Under the entry's lock: the valid entry in place, or None once nothing is left at ``entry``."""
    try:
        existing = _open_entry(entry, n, classes)
    except _DamagedEntry as exc:
        log.info("replacing the damaged teacher cache %s (%s)", entry, exc)
        _remove_aside(entry)
        return None
    if existing is None and os.path.lexists(entry):  # no meta.json: never left by a writer
        log.info("replacing the incomplete teacher cache %s", entry)
        _remove_aside(entry)
    return existing


def _remove_aside(entry: Path) -> None:
    """Rename ``entry`` to a unique dot-name (atomic, so readers see no half-deleted entry), then delete it."""
    aside = entry.with_name(f".{entry.name}.damaged-{uuid.uuid4().hex[:12]}")
    os.rename(entry, aside)
    if aside.is_dir() and not aside.is_symlink():
        shutil.rmtree(aside, ignore_errors=True)
    else:
        aside.unlink(missing_ok=True)


@contextlib.contextmanager
def _entry_lock(entry: Path) -> Iterator[None]:
    """Hold an exclusive ``flock`` on ``.<key>.lock`` next to the entry; the holder removes the file on release."""
    path = entry.with_name(f".{entry.name}.lock")
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if _is_file_at(fd, path):
                break
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)  # the previous holder removed this file: lock the one now in place
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)
        os.close(fd)


def _is_file_at(fd: int, path: Path) -> bool:
    """Whether the open file ``fd`` is still the file at ``path``."""
    try:
        here = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (here.st_dev, here.st_ino) == (mine.st_dev, mine.st_ino)
