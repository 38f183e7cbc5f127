"""Writers and a reader racing on the same teacher cache entries: lost writes and valid entries deleted.

    .venv/bin/python benchmarks/cache_stress.py [--writers 2] [--writes 200] [--keys 3] [--cache-module PATH]

Each writer process stores the same few small entries over and over with the cache's own write function (no
teacher model, so it is fast), starting from damaged entries so that replacing them races too; a reader process
reads every entry meanwhile. Counted: writes that raised (lost); complete, valid entries that any process
deleted (seen by wrapping the cache module's ``shutil.rmtree``; a process's own temporary folders excepted);
reads that found a key not valid after the reader had once read it valid. ``--cache-module`` runs the same race
against another copy of ``fairdistill/train/cache.py`` (e.g. ``git show HEAD:...`` saved to a file). Writes
``benchmarks/results/cache_stress.json``. Processes are forked (Linux), so the tests can use this module too.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import multiprocessing  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from types import ModuleType, SimpleNamespace  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROWS, CLASSES, DIM = 16, 3, 4
#: Seconds to wait for a worker's report before calling the run failed.
REPORT_TIMEOUT_S = 600

Outputs = dict[str, tuple[np.ndarray, np.ndarray]]


def load_cache_module(path: Path | None) -> ModuleType:
    """fairdistill's teacher cache module, or the copy of it at ``path``."""
    if path is None:
        from fairdistill.train import cache

        return cache
    spec = importlib.util.spec_from_file_location("cache_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def expected_outputs(keys: int) -> Outputs:
    """Distinct small logits and embeddings for each entry name."""
    rng = np.random.default_rng(0)
    return {
        f"entry{k:02d}": (
            rng.normal(size=(ROWS, CLASSES)).astype(np.float32),
            rng.normal(size=(ROWS, DIM)).astype(np.float32),
        )
        for k in range(keys)
    }


def holds_valid_entry(folder: Path, outputs: Outputs) -> bool:
    """Whether ``folder`` is a complete entry holding one of the expected outputs (checked independently)."""
    try:
        meta = json.loads((folder / "meta.json").read_text())
        logits, embedding = np.load(folder / "logits.npy"), np.load(folder / "embedding.npy")
    except (OSError, ValueError):
        return False
    return (
        isinstance(meta, dict)
        and meta.get("n") == ROWS
        and any(
            np.array_equal(logits, want_logits) and np.array_equal(embedding, want_embedding)
            for want_logits, want_embedding in outputs.values()
        )
    )


def equals_expected(stored: Any, name: str, outputs: Outputs) -> bool:
    """Whether a returned ``TeacherOutputs`` holds the expected outputs of entry ``name``."""
    logits, embedding = outputs[name]
    return (
        stored is not None
        and np.array_equal(np.asarray(stored.logits), logits)
        and stored.embedding is not None
        and np.array_equal(np.asarray(stored.embedding), embedding)
    )


class DeletionWatch:
    """Counts the folders the cache module deletes in this process, valid entries apart from damaged ones.

    It stands in for the module's ``shutil`` and ``tempfile``, remembering the temporary folders the process made
    itself: deleting those is the writer's own business, not a deletion of someone's entry.
    """

    def __init__(self, module: ModuleType, outputs: Outputs) -> None:
        self.outputs, self.own = outputs, set[str]()
        self.valid_deleted = self.damaged_deleted = 0
        module.log.addHandler(logging.NullHandler())  # expected warnings (the seeded damage) stay off the console
        module.shutil = SimpleNamespace(**{**vars(shutil), "rmtree": self.rmtree})
        module.tempfile = SimpleNamespace(**{**vars(tempfile), "mkdtemp": self.mkdtemp})

    def mkdtemp(self, *args: Any, **kwargs: Any) -> str:
        path = tempfile.mkdtemp(*args, **kwargs)
        self.own.add(os.path.abspath(path))
        return path

    def rmtree(self, path: str | os.PathLike[str], *args: Any, **kwargs: Any) -> None:
        if os.path.abspath(path) not in self.own:
            if holds_valid_entry(Path(path), self.outputs):
                self.valid_deleted += 1
            else:
                self.damaged_deleted += 1
        shutil.rmtree(path, *args, **kwargs)


def _writer(module: ModuleType, teacher_dir: Path, writes: int, outputs: Outputs, go: Any, reports: Any) -> None:
    watch = DeletionWatch(module, outputs)
    names = sorted(outputs)
    lost, wrong, errors = 0, 0, []
    go.wait()
    for i in range(writes):
        name = names[i % len(names)]
        try:
            stored = module._write_entry(teacher_dir / name, *outputs[name])
        except Exception as exc:  # a lost write, whatever it is
            lost += 1
            errors.append(f"{type(exc).__name__}: {exc}")
            continue
        wrong += stored is not None and not equals_expected(stored, name, outputs)  # the old code returns None
    reports.put(
        {
            "lost": lost,
            "wrong": wrong,
            "errors": errors[:5],
            "valid_deleted": watch.valid_deleted,
            "damaged_deleted": watch.damaged_deleted,
        }
    )


def _reader(module: ModuleType, teacher_dir: Path, outputs: Outputs, go: Any, done: Any, reports: Any) -> None:
    watch = DeletionWatch(module, outputs)
    seen_valid: set[str] = set()
    reads = not_valid_after_valid = errors = 0
    go.wait()
    while True:  # one more pass once the writers are done, so the final state is read too
        last = done.is_set()
        for name in sorted(outputs):
            try:
                got = module.read_entry(teacher_dir / name, ROWS)
            except Exception:
                got, errors = None, errors + 1
            reads += 1
            if equals_expected(got, name, outputs):
                seen_valid.add(name)
            elif name in seen_valid:
                not_valid_after_valid += 1
        if last:
            break
    reports.put(
        {
            "reads": reads,
            "not_valid_after_valid": not_valid_after_valid,
            "errors": errors,
            "valid_deleted": watch.valid_deleted,
            "damaged_deleted": watch.damaged_deleted,
        }
    )


def _seed_damage(teacher_dir: Path, outputs: Outputs) -> None:
    """Start every entry damaged (unparsable meta.json), so writers race to replace it."""
    for name in outputs:
        (teacher_dir / name).mkdir(parents=True)
        (teacher_dir / name / "meta.json").write_text("{not json")


def stress(
    cache_dir: Path, writers: int = 2, writes: int = 200, keys: int = 3, module_path: Path | None = None
) -> dict[str, Any]:
    """Race ``writers`` processes of ``writes`` writes each and one reader on ``keys`` entries; the figures."""
    module, outputs = load_cache_module(module_path), expected_outputs(keys)
    teacher_dir = Path(cache_dir) / "teacher"
    _seed_damage(teacher_dir, outputs)
    ctx = multiprocessing.get_context("fork")
    go, done, reports = ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_writer, args=(module, teacher_dir, writes, outputs, go, reports)) for _ in range(writers)
    ]
    reader = ctx.Process(target=_reader, args=(module, teacher_dir, outputs, go, done, reports))
    for proc in [*procs, reader]:
        proc.start()
    started = time.perf_counter()
    go.set()
    try:
        written = [reports.get(timeout=REPORT_TIMEOUT_S) for _ in procs]  # the reader reports after `done`
        seconds = time.perf_counter() - started
        done.set()
        read = reports.get(timeout=REPORT_TIMEOUT_S)
    finally:
        for proc in [*procs, reader]:
            proc.join(timeout=10)
            if proc.is_alive():
                proc.kill()
    return {
        "writers": writers,
        "writes_per_writer": writes,
        "keys": keys,
        "lost_writes": sum(w["lost"] for w in written),
        "valid_entries_deleted": sum(w["valid_deleted"] for w in written) + read["valid_deleted"],
        "valid_entries_deleted_by_reader": read["valid_deleted"],
        "damaged_entries_deleted": sum(w["damaged_deleted"] for w in written) + read["damaged_deleted"],
        "wrong_outputs_returned": sum(w["wrong"] for w in written),
        "reads": read["reads"],
        "reads_not_valid_after_valid": read["not_valid_after_valid"],
        "reader_errors": read["errors"],
        "final_entries_valid": sum(holds_valid_entry(teacher_dir / name, outputs) for name in outputs),
        "leftovers": sorted(p.name for p in teacher_dir.iterdir() if p.name.startswith(".")),
        "errors": sorted({e for w in written for e in w["errors"]})[:10],
        "seconds": round(seconds, 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--writes", type=int, default=200, help="writes per writer")
    parser.add_argument("--keys", type=int, default=3, help="entries the writers share")
    parser.add_argument("--cache-module", type=Path, default=None, help="another copy of train/cache.py to race")
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "cache_stress.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fairdistill-cache-stress-") as scratch:
        result = stress(Path(scratch), args.writers, args.writes, args.keys, args.cache_module)
    print(json.dumps(result, indent=2), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
