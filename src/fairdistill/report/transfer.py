"""The teacher → student table of a KD benchmark, built from a run's metrics.json content.

One row per student: its method, the two architectures, then "teacher-student" pairs in percent (one decimal,
e.g. ``64.9-65.0``) for top-1 accuracy, worst-group accuracy, macro recall, macro precision, macro F1 and the
recall-disparity MAD (docs/metrics.md), and the relative change of the MAD from teacher to student,
(MAD_s − MAD_t) / MAD_t. In the terminal the pairs read ``64.9→65.0``. Values missing on the split are shown as "—".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table

from fairdistill.report.tables import ComparisonTable, table_width, to_markdown, to_rich

#: (column title, metric key) of the "teacher-student" pairs.
TRANSFER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("top-1 acc", "accuracy"),
    ("worst-group acc", "worst_group_accuracy"),
    ("macro recall", "macro_recall"),
    ("macro precision", "macro_precision"),
    ("macro F1", "macro_f1"),
    ("MAD", "recall_disparity_mad"),
)

TRANSFER_HEADERS: tuple[str, ...] = ("method", "teacher - student", *(t for t, _ in TRANSFER_COLUMNS), "MAD change")


@dataclass(frozen=True)
class TransferRow:
    """One student compared with the teacher: metric key → (teacher value, student value)."""

    name: str
    method: str
    models: str
    pairs: dict[str, tuple[float | None, float | None]]
    #: (MAD_student − MAD_teacher) / MAD_teacher; None when undefined (missing values or a teacher MAD of 0).
    mad_change: float | None


def model_text(spec: dict[str, Any] | None) -> str:
    """A compact architecture name: ``mlp hidden=256x256``, ``cnn width=4``."""
    if not spec:
        return "?"
    extras = []
    for key, value in spec.items():
        if key == "name":
            continue
        text = "x".join(str(v) for v in value) if isinstance(value, (list, tuple)) else str(value)
        extras.append(f"{key}={text}")
    return " ".join([str(spec.get("name", "?")), *extras])


def relative_change(teacher: float | None, student: float | None) -> float | None:
    """(student − teacher) / teacher, or None when either is missing or the teacher's value is 0."""
    if teacher is None or student is None or teacher == 0:
        return None
    return (student - teacher) / teacher


def transfer_rows(metrics: dict[str, Any], split: str = "test") -> list[TransferRow]:
    """A row per student model of the run (in run order); empty when the run has no teacher."""
    models = metrics["models"]
    teacher_name = next((name for name, m in models.items() if m.get("role") == "teacher"), None)
    if teacher_name is None:
        return []
    teacher = models[teacher_name]
    t_values = teacher.get("splits", {}).get(split, {})
    rows = []
    for name, model in models.items():
        if model.get("role") != "student":
            continue
        s_values = model.get("splits", {}).get(split, {})
        pairs = {key: (_number(t_values.get(key)), _number(s_values.get(key))) for _, key in TRANSFER_COLUMNS}
        mad_t, mad_s = pairs["recall_disparity_mad"]
        rows.append(
            TransferRow(
                name=name,
                method=str(model.get("method", name)),
                models=f"{model_text(teacher.get('model'))} - {model_text(model.get('model'))}",
                pairs=pairs,
                mad_change=relative_change(mad_t, mad_s),
            )
        )
    return rows


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def format_pair(teacher: float | None, student: float | None) -> str:
    """``64.9-65.0``: both values in percent with one decimal ("—" for a missing one)."""
    return f"{_percent(teacher)}-{_percent(student)}"


def _percent(value: float | None) -> str:
    return "—" if value is None else f"{100.0 * value:.1f}"


def format_change(change: float | None) -> str:
    """``+46.0%`` / ``-12.5%`` ("—" when undefined)."""
    return "—" if change is None else f"{100.0 * change:+.1f}%"


def transfer_table(metrics: dict[str, Any], split: str = "test") -> ComparisonTable:
    """The rows as strings, under :data:`TRANSFER_HEADERS`; the method column shows ``name (loss kind)``."""
    rows = []
    for row in transfer_rows(metrics, split):
        label = row.name if row.method == row.name else f"{row.name} ({row.method})"
        rows.append(
            [
                label,
                row.models,
                *(format_pair(*row.pairs[key]) for _, key in TRANSFER_COLUMNS),
                format_change(row.mad_change),
            ]
        )
    return ComparisonTable(list(TRANSFER_HEADERS), rows)


