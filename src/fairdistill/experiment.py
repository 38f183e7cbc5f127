"""The run: data → teacher → teacher cache → one student per method → evaluate → run directory → table."""

from __future__ import annotations

import datetime as dt
import logging
import platform
import shutil
import sys
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

import fairdistill
from fairdistill.atomic_io import write_text
from fairdistill.config import KindSpec, MethodConfig, RunConfig, config_to_yaml
from fairdistill.data import Splits, load_dataset
from fairdistill.distill import LOSSES, Method, MethodContext, TeacherOutputs, build_method
from fairdistill.errors import ConfigError, FairdistillError, TrainingDivergedError, as_user_error
from fairdistill.evaluate.analysis import add_analysis
from fairdistill.evaluate.expected_rates import expected_rate_metrics
from fairdistill.evaluate.metrics import compute_metrics
from fairdistill.evaluate.peers import check_peer_data, fit_peer, plan_peers
from fairdistill.evaluate.postprocess import check_binary, postprocess, threshold_name, without_calibration
from fairdistill.evaluate.predict import Predictions, predict
from fairdistill.models import TappedModel, count_parameters
from fairdistill.output_dirs import new_stamped_dir
from fairdistill.plan import (  # noqa: F401 -- the planning names are also reached through this module
    SEED_PLACEHOLDER,
    MethodPlan,
    Plan,
    RolePlan,
    build_role_model,
    dry_run,
    load_plan_data,
    make_plan,
    method_context,
    probe,
    run_cache_dir,
    teacher_online,
)
from fairdistill.processes import SINGLE, Processes
from fairdistill.progress import ON_SCREEN, SILENT, Progress
from fairdistill.registry import Options
from fairdistill.report.aggregate import combine_seeds
from fairdistill.report.build import write_report
from fairdistill.report.changes import example_renderer
from fairdistill.run_record import check_same_config, read_record, record_data, start_record
from fairdistill.rundir import (
    METRICS_SCHEMA_VERSION,
    checkpoints_dir,
    finished_models,
    is_complete,
    load_frames,
    mark_complete,
    model_checkpoint_path,
    predictions_dir,
    predictions_path,
    read_metrics,
    remove_training_checkpoints,
    saved_teacher,
    training_checkpoint_path,
    write_metrics,
    write_predictions,
)
from fairdistill.tracking import RunTracker
from fairdistill.train.cache import (
    compute_teacher_outputs,
    load_or_compute,
    read_entry,
    split_digest,
    usable_cache_dir,
)
from fairdistill.train.checkpoint import load_model_checkpoint, save_model_checkpoint
from fairdistill.train.engine import FitResult, fit, make_accelerator

log = logging.getLogger("fairdistill")


@dataclass
class ModelRecord:
    """One trained or loaded model and what the run measured about it."""

    name: str
    role: str
    method: str
    model: TappedModel
    fit: FitResult | None = None
    seconds: float = 0.0
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: Early-readout probabilities: tap → split → (N, C).
    readouts: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    #: Predictions on val and test (set by ``_evaluate``; post-processing starts from them).
    predictions: dict[str, Predictions] = field(default_factory=dict)


@dataclass
class ExtraRecord:
    """A row that is no trained network: a model post-processed by fairlearn's ThresholdOptimizer (role
    ``postprocessed``), a peer fitted by ExponentiatedGradient (role ``peer``) or the distilled student inside
    ExponentiatedGradient (role ``reduced``); ``entry``: its own fields of
    metrics.json (``params``, ``source``, ``label``, ``postprocess`` / ``peer`` settings)."""

    name: str
    role: str
    method: str
    entry: dict[str, Any]
    seconds: float = 0.0
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)
    fit: None = None


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]
    #: False on the other processes of a multi-process run: they trained and evaluated their shards, and
    #: process 0 alone wrote the run directory and holds the metrics (theirs are empty).
    is_main: bool = True


