"""The run: data → teacher → teacher cache → one student per method → evaluate → run directory → table."""

from __future__ import annotations

import datetime as dt
import logging
import platform
import shutil
import sys
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, TypeVar

import numpy as np
import torch
from accelerate import Accelerator
from accelerate.utils import set_seed

import fairdistill
from fairdistill.atomic_io import atomic_path, write_json, write_text
from fairdistill.config import KindSpec, MethodConfig, RunConfig, TrainConfig, config_to_yaml
from fairdistill.data import DATASETS, Splits, collate, load_dataset
from fairdistill.data.core import ensure_encoding
from fairdistill.distill import LOSSES, Method, MethodContext, build_method, resolve_loss
from fairdistill.distill.method import validate_parts
from fairdistill.errors import ConfigError, FairdistillError, TrainingDivergedError, as_user_error
from fairdistill.output_dirs import check_output_parent, new_stamped_dir
from fairdistill.progress import ON_SCREEN, SILENT, Progress
from fairdistill.evaluate.metrics import compute_metrics
from fairdistill.evaluate.predict import Predictions, predict
from fairdistill.models import MODELS, TappedModel, build_model, count_parameters, default_model_spec
from fairdistill.models.core import check_model_modality
from fairdistill.registry import Options
from fairdistill.report.aggregate import combine_seeds
from fairdistill.report.analysis import add_analysis
from fairdistill.report.build import write_report
from fairdistill.report.changes import example_renderer
from fairdistill.report.rundir import METRICS_SCHEMA_VERSION, checkpoints_dir, load_frames, predictions_dir
from fairdistill.run_record import check_same_config, read_record, record_data, start_record
from fairdistill.tracking import RunTracker, check_tracker
from fairdistill.distill import TeacherOutputs
from fairdistill.distill.features import pool_tap
from fairdistill.train.cache import (
    compute_teacher_outputs,
    default_cache_dir,
    load_or_compute,
    split_digest,
    usable_cache_dir,
)
from fairdistill.train.checkpoint import load_model_checkpoint, save_model_checkpoint
from fairdistill.train.engine import FitResult, fit, make_accelerator

log = logging.getLogger("fairdistill")
T = TypeVar("T")



#: Stands for the seed in ``teacher.checkpoint`` (``runs/x/checkpoints/seed{seed}/teacher.pt``).
SEED_PLACEHOLDER = "{seed}"


@dataclass(frozen=True)
class RolePlan:
    """The teacher or the student architecture with its training settings."""

    role: str
    spec: dict[str, Any]
    train: TrainConfig
    #: The teacher's checkpoint; ``{seed}`` in it stands for each seed of the run (one teacher per seed).
    checkpoint: Path | None = None

    def checkpoint_for(self, seed: int) -> Path | None:
        """The checkpoint file of ``seed`` (``{seed}`` filled in), or None when the model is trained."""
        return None if self.checkpoint is None else Path(str(self.checkpoint).replace(SEED_PLACEHOLDER, str(seed)))


@dataclass(frozen=True)
class MethodPlan:
    config: MethodConfig
    loss_kind: str
    loss_options: Options
    train: TrainConfig

    @property
    def name(self) -> str:
        return self.config.name


@dataclass(frozen=True)
class Plan:
    """A validated run: every name resolved against its registry, every option checked."""

    config: RunConfig
    data_options: Options
    modality: str
    teacher: RolePlan
    student: RolePlan
    methods: list[MethodPlan]

    @property
    def needs_teacher(self) -> bool:
        return any(LOSSES.get(m.loss_kind).target.requires_teacher for m in self.methods)

    def describe(self) -> str:
        cfg = self.config
        data = {k: v for k, v in self.data_options.model_dump().items() if v is not None}
        teacher_source = f"load {self.teacher.checkpoint}" if self.teacher.checkpoint else (
            f"train {self.teacher.train.epochs} epochs, lr {self.teacher.train.lr}, batch {self.teacher.train.batch_size}"
        )
        lines = [
            f"run {cfg.name!r}, seed{'s' if len(cfg.seed_list) > 1 else ''} "
            f"{', '.join(map(str, cfg.seed_list))}, output {Path(cfg.output).resolve()}",
            f"data: {cfg.data.name} ({self.modality}) {data}",
            f"teacher: {_spec_text(self.teacher.spec)} — {teacher_source}",
            f"student: {_spec_text(self.student.spec)}",
            f"select: {cfg.select}",
            "methods:",
        ]
        for m in self.methods:
            opts = m.loss_options.model_dump()
            lines.append(
                f"  - {m.name}: {m.config.recipe} — loss options {opts or '{}'}; {m.train.epochs} epochs, "
                f"lr {m.train.lr}, batch {m.train.batch_size}"
            )
        return "\n".join(lines)


