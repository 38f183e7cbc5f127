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

#: Head / medium / tail class accuracy of long-tailed runs (data/long_tail.py); appended to the default
#: comparison columns when the split's metrics have them.
FREQUENCY_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("head acc", "head_accuracy", True),
    ("medium acc", "medium_accuracy", True),
    ("tail acc", "tail_accuracy", True),
)


#: The scores always printed in the terminal at the end of a run (abbreviated; see :data:`ABBREVIATIONS`).
TERMINAL_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("acc ↑", "accuracy", True),
    ("WGA ↑", "worst_group_accuracy", True),
    ("MAD ↓", "recall_disparity_mad", False),
    ("EO ↓", "eo_difference", False),
)

#: Scores the terminal adds, in this order, while the table still fits the console's width.
TERMINAL_EXTRA_COLUMNS: tuple[tuple[str, str, bool], ...] = (
    ("bal acc ↑", "balanced_accuracy", True),
    ("F1 ↑", "macro_f1", True),
    ("DP ↓", "dp_difference", False),
    ("ECE ↓", "ece", False),
)

#: The legend of the terminal's abbreviated headers.
ABBREVIATIONS: dict[str, str] = {
    "acc": "accuracy",
    "WGA": "worst-group accuracy",
    "MAD": "mean absolute recall disparity between attribute values",
    "EO": "equalized-odds difference",
    "bal acc": "balanced accuracy",
    "F1": "macro F1",
    "DP": "demographic-parity difference",
    "ECE": "expected calibration error",
}


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
    #: What the abbreviated headers stand for (terminal tables); "" when nothing is abbreviated.
    legend: str = ""


def comparison_table(
    metrics: dict[str, Any], split: str = "test", columns: tuple[tuple[str, str, bool], ...] = COMPARISON_COLUMNS
) -> ComparisonTable:
    """Model, role, method, parameters, then the split's chosen metrics for every model.

    With several seeds (``splits_std`` present) a cell reads ``mean ± std`` (sample standard deviation). The
    default columns gain :data:`FREQUENCY_COLUMNS` when a model's split has a ``tail_accuracy`` (long-tailed runs).
    """
    if columns is COMPARISON_COLUMNS and any(
        "tail_accuracy" in m["splits"].get(split, {}) for m in metrics["models"].values()
    ):
        columns = (*columns, *FREQUENCY_COLUMNS)
    headers = ["model", "role", "method", "params", *(title for title, _, _ in columns)]
    rows, values = [], []
    for name, model in metrics["models"].items():
        means = model["splits"].get(split, {})
        stds = model.get("splits_std", {}).get(split)
        cells = [
            _fmt_mean_std(means.get(key), None if stds is None else stds.get(key), stds is not None)
            for _, key, _ in columns
        ]
        rows.append([display_name(name, model), model["role"], model["method"], f"{model['params']:,}", *cells])
        values.append([None, None, None, float(model["params"]), *(_number(means.get(key)) for _, key, _ in columns)])
    better = [None, None, None, None, *(higher for _, _, higher in columns)]
    notes = (*undefined_notes(metrics, split, columns), *extra_rows_notes(metrics, split))
    return ComparisonTable(headers, rows, values, better, notes)


def terminal_table(metrics: dict[str, Any], split: str = "test", width: int = 80) -> ComparisonTable:
    """The comparison table for a console ``width`` columns wide, every cell whole (nothing elided).

    Always the model and :data:`TERMINAL_COLUMNS`; then, while the table fits, the role, the parameter count,
    :data:`TERMINAL_EXTRA_COLUMNS` and the method's recipe. With several seeds a cell reads ``0.812±0.012``.
    """
    models = metrics["models"]
    several = any("splits_std" in m for m in models.values())
    scores = (*TERMINAL_COLUMNS, *TERMINAL_EXTRA_COLUMNS)
    cells: dict[str, list[str]] = {
        "model": [display_name(name, m) for name, m in models.items()],
        "role": [m["role"] for m in models.values()],
        "method": [str(m["method"]) for m in models.values()],
        "params": [f"{m['params']:,}" for m in models.values()],
    }
    for title, key, _ in scores:
        cells[title] = [
            _fmt_mean_std(
                m["splits"].get(split, {}).get(key),
                m.get("splits_std", {}).get(split, {}).get(key),
                several,
                compact=True,
            )
            for m in models.values()
        ]
    chosen = ["model", *(title for title, _, _ in TERMINAL_COLUMNS)]
    for extra in ("role", "params", *(title for title, _, _ in TERMINAL_EXTRA_COLUMNS), "method"):
        if table_width({h: cells[h] for h in [*chosen, extra]}) <= width:
            chosen.append(extra)
    order = ["model", "role", "method", "params", *(title for title, _, _ in scores)]
    headers = [h for h in order if h in chosen]
    rows = [[cells[h][i] for h in headers] for i in range(len(models))]
    shown = tuple(c for c in scores if c[0] in headers)
    notes = (*undefined_notes(metrics, split, shown), *extra_rows_notes(metrics, split))
    return ComparisonTable(headers, rows, notes=notes, legend=legend(headers))


