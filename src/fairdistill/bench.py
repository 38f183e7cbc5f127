"""``fairdistill bench``: what fairdistill's training costs next to a bare PyTorch loop, per dataset and per
method component, written to ``bench.json`` and shown as a table.

The floor is :func:`bare_epoch`: the same model, Adam, the same batch size, the split's in-memory tensors
shuffled with ``torch.randperm`` and sliced by index, cross-entropy. Every case (erm and kd through the real
:func:`fairdistill.train.engine.fit`, each registered loss, weighting and mixing rule, the adversary; see
:mod:`fairdistill.bench_cases`) is timed **interleaved** with it — one round runs every case once, in order, and
the median over rounds is kept — so that slow drifts of a shared machine spread over all cases alike. Ratios are
taken between medians: ``ratio_to_bare`` (to the bare loop) and ``ratio_to_erm`` (to erm through ``fit``).

The helpers here (:func:`bare_epoch`, :func:`bare_forward`, :func:`timed`, :func:`interleave`) also serve
``benchmarks/data_path.py``. Nothing is asserted about speed anywhere: the figures depend on the machine.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable, Hashable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from fairdistill.errors import ConfigError, FairdistillError

#: Learning rate of every student (the shipped configs' 3e-3) and the kd loss of the bare kd loop.
LR = 3.0e-3
KD_TAU, KD_ALPHA = 4.0, 0.9
BENCH_FILE = "bench.json"
Key = TypeVar("Key", bound=Hashable)


# ------------------------------------------------------------------------------------------- the floor, timing


def gather(encoding: Any, index: torch.Tensor | slice) -> Any:
    """Rows ``index`` (positions, or a slice: a view) of an in-memory encoding (a tensor or a mapping of
    tensors, e.g. token ids and attention mask)."""
    if isinstance(encoding, Mapping):
        return {key: value[index] for key, value in encoding.items()}
    return encoding[index]


def bare_epoch(
    model: torch.nn.Module,
    encodings: Mapping[str, Any],
    y: torch.Tensor,
    batch_size: int,
    teacher_logits: torch.Tensor | None = None,
    *,
    lr: float = LR,
    tau: float = KD_TAU,
    alpha: float = KD_ALPHA,
) -> None:
    """One epoch of the floor: a fresh Adam, randperm, index slicing, forward, loss, step. With
    ``teacher_logits`` (one row per example) the loss is kd's: (1 − α)·CE + α·τ²·KL(teacher ‖ student)."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    perm = torch.randperm(len(y))
    for start in range(0, len(y), batch_size):
        idx = perm[start : start + batch_size]
        logits = model({key: gather(enc, idx) for key, enc in encodings.items()}).logits
        loss = F.cross_entropy(logits, y[idx])
        if teacher_logits is not None:
            soft = F.kl_div(
                F.log_softmax(logits / tau, -1), F.softmax(teacher_logits[idx] / tau, -1), reduction="batchmean"
            )
            loss = (1 - alpha) * loss + alpha * tau**2 * soft
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()


@torch.no_grad()
def bare_forward(
    model: torch.nn.Module, encodings: Mapping[str, Any], n: int, batch_size: int, softmax: bool
) -> tuple[np.ndarray, np.ndarray | None]:
    """A no-grad pass over ``n`` examples in order: probabilities (``softmax``) or logits and embeddings, as
    numpy (what prediction and the teacher-cache build produce)."""
    model.eval()
    logits, embeddings = [], []
    for start in range(0, n, batch_size):
        idx = slice(start, start + batch_size)
        out = model({key: gather(enc, idx) for key, enc in encodings.items()})
        logits.append((torch.softmax(out.logits.float(), -1) if softmax else out.logits.float()).numpy())
        if not softmax and out.embedding is not None:
            embeddings.append(out.embedding.float().numpy())
    model.train()
    return np.concatenate(logits), (np.concatenate(embeddings) if embeddings else None)


