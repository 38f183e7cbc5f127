"""The run configuration: pydantic models, YAML loading (``yaml.safe_load``) and ``--set`` dotted overrides.

Parts whose options depend on a registered name (``data``, ``*.model``, ``methods[*].loss``) are kept as
plain mappings here and validated against their registry when the experiment is planned, so that this module
stays at the bottom of the dependency graph.
"""

from __future__ import annotations

import copy
import difflib
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import Field, PositiveFloat, PositiveInt, ValidationError, field_validator, model_validator

from fairdistill.errors import SHOWN_VALUE_CHARS, ConfigError, shown_value
from fairdistill.registry import Options, format_validation_error

#: The embedded default run (``fairdistill run`` with no CONFIG).
DEFAULT_CONFIG = Path(__file__).resolve().parent / "configs" / "default.yaml"
#: The folder of the configs that ship in the package (``fairdistill run adult``).
PACKAGED_CONFIGS = DEFAULT_CONFIG.parent

Selection = Literal["val_worst_group_acc", "val_acc", "last"]

#: Names that become file or folder names (run names, method names): a letter or digit first, then letters,
#: digits and ``_ . + -``, at most 64 characters. No path separators, no ``..``, no control characters.
SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+\-]{0,63}$")
#: Suffix of a model's training checkpoint (``checkpoints/<name>-train.pt``); no method name may end with it.
RESERVED_NAME_SUFFIX = "-train"
#: Seeds seed numpy's generator, which takes 0 ≤ seed < 2**32.
Seed = Annotated[int, Field(ge=0, lt=2**32, strict=True)]

#: A config, once its YAML aliases are expanded, may hold at most this many values (a real one holds hundreds).
MAX_CONFIG_VALUES = 20_000
#: ... nested at most this deep.
MAX_CONFIG_DEPTH = 32
#: Largest config file read.
MAX_CONFIG_BYTES = 1_000_000


