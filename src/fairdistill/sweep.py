"""``fairdistill sweep``: run a config over a grid of values and plot the accuracy / fairness trade-off.

``--grid key.path=v1,v2,...`` names a field the way ``--set`` does (list entries by name) and its values as
YAML, separated by top-level commas (commas inside ``[...]``, ``{...}`` or quotes belong to a value). Several
``--grid`` options make the Cartesian product. Every point is checked before anything trains; then each runs
as an ordinary run inside ``<output>/<name>-sweep-<timestamp>/``, which also holds ``sweep.json`` (each point's
values and the headline test metrics of each model, rewritten after every point), ``tradeoff.png`` and the
sweep report (``sweep.html``, ``sweep.md``).

Nothing is trained twice. The teacher's identity is a digest of what determines it (data, teacher model,
training and checkpoint, seeds, checkpoint selection, device, mixed precision): the first point with an
identity trains the teacher and later points with the same one load it from that run's
``checkpoints/teacher.pt`` (through ``teacher.checkpoint``; with several seeds, one teacher per seed through
``checkpoints/seed{seed}/teacher.pt``). A method's identity is a digest of its own entry, the student, the
teacher's identity, the
data, seeds and selection: a point trains only the methods whose identity is new, and the rows of the others
are copied from the point that trained them (``"reused_from": "p0"``), so every method shows at every point.
A point that changes nothing any model depends on makes no run at all (``"run_dir": null``).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from fairdistill.atomic_io import atomic_path, write_json
from fairdistill.config import (
    DEFAULT_CONFIG,
    MethodConfig,
    RunConfig,
    apply_override,
    keep_methods,
    load_yaml,
    parse_config,
    resolve_config,
    yaml_data,
)
from fairdistill.errors import ConfigError, shown_value
from fairdistill.output_dirs import new_stamped_dir
from fairdistill.processes import Processes
from fairdistill.progress import SILENT, Progress
from fairdistill.report.tables import ComparisonTable

log = logging.getLogger(__name__)

SWEEP_SCHEMA_VERSION = 2

#: Test metrics recorded per model and point in sweep.json.
HEADLINE_KEYS = (
    "accuracy",
    "worst_group_accuracy",
    "balanced_accuracy",
    "recall_disparity_mad",
    "eo_difference",
    "dp_difference",
    "ece",
)


@dataclass(frozen=True)
class GridAxis:
    """One ``--grid`` option: the field path, each value as written, and each value parsed as YAML."""

    path: str
    texts: tuple[str, ...]
    values: tuple[Any, ...]

    @property
    def short(self) -> str:
        """The last segment of the path, for labels (``methods.kd.loss.tau`` → ``tau``)."""
        return self.path.rsplit(".", 1)[-1]


def split_values(text: str) -> list[str]:
    """Split on the commas that are not inside brackets, braces or quotes; items are stripped."""
    items, current, depth, quote = [], [], 0, ""
    for char in text:
        if quote:
            current.append(char)
            if char == quote:
                quote = ""
            continue
        if char in "'\"":
            quote = char
        elif char in "[{":
            depth += 1
        elif char in "]}":
            depth -= 1
            if depth < 0:
                raise ConfigError(f"--grid value list {shown_value(text)}: unbalanced '{char}'")
        elif char == "," and depth == 0:
            items.append("".join(current).strip())
            current = []
            continue
        current.append(char)
    if depth != 0 or quote:
        raise ConfigError(f"--grid value list {shown_value(text)}: unclosed bracket or quote")
    items.append("".join(current).strip())
    return items


def parse_grid(spec: str) -> GridAxis:
    """``key.path=v1,v2,...`` → a GridAxis (at least one value; no empty value; no repeated value)."""
    if "=" not in spec:
        raise ConfigError(f"--grid {shown_value(spec)}: expected key.path=value1,value2,...")
    path, _, text = spec.partition("=")
    path = path.strip()
    if not path or any(not part for part in path.split(".")):
        raise ConfigError(f"--grid {shown_value(spec)}: the key path is empty or has an empty segment")
    texts = split_values(text)
    if any(not t for t in texts):
        raise ConfigError(f"--grid {path}: empty value in {shown_value(text)} (values are separated by commas)")
    values = []
    for t in texts:
        try:
            values.append(yaml_data(t, what=f"--grid {path}"))
        except yaml.YAMLError as exc:
            raise ConfigError(
                f"--grid {path}: value {shown_value(t)} is not valid YAML ({getattr(exc, 'problem', exc)})"
            ) from None
    if len(set(texts)) != len(texts):
        raise ConfigError(f"--grid {path}: a value is repeated in {shown_value(text)}")
    return GridAxis(path, tuple(texts), tuple(values))


def grid_points(axes: list[GridAxis]) -> list[list[tuple[GridAxis, int]]]:
    """The Cartesian product: each point is a list of (axis, value position)."""
    paths = [a.path for a in axes]
    repeated = sorted({p for p in paths if paths.count(p) > 1})
    if repeated:
        raise ConfigError(f"--grid: {', '.join(repeated)} given more than once; list all its values in one --grid")
    return [list(zip(axes, combo, strict=True)) for combo in itertools.product(*(range(len(a.texts)) for a in axes))]


def point_label(point: list[tuple[GridAxis, int]]) -> str:
    """``4`` for a one-axis grid, ``tau=4, alpha=0.5`` for several."""
    if len(point) == 1:
        axis, k = point[0]
        return axis.texts[k]
    return ", ".join(f"{axis.short}={axis.texts[k]}" for axis, k in point)


@dataclass
class SweepResult:
    sweep_dir: Path
    document: dict[str, Any]
    #: False on the other processes of a multi-process sweep (process 0 holds the document; theirs is empty)
    is_main: bool = True


def _point_configs(raw: dict[str, Any], points: list[list[tuple[GridAxis, int]]], name: str) -> list[RunConfig]:
    """Every point's validated config (overrides applied through :func:`apply_override`)."""
    from fairdistill.plan import make_plan

    configs = []
    for i, point in enumerate(points):
        point_raw = raw
        for axis, k in point:
            point_raw = apply_override(point_raw, f"{axis.path}={axis.texts[k]}")
        point_raw = dict(point_raw, name=f"{name}-p{i}")
        try:
            config = parse_config(point_raw)
            make_plan(config)
        except ConfigError as exc:
            raise ConfigError(f"sweep point {i} ({point_label(point)}): {exc}") from None
        configs.append(config)
    return configs