def timed(run: Callable[[], Any]) -> float:
    """Wall-clock seconds of ``run()``."""
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def interleave(
    calls: Mapping[Key, Callable[[], float]],
    rounds: int,
    after_call: Callable[[int, Key, float], None] | None = None,
) -> dict[Key, list[float]]:
    """Run every call once per round, in order, for ``rounds`` rounds; each call returns its own seconds.

    Returns the seconds of every round per call. ``after_call(round, name, seconds)`` is told of each one
    (progress). Interleaving spreads a shared machine's slow drifts over all calls instead of one.
    """
    times: dict[Key, list[float]] = {name: [] for name in calls}
    for k in range(rounds):
        for name, call in calls.items():
            seconds = call()
            times[name].append(seconds)
            if after_call is not None:
                after_call(k, name, seconds)
    return times


def median(values: list[float]) -> float:
    return float(statistics.median(values))


# ---------------------------------------------------------------------------------------------------- settings


@dataclass(frozen=True)
class BenchSettings:
    """How much a bench run measures. ``quick()`` is the ~5-minute version (2 cores)."""

    datasets: tuple[str, ...] = ("adult", "colored-mnist", "text")
    rounds: int = 5
    epochs: int = 3
    #: Per dataset: subsample to about this many examples in total (None: all of them).
    max_examples: dict[str, int | None] = field(
        default_factory=lambda: {"adult": None, "colored-mnist": None, "text": 3000}
    )
    laplace_rows: int = 100_000
    laplace_dim: int = 768
    laplace_classes: int = 3
    seed: int = 0
    quick: bool = False

    @classmethod
    def quick_settings(cls) -> BenchSettings:
        return cls(
            rounds=3,
            epochs=2,
            max_examples={"adult": 6000, "colored-mnist": 1500, "text": 600},
            laplace_rows=20_000,
            quick=True,
        )

    def quick_changes(self) -> dict[str, Any] | None:
        """What ``--quick`` changed against the full run (None for a full run)."""
        if not self.quick:
            return None
        full = BenchSettings()
        return {
            key: {"full": getattr(full, key), "quick": getattr(self, key)}
            for key in ("rounds", "epochs", "max_examples", "laplace_rows")
            if getattr(full, key) != getattr(self, key)
        }


def make_settings(
    quick: bool,
    datasets: list[str] | None = None,
    max_examples: int | None = None,
    rounds: int | None = None,
    laplace_rows: int | None = None,
) -> BenchSettings:
    """The settings of ``fairdistill bench``: full or quick, with the command line's narrowing options."""
    from dataclasses import replace

    settings = BenchSettings.quick_settings() if quick else BenchSettings()
    known = BenchSettings().datasets
    if datasets is not None:
        unknown = [name for name in datasets if name not in known]
        if unknown or not datasets:
            raise ConfigError(f"--datasets: expected names among {', '.join(known)}, got {', '.join(datasets)!r}")
        settings = replace(settings, datasets=tuple(datasets))
    if max_examples is not None:
        if max_examples < 50:
            raise ConfigError(f"--max-examples: expected at least 50, got {max_examples}")
        settings = replace(settings, max_examples=dict.fromkeys(known, max_examples))
    if rounds is not None:
        if rounds < 3:
            raise ConfigError(f"--rounds: medians need at least 3 rounds, got {rounds}")
        settings = replace(settings, rounds=rounds)
    if laplace_rows is not None:
        if laplace_rows < 10:
            raise ConfigError(f"--laplace-rows: expected at least 10, got {laplace_rows}")
        settings = replace(settings, laplace_rows=laplace_rows)
    return settings


# ------------------------------------------------------------------------------------------ memory and laplace