def run(config: RunConfig, *, progress: Progress = SILENT) -> RunResult:
    """Execute a whole run and write its directory under ``config.output``; returns it with the metrics.
    ``progress`` shows the plan, the models' epochs and the phases as they happen.

    A user error met on the way (bad data, an unreadable checkpoint, a full disk) removes the run directory,
    which would only hold a half-written run; a loss that diverges keeps the models finished before it and
    says where. Crashes and interruptions keep the directory for ``--resume``.
    """
    plan = make_plan(config)
    processes = run_processes(config)
    # one run directory: process 0 creates it and tells the others where it is (a failure there ends process 0,
    # and the launcher stops the others)
    run_dir = processes.from_main(lambda: new_stamped_dir(Path(config.output), config.name))
    try:
        if processes.is_main:
            write_text(run_dir / "config.yaml", config_to_yaml(config))
            start_record(run_dir, resolved_config(config))
        return _run_in(plan, run_dir, record=None, progress=progress, processes=processes)
    except BaseException as exc:
        user_error = as_user_error(exc, where=run_dir)
        if user_error is None:
            raise
        raise (_after_user_error(user_error, run_dir) if processes.is_main else user_error) from None


def run_processes(config: RunConfig) -> Processes:
    """The processes of this run: one, or those ``torchrun`` / ``accelerate launch`` started (the process group is
    set up by the run's Accelerator)."""
    return Processes.current(make_accelerator(config.device, config.mixed_precision).device)


def resolved_config(config: RunConfig) -> dict[str, Any]:
    """The config as written to config.yaml (defaults filled in), as JSON-like data."""
    return config.model_dump(mode="json", exclude_none=True)


def _after_user_error(error: FairdistillError, run_dir: Path) -> FairdistillError:
    """Remove a fresh run's directory after a user error, or keep the finished models of a diverged run."""
    finished = finished_models(run_dir)
    if isinstance(error, TrainingDivergedError) and finished:
        # the diverged model's partial checkpoint: resuming with the same settings would diverge again
        remove_training_checkpoints(run_dir)
        teacher = saved_teacher(run_dir)
        reuse = f"; reuse the teacher with teacher.checkpoint: {teacher}" if teacher is not None else ""
        return TrainingDivergedError(
            f"{error}\nThe models finished before it ({', '.join(dict.fromkeys(finished))}) are kept in "
            f"{run_dir / 'checkpoints'}{reuse}"
        )
    shutil.rmtree(run_dir, ignore_errors=True)
    return error


def resume(run_dir: Path, *, progress: Progress = SILENT) -> RunResult:
    """Continue a run that stopped (crash, kill -9, power loss) in its own directory, with its saved config.

    Models whose training finished are reloaded from their training checkpoints, a model killed mid-training
    continues from its last completed epoch, and evaluation and the report are redone; the result is the
    metrics.json an uninterrupted run would have written (timings aside). A complete run is left as it is.
    """
    from fairdistill.config import load_config

    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise FairdistillError(f"--resume: run directory not found: {run_dir}")
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FairdistillError(f"--resume: {run_dir} has no config.yaml (is it a fairdistill run directory?)")
    record = read_record(run_dir)
    config = load_config(config_path)
    check_same_config(run_dir, record, resolved_config(config))
    processes = run_processes(config)
    if is_complete(run_dir):
        log.warning("run %s is already complete; nothing to resume", run_dir)
        return RunResult(run_dir, read_metrics(run_dir) if processes.is_main else {}, processes.is_main)
    try:
        return _run_in(make_plan(config), run_dir, record=record, progress=progress, processes=processes)
    except BaseException as exc:
        user_error = as_user_error(exc, where=run_dir)
        if user_error is None:
            raise
        raise user_error from None  # the directory stays: it holds the run being resumed


def _run_in(
    plan: Plan, run_dir: Path, *, record: dict[str, Any] | None, progress: Progress, processes: Processes
) -> RunResult:
    """Run (``record`` None) or resume (``record``: run.json as read at resume) a run in its directory; with several
    processes, only process 0 logs to log.txt and writes."""
    resumed = record is not None
    if not processes.is_main:
        progress = SILENT
    log_file = _log_to(run_dir / "log.txt") if processes.is_main else nullcontext()
    with log_file, progress.showing_log():
        log.info(
            "fairdistill %s, torch %s, run dir %s%s",
            fairdistill.__version__,
            torch.__version__,
            run_dir,
            " (resumed)" if resumed else "",
        )
        log.info("plan:\n%s", plan.describe(), extra=ON_SCREEN)
        if processes.several:
            log.info("%d processes; this is process %d", processes.world, processes.rank)
        metrics = _execute(plan, run_dir, record, progress, processes)
        if processes.is_main:
            mark_complete(run_dir, dt.datetime.now().isoformat(timespec="seconds"))
    return RunResult(run_dir, metrics, processes.is_main)