def transfer_markdown(metrics: dict[str, Any], split: str = "test") -> str:
    """The table in Markdown, with a one-line legend."""
    table = transfer_table(metrics, split)
    if not table.rows:
        return "_No teacher in this run._"
    lines = [to_markdown(table)]
    lines += [
        "",
        f"Teacher-student values in percent on the {split} split; MAD = mean absolute recall disparity "
        "between attribute values; MAD change = (student − teacher) / teacher.",
    ]
    return "\n".join(lines)


#: The terminal's (header, metric key) pairs, in the order they are dropped last to first on a narrow console.
TERMINAL_PAIRS: tuple[tuple[str, str], ...] = (
    ("acc", "accuracy"),
    ("MAD", "recall_disparity_mad"),
    ("F1", "macro_f1"),
    ("recall", "macro_recall"),
    ("precision", "macro_precision"),
)

#: What each terminal header stands for, in the legend under the table.
TERMINAL_MEANINGS: dict[str, str] = {
    "acc": "acc = top-1 accuracy",
    "MAD": "MAD = mean absolute recall disparity between attribute values",
    "F1": "F1 = macro F1",
    "recall": "recall = macro recall",
    "precision": "precision = macro precision",
    "ΔMAD": "ΔMAD = (student − teacher) / teacher MAD",
}


def terminal_legend(headers: list[str], split: str) -> str:
    """``teacher→student in % on the test split; acc = top-1 accuracy; …`` for the shown headers."""
    return "; ".join(
        [
            f"teacher→student in % on the {split} split",
            *(TERMINAL_MEANINGS[h] for h in headers if h in TERMINAL_MEANINGS),
        ]
    )


def format_arrow_pair(teacher: float | None, student: float | None) -> str:
    """``75.0→52.8``: teacher then student, in percent with one decimal ("—" for a missing one)."""
    return f"{_percent(teacher)}→{_percent(student)}"


def terminal_transfer_table(metrics: dict[str, Any], split: str = "test", width: int | None = None) -> ComparisonTable:
    """The teacher → student table for the terminal, as wide as ``width`` allows (None: everything).

    Pairs read ``teacher→student``. On a narrow console the method recipes, the architectures (when students
    differ in them) and then the last pairs of :data:`TERMINAL_PAIRS` are left out, never cut.
    """
    rows = transfer_rows(metrics, split)
    several_archs = len({row.models for row in rows}) > 1
    layouts = [
        (recipe, archs, TERMINAL_PAIRS[:n])
        for n in range(len(TERMINAL_PAIRS), 1, -1)
        for recipe, archs in ((True, several_archs), (False, several_archs), (False, False))
    ]
    table = _transfer_layout(rows, *layouts[-1])
    for layout in layouts:
        candidate = _transfer_layout(rows, *layout)
        if (
            width is None
            or table_width(dict(zip(candidate.headers, map(list, zip(*candidate.rows, strict=True)), strict=True)))
            <= width
        ):
            table = candidate
            break
    return ComparisonTable(table.headers, table.rows, legend=terminal_legend(table.headers, split))


def _transfer_layout(
    rows: list[TransferRow], recipe: bool, archs: bool, pairs: tuple[tuple[str, str], ...]
) -> ComparisonTable:
    headers = ["student", *(["teacher - student models"] if archs else []), *(h for h, _ in pairs), "ΔMAD"]
    cells = []
    for row in rows:
        label = f"{row.name} ({row.method})" if recipe and row.method != row.name else row.name
        cells.append(
            [
                label,
                *([row.models] if archs else []),
                *(format_arrow_pair(*row.pairs[key]) for _, key in pairs),
                format_change(row.mad_change),
            ]
        )
    return ComparisonTable(headers, cells)


def transfer_rich(metrics: dict[str, Any], title: str, split: str = "test", width: int | None = None) -> Table:
    """The table for the terminal (:func:`terminal_transfer_table`); the architectures go into the title when
    every student shares them."""
    table = terminal_transfer_table(metrics, split, width)
    architectures = {row.models for row in transfer_rows(metrics, split)}
    if len(architectures) == 1:
        title = f"{title}: {architectures.pop().replace(' - ', ' → ', 1)}"
    return to_rich(table, title=title, left=2 if "teacher - student models" in table.headers else 1)