def rss_peak_mib() -> float:
    """The process's peak resident memory so far (``ru_maxrss``: KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (2**20 if sys.platform == "darwin" else 1024), 1)


def bench_laplace(settings: BenchSettings, say: Callable[[str], None]) -> dict[str, Any]:
    """``KronLaplace.fit`` + the probit predictive on all rows of synthetic standardised features (the size of a
    transformer early exit), interleaved over the rounds like the training cases; medians."""
    from fairdistill.distill.laplace import KronLaplace

    n, d, c = settings.laplace_rows, settings.laplace_dim, settings.laplace_classes
    g = torch.Generator().manual_seed(settings.seed)
    features = torch.randn(n, d, generator=g)
    weight = torch.randn(c, d, generator=g) * (2.0 / math.sqrt(d))
    bias = torch.randn(c, generator=g) * 0.3
    before = rss_peak_mib()
    holder: dict[str, Any] = {}

    def fit() -> float:
        seconds = timed(lambda: holder.__setitem__("laplace", KronLaplace.fit(weight, bias, features)))
        return seconds

    def predictive() -> float:
        return timed(lambda: holder["laplace"].predictive(features, "probit"))

    times = interleave(
        {"fit": fit, "predictive": predictive},
        settings.rounds,
        lambda k, name, s: say(f"laplace round {k + 1}/{settings.rounds}: {name} {s:.3f} s"),
    )
    totals = [f + p for f, p in zip(times["fit"], times["predictive"], strict=True)]
    return {
        "rows": n,
        "features": d,
        "classes": c,
        "fit_seconds": median(times["fit"]),
        "predictive_probit_seconds": median(times["predictive"]),
        "fit_plus_probit_seconds": median(totals),
        "rounds_fit_plus_probit_seconds": totals,
        "features_mib": round(features.numel() * 4 / 2**20, 1),
        "ru_maxrss_growth_mib": round(rss_peak_mib() - before, 1),
    }


# ---------------------------------------------------------------------------------------------------- the run


def prepare_output(output: Path | None) -> Path:
    """The folder bench.json goes to, created: ``output`` itself, or ``runs/bench-<timestamp>``. A file in the
    way or an unwritable place is one clear error, before anything is measured."""
    from fairdistill.output_dirs import new_stamped_dir

    if output is None:
        return new_stamped_dir(Path("runs"), "bench", "bench")
    output = output.expanduser()
    if output.exists() and not output.is_dir():
        raise FairdistillError(f"--output: {output} is a file, not a folder; give a folder for {BENCH_FILE}")
    try:
        output.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise FairdistillError(f"--output: cannot create {output}: a file is in the way") from None
    except OSError as exc:
        raise FairdistillError(f"--output: cannot create {output}: {exc.strerror or exc}") from None
    if not os.access(output, os.W_OK | os.X_OK):
        raise FairdistillError(f"--output: {output} is not writable")
    return output.resolve()


def machine() -> dict[str, Any]:
    return {
        "platform": platform.platform(),
        "processor": platform.processor(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads(),
        "torch_num_interop_threads": torch.get_num_interop_threads(),
        "omp_num_threads_env": os.environ.get("OMP_NUM_THREADS"),
        "device": "cpu",
    }


def run_bench(
    settings: BenchSettings, output: Path, say: Callable[[str], None], threads: int | None = None
) -> dict[str, Any]:
    """Measure everything ``settings`` asks for and write ``output/bench.json`` (atomically); the document."""
    from fairdistill import __version__
    from fairdistill.atomic_io import write_json
    from fairdistill.bench_cases import bench_dataset

    if threads is not None:
        if threads < 1:
            raise ConfigError(f"--threads: expected at least 1, got {threads}")
        torch.set_num_threads(threads)
    started = time.perf_counter()
    document: dict[str, Any] = {
        "benchmark": "seconds per epoch of fairdistill vs a bare PyTorch loop (interleaved rounds, medians)",
        "fairdistill": __version__,
        "date": dt.datetime.now().isoformat(timespec="seconds"),
        "machine": machine(),
        "quick": settings.quick,
        "quick_changes": settings.quick_changes(),
        "settings": {
            "rounds": settings.rounds,
            "epochs": settings.epochs,
            "max_examples": {name: settings.max_examples.get(name) for name in settings.datasets},
            "seed": settings.seed,
            "lr": LR,
            "optimizer": "Adam",
            "reference": (
                "bare: the same model, Adam, batch size and in-memory tensors, randperm + slicing, cross-entropy; "
                f"bare-kd: the same loop with kd's loss (tau {KD_TAU:g}, alpha {KD_ALPHA:g}) on the cached teacher "
                "logits. The bare loops step torch's default Adam; fit steps torch's fused Adam on CPU and CUDA"
            ),
        },
        "datasets": {},
    }
    for name in settings.datasets:
        document["datasets"][name] = bench_dataset(name, settings, say)
    document["laplace"] = bench_laplace(settings, say)
    document["peak_memory"] = {"ru_maxrss_mib": rss_peak_mib(), "torch_cuda": "not used (the bench runs on the CPU)"}
    document["seconds_total"] = round(time.perf_counter() - started, 1)
    write_json(output / BENCH_FILE, document)
    return document


# -------------------------------------------------------------------------------------------------- the table


def _cell(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table_rows(dataset: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    """(case, s/epoch, ×bare, ×erm) rows of one dataset's cases; skipped cases say so."""
    rows = []
    for name, case in dataset["cases"].items():
        if "skipped" in case:
            rows.append((name, "skipped", "", ""))
            continue
        rows.append(
            (name, f"{case['seconds_per_epoch']:.4f}", _cell(case["ratio_to_bare"]), _cell(case["ratio_to_erm"]))
        )
    return rows