def _spec_text(spec: dict[str, Any]) -> str:
    extra = {k: v for k, v in spec.items() if k != "name"}
    return f"{spec['name']} {extra}" if extra else spec["name"]


def make_plan(config: RunConfig) -> Plan:
    """Resolve and validate every registered name and option of a config, without loading data."""
    check_tracker(config.log_with)
    entry = DATASETS.get(config.data.name, where="data.name")
    data_options = DATASETS.options(config.data.name, config.data.options(), where="data")
    modality = entry.meta.get("modality", "tabular")
    roles = {}
    for role in ("teacher", "student"):
        role_config = getattr(config, role)
        spec = role_config.model.model_dump() if role_config.model is not None else default_model_spec(modality, role)
        spec = {"name": spec.pop("name"), **spec}
        MODELS.options(spec["name"], {k: v for k, v in spec.items() if k != "name"}, where=f"{role}.model")
        check_model_modality(spec["name"], modality, where=f"{role}.model", dataset=config.data.name)
        checkpoint = None
        if role_config.checkpoint is not None:
            if role == "student":
                raise ConfigError("student.checkpoint: students are always trained; remove this field")
            checkpoint = Path(role_config.checkpoint).expanduser().resolve()
        roles[role] = RolePlan(role, spec, role_config.train, checkpoint)
        for seed in config.seed_list if checkpoint is not None else ():
            if not roles[role].checkpoint_for(seed).is_file():
                raise ConfigError(f"teacher.checkpoint: file not found: {roles[role].checkpoint_for(seed)}")
    methods = []
    for i, method in enumerate(config.methods):
        where = f"methods.{i}({method.name})"
        validate_parts(method, where)
        kind, options = resolve_loss(method, where)
        methods.append(MethodPlan(method, kind, options, method.train or config.student.train))
    return Plan(config, data_options, modality, roles["teacher"], roles["student"], methods)


def load_plan_data(plan: Plan) -> Splits:
    return load_dataset(plan.config.data.name, plan.config.data.options())


def build_role_model(plan: Plan, role: str, splits: Splits) -> TappedModel:
    """The teacher's or the student's model, with the encoding it reads added to every split (a tokenising
    model tokenises the raw texts once, caching them under the run's cache folder)."""
    spec = (plan.teacher if role == "teacher" else plan.student).spec
    model = build_model(spec, splits.info, where=f"{role}.model")
    if hasattr(model, "token_cache_dir") and plan.config.cache_dir:
        model.token_cache_dir = _cache_dir(plan.config) / "tokens"
    ensure_encoding(model, splits)
    return model


