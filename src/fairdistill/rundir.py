"""The run directory: where a run keeps its files, writing them, and reading them back with their content checked.

This module owns every file format a run writes and reads: the paths, the predictions parquet files, metrics.json
with its schema version, the training checkpoints' names and the completion marker. The run
(:mod:`fairdistill.experiment`) writes through it and the report (:mod:`fairdistill.report`) only reads through
it; it depends on nothing of fairdistill but :mod:`~fairdistill.errors` and :mod:`~fairdistill.atomic_io`.

Single-seed runs: ``predictions/<model>-<split>.parquet`` and ``checkpoints/<model>.pt``. Runs with several
seeds put each seed's files one level down: ``predictions/seed<k>/<model>-<split>.parquet`` and
``checkpoints/seed<k>/<model>.pt``.

:func:`read_metrics` and :func:`load_frames` are the only readers of a finished run: a damaged or foreign file
gives one :class:`~fairdistill.errors.FairdistillError` naming the file and the field, never a traceback from
deep inside the report.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import numpy as np
import pandas as pd
import pyarrow as pa

from fairdistill.atomic_io import atomic_path, write_json, write_text
from fairdistill.errors import FairdistillError

if TYPE_CHECKING:
    from fairdistill.evaluate.predict import Predictions

FIGURES = "figures"
#: The metrics document of a run.
METRICS_FILE = "metrics.json"
#: Written into a run directory as the very last step; a run directory without it can be resumed.
COMPLETE_MARKER = ".complete"
#: Suffix of the per-model training checkpoints (``checkpoints/<model>-train.pt``) kept until the run completes.
TRAINING_CHECKPOINT_SUFFIX = "-train.pt"

#: The version of metrics.json this fairdistill writes and reads.
METRICS_SCHEMA_VERSION = 1

#: The columns every predictions file has, besides ``prob_0`` … ``prob_<C-1>``.
PREDICTION_COLUMNS = ("index", "y", "attr", "group", "pred")
#: Prefix of the columns holding a randomised classifier's probability of drawing each class (``pmf_1``).
PMF_PREFIX = "pmf_"

_PROB_COLUMN = re.compile(r"^prob_\d+$")


def seed_part(seed: int, several: bool) -> str:
    """The sub-folder of one seed's files ("" for a single-seed run)."""
    return f"seed{seed}" if several else ""


def predictions_dir(run_dir: Path, seed: int, several: bool) -> Path:
    return run_dir / "predictions" / seed_part(seed, several)


def checkpoints_dir(run_dir: Path, seed: int, several: bool) -> Path:
    return run_dir / "checkpoints" / seed_part(seed, several)


def predictions_path(folder: Path, model: str, split: str) -> Path:
    """One model's predictions on one split, in a seed's predictions folder (:func:`predictions_dir`)."""
    return folder / f"{model}-{split}.parquet"


def model_checkpoint_path(folder: Path, model: str) -> Path:
    """A model's selected weights, in a seed's checkpoints folder (:func:`checkpoints_dir`)."""
    return folder / f"{model}.pt"


def training_checkpoint_path(folder: Path, model: str) -> Path:
    """A model's training checkpoint (to resume it), in a seed's checkpoints folder; removed when the run completes."""
    return folder / f"{model}{TRAINING_CHECKPOINT_SUFFIX}"


def run_seeds(metrics: dict[str, Any]) -> list[int]:
    """The seeds of a run from its metrics (``run.seeds``, or ``[run.seed]`` for files written before seeds)."""
    run = metrics.get("run", {})
    return list(run.get("seeds") or [run.get("seed", 0)])


# ----------------------------------------------------------------------------------------------- predictions


def load_frames(run_dir: Path, metrics: dict[str, Any], split: str = "test") -> dict[int, dict[str, pd.DataFrame]]:
    """Predictions of every model on ``split``, per seed: ``{seed: {model: frame}}`` (models in run order).

    ``metrics`` is a checked document (:func:`read_metrics`), so there is at least one seed and one model; every
    frame is checked against its dataset section, and all of them must hold the same examples in the same order.
    """
    seeds = run_seeds(metrics)
    several = len(seeds) > 1
    frames: dict[int, dict[str, pd.DataFrame]] = {}
    first: tuple[Path, pd.DataFrame] | None = None
    for seed in seeds:
        folder = predictions_dir(run_dir, seed, several)
        frames[seed] = {}
        for name in metrics["models"]:
            path = predictions_path(folder, name, split)
            frame = read_predictions(path, metrics["dataset"])
            if first is None:
                first = (path, frame)
            else:
                _check_same_examples(path, frame, *first)
            frames[seed][name] = frame
    return frames