@contextmanager
def _log_to(path: Path) -> Iterator[None]:
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    warnings_shown = logging.StreamHandler(sys.stderr)  # warnings also reach the user, not only log.txt
    warnings_shown.setLevel(logging.WARNING)
    warnings_shown.setFormatter(logging.Formatter("warning: %(message)s"))
    root = logging.getLogger("fairdistill")
    previous_level = root.level
    root.setLevel(logging.INFO)
    root.addHandler(handler)
    root.addHandler(warnings_shown)
    try:
        yield
    finally:
        root.removeHandler(handler)
        root.removeHandler(warnings_shown)
        root.setLevel(previous_level)
        handler.close()


def _execute(
    plan: Plan, run_dir: Path, record: dict[str, Any] | None, progress: Progress, processes: Processes
) -> dict[str, Any]:
    """Every seed of the run, then metrics.json (seeds combined, amplification, margins) and the report (process
    0; the others return an empty dict after the last model is evaluated)."""
    config = plan.config
    started = time.time()
    accelerator = make_accelerator(config.device, config.mixed_precision)
    seeds = config.seed_list
    teacher_epochs = 0 if plan.teacher.checkpoint is not None else plan.teacher.train.epochs
    progress.start(
        plan.describe(),
        run_dir,
        models=len(seeds) * (1 + len(plan.methods)),
        epochs=len(seeds) * (teacher_epochs + sum(m.train.epochs for m in plan.methods)),
        resumed=record is not None,
    )
    with progress.phase(f"loading data ({config.data.name})"):
        splits = load_plan_data(plan)
    log.info("data: %s", {name: len(split) for name, split in splits.items()})
    if config.peers:
        check_peer_data(splits)  # before any training: images read from files have no rows for scikit-learn
    check_split_sizes({name: len(split) for name, split in splits.items()}, processes.world)
    if processes.is_main:
        record_data(run_dir, record, {name: split_digest(split) for name, split in splits.items()})
    # process 0 alone writes the cache (the others read what it wrote, wherever it wrote it)
    cache_dir = (
        usable_cache_dir(run_cache_dir(config)) if plan.needs_teacher and processes.is_main else run_cache_dir(config)
    )
    several = len(seeds) > 1
    tracker = None
    if processes.is_main:
        tracker = RunTracker.open(config.log_with, config.name, run_dir, config.model_dump(mode="json"))
    documents = {}
    for k, seed in enumerate(seeds):
        if several:
            log.info("seed %d (%d of %d)", seed, k + 1, len(seeds))
        records = _execute_seed(plan, splits, accelerator, seed, run_dir, several, cache_dir, progress, processes)
        if not processes.is_main:
            continue
        documents[seed] = _metrics_document(plan, splits, records, started, accelerator, seed)
        if tracker is not None:
            for model_record in records:
                if model_record.fit is not None:
                    name = f"seed{seed}/{model_record.name}" if several else model_record.name
                    tracker.log_history(name, model_record.fit.history)
    if not processes.is_main:
        return {}
    with progress.phase("metrics: seeds combined, amplification, margins"):
        metrics = combine_seeds(documents)
        metrics = add_analysis(metrics, load_frames(run_dir, metrics, "test"), seed=seeds[0])
        metrics["run"]["seconds"] = round(time.time() - started, 3)
        write_metrics(run_dir, metrics)
    if processes.is_main:
        with progress.phase("report: figures, report.html, report.md"):
            renderer = example_renderer(
                splits.test,
                splits.info.modality,
                splits.provenance.get("feature_names"),
                splits.provenance.get("standardisation"),
            )
            write_report(run_dir, metrics, renderer)
    if tracker is not None:
        tracker.log_final(metrics)
        tracker.finish()
    log.info("run finished in %.1f s", time.time() - started, extra=ON_SCREEN)
    progress.finish()
    return metrics


