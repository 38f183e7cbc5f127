"""The comparison table (one row per model) built from a run's metrics.json content."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rich.table import Table

from fairdistill.evaluate.amplification import METRIC_TITLES

#: (column title, metric key, higher is better) shown for the test split.
COMPARISON_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("accuracy", "accuracy", True),
    ("worst-group acc", "worst_group_accuracy", True),
    ("balanced acc", "balanced_accuracy", True),
    ("macro F1", "macro_f1", True),
    ("recall disparity MAD", "recall_disparity_mad", False),
    ("EO diff", "eo_difference", False),
    ("DP diff", "dp_difference", False),
    ("ECE", "ece", False),
)


#: The compact set printed in the terminal at the end of a run.
TERMINAL_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("accuracy", "accuracy", True),
    ("worst-group acc", "worst_group_accuracy", True),
    ("MAD", "recall_disparity_mad", False),
    ("EO diff", "eo_difference", False),
)


@dataclass(frozen=True)
class ComparisonTable:
    """A table as strings; ``values`` optionally holds each cell's number (for sorting and highlighting)."""

    headers: list[str]
    rows: list[list[str]]
    values: list[list[float | None]] | None = None
    #: Per column: True / False when higher / lower is better, None when the column is not a score.
    higher_is_better: list[bool | None] | None = None
    #: Footnotes shown under the table (why a "—" cell is undefined).
    notes: tuple[str, ...] = ()


def comparison_table(
    metrics: dict[str, Any], split: str = "test", columns: tuple[tuple[str, str, bool], ...] = COMPARISON_COLUMNS
) -> ComparisonTable:
    """Model, role, method, parameters, then the split's chosen metrics for every model.

    With several seeds (``splits_std`` present) a cell reads ``mean ± std`` (sample standard deviation).
    """
    headers = ["model", "role", "method", "params", *(title for title, _, _ in columns)]
    rows, values = [], []
    for name, model in metrics["models"].items():
        means = model["splits"].get(split, {})
        stds = model.get("splits_std", {}).get(split)
        cells = [_fmt_mean_std(means.get(key), None if stds is None else stds.get(key), stds is not None)
                 for _, key, _ in columns]
        rows.append([name, model["role"], model["method"], f"{model['params']:,}", *cells])
        values.append([None, None, None, float(model["params"]), *(_number(means.get(key)) for _, key, _ in columns)])
    better = [None, None, None, None, *(higher for _, _, higher in columns)]
    return ComparisonTable(headers, rows, values, better, undefined_notes(metrics, split, columns))


def undefined_notes(metrics: dict[str, Any], split: str,
                    columns: tuple[tuple[str, str, bool], ...] = COMPARISON_COLUMNS) -> tuple[str, ...]:
    """One footnote per recorded reason why shown metrics are undefined (null) on ``split``
    (``splits.<split>.undefined`` of :func:`~fairdistill.evaluate.metrics.compute_metrics`), naming the metrics
    and the models."""
    by_reason: dict[str, tuple[dict[str, None], dict[str, None]]] = {}
    for name, model in metrics["models"].items():
        values = model["splits"].get(split, {})
        for title, key, _ in columns:
            reason = (values.get("undefined") or {}).get(key)
            if reason and values.get(key) is None:
                titles, models = by_reason.setdefault(reason, ({}, {}))
                titles[title] = models[name] = None
    return tuple(f"— = undefined: {', '.join(titles)} of {', '.join(models)} ({split} split): {reason}."
                 for reason, (titles, models) in by_reason.items())


def amplification_table(metrics: dict[str, Any]) -> ComparisonTable | None:
    """One row per (student, bias metric): teacher and student values, Δ with its bootstrap interval, Δ relative.

    None when the run has no ``amplification`` section (no teacher, or an older run).
    """
    section = metrics.get("amplification")
    if not section or not section.get("students"):
        return None
    level = round(100 * section.get("confidence", 0.95))
    headers = ["student", "metric", "teacher", "student value", "Δ", f"{level}% interval", "relative Δ"]
    rows, values = [], []
    for student, by_metric in section["students"].items():
        for key, entry in by_metric.items():
            low, high = entry.get("ci_low"), entry.get("ci_high")
            interval = "—" if low is None or high is None else f"[{low:+.4f}, {high:+.4f}]"
            relative = entry.get("relative")
            delta = entry.get("delta")
            rows.append([
                student, METRIC_TITLES.get(key, key), _fmt(entry.get("teacher")), _fmt(entry.get("student")),
                "—" if delta is None else f"{delta:+.4f}", interval,
                "—" if relative is None else f"{100 * relative:+.1f}%",
            ])
            values.append([None, None, entry.get("teacher"), entry.get("student"), delta, low, relative])
    shown = tuple((METRIC_TITLES.get(key, key), key, False) for key in dict.fromkeys(
        key for by_metric in section["students"].values() for key in by_metric))
    notes = undefined_notes(metrics, section.get("split", "test"), shown)
    return ComparisonTable(headers, rows, values, [None, None, False, False, False, False, False], notes)