def _digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode("utf-8")).hexdigest()[:16]


def teacher_identity(config: RunConfig) -> str:
    """Digest of the parts of a resolved config that determine the teacher (equal digest: the same teacher)."""
    d = config.model_dump(mode="json")
    return _digest(
        {
            "data": d["data"],
            "teacher": d["teacher"],
            "seeds": config.seed_list,
            "select": d["select"],
            "device": d["device"],
            "mixed_precision": d["mixed_precision"],
        }
    )


def method_identity(config: RunConfig, method: MethodConfig) -> str:
    """Digest of what determines one student: its method entry, the student, the teacher, data, seeds, select;
    and, when the config has them, ``postprocess`` and ``peers`` (so that a point changing them runs again and
    its post-processed and peer rows are its own)."""
    d = config.model_dump(mode="json")
    rows = {key: d[key] for key in EXTRA_ROW_FIELDS if d.get(key) is not None}
    return _digest(
        {
            "method": method.model_dump(mode="json"),
            "student": d["student"],
            "teacher": teacher_identity(config),
            "data": d["data"],
            "seeds": config.seed_list,
            "select": d["select"],
            **({"rows": rows} if rows else {}),
        }
    )


#: The config sections that add rows besides the teacher and the students (post-processed models, peers).
EXTRA_ROW_FIELDS = ("postprocess", "peers")