def check_split_sizes(sizes: dict[str, int], processes: int) -> None:
    """Refuse splits with fewer examples than processes (each process predicts and trains on its own share)."""
    small = [f"{name} has {size}" for name, size in sizes.items() if size < processes]
    if small:
        raise ConfigError(
            f"data: every split needs at least one example per process; with {processes} processes, split "
            f"{', '.join(small)}; run fewer processes or use more data"
        )


def _execute_seed(
    plan: Plan,
    splits: Splits,
    accelerator: Accelerator,
    seed: int,
    run_dir: Path,
    several: bool,
    cache_dir: Path,
    progress: Progress = SILENT,
    processes: Processes = SINGLE,
) -> list[ModelRecord | ExtraRecord]:
    """Train (or load) the teacher and train every student with one seed; write checkpoints and predictions; then
    the post-processed models and the peers of the config.

    With several processes every one trains (its shard of each batch) and predicts its shard of val and test;
    process 0 alone builds the teacher cache, writes checkpoints and predictions and fits the extra rows."""
    config = plan.config
    info = splits.info
    for what, wanted in (("postprocess", config.postprocess is not None), ("peers", bool(config.peers))):
        if wanted:
            check_binary(info, what)  # before anything trains
    checkpoints = checkpoints_dir(run_dir, seed, several)
    predictions_folder = predictions_dir(run_dir, seed, several)

    def validate(model: TappedModel) -> dict[str, float]:
        # only what epoch selection reads (a bincount per group); the full metrics once, on the final models
        from fairdistill.evaluate.selection import selection_metrics

        p = predict(model, splits.val, plan.student.train.eval_batch_size, accelerator.device, processes)
        return selection_metrics(p.y, p.probs, p.group, splits.info)

    def label(name: str) -> str:
        return f"{name} (seed {seed})" if several else name

    records: list[ModelRecord] = [
        _teacher(plan, splits, accelerator, validate, checkpoints, seed, progress, label("teacher"), processes)
    ]
    teacher_cache = teacher_val = None
    online = plan.needs_teacher and _teacher_runs_online(plan, splits)
    if plan.needs_teacher:
        # with an online teacher the train cache (centre views) still serves whole-split statistics (KD++'s class
        # means) and the embedding width; the per-batch outputs come from the teacher itself
        with progress.phase("teacher outputs on train (cached) and val", spinner=False):
            teacher_cache = _shared_teacher_cache(plan, splits, records[0].model, cache_dir, accelerator, processes)
            teacher_val = TeacherOutputs(
                *compute_teacher_outputs(
                    records[0].model, splits.val, plan.teacher.train.eval_batch_size, accelerator.device
                )
            )
    for i, method_plan in enumerate(plan.methods):
        recipe = method_plan.config.recipe
        progress.model_started(
            label(method_plan.name),
            _epochs_text(method_plan.train.epochs) + (f" ({recipe})" if recipe != method_plan.name else ""),
        )
        set_seed(seed)
        student = build_role_model(plan, "student", splits)
        context = method_context(
            plan,
            splits,
            student,
            epochs=method_plan.train.epochs,
            teacher_train=teacher_cache,
            teacher_val=teacher_val,
            teacher_embedding_dim=None
            if teacher_cache is None or teacher_cache.embedding is None
            else int(teacher_cache.embedding.shape[1]),
            seed=seed,
        )
        method = build_method(method_plan.config, context, where=f"methods.{i}({method_plan.name})")
        result = fit(
            student,
            method,
            splits.train,
            method_plan.train,
            accelerator=accelerator,
            seed=seed,
            teacher_cache=teacher_cache if method.requires_teacher and not online else None,
            teacher=records[0].model if method.requires_teacher and online else None,
            validate=validate,
            select=config.student.select or config.select,
            desc=method_plan.name,
            checkpoint=training_checkpoint_path(checkpoints, method_plan.name),
            progress=progress,
        )
        readouts: dict[str, dict[str, np.ndarray]] = {}
        if processes.is_main:
            save_model_checkpoint(
                model_checkpoint_path(checkpoints, method_plan.name), student, plan.student.spec, info.num_classes
            )
            refits = getattr(method.weighting, "readout_probabilities", None) is not None
            with progress.phase(f"{label(method_plan.name)}: early-readout refit") if refits else nullcontext():
                readouts = method.readout_probabilities(
                    student, {"val": splits.val, "test": splits.test}, accelerator.device
                )
        records.append(
            ModelRecord(
                method_plan.name,
                "student",
                resolved_recipe(method_plan.config, method),
                student,
                result,
                result.seconds,
                readouts=readouts,
            )
        )

    with progress.phase(f"evaluating {len(records)} models on val and test" + (f" (seed {seed})" if several else "")):
        _evaluate(plan, splits, accelerator, records, predictions_folder, processes)
    if not processes.is_main:
        return list(records)
    return [*records, *_extra_rows(plan, splits, records, predictions_folder, seed, progress, teacher_cache)]


