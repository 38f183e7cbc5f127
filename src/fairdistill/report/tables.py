"""The comparison table (one row per model) built from a run's metrics.json content."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rich.table import Table

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
    headers: list[str]
    rows: list[list[str]]


def comparison_table(
    metrics: dict[str, Any], split: str = "test", columns: tuple[tuple[str, str, bool], ...] = COMPARISON_COLUMNS
) -> ComparisonTable:
    """Model, role, method, parameters, then the split's chosen metrics for every model."""
    headers = ["model", "role", "method", "params", *(title for title, _, _ in columns)]
    rows = []
    for name, model in metrics["models"].items():
        values = model["splits"].get(split, {})
        rows.append(
            [name, model["role"], model["method"], f"{model['params']:,}",
             *(_fmt(values.get(key)) for _, key, _ in columns)]
        )
    return ComparisonTable(headers, rows)


def _fmt(value: Any) -> str:
    return "—" if value is None else f"{value:.4f}"


def to_markdown(table: ComparisonTable) -> str:
    lines = ["| " + " | ".join(table.headers) + " |", "|" + "|".join("---" for _ in table.headers) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in table.rows]
    return "\n".join(lines)


def to_rich(table: ComparisonTable, title: str) -> Table:
    rich_table = Table(title=title)
    for i, header in enumerate(table.headers):
        rich_table.add_column(header, justify="left" if i < 3 else "right")
    for row in table.rows:
        rich_table.add_row(*row)
    return rich_table