def extras_identity(config: RunConfig) -> str:
    """Digest of what determines a run's rows that belong to no method: the post-processed teacher and the peers
    (every part of it is part of each :func:`method_identity`)."""
    d = config.model_dump(mode="json")
    return _digest(
        {
            "teacher": teacher_identity(config),
            "student": d["student"],
            "rows": {key: d.get(key) for key in EXTRA_ROW_FIELDS},
        }
    )


def _teacher_checkpoint(run_dir: Path, seeds: list[int]) -> Path | None:
    """The ``teacher.checkpoint`` that reloads a finished run's teachers (``seed{seed}`` per seed with several
    seeds), or None when a file is missing."""
    from fairdistill.plan import SEED_PLACEHOLDER
    from fairdistill.rundir import checkpoints_dir

    several = len(seeds) > 1
    template = (
        (run_dir / "checkpoints" / f"seed{SEED_PLACEHOLDER}" / "teacher.pt")
        if several
        else (run_dir / "checkpoints" / "teacher.pt")
    )
    files = [checkpoints_dir(run_dir, seed, several) / "teacher.pt" for seed in seeds]
    return template if all(f.is_file() for f in files) else None


def run_sweep(
    config_path: str | Path | None,
    grids: Sequence[str],
    overrides: Sequence[str] = (),
    output: str | Path | None = None,
    methods: Sequence[str] | None = None,
    *,
    progress: Progress = SILENT,
) -> SweepResult:
    """Validate every point, then run them one after the other, training each teacher and each student once;
    returns the sweep directory and sweep.json. ``methods``: keep only these methods of the config."""
    from fairdistill import experiment
    from fairdistill.report.plots import tradeoff_png
    from fairdistill.report.sweep_report import run_intervals, write_sweep_report

    if not grids:
        raise ConfigError("sweep: give at least one --grid key.path=value1,value2,...")
    axes = [parse_grid(spec) for spec in grids]
    raw = load_yaml(config_path if config_path is not None else DEFAULT_CONFIG)
    for assignment in overrides:
        raw = apply_override(raw, assignment)
    if methods is not None:
        kept = keep_methods(raw, list(methods))
        dropped = {m.get("name") for m in raw["methods"] if isinstance(m, dict)} - {m["name"] for m in kept["methods"]}
        for axis in axes:
            parts = axis.path.split(".")
            if len(parts) > 1 and parts[0] == "methods" and parts[1] in dropped:
                raise ConfigError(
                    f"--grid {axis.path}: method {parts[1]!r} is left out by --methods; keep it or sweep another field"
                )
        raw = kept
    base = parse_config(raw)
    points = grid_points(axes)
    parent = Path(output) if output is not None else Path(base.output)
    configs = _point_configs(raw, points, base.name)
    # under torchrun every process runs every point's run together; process 0 alone keeps the books and writes
    processes = experiment.run_processes(base)
    if not processes.is_main:
        progress = SILENT
    sweep_dir = processes.from_main(lambda: new_stamped_dir(parent, f"{base.name}-sweep", "sweep"))
    started = time.time()
    document: dict[str, Any] = {
        "schema_version": SWEEP_SCHEMA_VERSION,
        "name": base.name,
        "config": str(resolve_config(config_path).resolve()) if config_path is not None else "(embedded default)",
        "overrides": list(overrides),
        "methods": [m.name for m in base.methods],
        "grid": {axis.path: list(axis.values) for axis in axes},
        "started": dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "points": [],
    }
    teachers: dict[str, tuple[str, str, Path | None]] = {}  # teacher identity → (point, run dir, its teacher.pt)
    teacher_rows: dict[str, tuple[str, str, dict[str, Any]]] = {}  # → (point, run dir, row) first evaluated
    students: dict[str, tuple[str, str, dict[str, Any]]] = {}  # method identity → (point, run dir, row)
    derived: dict[str, dict[str, dict[str, Any]]] = {}  # method identity → its post-processed rows by name
    side_rows: dict[str, tuple[str, str, dict[str, dict[str, Any]]]] = {}  # extras identity → teacher+threshold, peers
    for i, (point, config) in enumerate(zip(points, configs, strict=True)):
        label, key = point_label(point), f"p{i}"
        tid = teacher_identity(config)
        mids = {m.name: method_identity(config, m) for m in config.methods}
        new = [m for m in config.methods if mids[m.name] not in students]
        entry: dict[str, Any] = {"index": i, "label": label, "values": {axis.path: axis.values[k] for axis, k in point}}
        rows: dict[str, dict[str, Any]] = {}
        if not new:
            log.info(
                "sweep point %d/%d: %s — every model is already trained; nothing to run", i + 1, len(points), label
            )
            progress.say(f"sweep point {i + 1}/{len(points)}: {label} — every model already trained; nothing to run")
            entry["run_dir"] = None
            point_from, run_dir, row = teacher_rows[tid]
            trained_at, trained_in = teachers[tid][:2] if tid in teachers else (point_from, run_dir)
            rows["teacher"] = {**row, "reused_from": trained_at, "run_dir": trained_in}
            entry["trained"] = []
            entry["teacher"] = f"reused from {trained_at}"
        else:
            run_config = config.model_copy(update={"output": str(sweep_dir), "methods": new})
            reused_teacher = None
            teacher_note = "loaded from teacher.checkpoint" if config.teacher.checkpoint is not None else "trained"
            if tid in teachers and config.teacher.checkpoint is None:
                trained_at, trained_in, checkpoint = teachers[tid]
                if checkpoint is None:
                    teacher_note = f"retrained (the checkpoints of {trained_at}'s teacher are missing)"
                else:
                    reused_teacher = (trained_at, trained_in)
                    teacher_note = f"loaded from {trained_at} ({checkpoint.relative_to(sweep_dir)})"
                    run_config = run_config.model_copy(
                        update={"teacher": config.teacher.model_copy(update={"checkpoint": str(checkpoint)})}
                    )
            entry["teacher"] = teacher_note
            log.info(
                "sweep point %d/%d: %s — training %s; teacher %s",
                i + 1,
                len(points),
                label,
                ", ".join(m.name for m in new),
                teacher_note,
            )
            progress.say(
                f"sweep point {i + 1}/{len(points)}: {label} — training {', '.join(m.name for m in new)}; "
                f"teacher {teacher_note}"
            )
            result = experiment.run(run_config, progress=progress)
            if not processes.is_main:
                _sync_books(processes, teachers, teacher_rows, students, derived, side_rows)
                continue
            run_name = result.run_dir.name
            entry["run_dir"] = run_name
            trained = headline(result.metrics)
            for name, interval in run_intervals(result.run_dir, result.metrics).items():
                if name in trained:
                    trained[name]["interval"] = interval
            teacher_row = trained.pop("teacher", None)
            if teacher_row is not None:
                if reused_teacher is not None:
                    teacher_row = {**teacher_row, "reused_from": reused_teacher[0], "run_dir": reused_teacher[1]}
                elif config.teacher.checkpoint is None and tid not in teachers:
                    teachers[tid] = (key, run_name, _teacher_checkpoint(result.run_dir, config.seed_list))
                teacher_rows.setdefault(tid, (key, run_name, teacher_row))
                rows["teacher"] = teacher_row
            for m in new:
                if m.name in trained:
                    students[mids[m.name]] = (key, run_name, trained[m.name])
                    derived[mids[m.name]] = {
                        n: r for n, r in trained.items() if r["role"] == "postprocessed" and r.get("source") == m.name
                    }
            side_rows[extras_identity(config)] = (
                key,
                run_name,
                {
                    n: r
                    for n, r in trained.items()
                    if r["role"] in ("peer", "reduced")
                    or (r["role"] == "postprocessed" and r.get("source") == "teacher")
                },
            )
            entry["trained"] = (["teacher"] if reused_teacher is None and config.teacher.checkpoint is None else []) + [
                m.name for m in new
            ]
        if not processes.is_main:
            continue  # nothing ran at this point (every model already trained): the books are unchanged
        for m in config.methods:
            point_from, run_dir, row = students[mids[m.name]]
            rows[m.name] = row if point_from == key else {**row, "reused_from": point_from, "run_dir": run_dir}
        for from_point, from_run, by_name in [
            *(
                (students[mids[m.name]][0], students[mids[m.name]][1], derived.get(mids[m.name], {}))
                for m in config.methods
            ),
            side_rows.get(extras_identity(config), (key, "", {})),
        ]:
            for name, row in by_name.items():  # post-processed models and peers
                rows[name] = row if from_point == key else {**row, "reused_from": from_point, "run_dir": from_run}
        entry["models"] = rows
        document["points"].append(entry)
        document["seconds"] = round(time.time() - started, 3)
        write_json(sweep_dir / "sweep.json", document)
        if not new:
            continue  # nothing ran, so the other processes did not stop at this point
        _sync_books(processes, teachers, teacher_rows, students, derived, side_rows)
    if not processes.is_main:
        return SweepResult(sweep_dir, {}, is_main=False)
    title = f"{base.name}: sweep over {', '.join(a.path for a in axes)}"
    png = tradeoff_png(tradeoff_points(document), title)
    with atomic_path(sweep_dir / "tradeoff.png") as tmp:
        tmp.write_bytes(png)
    document["figure"] = "tradeoff.png"
    document["report"] = {"html": "sweep.html", "markdown": "sweep.md"}
    write_json(sweep_dir / "sweep.json", document)
    write_sweep_report(sweep_dir, document, png)
    return SweepResult(sweep_dir, document)