def dry_run(config: RunConfig) -> str:
    """Validate everything that can be checked offline (data files, models, taps, methods); return the plan.

    Parts fetched from the Hugging Face hub (``hub: true`` on the data or a model) are tried; when the hub
    cannot be reached, what depends on them is listed as checkable only with the hub instead of failing.
    """
    plan = make_plan(config)
    check_output_parent(Path(config.output))
    if plan.needs_teacher:
        usable_cache_dir(_cache_dir(config))  # warns now, not after the teacher trained, when it cannot be used
    hub_only: list[str] = []
    lines = [plan.describe()]
    splits = _hub_tolerant(lambda: load_plan_data(plan), bool(getattr(plan.data_options, "hub", False)),
                           f"data ({config.data.name})", hub_only)
    if splits is not None:
        counts = ", ".join(f"{name} {len(split):,}" for name, split in splits.items())
        lines.append(f"data loaded: {counts} examples; {splits.info.num_classes} classes, "
                     f"{splits.info.num_groups} groups")
        models = {role: _hub_tolerant(lambda role=role: build_role_model(plan, role, splits),
                                      bool((plan.teacher if role == "teacher" else plan.student).spec.get("hub")),
                                      f"{role}.model", hub_only) for role in ("teacher", "student")}
        teacher, student = models["teacher"], models["student"]
        for seed in config.seed_list if teacher is not None and plan.teacher.checkpoint is not None else ():
            load_model_checkpoint(plan.teacher.checkpoint_for(seed), teacher, splits.info.num_classes)
        if student is None or teacher is None:
            hub_only.append("methods (their taps and widths are read from the models)")
        else:
            for i, method in enumerate(plan.methods):
                context = method_context(plan, splits, student, teacher_embedding_dim=probe(teacher, splits.train)[0],
                                         epochs=method.train.epochs)
                build_method(method.config, context, where=f"methods.{i}({method.name})")
    else:
        hub_only.append("models and methods (they need the data's classes and inputs)")
    if hub_only:
        lines.append("checkable only with access to the Hugging Face hub:")
        lines += [f"  - {item}" for item in hub_only]
        lines.append("config OK as far as it can be checked offline (dry run: nothing trained)")
    else:
        lines.append("config OK (dry run: nothing trained)")
    return "\n".join(lines)


def _hub_tolerant(load: Callable[[], T], uses_hub: bool, what: str, hub_only: list[str]) -> T | None:
    """``load()``; when it reads from the hub and fails, note why in ``hub_only`` and return None."""
    try:
        return load()
    except FairdistillError as exc:
        if not uses_hub:
            raise
        hub_only.append(f"{what}: {str(exc).splitlines()[0][:300]}")
        return None


@torch.no_grad()
def probe(model: TappedModel, split) -> tuple[int | None, dict[str, int]]:
    """Width of a model's embedding and of each pooled tap, read from one forward pass on one example."""
    was_training = model.training
    model.eval()
    out = model(collate([split[0]]).inputs)
    model.train(was_training)
    embedding = None if out.embedding is None else int(out.embedding.shape[1])
    return embedding, {name: int(pool_tap(t).shape[1]) for name, t in out.taps.items()}


def method_context(
    plan: Plan,
    splits: Splits,
    student: TappedModel,
    *,
    teacher_embedding_dim: int | None,
    epochs: int,
    teacher_train: TeacherOutputs | None = None,
    teacher_val: TeacherOutputs | None = None,
    seed: int | None = None,
) -> MethodContext:
    """What a method's components may read when they are built for one student (``seed``: default the run's)."""
    student_embedding_dim, tap_dims = probe(student, splits.train)
    return MethodContext(
        info=splits.info, train=splits.train, val=splits.val, teacher_train=teacher_train, teacher_val=teacher_val,
        num_epochs=epochs, seed=plan.config.seed if seed is None else seed, student_embedding_dim=student_embedding_dim,
        teacher_embedding_dim=teacher_embedding_dim, student_taps=tuple(student.tap_names),
        student_model=plan.student.spec["name"], student_tap_dims=tap_dims,
    )


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


@dataclass
class RunResult:
    run_dir: Path
    metrics: dict[str, Any]


#: Written into a run directory as the very last step; a run directory without it can be resumed.
COMPLETE_MARKER = ".complete"
#: Suffix of the per-model training checkpoints (``checkpoints/<model>-train.pt``) kept until the run completes.
TRAINING_CHECKPOINT_SUFFIX = "-train.pt"


def run(config: RunConfig, *, progress: Progress = SILENT) -> RunResult:
    """Execute a whole run and write its directory under ``config.output``; returns it with the metrics.
    ``progress`` shows the plan, the models' epochs and the phases as they happen.

    A user error met on the way (bad data, an unreadable checkpoint, a full disk) removes the run directory,
    which would only hold a half-written run; a loss that diverges keeps the models finished before it and
    says where. Crashes and interruptions keep the directory for ``--resume``.
    """
    plan = make_plan(config)
    run_dir = new_stamped_dir(Path(config.output), config.name)
    try:
        write_text(run_dir / "config.yaml", config_to_yaml(config))
        start_record(run_dir, resolved_config(config))
        return _run_in(plan, run_dir, record=None, progress=progress)
    except BaseException as exc:
        user_error = as_user_error(exc, where=run_dir)
        if user_error is None:
            raise
        raise _after_user_error(user_error, run_dir) from None