def _shared_teacher_cache(
    plan: Plan,
    splits: Splits,
    teacher: TappedModel,
    cache_dir: Path,
    accelerator: Accelerator,
    processes: Processes,
) -> TeacherOutputs:
    """The teacher's outputs on the train split, from the cache or computed into it, by process 0 alone; the other
    processes (whose teacher holds the same weights) read the entry it wrote, or compute the outputs in memory
    when they cannot see it (another machine's disk)."""
    batch_size, device, num_classes = plan.teacher.train.eval_batch_size, accelerator.device, splits.info.num_classes
    if processes.is_main:
        cache = load_or_compute(
            teacher, splits.train, _dataset_description(plan), cache_dir, batch_size, device, num_classes=num_classes
        )
        processes.broadcast_object(cache.path)
        return cache
    written: Path | None = processes.broadcast_object(None)
    found = read_entry(written, len(splits.train), num_classes) if written is not None else None
    if found is not None:
        return found
    return TeacherOutputs(*compute_teacher_outputs(teacher, splits.train, batch_size, device))


def _teacher_runs_online(plan: Plan, splits: Splits) -> bool:
    """``teacher.online`` against the loaded train split (``random_views``); logged, with a warning when the
    cached outputs are of the centre view while the student sees random views (``never`` with augmentation)."""
    random_views = bool(getattr(splits.train, "random_views", False))
    online, reason = teacher_online(plan.config.teacher.online, random_views, plan.train_augment)
    if random_views and not online:
        log.warning(reason)
    else:
        log.info(reason)
    return online


def _evaluate(
    plan: Plan,
    splits: Splits,
    accelerator: Accelerator,
    records: list[ModelRecord],
    predictions_folder: Path,
    processes: Processes,
) -> None:
    """Predictions (written as parquet) and metrics of every model on val and test: each process predicts its
    shard, process 0 gathers every row and alone writes and measures."""
    info = splits.info
    for record in records:
        for split_name in ("val", "test"):
            predictions = predict(
                record.model,
                getattr(splits, split_name),
                plan.student.train.eval_batch_size,
                accelerator.device,
                processes,
            )
            if not processes.is_main:
                continue
            readouts = {tap: by_split[split_name] for tap, by_split in record.readouts.items()}
            write_predictions(predictions_path(predictions_folder, record.name, split_name), predictions, readouts)
            record.metrics[split_name] = compute_metrics(
                predictions.y, predictions.probs, predictions.attr, predictions.group, info
            )
            record.predictions[split_name] = predictions