def read_predictions(path: Path, dataset: dict[str, Any]) -> pd.DataFrame:
    """One predictions parquet, checked: readable, not empty, the columns of :data:`PREDICTION_COLUMNS` as
    integers in their ranges and ``prob_0`` … ``prob_<C-1>`` as finite numbers."""
    if not path.is_file():
        raise FairdistillError(f"{path}: predictions file missing")
    try:
        frame = pd.read_parquet(path)
    except (pa.ArrowException, OSError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise FairdistillError(f"{path}: not a readable parquet file ({reason})") from None
    num_classes = dataset["num_classes"]
    probs = [f"prob_{c}" for c in range(num_classes)]
    missing = [c for c in (*PREDICTION_COLUMNS, *probs) if c not in frame.columns]
    if missing:
        raise FairdistillError(f"{path}: missing column(s) {', '.join(missing)}")
    extra = sorted(c for c in frame.columns if _PROB_COLUMN.match(str(c)) and c not in probs)
    if extra:
        raise FairdistillError(f"{path}: column(s) {', '.join(extra)} beyond the {num_classes} classes of the run")
    if len(frame) == 0:
        raise FairdistillError(f"{path}: no rows")
    upper = {
        "y": num_classes,
        "pred": num_classes,
        "attr": len(dataset["attr_names"]),
        "group": len(dataset["group_names"]),
    }
    for column in PREDICTION_COLUMNS:
        _check_integers(path, frame[column], column, upper.get(column))
    if not frame["index"].is_unique:
        raise FairdistillError(f"{path}: column index: repeated example indices")
    for column in probs:
        values = frame[column]
        if not pd.api.types.is_numeric_dtype(values) or not np.isfinite(values.to_numpy(dtype=np.float64)).all():
            raise FairdistillError(f"{path}: column {column}: expected finite probabilities")
    return frame


def _check_integers(path: Path, values: pd.Series, column: str, upper: int | None) -> None:
    if not pd.api.types.is_integer_dtype(values) or values.isna().any():
        raise FairdistillError(f"{path}: column {column}: expected integers, got {values.dtype}")
    if values.min() < 0 or (upper is not None and values.max() >= upper):
        bound = f"[0, {upper})" if upper is not None else "[0, ∞)"
        raise FairdistillError(f"{path}: column {column}: values outside {bound}")


def _check_same_examples(path: Path, frame: pd.DataFrame, first_path: Path, first: pd.DataFrame) -> None:
    same = len(frame) == len(first) and all(
        np.array_equal(frame[c].to_numpy(), first[c].to_numpy()) for c in ("index", "y", "attr", "group")
    )
    if not same:
        raise FairdistillError(f"{path}: not the same examples (index, y, attr, group) as {first_path}")


# ----------------------------------------------------------------------------------------------- writing


def write_predictions(
    path: Path,
    predictions: Predictions,
    readouts: dict[str, np.ndarray] | None = None,
    pmf: np.ndarray | None = None,
) -> None:
    """The per-example parquet; early-readout probabilities become ``readout_<tap>_prob_<c>`` columns. ``pmf``:
    of a randomised classifier (post-processed model, peer; its ``prob_<c>`` one-hot of the drawn label), the
    probability of drawing each class, as ``pmf_<c>`` columns."""
    frame = predictions.to_frame()
    for tap, probs in (readouts or {}).items():
        for c in range(probs.shape[1]):
            frame[f"readout_{tap}_prob_{c}"] = probs[:, c]
    if pmf is not None:
        for c in range(pmf.shape[1]):
            frame[f"{PMF_PREFIX}{c}"] = pmf[:, c]
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def write_metrics(run_dir: Path, metrics: dict[str, Any]) -> None:
    """metrics.json (written whole or not at all); its ``schema_version`` is :data:`METRICS_SCHEMA_VERSION`."""
    write_json(run_dir / METRICS_FILE, metrics)


def is_complete(run_dir: Path) -> bool:
    """Whether the run in ``run_dir`` finished (:func:`mark_complete`); one without the marker can be resumed."""
    return (run_dir / COMPLETE_MARKER).is_file()


def mark_complete(run_dir: Path, when: str) -> None:
    """Write the completion marker (holding ``when``) and remove the training checkpoints, only needed to resume;
    the selected weights stay in ``checkpoints/<model>.pt``."""
    write_text(run_dir / COMPLETE_MARKER, when + "\n")
    remove_training_checkpoints(run_dir)


def remove_training_checkpoints(run_dir: Path) -> None:
    for stale in (run_dir / "checkpoints").rglob(f"*{TRAINING_CHECKPOINT_SUFFIX}"):
        stale.unlink()


def finished_models(run_dir: Path) -> list[str]:
    """The models whose selected weights were saved (every seed's; sorted, repeated once per seed)."""
    return sorted(
        p.stem for p in (run_dir / "checkpoints").rglob("*.pt") if not p.name.endswith(TRAINING_CHECKPOINT_SUFFIX)
    )


def saved_teacher(run_dir: Path) -> Path | None:
    """A teacher checkpoint the run saved (the first seed's), or None."""
    return next(run_dir.glob("checkpoints/**/teacher.pt"), None)


# ----------------------------------------------------------------------------------------------- metrics.json


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """A run directory's metrics.json content, checked by :func:`check_metrics`; a readable error when it is not
    a run directory or the file is damaged."""
    run_dir = Path(run_dir)
    path = run_dir / METRICS_FILE
    if not run_dir.is_dir():
        raise FairdistillError(f"run directory not found: {run_dir.resolve()}")
    if not path.is_file():
        raise FairdistillError(f"{run_dir.resolve()}: no metrics.json (is this a fairdistill run directory?)")
    try:
        metrics = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise FairdistillError(f"{path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise FairdistillError(f"{path}: cannot be read ({exc.strerror or exc})") from None
    return check_metrics(metrics, path)


@dataclass(frozen=True)
class _Kind:
    """A JSON type a field must have: its description and a test."""

    text: str
    test: Callable[[Any], bool]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, float)) and math.isfinite(v)