def resolved_config(config: RunConfig) -> dict[str, Any]:
    """The config as written to config.yaml (defaults filled in), as JSON-like data."""
    return config.model_dump(mode="json", exclude_none=True)


def _after_user_error(error: FairdistillError, run_dir: Path) -> FairdistillError:
    """Remove a fresh run's directory after a user error, or keep the finished models of a diverged run."""
    finished = sorted(p.stem for p in (run_dir / "checkpoints").rglob("*.pt")
                      if not p.name.endswith(TRAINING_CHECKPOINT_SUFFIX))
    if isinstance(error, TrainingDivergedError) and finished:
        for partial in (run_dir / "checkpoints").rglob(f"*{TRAINING_CHECKPOINT_SUFFIX}"):
            partial.unlink()  # the diverged model's; resuming with the same settings would diverge again
        teacher = next(run_dir.glob("checkpoints/**/teacher.pt"), None)
        reuse = f"; reuse the teacher with teacher.checkpoint: {teacher}" if teacher is not None else ""
        return TrainingDivergedError(
            f"{error}\nThe models finished before it ({', '.join(dict.fromkeys(finished))}) are kept in "
            f"{run_dir / 'checkpoints'}{reuse}")
    shutil.rmtree(run_dir, ignore_errors=True)
    return error


def resume(run_dir: Path, *, progress: Progress = SILENT) -> RunResult:
    """Continue a run that stopped (crash, kill -9, power loss) in its own directory, with its saved config.

    Models whose training finished are reloaded from their training checkpoints, a model killed mid-training
    continues from its last completed epoch, and evaluation and the report are redone; the result is the
    metrics.json an uninterrupted run would have written (timings aside). A complete run is left as it is.
    """
    from fairdistill.config import load_config
    from fairdistill.report.rundir import read_metrics

    run_dir = Path(run_dir).expanduser().resolve()
    if not run_dir.is_dir():
        raise FairdistillError(f"--resume: run directory not found: {run_dir}")
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise FairdistillError(f"--resume: {run_dir} has no config.yaml (is it a fairdistill run directory?)")
    record = read_record(run_dir)
    config = load_config(config_path)
    check_same_config(run_dir, record, resolved_config(config))
    if (run_dir / COMPLETE_MARKER).is_file():
        log.warning("run %s is already complete; nothing to resume", run_dir)
        return RunResult(run_dir, read_metrics(run_dir))
    try:
        return _run_in(make_plan(config), run_dir, record=record, progress=progress)
    except BaseException as exc:
        user_error = as_user_error(exc, where=run_dir)
        if user_error is None:
            raise
        raise user_error from None  # the directory stays: it holds the run being resumed


def _run_in(plan: Plan, run_dir: Path, *, record: dict[str, Any] | None, progress: Progress) -> RunResult:
    """Run (``record`` None) or resume (``record``: run.json as read at resume) a run in its directory."""
    resumed = record is not None
    with _log_to(run_dir / "log.txt"), progress.showing_log():
        log.info("fairdistill %s, torch %s, run dir %s%s", fairdistill.__version__, torch.__version__, run_dir,
                 " (resumed)" if resumed else "")
        log.info("plan:\n%s", plan.describe(), extra=ON_SCREEN)
        metrics = _execute(plan, run_dir, record, progress)
        write_text(run_dir / COMPLETE_MARKER, dt.datetime.now().isoformat(timespec="seconds") + "\n")
        for stale in (run_dir / "checkpoints").rglob(f"*{TRAINING_CHECKPOINT_SUFFIX}"):
            stale.unlink()  # only needed to resume; the selected weights stay in checkpoints/<model>.pt
    return RunResult(run_dir, metrics)


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