def print_tables(document: dict[str, Any], console: Any) -> None:
    """The bench as rich tables (80 columns): one per dataset, then the teacher cache, Laplace and memory."""
    from rich.markup import escape
    from rich.table import Table

    machine, settings = document["machine"], document["settings"]
    console.print(
        f"torch threads {machine['torch_num_threads']} of {machine['cpu_count']} cores; each case "
        f"{settings['epochs']} epochs per fit, median of {settings['rounds']} interleaved rounds"
        + (" (--quick)" if document["quick"] else ""),
        highlight=False,
        markup=False,
    )
    for name, dataset in document["datasets"].items():
        if dataset.get("status") == "skipped":
            console.print(f"{name}: skipped ({dataset['reason']})", highlight=False, markup=False)
            continue
        table = Table(
            title=f"{name} ({dataset['train_examples']} train, batch {dataset['batch_size']})",
            title_justify="left",
        )
        for header, justify in (("case", "left"), ("s/epoch", "right"), ("×bare", "right"), ("×erm", "right")):
            table.add_column(header, justify=justify)  # type: ignore[arg-type]
        for row in table_rows(dataset):
            table.add_row(*(escape(cell) for cell in row))
        console.print(table)
        cache = dataset["teacher_cache"]
        console.print(
            f"  teacher-cache build {cache['build_seconds']:.4f} s = {cache['ratio_to_bare_forward']:.2f}× a bare "
            f"teacher forward ({cache['bare_forward_seconds']:.4f} s)",
            highlight=False,
            markup=False,
        )
        skipped = {n: c["skipped"] for n, c in dataset["cases"].items() if "skipped" in c}
        for case, reason in skipped.items():
            console.print(f"  skipped {case}: {reason}", highlight=False, markup=False, soft_wrap=True)
    laplace = document["laplace"]
    console.print(
        f"laplace: fit + probit predictive on {laplace['rows']:,} × {laplace['features']}, {laplace['classes']} "
        f"classes: {laplace['fit_plus_probit_seconds']:.3f} s (fit {laplace['fit_seconds']:.3f} s)",
        highlight=False,
        markup=False,
    )
    console.print(
        f"peak memory (ru_maxrss): {document['peak_memory']['ru_maxrss_mib']:.0f} MiB; "
        f"{document['seconds_total']:.0f} s in all",
        highlight=False,
        markup=False,
    )
