"""``fairdistill sweep``: run a config over a grid of values and plot the accuracy / fairness trade-off.

``--grid key.path=v1,v2,...`` names a field the way ``--set`` does (list entries by name) and its values as
YAML, separated by top-level commas (commas inside ``[...]``, ``{...}`` or quotes belong to a value). Several
``--grid`` options make the Cartesian product. Every point is checked before anything trains; then each runs
as an ordinary run inside ``<output>/<name>-sweep-<timestamp>/``, which also holds ``sweep.json`` (each point's
values and the headline test metrics of each model, rewritten after every point) and ``tradeoff.png``.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import yaml

from fairdistill.atomic_io import atomic_path, write_json
from fairdistill.config import DEFAULT_CONFIG, RunConfig, apply_override, load_yaml, parse_config, yaml_data
from fairdistill.errors import ConfigError, shown_value
from fairdistill.output_dirs import new_stamped_dir
from fairdistill.report.tables import ComparisonTable

log = logging.getLogger(__name__)

SWEEP_SCHEMA_VERSION = 1

#: Test metrics recorded per model and point in sweep.json.
HEADLINE_KEYS = ("accuracy", "worst_group_accuracy", "balanced_accuracy", "recall_disparity_mad", "eo_difference",
                 "dp_difference", "ece")


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
            raise ConfigError(f"--grid {path}: value {shown_value(t)} is not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if len(set(texts)) != len(texts):
        raise ConfigError(f"--grid {path}: a value is repeated in {shown_value(text)}")
    return GridAxis(path, tuple(texts), tuple(values))


def grid_points(axes: list[GridAxis]) -> list[list[tuple[GridAxis, int]]]:
    """The Cartesian product: each point is a list of (axis, value position)."""
    paths = [a.path for a in axes]
    repeated = sorted({p for p in paths if paths.count(p) > 1})
    if repeated:
        raise ConfigError(f"--grid: {', '.join(repeated)} given more than once; list all its values in one --grid")
    return [list(zip(axes, combo)) for combo in itertools.product(*(range(len(a.texts)) for a in axes))]


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


def _point_configs(
    raw: dict[str, Any], points: list[list[tuple[GridAxis, int]]], name: str
) -> list[RunConfig]:
    """Every point's validated config (overrides applied through :func:`apply_override`)."""
    from fairdistill.experiment import make_plan

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


def run_sweep(
    config_path: str | Path | None, grids: Sequence[str], overrides: Sequence[str] = (),
    output: str | Path | None = None,
) -> SweepResult:
    """Validate every point, then run them one after the other; returns the sweep directory and sweep.json."""
    from fairdistill import experiment
    from fairdistill.report.plots import tradeoff_png

    if not grids:
        raise ConfigError("sweep: give at least one --grid key.path=value1,value2,...")
    axes = [parse_grid(spec) for spec in grids]
    raw = load_yaml(config_path if config_path is not None else DEFAULT_CONFIG)
    for assignment in overrides:
        raw = apply_override(raw, assignment)
    base = parse_config(raw)
    points = grid_points(axes)
    parent = Path(output) if output is not None else Path(base.output)
    configs = _point_configs(raw, points, base.name)
    sweep_dir = new_stamped_dir(parent, f"{base.name}-sweep", "sweep")
    started = time.time()
    document: dict[str, Any] = {
        "schema_version": SWEEP_SCHEMA_VERSION,
        "name": base.name,
        "config": str(Path(config_path).resolve()) if config_path is not None else "(embedded default)",
        "overrides": list(overrides),
        "grid": {axis.path: list(axis.values) for axis in axes},
        "started": dt.datetime.fromtimestamp(started).isoformat(timespec="seconds"),
        "points": [],
    }
    for i, (point, config) in enumerate(zip(points, configs)):
        label = point_label(point)
        log.info("sweep point %d/%d: %s", i + 1, len(points), label)
        result = experiment.run(config.model_copy(update={"output": str(sweep_dir)}))
        document["points"].append({
            "index": i,
            "label": label,
            "values": {axis.path: axis.values[k] for axis, k in point},
            "run_dir": result.run_dir.name,
            "models": headline(result.metrics),
        })
        document["seconds"] = round(time.time() - started, 3)
        write_json(sweep_dir / "sweep.json", document)
    title = f"{base.name}: sweep over {', '.join(a.path for a in axes)}"
    with atomic_path(sweep_dir / "tradeoff.png") as tmp:
        tmp.write_bytes(tradeoff_png(tradeoff_points(document), title))
    document["figure"] = "tradeoff.png"
    write_json(sweep_dir / "sweep.json", document)
    return SweepResult(sweep_dir, document)


def headline(metrics: dict[str, Any]) -> dict[str, Any]:
    """Per model: role, method, the headline test metrics (std over seeds as ``<key>_std``) and the Δs of the
    teacher → student amplification."""
    amplification = (metrics.get("amplification") or {}).get("students", {})
    result = {}
    for name, model in metrics["models"].items():
        test = model["splits"].get("test", {})
        std = (model.get("splits_std") or {}).get("test")
        entry: dict[str, Any] = {"role": model["role"], "method": model["method"]}
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
    """One row per (grid point, model) with the headline test metrics."""
    columns = (("accuracy", "accuracy"), ("worst-group acc", "worst_group_accuracy"),
               ("MAD", "recall_disparity_mad"), ("EO diff", "eo_difference"))
    rows, values = [], []
    for point in document["points"]:
        for name, entry in point["models"].items():
            numbers = [entry.get(key) for _, key in columns]
            rows.append([point["label"], name, *("—" if v is None else f"{v:.4f}" for v in numbers)])
            values.append([None, None, *numbers])
    return ComparisonTable(["point", "model", *(title for title, _ in columns)], rows, values)