def _execute(plan: Plan, run_dir: Path, record: dict[str, Any] | None, progress: Progress) -> dict[str, Any]:
    """Every seed of the run, then metrics.json (seeds combined, amplification, margins) and the report."""
    config = plan.config
    started = time.time()
    accelerator = make_accelerator(config.device, config.mixed_precision)
    if not accelerator.is_main_process:
        progress = SILENT
    seeds = config.seed_list
    teacher_epochs = 0 if plan.teacher.checkpoint is not None else plan.teacher.train.epochs
    progress.start(plan.describe(), run_dir, models=len(seeds) * (1 + len(plan.methods)),
                   epochs=len(seeds) * (teacher_epochs + sum(m.train.epochs for m in plan.methods)),
                   resumed=record is not None)
    with progress.phase(f"loading data ({config.data.name})"):
        splits = load_plan_data(plan)
    log.info("data: %s", {name: len(split) for name, split in splits.items()})
    record_data(run_dir, record, {name: split_digest(split) for name, split in splits.items()})
    cache_dir = usable_cache_dir(_cache_dir(config)) if plan.needs_teacher else _cache_dir(config)
    several = len(seeds) > 1
    tracker = None
    if accelerator.is_main_process:
        tracker = RunTracker.open(config.log_with, config.name, run_dir, config.model_dump(mode="json"))
    documents = {}
    for k, seed in enumerate(seeds):
        if several:
            log.info("seed %d (%d of %d)", seed, k + 1, len(seeds))
        records = _execute_seed(plan, splits, accelerator, seed, run_dir, several, cache_dir, progress)
        documents[seed] = _metrics_document(plan, splits, records, started, accelerator, seed)
        if tracker is not None:
            for record in records:
                if record.fit is not None:
                    tracker.log_history(f"seed{seed}/{record.name}" if several else record.name, record.fit.history)
    with progress.phase("metrics: seeds combined, amplification, margins"):
        metrics = combine_seeds(documents)
        metrics = add_analysis(metrics, load_frames(run_dir, metrics, "test"), seed=seeds[0])
        metrics["run"]["seconds"] = round(time.time() - started, 3)
        write_json(run_dir / "metrics.json", metrics)
    if accelerator.is_main_process:
        with progress.phase("report: figures, report.html, report.md"):
            renderer = example_renderer(splits.test, splits.info.modality, splits.provenance.get("feature_names"),
                                        splits.provenance.get("standardisation"))
            write_report(run_dir, metrics, renderer)
    if tracker is not None:
        tracker.log_final(metrics)
        tracker.finish()
    log.info("run finished in %.1f s", time.time() - started, extra=ON_SCREEN)
    progress.finish()
    return metrics


def _execute_seed(
    plan: Plan, splits: Splits, accelerator: Accelerator, seed: int, run_dir: Path, several: bool, cache_dir: Path,
    progress: Progress = SILENT,
) -> list[ModelRecord]:
    """Train (or load) the teacher and train every student with one seed; write checkpoints and predictions."""
    config = plan.config
    info = splits.info
    checkpoints = checkpoints_dir(run_dir, seed, several)
    predictions_folder = predictions_dir(run_dir, seed, several)

    def validate(model: TappedModel) -> dict[str, float]:
        m = _metrics(model, splits, "val", accelerator, plan.student.train.eval_batch_size)
        return {"val_acc": m["accuracy"], "val_worst_group_acc": m["worst_group_accuracy"]}

    def label(name: str) -> str:
        return f"{name} (seed {seed})" if several else name

    records: list[ModelRecord] = [_teacher(plan, splits, accelerator, validate, checkpoints, seed, progress,
                                           label("teacher"))]
    teacher_cache = teacher_val = None
    if plan.needs_teacher:
        with progress.phase("teacher outputs on train (cached) and val", spinner=False):
            teacher_cache = load_or_compute(
                records[0].model, splits.train, _dataset_description(plan), cache_dir,
                plan.teacher.train.eval_batch_size, accelerator.device, num_classes=info.num_classes,
            )
            teacher_val = TeacherOutputs(*compute_teacher_outputs(
                records[0].model, splits.val, plan.teacher.train.eval_batch_size, accelerator.device))
    for i, method_plan in enumerate(plan.methods):
        recipe = method_plan.config.recipe
        progress.model_started(label(method_plan.name), _epochs_text(method_plan.train.epochs)
                               + (f" ({recipe})" if recipe != method_plan.name else ""))
        set_seed(seed)
        student = build_role_model(plan, "student", splits)
        context = method_context(
            plan, splits, student, epochs=method_plan.train.epochs, teacher_train=teacher_cache,
            teacher_val=teacher_val, teacher_embedding_dim=None if teacher_cache is None or
            teacher_cache.embedding is None else int(teacher_cache.embedding.shape[1]), seed=seed,
        )
        method = build_method(method_plan.config, context, where=f"methods.{i}({method_plan.name})")
        result = fit(
            student, method, splits.train, method_plan.train, accelerator=accelerator, seed=seed,
            teacher_cache=teacher_cache if method.requires_teacher else None, validate=validate,
            select=config.select, desc=method_plan.name,
            checkpoint=checkpoints / f"{method_plan.name}{TRAINING_CHECKPOINT_SUFFIX}", progress=progress,
        )
        save_model_checkpoint(checkpoints / f"{method_plan.name}.pt", student, plan.student.spec, info.num_classes)
        refits = getattr(method.weighting, "readout_probabilities", None) is not None
        with progress.phase(f"{label(method_plan.name)}: early-readout refit") if refits else nullcontext():
            readouts = method.readout_probabilities(student, {"val": splits.val, "test": splits.test},
                                                    accelerator.device)
        records.append(ModelRecord(method_plan.name, "student", resolved_recipe(method_plan.config, method), student,
                                   result, result.seconds, readouts=readouts))

    with progress.phase(f"evaluating {len(records)} models on val and test"
                        + (f" (seed {seed})" if several else "")):
        _evaluate(plan, splits, accelerator, records, predictions_folder)
    return records


