"""Planning a run without running it: every name resolved against its registry and every option checked
(:func:`make_plan`), the offline dry run (:func:`dry_run`), and the pieces a run and a dry run share to build
its models and methods (:func:`build_role_model`, :func:`probe`, :func:`method_context`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar, runtime_checkable

import torch

from fairdistill.config import MethodConfig, RunConfig, TrainConfig
from fairdistill.data import DATASETS, Splits, collate, load_dataset
from fairdistill.data.core import ensure_encoding
from fairdistill.distill import LOSSES, MethodContext, TeacherOutputs, build_method, resolve_loss
from fairdistill.distill.features import pool_tap
from fairdistill.distill.method import validate_parts
from fairdistill.errors import ConfigError, FairdistillError
from fairdistill.models import MODELS, TappedModel, build_model, default_model_spec, resolve_model_spec
from fairdistill.models.core import check_model_modality
from fairdistill.output_dirs import check_output_parent
from fairdistill.registry import Options
from fairdistill.tracking import check_tracker
from fairdistill.train.cache import default_cache_dir, usable_cache_dir
from fairdistill.train.checkpoint import load_model_checkpoint

T = TypeVar("T")

#: Stands for the seed in ``teacher.checkpoint`` (``runs/x/checkpoints/seed{seed}/teacher.pt``).
SEED_PLACEHOLDER = "{seed}"


@runtime_checkable
class _CachesTokens(Protocol):
    """A model that caches its tokenised splits on disk (the Hugging Face models): where, None for the default."""

    token_cache_dir: Path | None


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

    @property
    def train_augment(self) -> str:
        """The dataset's random training views (``train_augment`` of an image dataset), ``none`` otherwise."""
        return str(getattr(self.data_options, "train_augment", "none"))

    def teacher_mode(self) -> tuple[bool, str]:
        """Whether the students' teacher runs online, and why, as the dry run prints it (see
        :func:`teacher_online`; the run decides again from the loaded train split, to the same answer)."""
        augment = self.train_augment
        return teacher_online(self.config.teacher.online, augment != "none", augment)

    def describe(self) -> str:
        cfg = self.config
        data = {k: v for k, v in self.data_options.model_dump().items() if v is not None}
        teacher_source = (
            f"load {self.teacher.checkpoint}"
            if self.teacher.checkpoint
            else (
                f"train {self.teacher.train.epochs} epochs, lr {self.teacher.train.lr}"
                + _schedule_text(self.teacher.train)
                + f", batch {self.teacher.train.batch_size}"
            )
        )
        lines = [
            f"run {cfg.name!r}, seed{'s' if len(cfg.seed_list) > 1 else ''} "
            f"{', '.join(map(str, cfg.seed_list))}, output {Path(cfg.output).resolve()}",
            f"data: {cfg.data.name} ({self.modality}) {data}",
            f"teacher: {_spec_text(self.teacher.spec)} — {teacher_source}",
            f"student: {_spec_text(self.student.spec)}",
            f"select: teacher {cfg.teacher.select or cfg.select}, students {cfg.student.select or cfg.select}",
            "methods:",
        ]
        if self.needs_teacher:
            lines.insert(3, self.teacher_mode()[1])
        for m in self.methods:
            opts = m.loss_options.model_dump()
            lines.append(
                f"  - {m.name}: {m.config.recipe} — loss options {opts or '{}'}; {m.train.epochs} epochs, "
                f"lr {m.train.lr}{_schedule_text(m.train)}, batch {m.train.batch_size}"
            )
        lines += self._extra_rows_text()
        return "\n".join(lines)

    def _extra_rows_text(self) -> list[str]:
        """The dry run's lines for the post-processed rows and the peers, when the config asks for them."""
        from fairdistill.evaluate.peers import plan_peers  # fairlearn and scikit-learn, only when there are peers

        lines, settings = [], self.config.postprocess
        if settings is not None:
            tolerance = "" if settings.tolerance is None else f", tolerance {settings.tolerance:g}"
            lines.append(
                f"postprocess: fairlearn ThresholdOptimizer({settings.threshold}, {settings.objective}{tolerance}) "
                "fitted on val, one <model>+threshold row per model"
            )
        if self.config.peers:
            lines.append("peers (fairlearn ExponentiatedGradient, fitted on train; default bound 0.01):")
            for peer in plan_peers(self.config, self.modality, self.student.spec, self.config.student.train):
                lines.append(f"  - {peer.name}: {peer.method}")
        return lines


