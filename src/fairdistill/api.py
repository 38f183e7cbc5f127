"""The Python API: what a notebook or a script calls instead of the command line.

Runs, as ``fairdistill run`` does them::

    import fairdistill as fd

    config = fd.load_config("default", overrides={"student.train.epochs": 1})   # a file or a packaged name
    config = fd.make_config({"data": {"name": "adult"}, "methods": [{"name": "kd"}]})  # or built in code
    results = fd.run(config, progress="quiet")
    results.table()                      # pandas DataFrame, one row per model (test split)
    results.predictions("kd")            # the per-example predictions of one model
    results = fd.load_results("runs/default-20250101-120000")                      # a finished run

A method on one's own model and training loop (any ``nn.Module`` wrapped in :class:`TappedModel`)::

    objective = fd.make_method({"name": "dedier", "loss": {"kind": "kd"},
                                "weighting": {"kind": "early-readout", "tap": "conv1"}},
                               splits, student, teacher=teacher, epochs=3)
    for epoch in range(3):
        for batch in objective.epoch(DataLoader(splits.train, 64, shuffle=True, collate_fn=fd.collate)):
            out = student(batch.inputs)
            per_example = objective.per_example_loss(batch, out)     # ℓ_i, shape (B,)
            weights = objective.weights(batch, out, per_example)     # w_i, shape (B,); ones without a weighting
            loss = (weights * per_example).mean() + objective.extra_loss(batch, out)
            ...

Every name here is also an attribute of the ``fairdistill`` package (imported on first use, so
``import fairdistill`` stays fast). Mistakes raise :class:`~fairdistill.errors.ConfigError` (or another
:class:`~fairdistill.errors.FairdistillError`) with the message the command line would print.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fairdistill
from fairdistill.config import RunConfig, parse_config
from fairdistill.config import load_config as _load_config
from fairdistill.data.core import collate
from fairdistill.errors import ConfigError, FairdistillError
from fairdistill.models.core import TappedModel

if TYPE_CHECKING:  # only for annotations; the rest is imported by the functions that need it
    import pandas as pd
    import torch

    from fairdistill.data.core import Batch, Splits
    from fairdistill.distill.core import TeacherOutputs
    from fairdistill.distill.method import Method
    from fairdistill.models.core import ModelOutput
    from fairdistill.progress import Progress

#: The API's names: those the package exposes (fairdistill/__init__.py lists them, importing nothing).
__all__ = [name for name in fairdistill.__all__ if name != "__version__"]

#: The metrics (keys of metrics.json) that :meth:`Results.table` shows by default, in the report's order.
TABLE_METRICS: tuple[str, ...] = (
    "accuracy",
    "worst_group_accuracy",
    "balanced_accuracy",
    "macro_f1",
    "recall_disparity_mad",
    "eo_difference",
    "dp_difference",
    "ece",
)


# ----------------------------------------------------------------------------------------------------- configs


def load_config(
    path_or_name: str | Path | None = None,
    overrides: Iterable[str] | Mapping[str, Any] = (),
    methods: Iterable[str] | None = None,
) -> RunConfig:
    """A checked run config from a YAML file or a packaged config's name (``"default"``, ``"adult"``; None:
    the embedded default), as ``fairdistill run CONFIG --set ... --methods ...`` reads it.

    ``overrides`` are ``--set`` assignments, as strings (``["methods.kd.loss.tau=4"]``, the value YAML) or as a
    mapping of key paths to Python values (``{"methods.kd.loss.tau": 4, "data.max_examples": 300}``); entries
    of ``methods`` are addressed by name. ``methods`` keeps only the named methods.
    """
    if isinstance(overrides, Mapping):
        assignments = [f"{key}={json.dumps(value, default=str)}" for key, value in overrides.items()]
    elif isinstance(overrides, str):
        assignments = [overrides]
    else:
        assignments = list(overrides)
    names = None if methods is None else ([methods] if isinstance(methods, str) else list(methods))
    return _checked(_load_config(path_or_name, assignments, names))


def make_config(data: Mapping[str, Any] | RunConfig) -> RunConfig:
    """Validate a config built in code (the mapping a YAML config file holds); a RunConfig is returned as is.

    Every problem is one :class:`ConfigError` naming the field (``methods.0(kd).loss.tau: ...``).
    """
    if isinstance(data, RunConfig):
        return data
    if not isinstance(data, Mapping):
        raise ConfigError(f"make_config: expected a mapping of config fields, got {type(data).__name__}")
    return _checked(parse_config(json.loads(json.dumps(dict(data), default=str))))


def _checked(config: RunConfig) -> RunConfig:
    """``config`` once every registered name and option in it resolves (the checks a run makes before it loads
    data: datasets, models, losses, weightings, mixings and their options)."""
    from fairdistill.experiment import make_plan

    make_plan(config)
    return config


def _as_config(config: RunConfig | Mapping[str, Any] | str | Path | None) -> RunConfig:
    if config is None or isinstance(config, (str, Path)):
        return load_config(config)
    return make_config(config)


def _progress(progress: str | Progress | None) -> Progress:
    from fairdistill.progress import SILENT, VERBOSITIES, Progress

    if progress is None:
        return SILENT
    if isinstance(progress, Progress):
        return progress
    if progress not in VERBOSITIES:
        raise ConfigError(f"progress: expected one of {', '.join(VERBOSITIES)} (or a Progress), got {progress!r}")
    return Progress(progress)


# -------------------------------------------------------------------------------------------------------- runs


def run(
    config: RunConfig | Mapping[str, Any] | str | Path | None = None,
    *,
    progress: str | Progress | None = "normal",
    output: str | Path | None = None,
) -> Results:
    """Run a config as ``fairdistill run`` does (train or load the teacher, one student per method, evaluate,
    write the run directory and its report); returns its :class:`Results`.

    ``config``: a RunConfig, a mapping (see :func:`make_config`), a file or packaged name (see
    :func:`load_config`), or None for the embedded default. ``progress``: ``"normal"`` (plan, models, epochs
    on stderr), ``"quiet"`` (only warnings), ``"verbose"``, or a :class:`~fairdistill.progress.Progress`.
    ``output``: the parent folder of the run directory (default: the config's ``output``, ``runs/``).
    """
    from fairdistill import experiment

    cfg = _as_config(config)
    if output is not None:
        cfg = cfg.model_copy(update={"output": str(output)})
    result = experiment.run(cfg, progress=_progress(progress))
    return Results(Path(result.run_dir), result.metrics)


def resume(run_dir: str | Path, *, progress: str | Progress | None = "normal") -> Results:
    """Continue a stopped run in its own directory (``fairdistill run --resume RUN_DIR``)."""
    from fairdistill import experiment

    result = experiment.resume(Path(run_dir), progress=_progress(progress))
    return Results(Path(result.run_dir), result.metrics)


def dry_run(config: RunConfig | Mapping[str, Any] | str | Path | None = None) -> str:
    """Validate a config as far as possible without training (``fairdistill run --dry-run``); the plan."""
    from fairdistill import experiment

    return experiment.dry_run(_as_config(config))


def load_results(run_dir: str | Path) -> Results:
    """The :class:`Results` of an existing run directory (its metrics.json checked as ``fairdistill report``
    checks it)."""
    from fairdistill.rundir import read_metrics

    run_dir = Path(run_dir).expanduser().resolve()
    return Results(run_dir, read_metrics(run_dir))


@dataclass
class Results:
    """A finished run: its directory and its metrics (the content of metrics.json), with readers for both."""

    run_dir: Path
    #: metrics.json as a dict: ``dataset``, ``run``, ``models.<name>.splits.<split>.<metric>``, ``amplification``...
    metrics: dict[str, Any]
    _config: RunConfig | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        self.run_dir = Path(self.run_dir)

    @property
    def name(self) -> str:
        return str(self.metrics["run"]["name"])

    @property
    def models(self) -> list[str]:
        """The models in run order: ``["teacher", <method names>...]``."""
        return list(self.metrics["models"])

    @property
    def seeds(self) -> list[int]:
        from fairdistill.rundir import run_seeds

        return run_seeds(self.metrics)

    @property
    def report_path(self) -> Path:
        """The self-contained HTML report (``report.md``, with the same tables, lies next to it)."""
        return self.run_dir / "report.html"

    @property
    def config(self) -> RunConfig:
        """The run's resolved config, read from its config.yaml."""
        if self._config is None:
            self._config = _load_config(self.run_dir / "config.yaml")
        return self._config

    def table(self, split: str = "test", metrics: Iterable[str] = TABLE_METRICS) -> pd.DataFrame:
        """One row per model (indexed by its name) on ``split`` (``"test"`` or ``"val"``): ``role``, ``method``,
        ``params``, then each metric of ``metrics`` (keys of metrics.json: ``accuracy``, ``worst_group_accuracy``,
        ``recall_disparity_mad``, ``eo_difference``, ``dp_difference``, ``ece``, ...; an undefined one is NaN).

        With several seeds a metric's column holds the mean over the seeds, ``<metric>_std`` next to it their
        sample standard deviation, and ``seeds`` the number of seeds.
        """
        import pandas as pd

        metrics = list(metrics)
        several = len(self.seeds) > 1
        rows = []
        for name, model in self.metrics["models"].items():
            if split not in model["splits"]:
                raise FairdistillError(
                    f"{self.run_dir}: model {name} has no {split!r} split; its splits: {', '.join(model['splits'])}"
                )
            means = model["splits"][split]
            stds = model.get("splits_std", {}).get(split, {})
            row: dict[str, Any] = {
                "model": name,
                "role": model["role"],
                "method": model["method"],
                "params": model["params"],
            }
            if several:
                row["seeds"] = len(self.seeds)
            for key in metrics:
                row[key] = _number(means.get(key))
                if several:
                    row[f"{key}_std"] = _number(stds.get(key))
            rows.append(row)
        return pd.DataFrame(rows).set_index("model")

    def predictions(self, model: str, split: str = "test", seed: int | None = None) -> pd.DataFrame:
        """The per-example predictions of ``model`` on ``split``: ``index`` (position in the split), ``y``,
        ``attr``, ``group``, ``pred``, ``prob_0`` … ``prob_<C-1>`` (and ``readout_<tap>_prob_<c>`` for early
        readouts). ``seed``: which seed's predictions, in a run with several (default: the first)."""
        from fairdistill.rundir import predictions_dir, read_predictions

        seeds, seed = self.seeds, self._checked(model, seed)
        path = predictions_dir(self.run_dir, seed, len(seeds) > 1) / f"{model}-{split}.parquet"
        return read_predictions(path, self.metrics["dataset"])

    def _checked(self, model: str, seed: int | None) -> int:
        """``seed`` (default: the run's first) after checking the run has ``model`` and that seed."""
        if model not in self.metrics["models"]:
            raise FairdistillError(f"{self.run_dir}: no model {model!r}; its models: {', '.join(self.models)}")
        seeds = self.seeds
        chosen = seeds[0] if seed is None else seed
        if chosen not in seeds:
            raise FairdistillError(f"{self.run_dir}: no seed {chosen}; its seeds: {', '.join(map(str, seeds))}")
        return chosen

    def load_data(self) -> Splits:
        """The run's dataset, loaded again from its config (same options, so the same splits)."""
        from fairdistill.data import load_dataset

        return load_dataset(self.config.data.name, self.config.data.options())

    def load_model(self, model: str, data: Splits | None = None, seed: int | None = None) -> TappedModel:
        """A trained model of the run (``"teacher"`` or a method's student) rebuilt from its checkpoint, in eval
        mode on the CPU. ``data``: the run's splits (:meth:`load_data`, loaded here when not given)."""
        from fairdistill.data.core import ensure_encoding
        from fairdistill.models import build_model
        from fairdistill.rundir import checkpoints_dir
        from fairdistill.train.checkpoint import load_model_checkpoint

        seeds, seed = self.seeds, self._checked(model, seed)
        splits = self.load_data() if data is None else data
        spec = self.metrics["models"][model].get("model")
        if spec is None:  # metrics.json written without the spec: the one the config resolves to
            from fairdistill.experiment import make_plan

            plan = make_plan(self.config)
            spec = (plan.teacher if self.metrics["models"][model]["role"] == "teacher" else plan.student).spec
        built = build_model(spec, splits.info, where=f"{model}.model")
        ensure_encoding(built, splits)
        load_model_checkpoint(
            checkpoints_dir(self.run_dir, seed, len(seeds) > 1) / f"{model}.pt", built, splits.info.num_classes
        )
        return built.eval()

    def __repr__(self) -> str:
        return f"Results({self.name!r}, run_dir={str(self.run_dir)!r}, models={self.models})"

    def _repr_html_(self) -> str:  # a notebook shows the test table
        return f"<p>run <code>{self.run_dir}</code>, test split</p>" + self.table()._repr_html_()


def _number(value: Any) -> float:
    return float("nan") if value is None or isinstance(value, (dict, list)) else float(value)


# ------------------------------------------------------------------------------------------------- own loops


def load_data(name: str, **options: Any) -> Splits:
    """A registered dataset's train / val / test splits and its info (``load_data("colored-mnist",
    max_examples=300)``); the options are those of the config's ``data:`` section."""
    from fairdistill.data import load_dataset

    return load_dataset(name, options)


def teacher_outputs(
    teacher: TappedModel, split: Any, *, batch_size: int = 512, device: torch.device | str | None = None
) -> TeacherOutputs:
    """The teacher's logits (and embeddings) on every example of ``split``, as the methods look them up."""
    from fairdistill.distill.core import TeacherOutputs
    from fairdistill.train.cache import compute_teacher_outputs

    device = _device_of(teacher) if device is None else device
    return TeacherOutputs(*compute_teacher_outputs(teacher, split, batch_size, device))


def evaluate_model(
    model: TappedModel,
    data: Splits,
    split: str = "test",
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> dict[str, Any]:
    """A model's metrics on one split of ``data``, as a run computes them (the dict of
    ``metrics.json``'s ``models.<name>.splits.<split>``: ``accuracy``, ``worst_group_accuracy``, ...)."""
    from fairdistill.evaluate.metrics import compute_metrics
    from fairdistill.evaluate.predict import predict

    device = _device_of(model) if device is None else device
    p = predict(model, getattr(data, split), batch_size, device)
    return compute_metrics(p.y, p.probs, p.attr, p.group, data.info)


def _device_of(model: Any) -> torch.device:
    import torch

    parameter = next(iter(model.parameters()), None)
    return parameter.device if parameter is not None else torch.device("cpu")


def make_method(
    method: Mapping[str, Any] | Any,
    data: Splits,
    student: TappedModel,
    teacher: TappedModel | TeacherOutputs | None = None,
    *,
    teacher_val: TeacherOutputs | None = None,
    epochs: int = 1,
    seed: int = 0,
    device: torch.device | str | None = None,
) -> Objective:
    """A method of the config's ``methods:`` list (a mapping such as ``{"name": "kd", "loss": {"kind": "kd",
    "tau": 2}, "weighting": {...}}``, or a MethodConfig) built for one's own training loop; see :class:`Objective`.

    ``data``: the splits (the weightings read the train split, mixing rules the validation split).
    ``student``: the :class:`TappedModel` being trained (its taps feed early readouts). ``teacher``: a trained
    TappedModel (its outputs on train and val are computed here) or its :func:`teacher_outputs` on the train
    split (then ``teacher_val`` for mixing rules); needed by every loss but ``erm``. ``epochs``: how many epochs
    the loop will run (schedules, JTT's stages). ``device``: where batches go (default: the student's).
    """
    from pydantic import ValidationError

    from fairdistill.config import MethodConfig
    from fairdistill.distill import MethodContext, build_method
    from fairdistill.distill.core import TeacherOutputs
    from fairdistill.registry import format_validation_error

    if isinstance(method, MethodConfig):
        config = method
    else:
        try:
            config = MethodConfig.model_validate(dict(method))
        except ValidationError as exc:
            raise ConfigError(format_validation_error(exc, "method")) from None
        except (TypeError, ValueError):
            raise ConfigError(f"method: expected a mapping such as {{'name': 'kd'}}, got {method!r}") from None
    device = _device_of(student) if device is None else device
    teacher_train: TeacherOutputs | None
    if teacher is None or isinstance(teacher, TeacherOutputs):
        teacher_train = teacher
    else:
        teacher_train = teacher_outputs(teacher, data.train)
        teacher_val = teacher_outputs(teacher, data.val) if teacher_val is None else teacher_val
    embedding_dim, tap_dims = _probe(student, data.train, device)
    context = MethodContext(
        info=data.info,
        train=data.train,
        val=data.val,
        teacher_train=teacher_train,
        teacher_val=teacher_val,
        num_epochs=epochs,
        seed=seed,
        student_embedding_dim=embedding_dim,
        teacher_embedding_dim=None
        if teacher_train is None or teacher_train.embedding is None
        else int(teacher_train.embedding.shape[1]),
        student_taps=tuple(student.tap_names),
        student_model=type(student.module).__name__,
        student_tap_dims=tap_dims,
    )
    built = build_method(config, context, where=f"method({config.name})")
    if built.requires_teacher and teacher_train is None:
        raise ConfigError(
            f"method({config.name}): loss {config.loss_kind!r} distils a teacher; pass teacher= "
            "(a trained TappedModel, or teacher_outputs(teacher, splits.train))"
        )
    return Objective(built, student, teacher_train if built.requires_teacher else None, epochs, device, seed)


def _probe(model: TappedModel, split: Any, device: torch.device | str) -> tuple[int | None, dict[str, int]]:
    """Width of the model's embedding and of each pooled tap, from one forward pass on one example on ``device``
    (as the run's ``probe``, for a model that may already sit on a GPU)."""
    import torch

    from fairdistill.distill.features import pool_tap

    was_training = model.training
    model.eval()
    with torch.no_grad():
        out = model(collate([split[0]]).to(device).inputs)
    model.train(was_training)
    embedding = None if out.embedding is None else int(out.embedding.shape[1])
    return embedding, {name: int(pool_tap(t).shape[1]) for name, t in out.taps.items()}


class Objective:
    """A built method for one's own loop: per-example losses, instance weights and the epoch hooks.

    Per batch (a :class:`~fairdistill.data.core.Batch` from a DataLoader with ``collate_fn=collate``, on the
    objective's device, and the student's output on it)::

        per_example = objective.per_example_loss(batch, out)   # ℓ_i (mixing rule applied), shape (B,)
        weights = objective.weights(batch, out, per_example)   # w_i from the weighting; ones without one
        loss = (weights * per_example).mean() + objective.extra_loss(batch, out)

    which is :meth:`loss` (the run's ``Method.batch_loss``) for weightings without ``normalize: true``.
    ``extra_loss`` is the adversary's loss and the online readout head's, 0 for other methods. Iterating the
    loader through :meth:`epoch` runs the hooks between epochs (early-readout refits, JTT's stages) and counts
    the steps schedules read. The optimiser must also hold :meth:`parameters` (adversary, readout head, CTKD's
    temperature). Checkpoint selection by validation score is the run's and not done here.
    """

    def __init__(
        self,
        method: Method,
        student: TappedModel,
        teacher: TeacherOutputs | None,
        epochs: int,
        device: torch.device | str,
        seed: int = 0,
    ) -> None:
        from fairdistill.distill.core import TrainState

        self.method = method.to(device)
        self.student = student
        self.teacher = teacher
        self.device = device
        self.seed = seed
        self.state = TrainState(num_epochs=epochs, model=student, device=device)
        #: What each finished epoch recorded (weight statistics, the weighting's own), as in a run's history.
        self.history: list[dict[str, Any]] = []
        self._epochs_started = 0

    @property
    def name(self) -> str:
        return self.method.name

    def parameters(self) -> Iterator[torch.nn.Parameter]:
        """The method's own trainable parameters, to optimise with the student's."""
        return self.method.parameters()

    def teacher_output(self, batch: Batch) -> ModelOutput | None:
        """The teacher's (precomputed) output on the batch's examples, looked up by ``batch.index``."""
        if self.teacher is None:
            return None
        return self.teacher.lookup(batch.index, self.device, self.method.uses_teacher_embedding)

    def per_example_loss(self, batch: Batch, student_output: ModelOutput) -> torch.Tensor:
        """ℓ_i for every example of the batch, before weighting (shape (B,))."""
        return self.method.per_example_loss(batch, student_output, self.teacher_output(batch), self.state)

    def weights(self, batch: Batch, student_output: ModelOutput, per_example: torch.Tensor) -> torch.Tensor:
        """w_i for every example (shape (B,), no gradient): the weighting's, or ones when the method has none."""
        import torch

        weighting = self.method.weighting
        if weighting is None:
            return torch.ones_like(per_example).detach()
        weights = weighting.weights(batch, student_output, per_example.detach(), self.state)
        self.method._weight_stats.update(weights)
        return weights.detach()

    def extra_loss(self, batch: Batch, student_output: ModelOutput) -> torch.Tensor | float:
        """What the method adds to the weighted mean: the online readout head's loss (after :meth:`weights`)
        and the adversary's; 0 when there is neither."""
        total: torch.Tensor | float = 0.0
        auxiliary = self.method.weighting.auxiliary_loss() if self.method.weighting is not None else None
        if auxiliary is not None:
            total = total + auxiliary
        if self.method.adversary is not None:
            total = total + self.method.adversary(batch, student_output, self.state).mean()
        return total

    def loss(self, batch: Batch, student_output: ModelOutput) -> torch.Tensor:
        """The scalar a run minimises for this batch (``Method.batch_loss``: normalisation, auxiliary and
        adversary losses included)."""
        loss = self.method.batch_loss(batch, student_output, self.teacher_output(batch), self.state)
        return loss

    def start_epoch(self) -> None:
        """Call before each epoch (done by :meth:`epoch`)."""
        self.state.epoch = self._epochs_started
        self._epochs_started += 1
        self.method.on_epoch_start(self.state)

    def end_epoch(self, optimizer: torch.optim.Optimizer | None = None) -> dict[str, Any]:
        """Call after each epoch (done by :meth:`epoch`): refits (early readouts, JTT's error set); returns and
        records the epoch's statistics. JTT re-initialises the student here (and ``optimizer``'s state)."""
        was_training = self.student.training
        stats = {"epoch": self.state.epoch + 1, **self.method.on_epoch_end(self.state)}
        self.student.train(was_training)
        if self.state.reinitialize_student:
            from fairdistill.train.engine import reinitialize

            reinitialize(self.student, optimizer, self.seed + self.state.epoch + 1)
            self.state.reinitialize_student = False
        self.history.append(stats)
        return stats

    def epoch(self, batches: Iterable[Batch], optimizer: torch.optim.Optimizer | None = None) -> Iterator[Batch]:
        """Yield the batches of one epoch moved to the objective's device, with :meth:`start_epoch` before,
        the step count after each and :meth:`end_epoch` after the last (not run when the loop breaks)."""
        if hasattr(batches, "__len__"):
            self.state.steps_per_epoch = max(1, len(batches))  # type: ignore[arg-type]
        self.start_epoch()
        for batch in batches:
            yield batch.to(self.device)
            self.state.step += 1
        self.end_epoch(optimizer)