def _extra_rows(
    plan: Plan,
    splits: Splits,
    records: list[ModelRecord],
    predictions_folder: Path,
    seed: int,
    progress: Progress = SILENT,
    teacher_train: TeacherOutputs | None = None,
) -> list[ExtraRecord]:
    """The teacher and every student post-processed by fairlearn's ThresholdOptimizer (``postprocess``), then the
    peers (``peers``), each with predictions written like any model's and the same metrics (calibration null:
    their predictions are hard, randomised labels, drawn with ``random_state`` = ``seed``). ``teacher_train``:
    the run's teacher cache of the train split, whose logits the distilled peer reads (computed here when the
    run built none)."""
    config = plan.config
    rows: list[ExtraRecord] = []
    settings = config.postprocess
    if settings is not None:
        with progress.phase(f"post-processing {len(records)} models (ThresholdOptimizer, {settings.threshold})"):
            for record in records:
                started = time.time()
                done = postprocess(record.predictions["val"], record.predictions["test"], settings, seed)
                entry = {
                    "source": record.name,
                    "model": plan.teacher.spec if record.role == "teacher" else plan.student.spec,
                    "params": count_parameters(record.model),
                    "postprocess": done.settings,
                }
                row = ExtraRecord(
                    threshold_name(record.name),
                    "postprocessed",
                    f"{record.method} + threshold({settings.threshold}"
                    + ("" if settings.tolerance is None else f", tolerance {settings.tolerance:g}")
                    + ")",
                    entry,
                )
                _write_hard_rows(row, done.predictions, done.pmf, predictions_folder, splits)
                row.seconds = time.time() - started
                rows.append(row)
    teacher_logits = None if teacher_train is None else np.asarray(teacher_train.logits)
    for peer in plan_peers(config, plan.modality, plan.student.spec, plan.student.train):
        if peer.distilled and teacher_logits is None:  # the teacher's logits of the train rows, in order
            teacher = records[0].model
            batch_size, device = plan.teacher.train.eval_batch_size, next(teacher.parameters()).device
            teacher_logits = compute_teacher_outputs(teacher, splits.train, batch_size, device)[0]
        what = "around the distilled student" if peer.distilled else "on the train split"
        with progress.phase(f"peer {peer.name}: fairlearn ExponentiatedGradient {what}"):
            fitted = fit_peer(peer, splits, seed, teacher_logits if peer.distilled else None)
        if not fitted.converged:
            log.info(
                "peer %s: a base classifier stopped at its iteration limit (scikit-learn ConvergenceWarning)", peer.name
            )
        entry = {"label": peer.label, "params": fitted.params, "mixture": fitted.mixture, "peer": peer.describe()}
        row = ExtraRecord(peer.name, peer.role, peer.method, entry, seconds=fitted.seconds)
        _write_hard_rows(row, fitted.predictions, fitted.pmf, predictions_folder, splits)
        rows.append(row)
    return rows


def _write_hard_rows(
    row: ExtraRecord,
    predictions: dict[str, Predictions],
    pmf: dict[str, np.ndarray],
    predictions_folder: Path,
    splits: Splits,
) -> None:
    """Write a randomised classifier's predictions (with fairlearn's label probabilities) and fill its metrics:
    those of the drawn labels, and under ``expected`` the same taken over the draw (from the probabilities)."""
    for split_name in ("val", "test"):
        p = predictions[split_name]
        write_predictions(predictions_path(predictions_folder, row.name, split_name), p, pmf=pmf[split_name])
        metrics = without_calibration(compute_metrics(p.y, p.probs, p.attr, p.group, splits.info))
        metrics["expected"] = expected_rate_metrics(p.y, pmf[split_name], p.attr, p.group, splits.info)
        row.metrics[split_name] = metrics


def _teacher(
    plan: Plan,
    splits: Splits,
    accelerator: Accelerator,
    validate,
    checkpoints: Path,
    seed: int,
    progress: Progress = SILENT,
    label: str = "teacher",
    processes: Processes = SINGLE,
) -> ModelRecord:
    info = splits.info
    set_seed(seed)
    checkpoint = plan.teacher.checkpoint_for(seed)
    if checkpoint is not None:
        progress.model_started(label, f"loaded from {checkpoint}")
    else:
        progress.model_started(label, _epochs_text(plan.teacher.train.epochs))
    teacher = build_role_model(plan, "teacher", splits)
    if checkpoint is not None:
        load_model_checkpoint(checkpoint, teacher, info.num_classes)
        teacher.to(accelerator.device).eval()
        log.info("teacher loaded from %s", checkpoint)
        return ModelRecord("teacher", "teacher", "checkpoint", teacher)
    erm = Method("teacher", LOSSES.get("erm").target(Options(), MethodContext(info, splits.train)))
    result = fit(
        teacher,
        erm,
        splits.train,
        plan.teacher.train,
        accelerator=accelerator,
        seed=seed,
        validate=validate,
        select=plan.config.teacher.select or plan.config.select,
        desc="teacher",
        checkpoint=training_checkpoint_path(checkpoints, "teacher"),
        progress=progress,
    )
    if processes.is_main:
        save_model_checkpoint(
            model_checkpoint_path(checkpoints, "teacher"), teacher, plan.teacher.spec, info.num_classes
        )
    return ModelRecord("teacher", "teacher", "erm", teacher, result, result.seconds)