def group_accuracy_table(metrics: dict[str, Any], split: str = "test") -> ComparisonTable:
    """Per-group accuracy of each model on a split (mean over seeds)."""
    groups = list(metrics["dataset"]["group_names"])
    rows, values = [], []
    for name, model in metrics["models"].items():
        accuracy = model["splits"].get(split, {}).get("group_accuracy", {})
        numbers = [_number(accuracy.get(g)) for g in groups]
        rows.append([name, *(_fmt(v) for v in numbers)])
        values.append([None, *numbers])
    return ComparisonTable(["model", *groups], rows, values, [None, *(True for _ in groups)])


def compare_table(
    metrics_a: dict[str, Any], metrics_b: dict[str, Any], split: str = "test",
    columns: tuple[tuple[str, str, bool], ...] = COMPARISON_COLUMNS,
) -> ComparisonTable:
    """Two runs side by side: one row per (model, metric) with run A, run B and B − A.

    Models are matched by name (those of A first, then those only in B); a model or value missing from one
    run shows "—". The last column says whether B is better, worse or equal given the metric's direction.
    """
    models_a, models_b = metrics_a["models"], metrics_b["models"]
    names = list(models_a) + [n for n in models_b if n not in models_a]
    headers = ["model", "metric", "run A", "run B", "B − A", "B vs A"]
    rows, values = [], []
    for name in names:
        for title, key, higher in columns:
            a = _metric_of(models_a.get(name), split, key)
            b = _metric_of(models_b.get(name), split, key)
            diff = None if a is None or b is None else b - a
            if diff is None:
                verdict = "—"
            elif abs(diff) < 1e-12:
                verdict = "same"
            else:
                verdict = "better" if (diff > 0) == higher else "worse"
            rows.append([name, title, _fmt(a), _fmt(b), "—" if diff is None else f"{diff:+.4f}", verdict])
            values.append([None, None, a, b, diff, None])
    notes = tuple(f"run {label}: {note}" for label, m in (("A", metrics_a), ("B", metrics_b))
                  for note in undefined_notes(m, split, columns))
    return ComparisonTable(headers, rows, values, [None, None, None, None, None, None], notes)


#: The dataset facts two runs must share for their metrics to be compared.
COMPARED_DATASET_FIELDS = ("name", "options", "counts", "class_names", "attr_names", "group_names")


def dataset_differences(metrics_a: dict[str, Any], metrics_b: dict[str, Any]) -> list[str]:
    """How the datasets of two runs differ (``dataset.options.max_examples: 300 (A) vs 500 (B)``); [] when
    every field of :data:`COMPARED_DATASET_FIELDS` agrees."""
    differences: list[str] = []
    for key in COMPARED_DATASET_FIELDS:
        _differences(metrics_a["dataset"].get(key), metrics_b["dataset"].get(key), f"dataset.{key}", differences)
    return differences


def _differences(a: Any, b: Any, where: str, out: list[str]) -> None:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in dict.fromkeys([*a, *b]):
            _differences(a.get(key), b.get(key), f"{where}.{key}", out)
    elif a != b:
        out.append(f"{where}: {a!r} (A) vs {b!r} (B)")


def _metric_of(model: dict[str, Any] | None, split: str, key: str) -> float | None:
    return None if model is None else _number(model.get("splits", {}).get(split, {}).get(key))


def _number(value: Any) -> float | None:
    return None if value is None or isinstance(value, (dict, list, str)) else float(value)


def _fmt_mean_std(mean: Any, std: Any, several_seeds: bool) -> str:
    if mean is None:
        return "—"
    if not several_seeds:
        return f"{mean:.4f}"
    return f"{mean:.4f} ± {'—' if std is None else f'{std:.4f}'}"


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}"


#: A ``<`` that would open raw HTML in Markdown: a tag, a closing tag, a comment or declaration, an autolink.
_HTML_OPENER = re.compile(r"<(?=[A-Za-z/!?])")


def md_escape(text: Any) -> str:
    """Text from names (models, classes, groups, the run) made inert in Markdown, also inside a table cell:
    ``\\`` and ``|`` backslash-escaped, ``&`` and every ``<`` that could open raw HTML written as entities
    (``<5|red`` stays readable as ``<5\\|red``; ``<script>`` becomes ``&lt;script>``)."""
    text = str(text).replace("\\", "\\\\").replace("|", "\\|").replace("&", "&amp;")
    return _HTML_OPENER.sub("&lt;", text)


def to_markdown(table: ComparisonTable) -> str:
    """The table, then its notes (one paragraph each)."""
    lines = ["| " + " | ".join(map(md_escape, table.headers)) + " |",
             "|" + "|".join("---" for _ in table.headers) + "|"]
    lines += ["| " + " | ".join(map(md_escape, row)) + " |" for row in table.rows]
    for note in table.notes:
        lines += ["", md_escape(note)]
    return "\n".join(lines)


def to_rich(table: ComparisonTable, title: str) -> Table:
    rich_table = Table(title=title)
    for i, header in enumerate(table.headers):
        rich_table.add_column(header, justify="left" if i < 3 else "right", no_wrap=i == 0)
    for row in table.rows:
        rich_table.add_row(*row)
    return rich_table