class _DataLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that also reads exponent floats without a dot (``1e-3``, ``5E4``) as floats, as
    YAML 1.2 does, instead of as strings, and refuses a key given twice in one mapping (PyYAML would keep
    the last one silently, replacing a whole block)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # an unhashable key; the base class reports it
                break
            if repeated:
                raise yaml.constructor.ConstructorError(
                    "while reading a mapping",
                    node.start_mark,
                    f"the key {shown_value(key)} is given twice (first at line {seen[key].start_mark.line + 1}); "
                    "keep one",
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


_DataLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def yaml_data(text: str, *, what: str = "the YAML value") -> Any:
    """Parse YAML as plain data (safe: no tags, no code); ``1e-3`` is a float; duplicate keys are refused,
    and so is a document that expands (through aliases) to an absurd size — see :func:`check_size`."""
    try:
        data = yaml.load(text, Loader=_DataLoader)  # noqa: S506 - a SafeLoader subclass
    except ValueError as exc:  # e.g. an integer of more than 4,300 digits
        raise ConfigError(f"{what}: a value cannot be read ({shown_value(str(exc))})") from None
    check_size(data, what)
    return data


def check_size(data: Any, what: str) -> None:
    """Refuse data with more than MAX_CONFIG_VALUES values or deeper than MAX_CONFIG_DEPTH, counting every
    use of a shared (aliased) value; stops counting at the limit, so an alias bomb costs microseconds."""
    count = 0
    stack: list[tuple[Any, int]] = [(data, 0)]
    while stack:
        node, depth = stack.pop()
        count += 1
        if count > MAX_CONFIG_VALUES:
            raise ConfigError(
                f"{what} expands to more than {MAX_CONFIG_VALUES:,} values (YAML aliases "
                "repeated inside each other?); a run config needs far fewer"
            )
        if depth > MAX_CONFIG_DEPTH:
            raise ConfigError(f"{what} is nested more than {MAX_CONFIG_DEPTH} levels deep")
        if isinstance(node, dict):
            stack.extend((v, depth + 1) for v in node.values())
            stack.extend((k, depth + 1) for k in node)
        elif isinstance(node, (list, tuple)):
            stack.extend((v, depth + 1) for v in node)


class TrainConfig(Options):
    """Optimisation settings of one model."""

    epochs: PositiveInt = 10
    #: At most 10: larger steps only diverge (the loss becomes NaN after a few batches).
    lr: float = Field(default=1.0e-3, gt=0.0, le=10.0)
    batch_size: PositiveInt = 64
    eval_batch_size: PositiveInt = 512
    weight_decay: float = Field(default=0.0, ge=0.0)
    optimizer: Literal["adam", "adamw"] = "adam"
    #: Learning-rate schedule over all training steps, stepped after every batch: ``constant``, ``cosine``
    #: (to 0) or ``linear`` (to 0), each after ``warmup_epochs`` of linear warm-up from 0 (may be fractional).
    scheduler: Literal["constant", "cosine", "linear"] = "constant"
    warmup_epochs: float = Field(default=0.0, ge=0.0)
    #: Clip the gradients' global L2 norm to this value before every optimiser step (None: no clipping).
    max_grad_norm: PositiveFloat | None = None
    #: Sum the gradients of this many batches per optimiser step (the effective batch is batch_size × this).
    gradient_accumulation_steps: PositiveInt = 1
    #: Weight decay also on biases and normalisation weights (1-D parameters); off, as is usual for transformers.
    decay_bias_and_norm: bool = False


class ComponentSpec(Options):
    """A registered component chosen by ``name`` (models, datasets) with its own options."""

    model_config = Options.model_config | {"extra": "allow"}
    name: str

    def options(self) -> dict[str, Any]:
        """The options without the ``name`` key."""
        return dict(self.model_extra or {})


class KindSpec(Options):
    """A registered component chosen by ``kind`` (losses, weightings, ...) with its own options."""

    model_config = Options.model_config | {"extra": "allow"}
    kind: str

    def options(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class RoleConfig(Options):
    """The teacher or the student: its architecture (default: the modality's), training and optional checkpoint."""

    model: ComponentSpec | None = None
    train: TrainConfig = TrainConfig()
    checkpoint: str | None = None
    #: Which epoch's weights this role keeps; None: the run's ``select``. The default config's teacher uses
    #: ``last`` after a cosine schedule, so its selected epoch cannot jump between seeds or machines.
    select: Selection | None = None


#: When the teacher runs during student training (``teacher.online``); see :class:`TeacherConfig`.
TeacherOnline = Literal["auto", "always", "never"]


class TeacherConfig(RoleConfig):
    """The teacher's section: a role, plus when the teacher runs during the students' training.

    ``online`` (teacher only: ``student.online`` is an unknown field):

    - ``auto`` (default): the teacher runs on every training batch when the train split makes random views
      (``split.random_views``: an image split with ``train_augment`` other than ``none``), so its outputs are of
      the very view the student sees; otherwise its outputs on the train split are computed once and cached.
    - ``always``: the teacher runs on every training batch (the student's batch tensors, eval mode, no
      gradient), also without augmentation (same results as the cache up to float rounding, slower).
    - ``never``: always the cache, made of the eval (centre) views; with augmentation on, a warning says the
      teacher's outputs are then of the centre view, not of the augmented view the student sees.

    Whole-split teacher statistics (KD++'s class means) always come from the cached centre views.
    """

    online: TeacherOnline = "auto"


def check_file_name(name: str, what: str) -> str:
    """``name`` when it is safe as a file name (see SAFE_NAME); otherwise a ValueError saying why."""
    if not SAFE_NAME.match(name):
        raise ValueError(
            f"{what} {shown_value(name)} cannot be used: it names files of the run, so it must start with a letter "
            "or digit and hold only letters, digits and _ . + - (at most 64 characters; no / or ..)"
        )
    return name


def _with_options(kind: str, options: dict[str, Any]) -> str:
    shown = [
        str(v) if isinstance(v, str) else f"{k}={v:g}"
        for k, v in options.items()
        if isinstance(v, str) or (isinstance(v, (int, float)) and not isinstance(v, bool))
    ]
    return f"{kind}({', '.join(shown[:4])}{', ...' if len(shown) > 4 else ''})" if shown else kind


class MethodConfig(Options):
    """One distillation method: a loss (default: the loss kind named like the method) and, later, weightings."""

    name: str = Field(min_length=1)
    loss: KindSpec | None = None
    weighting: KindSpec | None = None
    mixing: KindSpec | None = None
    adversary: dict[str, Any] | None = None
    train: TrainConfig | None = None

    @property
    def loss_kind(self) -> str:
        return self.loss.kind if self.loss is not None else self.name

    @property
    def recipe(self) -> str:
        """What the method is made of, for plans and tables: ``kd + early-readout(margin, beta=3, alpha=0.2)``
        (each part's explicitly given options, at most four; text values bare, numbers as key=value)."""
        parts = [self.loss_kind]
        for kind, options in ((p.kind, p.options()) for p in (self.weighting, self.mixing) if p is not None):
            parts.append(_with_options(kind, options))
        if self.adversary is not None:
            parts.append(_with_options("adversary", {k: v for k, v in self.adversary.items() if k != "target"}))
        return " + ".join(parts)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, name: str) -> str:
        check_file_name(name, "method name")
        if name.lower().endswith(RESERVED_NAME_SUFFIX):
            raise ValueError(
                f"method name {name!r} ends with {RESERVED_NAME_SUFFIX!r}, which the run keeps for "
                "training checkpoints (checkpoints/<model>-train.pt); rename the method"
            )
        return name


#: fairlearn ThresholdOptimizer's ``constraints`` and ``objective``, spelt as fairlearn spells them.
ThresholdConstraint = Literal[
    "demographic_parity",
    "equalized_odds",
    "false_negative_rate_parity",
    "false_positive_rate_parity",
    "selection_rate_parity",
    "true_negative_rate_parity",
    "true_positive_rate_parity",
]
ThresholdObjective = Literal[
    "accuracy_score", "balanced_accuracy_score", "selection_rate", "true_positive_rate", "true_negative_rate"
]
#: The objectives ThresholdOptimizer accepts with ``equalized_odds`` (the others take every objective).
EQUALIZED_ODDS_OBJECTIVES = ("accuracy_score", "balanced_accuracy_score")


class PostprocessConfig(Options):
    """Post-process the teacher and every student with fairlearn's ThresholdOptimizer, fitted on the val split
    (docs/postprocessing.md); each gets an extra row ``<model>+threshold``. Two classes only."""

    #: The fairness criterion (fairlearn's ``constraints``): ``equalized_odds``, ``demographic_parity``, ...
    threshold: ThresholdConstraint
    objective: ThresholdObjective = "accuracy_score"
    #: Points of fairlearn's grid over [0, 1] on which the thresholds are searched.
    grid_size: PositiveInt = 1000
    #: A relaxed criterion: the largest violation allowed on val (e.g. 0.04 for an EO difference of at most
    #: 0.04). The row then answers with the optimizer's label with the smallest probability that brings the
    #: expected val violation within it, and with the model's own label otherwise. None: the optimizer alone.
    tolerance: float | None = Field(default=None, gt=0.0, le=1.0)

    @model_validator(mode="after")
    def _objective_fits_the_criterion(self) -> PostprocessConfig:
        if self.threshold == "equalized_odds" and self.objective not in EQUALIZED_ODDS_OBJECTIVES:
            raise ValueError(
                f"objective {self.objective!r} cannot be used with threshold: equalized_odds; fairlearn's "
                f"ThresholdOptimizer takes {' or '.join(EQUALIZED_ODDS_OBJECTIVES)} with it"
            )
        return self


#: Short names of the peers' constraints (``expgrad-eo-logistic``).
PEER_CONSTRAINT_SHORT = {"equalized-odds": "eo", "demographic-parity": "dp"}


class PeerConfig(Options):
    """fairlearn's ExponentiatedGradient (``kind: expgrad``) with a constraint, fitted on the train split of table
    data or in-memory images, around a scikit-learn classifier (``logistic``, ``mlp``: non-distilled references)
    or around the run's student trained with kd's loss against the teacher (``distilled``: a randomised distilled
    student) (docs/postprocessing.md)."""

    kind: Literal["expgrad"]
    constraint: Literal["equalized-odds", "demographic-parity"]
    estimator: Literal["logistic", "mlp", "distilled"] = "logistic"
    #: The row's name (default ``expgrad-eo-logistic`` and the like).
    name: str | None = None
    #: The constraint's bound: the largest allowed |E[h | a, y] − E[h | y]| (equalized odds) or |E[h | a] − E[h]|
    #: (demographic parity) on train, fairlearn's ``difference_bound``; None: fairlearn's default, 0.01.
    difference_bound: float | None = Field(default=None, gt=0.0, le=1.0)
    #: fairlearn's ``eps``: sets the L1 bound B = 1/eps of the Lagrange multipliers (since fairlearn 0.5 it no longer
    #: relaxes the constraint: that is ``difference_bound``), and the number of iterations.
    eps: PositiveFloat = 0.01
    max_iter: PositiveInt = 50
    #: mlp only: hidden layer sizes (default: the student's); mlp and distilled: epochs (default: the student's).
    hidden: list[PositiveInt] | None = Field(default=None, min_length=1)
    epochs: PositiveInt | None = None
    #: distilled only: kd's α (the teacher term's share) and τ inside the reduction.
    alpha: float | None = Field(default=None, ge=0.0, le=1.0)
    tau: float | None = Field(default=None, ge=0.01, le=1000.0)

    @property
    def short_name(self) -> str:
        return f"{self.kind}-{PEER_CONSTRAINT_SHORT[self.constraint]}"

    @property
    def default_name(self) -> str:
        return f"{self.short_name}-{self.estimator}"

    @field_validator("name")
    @classmethod
    def _safe_peer_name(cls, name: str | None) -> str | None:
        return None if name is None else check_file_name(name, "peer name")

    @model_validator(mode="after")
    def _options_need_their_estimator(self) -> PeerConfig:
        allowed = {"hidden": ("mlp",), "epochs": ("mlp", "distilled"), "alpha": ("distilled",), "tau": ("distilled",)}
        for key, estimators in allowed.items():
            if getattr(self, key) is not None and self.estimator not in estimators:
                raise ValueError(
                    f"{key}: only for estimator {' or '.join(estimators)} (this peer's is {self.estimator})"
                )
        return self


class RunConfig(Options):
    """A whole run: dataset, teacher, student, methods, checkpoint selection and output folder."""

    name: str = "run"
    seed: Seed = 0
    #: Several seeds run every model once per seed (tables show mean ± std); omitted → ``[seed]``.
    seeds: list[Seed] | None = Field(default=None, min_length=1, max_length=1000)
    data: ComponentSpec
    teacher: TeacherConfig = TeacherConfig()
    student: RoleConfig = RoleConfig()
    methods: list[MethodConfig] = Field(min_length=1)
    select: Selection = "val_worst_group_acc"
    output: str = "runs/"
    device: Literal["auto", "cpu"] = "auto"
    #: Mixed precision through Accelerate: ``fp16`` needs a GPU; ``bf16`` works on recent GPUs and on the CPU.
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    cache_dir: str | None = None
    #: Optional experiment tracker (through Accelerate): per-epoch records and test metrics are logged to it.
    log_with: Literal["tensorboard", "mlflow", "wandb"] | None = None
    #: Post-processing of the teacher and every student (``postprocess: {threshold: equalized_odds}``).
    postprocess: PostprocessConfig | None = None
    #: Non-distilled references shown in the same report (table data only).
    peers: list[PeerConfig] | None = Field(default=None, min_length=1)

    @property
    def seed_list(self) -> list[int]:
        """The seeds to run: ``seeds`` when given (it takes precedence over ``seed``), else ``[seed]``."""
        return list(self.seeds) if self.seeds is not None else [self.seed]

    @field_validator("name")
    @classmethod
    def _safe_run_name(cls, name: str) -> str:
        return check_file_name(name, "run name")

    @field_validator("seeds")
    @classmethod
    def _unique_seeds(cls, seeds: list[int] | None) -> list[int] | None:
        if seeds is not None and len(set(seeds)) != len(seeds):
            raise ValueError(f"seeds {seeds} repeat a seed; each seed runs once")
        return seeds

    @field_validator("methods")
    @classmethod
    def _unique_method_names(cls, methods: list[MethodConfig]) -> list[MethodConfig]:
        seen: dict[str, str] = {}
        for method in methods:
            folded = method.name.lower()  # checkpoints/KD.pt and checkpoints/kd.pt are one file on some disks
            if folded in seen:
                same = "is used twice" if seen[folded] == method.name else f"differs from {seen[folded]!r} only in case"
                raise ValueError(f"method name {method.name!r} {same}; names must be unique (they name files)")
            seen[folded] = method.name
        return methods

    @model_validator(mode="after")
    def _teacher_not_named_like_a_method(self) -> RunConfig:
        if any(m.name.lower() == "teacher" for m in self.methods):
            raise ValueError("'teacher' is reserved for the teacher model; rename that method")
        return self

    @model_validator(mode="after")
    def _extra_rows_named_uniquely(self) -> RunConfig:
        """The rows post-processing and peers add must not take a model's name (they name files too)."""
        if self.postprocess is None and not self.peers:
            return self
        taken = {name.lower(): f"model {name!r}" for name in ["teacher", *(m.name for m in self.methods)]}
        added: list[tuple[str, str]] = []
        if self.postprocess is not None:
            added += [
                (f"{name}+threshold", f"the post-processed {name}")
                for name in ["teacher", *(m.name for m in self.methods)]
            ]
        for i, peer in enumerate(self.peers or []):
            added.append((peer.name or peer.default_name, f"peers.{i}"))
        for name, what in added:
            check_file_name(name, f"the name of {what},")
            if name.lower() in taken:
                raise ValueError(
                    f"{what} is named {name!r}, like {taken[name.lower()]}; rename one (give the peer a name:)"
                )
            taken[name.lower()] = what
        return self


def packaged_configs() -> list[str]:
    """Names of the configs that ship in the package (``fairdistill run NAME``), sorted."""
    return sorted(p.stem for p in PACKAGED_CONFIGS.glob("*.yaml"))


def resolve_config(path: str | Path | None) -> Path:
    """The config file that ``path`` names: an existing file as given; otherwise a bare name (``adult``,
    ``adult.yaml``) or ``configs/<name>.yaml`` is looked up among the packaged configs, so the README's
    commands work from any folder once installed. ``None`` is the embedded default. A real file always wins;
    an unknown name raises a ConfigError listing the packaged configs."""
    if path is None:
        return DEFAULT_CONFIG
    given = Path(path)
    if given.is_file():
        return given
    parts = given.parts
    if len(parts) == 1 or (len(parts) == 2 and parts[0] == "configs"):
        name = parts[-1]
        stem = name[: -len(given.suffix)] if given.suffix in (".yaml", ".yml") else name
        names = packaged_configs()
        if stem in names:
            return PACKAGED_CONFIGS / f"{stem}.yaml"
        close = difflib.get_close_matches(stem, names, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"config file not found: {given.resolve()}, and no packaged config is named "
            f"{shown_value(stem)}.{hint} Packaged configs: {', '.join(names)}"
        )
    return given


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML config as data (``safe_load``: no tags, no code); errors name the file and line.
    ``path`` goes through :func:`resolve_config` (a bare name is a packaged config)."""
    path = resolve_config(path)
    if not path.is_file():
        raise ConfigError(f"config file not found: {path.resolve()}")
    if path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"config file {path} is {path.stat().st_size:,} bytes; a run config is a few kB "
            f"(at most {MAX_CONFIG_BYTES:,} bytes are read)"
        )
    try:
        raw = yaml_data(path.read_text(encoding="utf-8"), what=f"config file {path}")
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"invalid YAML in {path}{where}: {problem}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {path} is not UTF-8 text") from None
    if raw is None:
        raise ConfigError(f"config file {path} is empty")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"config file {path}: expected a mapping of fields at the top level, got {type(raw).__name__}"
        )
    return raw


def apply_override(raw: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one ``key.path=value`` override (value parsed as YAML) and return a new mapping.

    List entries are addressed by their ``name`` (``methods.kd.loss.tau=4``) or by position (``methods.0``).
    """
    if "=" not in assignment:
        raise ConfigError(f"--set {shown_value(assignment)}: expected key.path=value")
    path, _, text = assignment.partition("=")
    keys = [k for k in path.strip().split(".")]
    if not path.strip() or any(not k for k in keys):
        raise ConfigError(f"--set {shown_value(assignment)}: the key path is empty or has an empty segment")
    try:
        value = yaml_data(text, what=f"--set {path}") if text.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"--set {path}: value {shown_value(text)} is not valid YAML ({getattr(exc, 'problem', exc)})"
        ) from None
    result = copy.deepcopy(raw)
    node: Any = result
    for depth, key in enumerate(keys[:-1]):
        where = ".".join(keys[: depth + 1])
        if isinstance(node, list):
            node = _list_entry(node, key, where)
            continue
        if not isinstance(node, dict):
            raise ConfigError(f"--set {path}: {'.'.join(keys[:depth])} is a {type(node).__name__}, not a mapping")
        child = node.get(key)
        if child is None:
            child = node[key] = {}
        node = child
    last = keys[-1]
    if isinstance(node, list):
        entry = _list_entry(node, last, path)
        node[node.index(entry)] = value
    elif isinstance(node, dict):
        node[last] = value
    else:
        raise ConfigError(f"--set {path}: {'.'.join(keys[:-1])} is a {type(node).__name__}, not a mapping")
    return result


