"""The teacher → student table of the seeds/002 KD benchmark, built from a run's metrics.json content.

One row per student: its method, the two architectures, then "teacher-student" pairs in percent (one decimal,
e.g. ``64.9-65.0``) for top-1 accuracy, macro recall, macro precision, macro F1 and the recall-disparity MAD
(METHODS.md §7), and the relative change of the MAD from teacher to student, (MAD_s − MAD_t) / MAD_t — the
"46% increase over the teacher's bias" of seeds/002. Values missing on the split are shown as "—".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table

from fairdistill.report.tables import ComparisonTable, to_markdown

#: (column title, metric key) of the "teacher-student" pairs, in the order of seeds/002.
TRANSFER_COLUMNS: tuple[tuple[str, str], ...] = (
    ("top-1 acc", "accuracy"),
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
        rows.append(TransferRow(
            name=name,
            method=str(model.get("method", name)),
            models=f"{model_text(teacher.get('model'))} - {model_text(model.get('model'))}",
            pairs=pairs,
            mad_change=relative_change(mad_t, mad_s),
        ))
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
        rows.append([label, row.models, *(format_pair(*row.pairs[key]) for _, key in TRANSFER_COLUMNS),
                     format_change(row.mad_change)])
    return ComparisonTable(list(TRANSFER_HEADERS), rows)


def transfer_markdown(metrics: dict[str, Any], split: str = "test") -> str:
    """The table in Markdown, with a one-line legend."""
    table = transfer_table(metrics, split)
    if not table.rows:
        return "_No teacher in this run._"
    lines = [to_markdown(table)]
    lines += ["", f"Teacher-student values in percent on the {split} split; MAD = mean absolute recall disparity "
              "between attribute values; MAD change = (student − teacher) / teacher."]
    return "\n".join(lines)


def transfer_rich(metrics: dict[str, Any], title: str, split: str = "test") -> Table:
    """The table for the terminal; the architectures go into the title when every student shares them."""
    table = transfer_table(metrics, split)
    architectures = {row[1] for row in table.rows}
    shared = len(architectures) == 1
    rich_table = Table(title=f"{title}: {architectures.pop()}" if shared else title)
    for i, header in enumerate(table.headers):
        if shared and i == 1:
            continue
        rich_table.add_column(header, justify="left" if i < 2 else "right", no_wrap=True)
    for row in table.rows:
        rich_table.add_row(*(cell for i, cell in enumerate(row) if not (shared and i == 1)))
    return rich_table