def table_width(columns: dict[str, list[str]]) -> int:
    """Console cells a rich table of these columns (header → cells) takes with its default box and padding."""
    from rich.cells import cell_len

    widths = [max(cell_len(text) for text in [header, *cells]) for header, cells in columns.items()]
    return sum(widths) + 3 * len(widths) + 1


def legend(headers: list[str]) -> str:
    """``acc = accuracy; …; ↑ / ↓: higher / lower is better`` for the abbreviated headers among ``headers``."""
    names = [h.rstrip(" ↑↓") for h in headers]
    parts = [f"{name} = {ABBREVIATIONS[name]}" for name in names if name in ABBREVIATIONS]
    if any(h.endswith(("↑", "↓")) for h in headers):
        parts.append("↑ / ↓: higher / lower is better")
    return "; ".join(parts)


def undefined_notes(
    metrics: dict[str, Any], split: str, columns: tuple[tuple[str, str, bool], ...] = COMPARISON_COLUMNS
) -> tuple[str, ...]:
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
                titles[title] = models[display_name(name, model)] = None
    return tuple(
        f"— = undefined: {', '.join(titles)} of {', '.join(models)} ({split} split): {reason}."
        for reason, (titles, models) in by_reason.items()
    )


def display_name(name: str, model: dict[str, Any] | None) -> str:
    """How tables and figures show a model: by its ``label`` when it has one (a peer: ``peer: expgrad-eo
    (logistic)``, a non-distilled reference), else by its name."""
    label = (model or {}).get("label")
    return str(label) if label else name


def extra_rows_notes(metrics: dict[str, Any], split: str = "test") -> tuple[str, ...]:
    """What the post-processed and peer rows are (one note each kind present); () for a run without them."""
    models = metrics["models"]
    notes = []
    post = [m for m in models.values() if m.get("role") == "postprocessed"]
    if post:
        settings = post[0].get("postprocess") or {}
        criterion = settings.get("constraints", "a fairness criterion")
        in_sample = " (so these val numbers are in-sample)" if split == "val" else ""
        notes.append(
            f"…+threshold: the model named before the + post-processed by fairlearn's ThresholdOptimizer "
            f"({criterion}, objective {settings.get('objective', 'accuracy_score')}), fitted on the val split"
            f"{in_sample}; its predictions are randomised hard labels (drawn with the run's seed), so calibration is "
            "undefined."
        )
    if any(m.get("role") == "reduced" for m in models.values()):
        notes.append(
            "… around the kd student: the run's student trained with kd's loss against the teacher inside fairlearn's "
            "ExponentiatedGradient (the reduction reweights and relabels the train split; the teacher term is kept); "
            "a distilled, randomised classifier, its hard labels drawn with the run's seed."
        )
    if any(m.get("role") == "peer" for m in models.values()):
        notes.append(
            "peer: a non-distilled reference, fairlearn's ExponentiatedGradient around a scikit-learn classifier "
            "fitted on the run's train split (no teacher); randomised hard labels, drawn with the run's seed."
        )
    return tuple(notes)


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
            rows.append(
                [
                    display_name(student, metrics["models"].get(student)),
                    METRIC_TITLES.get(key, key),
                    _fmt(entry.get("teacher")),
                    _fmt(entry.get("student")),
                    "—" if delta is None else f"{delta:+.4f}",
                    interval,
                    "—" if relative is None else f"{100 * relative:+.1f}%",
                ]
            )
            values.append([None, None, entry.get("teacher"), entry.get("student"), delta, low, relative])
    shown = tuple(
        (METRIC_TITLES.get(key, key), key, False)
        for key in dict.fromkeys(key for by_metric in section["students"].values() for key in by_metric)
    )
    notes = undefined_notes(metrics, section.get("split", "test"), shown)
    return ComparisonTable(headers, rows, values, [None, None, False, False, False, False, False], notes)