def _sync_books(processes: Processes, *books: dict[str, Any]) -> None:
    """Give every process process 0's record of what is trained where (which points the others skip and
    which teacher checkpoints they load must agree)."""
    if not processes.several:
        return
    updated = processes.broadcast_object([dict(book) for book in books])
    for book, value in zip(books, updated, strict=True):
        book.clear()
        book.update(value)


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """Per model: role, method, the headline test metrics (std over seeds as ``<key>_std``) and the Δs of the
    teacher → student amplification."""
    amplification = (metrics.get("amplification") or {}).get("students", {})
    result = {}
    for name, model in metrics["models"].items():
        test = model["splits"].get("test", {})
        std = (model.get("splits_std") or {}).get("test")
        entry: dict[str, Any] = {"role": model["role"], "method": model["method"]}
        for field, shown in (("label", "display"), ("source", "source")):  # a peer's label, a post-processed source
            if model.get(field):
                entry[shown] = model[field]
        for key in HEADLINE_KEYS:
            entry[key] = test.get(key)
            if std is not None:
                entry[f"{key}_std"] = std.get(key)
        if name in amplification:
            entry["amplification_delta"] = {k: v["delta"] for k, v in amplification[name].items()}
        result[name] = entry
    return result


def tradeoff_points(document: dict[str, Any]) -> list[dict[str, Any]]:
    """One plotted point per (grid point, model)."""
    return [
        {"label": point["label"], "model": name, **values}
        for point in document["points"]
        for name, values in point["models"].items()
    ]


def sweep_table(document: dict[str, Any]) -> ComparisonTable:
    """One row per (grid point, model) with the headline test metrics; the last column says where the model was
    trained when it was reused from an earlier point (``p0``) instead of trained at this one."""
    columns = (
        ("accuracy", "accuracy"),
        ("worst-group acc", "worst_group_accuracy"),
        ("MAD", "recall_disparity_mad"),
        ("EO diff", "eo_difference"),
    )
    rows, values = [], []
    for point in document["points"]:
        for name, entry in point["models"].items():
            numbers = [entry.get(key) for _, key in columns]
            reused = entry.get("reused_from")
            rows.append(
                [
                    point["label"],
                    name,
                    *("—" if v is None else f"{v:.4f}" for v in numbers),
                    f"reused ({reused})" if reused else "here",
                ]
            )
            values.append([None, None, *numbers, None])
    return ComparisonTable(["point", "model", *(title for title, _ in columns), "trained"], rows, values)