def _list_entry(items: list[Any], key: str, where: str) -> Any:
    for item in items:
        if isinstance(item, dict) and item.get("name") == key:
            return item
    if key.isdigit() and int(key) < len(items):
        return items[int(key)]
    names = [str(item.get("name")) for item in items if isinstance(item, dict)]
    raise ConfigError(
        f"--set {where}: no list entry named {shown_value(key)}; entries: "
        f"{_bounded(', '.join(names)) if names else '(none)'}"
    )


def _bounded(text: str) -> str:
    """``text`` cut to SHOWN_VALUE_CHARS (for lists of names echoed in a message)."""
    return text if len(text) <= SHOWN_VALUE_CHARS else text[: SHOWN_VALUE_CHARS - 3] + "..."


def parse_config(raw: dict[str, Any]) -> RunConfig:
    """Validate a raw mapping into a RunConfig; every problem is reported with its field path."""
    check_size(raw, "the config")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_with_method_names(format_validation_error(exc, ""), raw)) from None


def _with_method_names(message: str, raw: dict[str, Any]) -> str:
    """Show ``methods.2`` as ``methods.2(dedier)`` so users find the entry."""
    methods = raw.get("methods")
    if not isinstance(methods, list):
        return message
    for i, entry in enumerate(methods):
        if isinstance(entry, dict) and isinstance(entry.get("name"), str):
            name = entry["name"] if SAFE_NAME.match(entry["name"]) else shown_value(entry["name"])
            message = message.replace(f"methods.{i}.", f"methods.{i}({name}).")
            message = message.replace(f"methods.{i}:", f"methods.{i}({name}):")
    return message