def group_accuracy_table(metrics: dict[str, Any], split: str = "test") -> ComparisonTable:
    """Per-group accuracy of each model on a split (mean over seeds)."""
    groups = list(metrics["dataset"]["group_names"])
    rows, values = [], []
    for name, model in metrics["models"].items():
        accuracy = model["splits"].get(split, {}).get("group_accuracy", {})
        numbers = [_number(accuracy.get(g)) for g in groups]
        rows.append([display_name(name, model), *(_fmt(v) for v in numbers)])
        values.append([None, *numbers])
    return ComparisonTable(["model", *groups], rows, values, [None, *(True for _ in groups)])


def compare_table(
    metrics_a: dict[str, Any],
    metrics_b: dict[str, Any],
    split: str = "test",
    columns: tuple[tuple[str, str, bool], ...] = COMPARISON_COLUMNS,
    intervals: dict[str, dict[str, dict[str, Any]]] | None = None,
    confidence: float = 0.95,
) -> ComparisonTable:
    """Two runs side by side: one row per (model, metric) with run A, run B and B − A.

    Models are matched by name (those of A first, then those only in B); a model or value missing from one
    run shows "—". Without ``intervals`` the last column says whether B is better, worse or the same by the
    point values alone. With ``intervals`` (model → metric key → ``ci_low`` / ``ci_high`` of B − A, from
    :func:`~fairdistill.report.compare.paired_intervals`) an interval column follows, and better / worse
    is said only where the interval excludes 0 ("no clear difference" otherwise, "no interval" without one).
    """
    models_a, models_b = metrics_a["models"], metrics_b["models"]
    names = list(models_a) + [n for n in models_b if n not in models_a]
    headers = ["model", "metric", "run A", "run B", "B − A", "B vs A"]
    if intervals is not None:
        headers.append(f"{round(100 * confidence)}% interval")
    rows, values = [], []
    for name in names:
        for title, key, higher in columns:
            a = _metric_of(models_a.get(name), split, key)
            b = _metric_of(models_b.get(name), split, key)
            diff = None if a is None or b is None else b - a
            row = [name, title, _fmt(a), _fmt(b), "—" if diff is None else f"{diff:+.4f}"]
            if intervals is None:
                row.append(_verdict(diff, higher))
            else:
                entry = intervals.get(name, {}).get(key)
                low, high = (None, None) if entry is None else (entry.get("ci_low"), entry.get("ci_high"))
                row += [
                    _verdict(diff, higher, low, high, entry is not None),
                    "—" if low is None or high is None else f"[{low:+.4f}, {high:+.4f}]",
                ]
            rows.append(row)
            values.append([None, None, a, b, diff, *(None for _ in headers[5:])])
    notes = tuple(
        f"run {label}: {note}"
        for label, m in (("A", metrics_a), ("B", metrics_b))
        for note in undefined_notes(m, split, columns)
    )
    return ComparisonTable(headers, rows, values, [None for _ in headers], notes)


def _verdict(
    diff: float | None, higher: bool, low: float | None = None, high: float | None = None, tested: bool | None = None
) -> str:
    """better / worse / same; with ``tested`` given, better / worse only when [low, high] excludes 0."""
    if diff is None:
        return "—"
    if abs(diff) < 1e-12:
        return "same"
    if tested is not None:
        if not tested:
            return "no interval"
        if low is None or high is None or low <= 0.0 <= high:
            return "no clear difference"
    return "better" if (diff > 0) == higher else "worse"


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


def _fmt_mean_std(mean: Any, std: Any, several_seeds: bool, *, compact: bool = False) -> str:
    """``0.8123`` for one seed; ``0.8123 ± 0.0120`` for several (``compact``: ``0.812±0.012``, for terminals)."""
    if mean is None:
        return "—"
    if not several_seeds:
        return f"{mean:.4f}"
    digits, between = (3, "±") if compact else (4, " ± ")
    return f"{mean:.{digits}f}{between}{'—' if std is None else f'{std:.{digits}f}'}"


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
    lines = [
        "| " + " | ".join(map(md_escape, table.headers)) + " |",
        "|" + "|".join("---" for _ in table.headers) + "|",
    ]
    lines += ["| " + " | ".join(map(md_escape, row)) + " |" for row in table.rows]
    for note in table.notes:
        lines += ["", md_escape(note)]
    return "\n".join(lines)


def to_rich(table: ComparisonTable, title: str, left: int = 3) -> Table:
    """A rich table, its first ``left`` columns left-aligned; a cell too wide for a narrow console folds onto
    a second line instead of being elided."""
    rich_table = Table(title=title)
    for i, header in enumerate(table.headers):
        rich_table.add_column(header, justify="left" if i < left else "right", overflow="fold")
    for row in table.rows:
        rich_table.add_row(*row)
    return rich_table