def _evaluate(
    plan: Plan, splits: Splits, accelerator: Accelerator, records: list[ModelRecord], predictions_folder: Path
) -> None:
    """Predictions (written as parquet) and metrics of every model on val and test."""
    info = splits.info
    for record in records:
        for split_name in ("val", "test"):
            predictions = predict(record.model, getattr(splits, split_name), plan.student.train.eval_batch_size,
                                  accelerator.device)
            readouts = {tap: by_split[split_name] for tap, by_split in record.readouts.items()}
            _write_predictions(predictions_folder / f"{record.name}-{split_name}.parquet", predictions, readouts)
            record.metrics[split_name] = compute_metrics(
                predictions.y, predictions.probs, predictions.attr, predictions.group, info
            )


def _teacher(
    plan: Plan, splits: Splits, accelerator: Accelerator, validate, checkpoints: Path, seed: int,
    progress: Progress = SILENT, label: str = "teacher",
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
    result = fit(teacher, erm, splits.train, plan.teacher.train, accelerator=accelerator, seed=seed,
                 validate=validate, select=plan.config.select, desc="teacher",
                 checkpoint=checkpoints / f"teacher{TRAINING_CHECKPOINT_SUFFIX}", progress=progress)
    save_model_checkpoint(checkpoints / "teacher.pt", teacher, plan.teacher.spec, info.num_classes)
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


def _write_predictions(path: Path, predictions: Predictions, readouts: dict[str, np.ndarray] | None = None) -> None:
    """The per-example parquet; early-readout probabilities become ``readout_<tap>_prob_<c>`` columns."""
    frame = predictions.to_frame()
    for tap, probs in (readouts or {}).items():
        for c in range(probs.shape[1]):
            frame[f"readout_{tap}_prob_{c}"] = probs[:, c]
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)


def _dataset_description(plan: Plan) -> dict[str, Any]:
    return {"name": plan.config.data.name, "options": plan.data_options.model_dump(mode="json")}


def _cache_dir(config: RunConfig) -> Path:
    return Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()


def _metrics_document(
    plan: Plan, splits: Splits, records: list[ModelRecord], started: float, accelerator: Accelerator, seed: int
) -> dict[str, Any]:
    info = splits.info
    config = plan.config
    models = {}
    for record in records:
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
    from fairdistill.report.rundir import read_metrics

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
        renderer = example_renderer(splits.test, splits.info.modality, splits.provenance.get("feature_names"),
                                    splits.provenance.get("standardisation"))
    except FairdistillError as exc:
        log.warning("report: examples are not shown (%s)", exc)
    return write_report(run_dir, metrics, renderer).html