MAPPING = _Kind("a mapping", lambda v: isinstance(v, dict))
STRING = _Kind("a string", lambda v: isinstance(v, str))
INTEGER = _Kind("an integer", _is_int)
NUMBER = _Kind("a finite number", _is_number)
NUMBER_OR_NULL = _Kind("a finite number or null", lambda v: v is None or _is_number(v))
STRINGS = _Kind("a list of strings", lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v))
INTEGERS = _Kind("a list of integers", lambda v: isinstance(v, list) and all(_is_int(x) for x in v))
LIST = _Kind("a list", lambda v: isinstance(v, list))
NUMBERS_BY_NAME = _Kind(
    "a mapping of numbers or nulls", lambda v: isinstance(v, dict) and all(map(NUMBER_OR_NULL.test, v.values()))
)
#: Any other metric of a split: a number (null: undefined) or a mapping of them.
METRIC = _Kind("a number, null or a mapping of numbers", lambda v: NUMBER_OR_NULL.test(v) or NUMBERS_BY_NAME.test(v))

#: The metrics of one split (``compute_metrics``) that hold one value per group or class; the others listed are
#: numbers (or null).
_PER_NAME_METRICS = frozenset({"group_accuracy", "group_count", "group_ece", "class_accuracy", "recall_disparity"})
_SCALAR_METRICS = frozenset(
    {
        "n",
        "accuracy",
        "macro_precision",
        "macro_recall",
        "macro_f1",
        "worst_group_accuracy",
        "balanced_accuracy",
        "worst_class_accuracy",
        "recall_disparity_mad",
        "recall_disparity_max",
        "dp_difference",
        "dp_difference_max",
        "eo_difference",
        "eo_difference_max",
        "ece",
    }
)