def teacher_online(mode: str, random_views: bool, augment: str = "random views") -> tuple[bool, str]:
    """``teacher.online`` resolved: (run the teacher on every training batch?, the reason, for plans and logs).

    ``auto`` is online exactly when the train split serves random views (``split.random_views``); ``always`` and
    ``never`` are what they say. Cached outputs are of the eval (centre) views.
    """
    if mode == "always":
        return True, "teacher online (teacher.online: always): run on every training batch"
    if mode == "auto" and random_views:
        return True, f"teacher online: random train views ({augment}), the teacher runs on each augmented batch"
    if random_views:
        return False, (
            f"teacher cached (teacher.online: never): its outputs are of the centre view, not of the random "
            f"train views ({augment}) the student sees"
        )
    return False, "teacher cached: no random train views" + (" (teacher.online: never)" if mode == "never" else "")


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
        spec = resolve_model_spec({"name": spec.pop("name"), **spec}, where=f"{role}.model")
        MODELS.options(spec["name"], {k: v for k, v in spec.items() if k != "name"}, where=f"{role}.model")
        check_model_modality(spec["name"], modality, where=f"{role}.model", dataset=config.data.name)
        checkpoint = None
        if role_config.checkpoint is not None:
            if role == "student":
                raise ConfigError("student.checkpoint: students are always trained; remove this field")
            checkpoint = Path(role_config.checkpoint).expanduser().resolve()
        roles[role] = RolePlan(role, spec, role_config.train, checkpoint)
        for seed in config.seed_list if checkpoint is not None else ():
            path = roles[role].checkpoint_for(seed)
            assert path is not None  # the loop runs only when the role has a checkpoint
            if not path.is_file():
                raise ConfigError(f"teacher.checkpoint: file not found: {path}")
    methods = []
    for i, method in enumerate(config.methods):
        where = f"methods.{i}({method.name})"
        validate_parts(method, where)
        kind, options = resolve_loss(method, where)
        methods.append(MethodPlan(method, kind, options, method.train or config.student.train))
    from fairdistill.evaluate.peers import plan_peers  # fairlearn and scikit-learn, only to check the peers

    plan_peers(config, modality, roles["student"].spec, config.student.train)  # refuses peers on text data
    return Plan(config, data_options, modality, roles["teacher"], roles["student"], methods)


def load_plan_data(plan: Plan) -> Splits:
    return load_dataset(plan.config.data.name, plan.config.data.options())


