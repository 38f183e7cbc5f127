"""The tables ``fairdistill run`` prints at its end, rendered by rich at 80 columns (and wider): nothing elided
with "…", every model present, teacher→student pairs with an arrow, a legend for the abbreviations, and the
notes on undefined metrics."""

from __future__ import annotations

from io import StringIO
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

import fairdistill.cli
from fairdistill.report.tables import table_width, terminal_table, to_rich
from fairdistill.report.transfer import terminal_transfer_table, transfer_rich

#: The default run's models and recipes (``fairdistill run`` with no config), with a long name added.
RECIPES = {
    "teacher": "erm",
    "erm": "erm",
    "kd": "kd",
    "dedier": "kd + early-readout(margin, beta=3, alpha=0.2)",
    "dedier-laplace": "kd + early-readout(laplace-margin, beta=3, alpha=0.2)",
    "teachers-pet": "kd + per-group-alpha(group)",
    "adversarial": "kd + adversary(probs+label, weight=1)",
    "groupdro-strong": "kd + groupdro(eta=0.01)",
}


def _values(i: int) -> dict[str, Any]:
    base = 0.5 + 0.04 * i
    return {
        "accuracy": base,
        "worst_group_accuracy": base - 0.3,
        "balanced_accuracy": base - 0.01,
        "macro_f1": base - 0.02,
        "macro_recall": base - 0.01,
        "macro_precision": base + 0.01,
        "recall_disparity_mad": 0.3 - 0.02 * i,
        "eo_difference": 0.35 - 0.02 * i,
        "dp_difference": 0.1,
        "ece": 0.05,
    }


def metrics_document(seeds: int = 1, undefined: bool = False) -> dict[str, Any]:
    models = {}
    for i, (name, recipe) in enumerate(RECIPES.items()):
        test = _values(i)
        if undefined and name == "kd":
            test.update(eo_difference=None, undefined={"eo_difference": "the split holds one attribute value"})
        entry = {
            "role": "teacher" if name == "teacher" else "student",
            "method": recipe,
            "params": 421_034 if name == "teacher" else 10_394,
            "model": {"name": "cnn", "width": 32 if name == "teacher" else 4},
            "splits": {"test": test, "val": _values(i)},
        }
        if seeds > 1:
            entry["splits_std"] = {"test": {key: 0.0123 for key in test if key != "undefined"}}
        models[name] = entry
    return {
        "run": {"name": "default"},
        "dataset": {"name": "colored-mnist", "group_names": ["g0", "g1"]},
        "models": models,
    }


def render(renderable: Any, width: int) -> str:
    console = Console(width=width, record=True, file=StringIO())
    console.print(renderable)
    return console.export_text()


def body_rows(text: str) -> list[list[str]]:
    return [[c.strip() for c in line.split("│")[1:-1]] for line in text.splitlines() if line.startswith("│")]


@pytest.mark.parametrize("seeds", [1, 3])
def test_comparison_table_fits_80_columns(seeds: int) -> None:
    metrics = metrics_document(seeds)
    table = terminal_table(metrics, "test", 80)
    text = render(to_rich(table, "default: test split", left=1), 80)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    rows = body_rows(text)
    assert [r[0] for r in rows] == list(RECIPES)  # one line per model: nothing wrapped
    assert {"acc ↑", "WGA ↑", "MAD ↓", "EO ↓"} <= set(table.headers)
    assert "WGA = worst-group accuracy" in table.legend and "↑ / ↓: higher / lower is better" in table.legend
    if seeds > 1:
        assert "0.500±0.012" in text


def test_wider_consoles_show_more_columns() -> None:
    metrics = metrics_document()
    narrow, wide = terminal_table(metrics, "test", 80), terminal_table(metrics, "test", 200)
    assert len(wide.headers) > len(narrow.headers)
    assert "method" in wide.headers and "method" not in narrow.headers
    assert "kd + early-readout(laplace-margin, beta=3, alpha=0.2)" in render(to_rich(wide, "t", left=3), 200)
    for width in (80, 100, 140):
        table = terminal_table(metrics, "test", width)
        assert table_width(dict(zip(table.headers, map(list, zip(*table.rows, strict=True)), strict=True))) <= width


def test_transfer_table_fits_80_columns_with_arrows() -> None:
    metrics = metrics_document()
    text = render(transfer_rich(metrics, "default: teacher → student (test, %)", width=80), 80)
    assert "…" not in text
    assert max(len(line) for line in text.splitlines()) <= 80
    rows = body_rows(text)
    assert [r[0] for r in rows] == [name for name in RECIPES if name != "teacher"]
    assert rows[0][1] == "50.0→54.0"  # teacher accuracy → erm accuracy, in percent
    assert "cnn width=32 → cnn width=4" in text
    assert not any("-" in cell for row in rows for cell in row[1:-1])  # no pair that reads like a subtraction
    assert "teacher→student in %" in terminal_transfer_table(metrics, "test", 80).legend
    wide = terminal_transfer_table(metrics, "test", 250)
    assert "precision" in wide.headers and "dedier (kd + early-readout(margin, beta=3, alpha=0.2))" in wide.rows[2][0]


def test_print_run_shows_tables_legend_and_notes(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    console = Console(width=80, record=True, file=StringIO())
    monkeypatch.setattr(fairdistill.cli, "console", console)
    fairdistill.cli._print_run(
        SimpleNamespace(metrics=metrics_document(undefined=True), run_dir=tmp_path, is_main=True)
    )
    text = console.export_text()
    assert "…" not in text
    assert "acc = accuracy" in text and "MAD = mean absolute recall disparity" in text
    flat = " ".join(text.split())
    assert "— = undefined: EO ↓ of kd (test split): the split holds one attribute value." in flat
    assert "teacher→student in %" in flat
    assert f"run directory: {tmp_path}" in flat