def resolved_recipe(config: MethodConfig, method: Method) -> str:
    """The method's recipe with the tap its weighting chose when the config left it out (the student's first):
    ``kd + early-readout(block1, margin, beta=3, alpha=0.2)``."""
    tap = getattr(method.weighting, "tap", None)
    if not isinstance(tap, str) or config.weighting is None or "tap" in config.weighting.options():
        return config.recipe
    weighting = KindSpec.model_validate({"kind": config.weighting.kind, "tap": tap, **config.weighting.options()})
    return config.model_copy(update={"weighting": weighting}).recipe


def _epochs_text(epochs: int) -> str:
    return f"{epochs} epoch{'s' if epochs != 1 else ''}"


def _metrics(model: TappedModel, splits: Splits, split: str, accelerator: Accelerator, batch_size: int) -> dict:
    p: Predictions = predict(model, getattr(splits, split), batch_size, accelerator.device)
    return compute_metrics(p.y, p.probs, p.attr, p.group, splits.info)


def _dataset_description(plan: Plan) -> dict[str, Any]:
    return {"name": plan.config.data.name, "options": plan.data_options.model_dump(mode="json")}


def _metrics_document(
    plan: Plan,
    splits: Splits,
    records: Sequence[ModelRecord | ExtraRecord],
    started: float,
    accelerator: Accelerator,
    seed: int,
) -> dict[str, Any]:
    info = splits.info
    config = plan.config
    models = {}
    for record in records:
        if isinstance(record, ExtraRecord):
            models[record.name] = {
                "role": record.role,
                "method": record.method,
                **record.entry,
                "train_seconds": round(record.seconds, 3),
                "splits": record.metrics,
            }
            continue
        entry: dict[str, Any] = {
            "role": record.role,
            "method": record.method,
            "model": plan.teacher.spec if record.role == "teacher" else plan.student.spec,
            "params": count_parameters(record.model),
            "train_seconds": round(record.seconds, 3),
        }
        if record.fit is not None:
            entry["selected_epoch"] = record.fit.best_epoch
            entry["history"] = record.fit.history
        entry["splits"] = record.metrics
        models[record.name] = entry
    return {
        "schema_version": METRICS_SCHEMA_VERSION,
        "dataset": {
            "name": info.name,
            "options": plan.data_options.model_dump(mode="json"),
            "modality": info.modality,
            "num_classes": info.num_classes,
            "class_names": list(info.class_names),
            "attr_label": info.attr_label,
            "attr_names": list(info.attr_names),
            "group_names": list(info.group_names),
            "counts": {name: len(split) for name, split in splits.items()},
            "provenance": splits.provenance,
        },
        "run": {
            "name": config.name,
            "seed": seed,
            "select": config.select,
            "started": dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
            "seconds": round(time.time() - started, 3),
            "fairdistill": fairdistill.__version__,
            "torch": torch.__version__,
            "python": platform.python_version(),
            "device": str(accelerator.device),
        },
        "models": models,
    }


def rebuild_report(run_dir: Path) -> Path:
    """Redraw the figures and rewrite report.html / report.md of a finished run; returns report.html's path.

    Reads metrics.json and the predictions; the dataset is reloaded from config.yaml only for the example
    thumbnails of "what changed" (skipped with a warning when it cannot be loaded or no longer matches).
    """
    from fairdistill.config import load_config

    run_dir = Path(run_dir).resolve()
    metrics = read_metrics(run_dir)
    frames = load_frames(run_dir, metrics, "test")
    renderer = None
    try:
        config = load_config(run_dir / "config.yaml")
        splits = load_dataset(config.data.name, config.data.options())
        reference = next(iter(next(iter(frames.values())).values()))
        if len(splits.test) != len(reference) or not np.array_equal(splits.test.y.numpy(), reference["y"].to_numpy()):
            raise FairdistillError("the reloaded test split does not match the saved predictions")
        renderer = example_renderer(
            splits.test,
            splits.info.modality,
            splits.provenance.get("feature_names"),
            splits.provenance.get("standardisation"),
        )
    except FairdistillError as exc:
        log.warning("report: examples are not shown (%s)", exc)
    return write_report(run_dir, metrics, renderer).html