def build_role_model(plan: Plan, role: str, splits: Splits) -> TappedModel:
    """The teacher's or the student's model, with the encoding it reads added to every split (a tokenising
    model tokenises the raw texts once, caching them under the run's cache folder)."""
    spec = (plan.teacher if role == "teacher" else plan.student).spec
    model = build_model(spec, splits.info, where=f"{role}.model")
    if isinstance(model, _CachesTokens) and plan.config.cache_dir:
        model.token_cache_dir = run_cache_dir(plan.config) / "tokens"
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
        usable_cache_dir(run_cache_dir(config))  # warns now, not after the teacher trained, when it cannot be used
    hub_only: list[str] = []
    #: what only the dataset's files, a model library that is not installed, or a weights download can check
    files_only: list[str] = []
    library_only: list[str] = []
    network_only: list[str] = []
    lines = [plan.describe()]
    missing = {role: _missing_library(getattr(plan, role).spec) for role in ("teacher", "student")}
    for role, library in missing.items():
        if library is not None:
            library_only.append(f"{role}.model ({_spec_text(getattr(plan, role).spec)}): {library}")
    root = _missing_root(plan.data_options)
    splits = None
    if root is not None:
        files_only.append(f"data ({config.data.name}): its root folder {root} does not exist")
        files_only.append("models and methods (they need the data's classes and inputs)")
    else:
        splits = _hub_tolerant(
            lambda: load_plan_data(plan),
            bool(getattr(plan.data_options, "hub", False)),
            f"data ({config.data.name})",
            hub_only,
        )
    if splits is not None:
        counts = ", ".join(f"{name} {len(split):,}" for name, split in splits.items())
        lines.append(
            f"data loaded: {counts} examples; {splits.info.num_classes} classes, {splits.info.num_groups} groups"
        )
        models: dict[str, TappedModel | None] = {}
        for role in ("teacher", "student"):
            spec = getattr(plan, role).spec
            if missing[role] is not None:
                models[role] = None
                continue
            uses_hub, downloads = bool(spec.get("hub")), bool(spec.get("pretrained"))
            models[role] = _hub_tolerant(
                partial(build_role_model, plan, role, splits),
                uses_hub or downloads,
                f"{role}.model",
                hub_only if uses_hub else network_only,
            )
        teacher, student = models["teacher"], models["student"]
        if teacher is not None and plan.teacher.checkpoint is not None:
            for seed in config.seed_list:
                path = plan.teacher.checkpoint_for(seed)
                assert path is not None  # plan.teacher.checkpoint is set
                load_model_checkpoint(path, teacher, splits.info.num_classes)
        if student is None or teacher is None:
            (hub_only if hub_only else library_only if library_only else network_only).append(
                "methods (their taps and widths are read from the models)"
            )
        else:
            for i, method in enumerate(plan.methods):
                context = method_context(
                    plan,
                    splits,
                    student,
                    teacher_embedding_dim=probe(teacher, splits.train)[0],
                    epochs=method.train.epochs,
                )
                build_method(method.config, context, where=f"methods.{i}({method.name})")
    elif root is None:
        hub_only.append("models and methods (they need the data's classes and inputs)")
    for heading, items in (
        ("access to the Hugging Face hub", hub_only),
        ("the dataset's files", files_only),
        ("the model libraries installed", library_only),
        ("network access (pretrained weights)", network_only),
    ):
        if items:
            lines.append(f"checkable only with {heading}:")
            lines += [f"  - {item}" for item in items]
    if hub_only or files_only or library_only or network_only:
        lines.append("config OK as far as it can be checked offline (dry run: nothing trained)")
    else:
        lines.append("config OK (dry run: nothing trained)")
    return "\n".join(lines)


def _missing_root(data_options: Options) -> Path | None:
    """The dataset's ``root:`` folder when the options have one and it does not exist (else None): the files a
    dry run cannot read. A root that exists is loaded, so malformed files still fail the dry run."""
    root = getattr(data_options, "root", None)
    if not isinstance(root, str):
        return None
    path = Path(root).expanduser()
    return None if path.exists() else path.resolve()


def _missing_library(spec: dict[str, Any]) -> str | None:
    """Why the model of ``spec`` cannot be built here: the library it declares (``requires=``) is not installed.

    Only looked up (``importlib.util.find_spec``), never imported: a broken build fails when the model is built."""
    import importlib.util

    library = MODELS.get(spec["name"]).meta.get("requires")
    if library is None or importlib.util.find_spec(library) is not None:
        return None
    package = library.replace("_", "-")
    return f"{package} is not installed (pip install {package})"


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
        info=splits.info,
        train=splits.train,
        val=splits.val,
        teacher_train=teacher_train,
        teacher_val=teacher_val,
        num_epochs=epochs,
        seed=plan.config.seed if seed is None else seed,
        student_embedding_dim=student_embedding_dim,
        teacher_embedding_dim=teacher_embedding_dim,
        student_taps=tuple(student.tap_names),
        student_model=plan.student.spec["name"],
        student_tap_dims=tap_dims,
    )


def run_cache_dir(config: RunConfig) -> Path:
    """The teacher-output and token cache of a run: ``cache_dir`` of the config, or the default one."""
    return Path(config.cache_dir).expanduser() if config.cache_dir else default_cache_dir()


def _schedule_text(train: TrainConfig) -> str:
    """`` (cosine, 1 warm-up epoch)`` for a non-constant schedule or a warm-up; empty otherwise."""
    parts: list[str] = [] if train.scheduler == "constant" else [train.scheduler]
    if train.warmup_epochs:
        parts.append(f"{train.warmup_epochs:g} warm-up epoch{'' if train.warmup_epochs == 1 else 's'}")
    return f" ({', '.join(parts)})" if parts else ""