def load_config(
    path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = (), methods: list[str] | None = None
) -> RunConfig:
    """Load a config file (default: the embedded default run), apply ``--set`` overrides, keep only the named
    ``methods`` when given (``--methods``), validate."""
    raw = load_yaml(path if path is not None else DEFAULT_CONFIG)
    for assignment in overrides:
        raw = apply_override(raw, assignment)
    return parse_config(raw if methods is None else keep_methods(raw, methods))


def config_to_yaml(config: RunConfig) -> str:
    """The resolved config (defaults filled in) as YAML."""
    return yaml.safe_dump(config.model_dump(mode="json", exclude_none=True), sort_keys=False)


def keep_methods(raw: dict[str, Any], names: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """``raw`` with only the ``methods`` entries named in ``names`` (``--methods a,b``), in the config's order;
    a name the config does not hold, or an empty selection, is a ConfigError naming the valid names."""
    wanted = [n.strip() for n in names if n.strip()]
    methods = raw.get("methods")
    if not isinstance(methods, list):
        raise ConfigError("--methods: the config has no list of methods to choose from")
    valid = [str(m.get("name")) for m in methods if isinstance(m, dict)]
    listed = _bounded(", ".join(valid)) if valid else "(none)"
    if not wanted:
        raise ConfigError(f"--methods: give at least one method name; the config's methods: {listed}")
    unknown = [n for n in dict.fromkeys(wanted) if n not in valid]
    if unknown:
        raise ConfigError(
            f"--methods: no method named {_bounded(', '.join(map(shown_value, unknown)))} in the "
            f"config; its methods: {listed}"
        )
    return {**raw, "methods": [copy.deepcopy(m) for m in methods if isinstance(m, dict) and m.get("name") in wanted]}