def _json_type(value: Any) -> str:
    names = {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer", float: "number"}
    if value is None:
        return "null"
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return names.get(type(value), type(value).__name__)


@dataclass(frozen=True)
class _Checker:
    """Checks the fields of one file; every failure names the file and the dotted field."""

    path: Path

    def fail(self, where: str, message: str) -> NoReturn:
        raise FairdistillError(f"{self.path}: {where}: {message}")

    def value(self, value: Any, where: str, kind: _Kind) -> Any:
        if not kind.test(value):
            self.fail(where, f"expected {kind.text}, got {_json_type(value)}")
        return value

    def fields(
        self, section: dict[str, Any], where: str, required: dict[str, _Kind], optional: dict[str, _Kind] | None = None
    ) -> None:
        """The ``required`` keys are present and every key of either table that is present has its kind."""
        for key, kind in required.items():
            if key not in section:
                self.fail(f"{where}.{key}", "missing")
            self.value(section[key], f"{where}.{key}", kind)
        for key, kind in (optional or {}).items():
            if key in section:
                self.value(section[key], f"{where}.{key}", kind)

    def mapping(self, parent: dict[str, Any], key: str, where: str, *, required: bool = True) -> dict[str, Any]:
        """``parent[key]`` as a mapping ({} when it is optional and absent)."""
        if key not in parent:
            if required:
                self.fail(f"{where}.{key}" if where else key, "missing")
            return {}
        return self.value(parent[key], f"{where}.{key}" if where else key, MAPPING)

    def entries(self, section: dict[str, Any], where: str, kind: _Kind = MAPPING) -> None:
        for key, value in section.items():
            self.value(value, f"{where}.{key}", kind)


def check_metrics(metrics: Any, path: Path) -> dict[str, Any]:
    """``metrics`` (the parsed content of ``path``) when it is a metrics.json this version reads.

    Checked: ``schema_version``; ``dataset`` (name, num_classes, class_names, attr_names, group_names);
    ``run``; ``models``, a non-empty mapping of model entries with ``splits.val`` / ``splits.test`` of metrics
    (and ``splits_std``, ``seeds``, ``history`` when present); the ``amplification`` / ``margins`` sections when
    present. Unknown extra keys are allowed.
    """
    check = _Checker(path)
    if not isinstance(metrics, dict):
        got = _json_type(metrics)
        raise FairdistillError(f"{path}: not a fairdistill metrics file (expected a mapping, got {got})")
    if "schema_version" not in metrics:
        check.fail("schema_version", "missing (not a fairdistill metrics file, or one written before versions)")
    version = metrics["schema_version"]
    if not _is_int(version) or version != METRICS_SCHEMA_VERSION:
        check.fail(
            "schema_version", f"expected {METRICS_SCHEMA_VERSION} (the version this fairdistill reads), got {version!r}"
        )
    _check_dataset(check, check.mapping(metrics, "dataset", ""))
    _check_run(check, check.mapping(metrics, "run", ""))
    _check_models(check, check.mapping(metrics, "models", ""))
    if "amplification" in metrics:
        _check_amplification(check, check.mapping(metrics, "amplification", ""))
    if "margins" in metrics:
        _check_margins(check, check.mapping(metrics, "margins", ""))
    return metrics


def _check_dataset(check: _Checker, dataset: dict[str, Any]) -> None:
    check.fields(
        dataset,
        "dataset",
        {"name": STRING, "num_classes": INTEGER, "class_names": STRINGS, "attr_names": STRINGS, "group_names": STRINGS},
        {"options": MAPPING, "modality": STRING, "attr_label": STRING, "counts": MAPPING, "provenance": MAPPING},
    )
    if dataset["num_classes"] < 1:
        check.fail("dataset.num_classes", f"expected a positive integer, got {dataset['num_classes']}")
    if len(dataset["class_names"]) != dataset["num_classes"]:
        check.fail("dataset.class_names", f"{len(dataset['class_names'])} names for {dataset['num_classes']} classes")
    for key in ("attr_names", "group_names"):
        if not dataset[key]:
            check.fail(f"dataset.{key}", "expected at least one name, got an empty list")
    check.entries(dataset.get("counts", {}), "dataset.counts", INTEGER)


def _check_run(check: _Checker, run: dict[str, Any]) -> None:
    check.fields(
        run,
        "run",
        {"name": STRING},
        {
            "seed": INTEGER,
            "seeds": INTEGERS,
            "select": STRING,
            "started": STRING,
            "seconds": NUMBER,
            "fairdistill": STRING,
            "torch": STRING,
            "python": STRING,
            "device": STRING,
        },
    )
    seeds = run.get("seeds")
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
        check.fail("run.seeds", f"expected distinct seeds, at least one, got {seeds}")


def _check_models(check: _Checker, models: dict[str, Any]) -> None:
    if not models:
        check.fail("models", "expected at least one model, got none")
    for name in models:
        where = f"models.{name}"
        if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
            check.fail(where, "a model name must be usable as a file name")
        entry = check.value(models[name], where, MAPPING)
        check.fields(
            entry,
            where,
            {"role": STRING, "method": STRING, "params": INTEGER, "splits": MAPPING},
            {
                "model": MAPPING,
                "train_seconds": NUMBER,
                "selected_epoch": INTEGER,
                "history": LIST,
                "splits_std": MAPPING,
                "seeds": MAPPING,
                "source": STRING,  # a post-processed model's: the model it post-processes
                "label": STRING,  # how the report shows the model (a peer: "peer: expgrad-eo (logistic)")
            },
        )
        _check_splits(check, entry["splits"], f"{where}.splits", required=("val", "test"))
        _check_splits(check, entry.get("splits_std", {}), f"{where}.splits_std", required=())
        _check_history(check, entry.get("history", []), f"{where}.history")
        for seed, run in entry.get("seeds", {}).items():
            at = f"{where}.seeds.{seed}"
            check.value(run, at, MAPPING)
            check.fields(
                run, at, {}, {"splits": MAPPING, "history": LIST, "selected_epoch": INTEGER, "train_seconds": NUMBER}
            )
            _check_splits(check, run.get("splits", {}), f"{at}.splits", required=())
            _check_history(check, run.get("history", []), f"{at}.history")


def _check_splits(check: _Checker, splits: dict[str, Any], where: str, required: tuple[str, ...]) -> None:
    for split in required:
        if split not in splits:
            check.fail(f"{where}.{split}", "missing")
    for split, values in splits.items():
        _check_split_metrics(check, values, f"{where}.{split}", nested=True)


def _check_split_metrics(check: _Checker, values: Any, at: str, nested: bool) -> None:
    """One split's metrics; with ``nested``, an ``expected`` mapping of the same kind (a randomised classifier's
    metrics over its draw) is allowed once."""
    check.value(values, at, MAPPING)
    for key, value in values.items():
        if key == "undefined":  # metric → why it is null on this split
            check.entries(check.value(value, f"{at}.{key}", MAPPING), f"{at}.{key}", STRING)
        elif key == "expected" and nested:
            _check_split_metrics(check, value, f"{at}.{key}", nested=False)
        else:
            kind = (
                NUMBERS_BY_NAME if key in _PER_NAME_METRICS else (NUMBER_OR_NULL if key in _SCALAR_METRICS else METRIC)
            )
            check.value(value, f"{at}.{key}", kind)


def _check_history(check: _Checker, history: list[Any], where: str) -> None:
    for i, record in enumerate(history):
        check.value(record, f"{where}.{i}", MAPPING)
        check.fields(record, f"{where}.{i}", {"epoch": INTEGER})


def _check_amplification(check: _Checker, section: dict[str, Any]) -> None:
    where = "amplification"
    check.fields(
        section,
        where,
        {"split": STRING, "confidence": NUMBER, "resamples": INTEGER, "students": MAPPING},
        {"reference": STRING, "seeds": INTEGERS, "bootstrap_seed": INTEGER, "per_seed": MAPPING},
    )
    for student, by_metric in section["students"].items():
        at = f"{where}.students.{student}"
        check.value(by_metric, at, MAPPING)
        for key, entry in by_metric.items():
            check.value(entry, f"{at}.{key}", MAPPING)
            check.entries(entry, f"{at}.{key}", NUMBER_OR_NULL)


def _check_margins(check: _Checker, section: dict[str, Any]) -> None:
    where = "margins"
    check.fields(section, where, {"models": MAPPING}, {"split": STRING, "seed": INTEGER, "student_errors": MAPPING})
    for name, entry in section["models"].items():
        at = f"{where}.models.{name}"
        check.value(entry, at, MAPPING)
        check.fields(
            entry,
            at,
            {"worst_group": INTEGER, "worst_group_size": INTEGER, "layers": MAPPING},
            {"worst_group_name": STRING},
        )
        for layer, values in entry["layers"].items():
            check.value(values, f"{at}.layers.{layer}", MAPPING)
            check.fields(values, f"{at}.layers.{layer}", {"all": NUMBER, "worst_group": NUMBER_OR_NULL})
