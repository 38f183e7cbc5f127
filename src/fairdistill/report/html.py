"""report.html: one self-contained page (inline CSS, figures as base64 data URIs, a little JS to sort tables).

Order: the verdict (did distillation amplify bias, which method fixes it at what cost) with the accuracy vs
fairness Pareto plot, the comparison table, the teacher → student amplification grid, the other figures, "what
changed", and the remaining tables (validation split, per group, training). Nothing is loaded from the network.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Sequence
from typing import Any

from fairdistill.report.changes import EXAMPLES_PER_GROUP, ExampleRenderer, PairChanges
from fairdistill.report.plots import FigureFile
from fairdistill.report.tables import (
    ComparisonTable,
    amplification_table,
    comparison_table,
    group_accuracy_table,
)
from fairdistill.report.verdict import amplification_grid, grid_marks, verdict_sentences

#: The figure shown with the verdict rather than with the other figures.
SUMMARY_FIGURE = "pareto"

_CSS = """
:root { --ink: #1f2328; --muted: #59636e; --line: #d1d9e0; --head: #f6f8fa; --good: #1a7f37; --bad: #cf222e; }
* { box-sizing: border-box; }
body { font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--ink);
       margin: 0 auto; padding: 24px 32px 64px; max-width: 1400px; }
h1 { font-size: 24px; margin: 0 0 4px; } h2 { font-size: 19px; margin: 32px 0 8px; border-bottom: 1px solid var(--line);
     padding-bottom: 4px; } h3 { font-size: 15px; margin: 20px 0 6px; }
p.facts, p.note, figcaption { color: var(--muted); }
table { border-collapse: collapse; margin: 8px 0 4px; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 4px 7px; text-align: right; white-space: nowrap; }
th { background: var(--head); font-weight: 600; white-space: normal; min-width: 4.5em; vertical-align: bottom; }
td.multi { line-height: 1.3; } span.line { display: block; }
#comparison-test td:nth-child(3), #comparison-val td:nth-child(3) { white-space: normal; min-width: 12em; }
.verdict { border-left: 4px solid #0969da; background: #f1f8ff; padding: 10px 14px; margin: 16px 0;
           font-size: 15px; } .verdict p { margin: 4px 0; }
td.text, th.text { text-align: left; }
table.sortable th { cursor: pointer; user-select: none; }
table.sortable th::after { content: " \\2195"; color: #9aa4ae; font-size: 11px; }
table.sortable th[data-dir="asc"]::after { content: " \\2191"; color: var(--ink); }
table.sortable th[data-dir="desc"]::after { content: " \\2193"; color: var(--ink); }
td.best { font-weight: 700; background: #e6f4ea; }
td.up { color: var(--bad); } td.down { color: var(--good); }
.scroll { overflow-x: auto; }
figure { margin: 16px 0 28px; } figure img { max-width: 100%; border: 1px solid var(--line); }
.examples { display: flex; flex-wrap: wrap; gap: 8px; margin: 4px 0 10px; }
.example { display: flex; flex-direction: column; align-items: center; font-size: 11px; color: var(--muted);
           max-width: 260px; }
img.thumb { width: 56px; height: 56px; image-rendering: pixelated; border: 1px solid var(--line); }
.snippet { font-size: 11px; white-space: normal; }
nav a { margin-right: 12px; }
"""

_JS = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  table.querySelectorAll("thead th").forEach(function (th, column) {
    th.addEventListener("click", function () {
      var dir = th.dataset.dir === "asc" ? "desc" : "asc";
      table.querySelectorAll("thead th").forEach(function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir;
      var key = function (row) {
        var cell = row.cells[column];
        var v = cell.dataset.value;
        return v !== undefined && v !== "" ? parseFloat(v) : cell.textContent.trim();
      };
      var body = table.tBodies[0];
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var numbers = typeof x === "number" && typeof y === "number";
        var r = numbers ? x - y : String(x).localeCompare(String(y));
        return dir === "asc" ? r : -r;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def table_html(
    table: ComparisonTable,
    table_id: str,
    *,
    sortable: bool = True,
    highlight: bool = False,
    text_columns: int = 1,
    cell_classes: dict[tuple[int, int], str] | None = None,
) -> str:
    """A table, then its notes; numeric cells carry ``data-value`` for sorting; ``highlight`` marks each score
    column's best; ``cell_classes`` adds a CSS class to cells by (row, column)."""
    best: dict[int, float] = {}
    if highlight and table.values is not None and table.higher_is_better is not None:
        for j, higher in enumerate(table.higher_is_better):
            column = [v for v in (row[j] for row in table.values) if v is not None and math.isfinite(v)]
            if higher is not None and column:
                best[j] = max(column) if higher else min(column)
    classes = "sortable" if sortable else "plain"
    head = "".join(
        f'<th class="{"text" if j < text_columns else "num"}" scope="col">{_e(h)}</th>'
        for j, h in enumerate(table.headers)
    )
    body = []
    for i, row in enumerate(table.rows):
        cells = []
        for j, text in enumerate(row):
            value = None if table.values is None else table.values[i][j]
            attrs = []
            css = ["text" if j < text_columns else "num"]
            if cell_classes and (i, j) in cell_classes:
                css.append(cell_classes[(i, j)])
            if value is not None and math.isfinite(value):
                attrs.append(f'data-value="{value!r}"')
                if j in best and value == best[j]:
                    css.append("best")
            attrs.insert(0, f'class="{" ".join(css)}"')
            cells.append(f"<td {' '.join(attrs)}>{_cell_text(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    notes = "".join(f'<p class="note">{_e(note)}</p>' for note in table.notes)
    return (
        f'<div class="scroll"><table id="{_e(table_id)}" class="{classes}"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>{notes}"
    )


def _cell_text(text: str) -> str:
    """A cell's escaped text; each line after a line break goes into a block span, the break written as a
    space so that the cell's text content reads as one line (``a b``, as in report.md)."""
    first, *rest = text.split("\n")
    return _e(first) + "".join(f' <span class="line">{_e(line)}</span>' for line in rest)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _facts(metrics: dict[str, Any]) -> str:
    dataset, run = metrics["dataset"], metrics["run"]
    seeds = run.get("seeds") or [run.get("seed")]
    seed_text = (
        f"seed {seeds[0]}"
        if len(seeds) == 1
        else (f"{len(seeds)} seeds ({', '.join(map(str, seeds))}): cells are mean ± sample std over seeds")
    )
    counts = dataset.get("counts", {})
    count_text = ", ".join(f"{k} {v:,}" for k, v in counts.items())
    return (
        f"Dataset <b>{_e(dataset['name'])}</b> ({_e(dataset.get('modality', ''))}; {dataset['num_classes']} classes; "
        f"attribute {_e(dataset.get('attr_label', 'attr'))}: {_e(', '.join(dataset['attr_names']))}; "
        f"{len(dataset['group_names'])} groups; {_e(count_text)}). {_e(seed_text)}. Checkpoint selection: "
        f"{_e(run.get('select', ''))}. Started {_e(run.get('started', ''))}, {run.get('seconds', 0):.0f} s; "
        f"fairdistill {_e(run.get('fairdistill', ''))}, torch {_e(run.get('torch', ''))}, "
        f"device {_e(run.get('device', ''))}."
    )


def _verdict_html(metrics: dict[str, Any]) -> str:
    return (
        '<div class="verdict" id="verdict">'
        + "".join(f"<p>{_e(sentence)}</p>" for sentence in verdict_sentences(metrics))
        + "</div>"
    )


def _figure_html(f: FigureFile) -> str:
    return (
        f'<figure id="fig-{_e(f.name)}"><h3>{_e(f.title)}</h3><img alt="{_e(f.title)}" src="{_data_uri(f.png)}">'
        f"<figcaption>{_e(f.caption)}</figcaption></figure>"
    )


def _amplification_html(metrics: dict[str, Any]) -> str:
    grid = amplification_grid(metrics)
    if grid is None:
        return '<p class="note">No teacher → student comparison in this run (no teacher or no student).</p>'
    section = metrics["amplification"]
    seeds = section.get("seeds") or []
    seeds_text = (
        (
            f" With {len(seeds)} seeds, Δ is the mean over seeds of student k − teacher k, and every "
            "resample uses the same test indices for all of them."
        )
        if len(seeds) > 1
        else ""
    )
    legend = (
        f"M(student) and Δ = M(student) − M(teacher) on the {section['split']} split for recall-disparity "
        f"MAD, worst-group error (1 − WGA), equalized-odds and demographic-parity difference; lower is "
        f"fairer for all four. Interval: {round(100 * section['confidence'])}% percentile interval over "
        f"{section['resamples']:,} paired bootstrap resamples of the test examples (same indices for teacher "
        f"and student; seed {section.get('bootstrap_seed', 0)})." + seeds_text
    )
    rendered = table_html(grid, "amplification", sortable=False, cell_classes=_multi(grid, grid_marks(metrics)))
    long = _long_amplification_html(metrics)
    return (
        f'<p class="note">{_e(legend)}</p>{rendered}<p class="note">Red Δ: the interval lies above 0 (bias '
        f"amplified); green: below 0 (reduced); uncoloured: not distinguishable from noise.</p>"
        f"<details><summary>Every value, with relative Δ</summary>{long}</details>"
    )


def _multi(table: ComparisonTable, marks: dict[tuple[int, int], str]) -> dict[tuple[int, int], str]:
    """Cell classes: ``multi`` (several lines) on every cell holding a line break, plus ``marks``."""
    classes = dict(marks)
    for i, row in enumerate(table.rows):
        for j, text in enumerate(row):
            if "\n" in text:
                classes[(i, j)] = f"{classes[(i, j)]} multi" if (i, j) in classes else "multi"
    return classes


def _comparison_html(metrics: dict[str, Any], split: str = "test", highlight: bool = True) -> str:
    """A comparison table; a ``mean ± std`` cell is drawn on two lines so that the table fits the page."""
    table = comparison_table(metrics, split)
    rows = [[cell.replace(" ± ", "\n± ") for cell in row] for row in table.rows]
    stacked = ComparisonTable(table.headers, rows, table.values, table.higher_is_better, table.notes)
    return table_html(
        stacked, f"comparison-{split}", highlight=highlight, text_columns=3, cell_classes=_multi(stacked, {})
    )


def _long_amplification_html(metrics: dict[str, Any]) -> str:
    table = amplification_table(metrics)
    if table is None:
        return ""
    section = metrics["amplification"]
    # Colour the Δ cells whose whole interval lies above (amplified) or below (reduced) zero.
    entries = [entry for by_metric in section["students"].values() for entry in by_metric.values()]
    marks = {}
    for i, entry in enumerate(entries):
        low, high = entry.get("ci_low"), entry.get("ci_high")
        if entry.get("delta") is not None and low is not None and high is not None and (low > 0 or high < 0):
            marks[(i, 4)] = "up" if low > 0 else "down"
    return table_html(table, "amplification-long", text_columns=2, cell_classes=marks)


def _changes_html(changes: Sequence[PairChanges], renderer: ExampleRenderer | None, class_names: Sequence[str]) -> str:
    if not changes:
        return '<p class="note">Fewer than two students: nothing to compare.</p>'
    parts = []
    for pair in changes:
        ref, other = _e(pair.reference), _e(pair.other)
        parts.append(f"<h3>{other} vs {ref}</h3>")
        parts.append(
            f'<p class="note">On the test split, {pair.fixed} examples are right with <b>{other}</b> and '
            f"wrong with <b>{ref}</b>; {pair.broken} the other way round.</p>"
        )
        head = (
            f'<thead><tr><th class="text">group</th><th>examples</th><th>{other} right, {ref} wrong</th>'
            f"<th>{ref} right, {other} wrong</th><th>net</th></tr></thead>"
        )
        body = "".join(
            f'<tr><td class="text">{_e(g.group)}</td><td data-value="{g.size}">{g.size}</td>'
            f'<td data-value="{len(g.fixed)}">{len(g.fixed)}</td><td data-value="{len(g.broken)}">{len(g.broken)}</td>'
            f'<td data-value="{len(g.fixed) - len(g.broken)}">{len(g.fixed) - len(g.broken):+d}</td></tr>'
            for g in pair.groups
        )
        parts.append(f'<div class="scroll"><table class="sortable changes">{head}<tbody>{body}</tbody></table></div>')
        if renderer is None:
            parts.append('<p class="note">Examples not shown: the dataset could not be loaded for this report.</p>')
            continue
        for g in pair.groups:
            for title, indices in ((f"{other} right, {ref} wrong", g.fixed), (f"{ref} right, {other} wrong", g.broken)):
                if not indices:
                    continue
                shown = indices[:EXAMPLES_PER_GROUP]
                items = []
                for i in shown:
                    truth, ref_pred, other_pred = pair.labels[i]
                    caption = (
                        f"#{i} y={_e(_name(class_names, truth))}<br>{ref}: {_e(_name(class_names, ref_pred))}"
                        f"<br>{other}: {_e(_name(class_names, other_pred))}"
                    )
                    items.append(f'<div class="example">{renderer(i)}<span>{caption}</span></div>')
                more = f" (first {len(shown)} of {len(indices)})" if len(indices) > len(shown) else ""
                parts.append(f'<p><b>{_e(g.group)}</b> — {title}{more}</p><div class="examples">{"".join(items)}</div>')
    return "".join(parts)


def _name(class_names: Sequence[str], c: int) -> str:
    return str(class_names[c]) if 0 <= c < len(class_names) else str(c)


def _training_table(metrics: dict[str, Any]) -> ComparisonTable:
    rows, values = [], []
    for name, model in metrics["models"].items():
        seeds = model.get("seeds")
        runs = list(seeds.values()) if seeds else [model]
        epochs = "/".join(str(r.get("selected_epoch", "—")) for r in runs)
        total = "/".join(str(len(r.get("history", []))) for r in runs)
        rows.append([name, epochs, total, f"{model.get('train_seconds', 0.0):.1f}"])
        values.append([None, None, None, float(model.get("train_seconds", 0.0))])
    return ComparisonTable(["model", "selected epoch", "epochs", "train seconds (mean)"], rows, values)


def render_html(
    metrics: dict[str, Any],
    figures: Sequence[FigureFile],
    changes: Sequence[PairChanges] = (),
    renderer: ExampleRenderer | None = None,
    extra_tables: Sequence[tuple[str, str, ComparisonTable]] = (),
) -> str:
    """The whole page as a string. ``extra_tables``: (id, title, table) shown with the other tables at the end."""
    name = metrics["run"]["name"]
    class_names = metrics["dataset"]["class_names"]
    figure_html = "".join(_figure_html(f) for f in figures if f.name != SUMMARY_FIGURE)
    summary_html = "".join(_figure_html(f) for f in figures if f.name == SUMMARY_FIGURE)
    more = [
        ("group-accuracy", "Per-group test accuracy", group_accuracy_table(metrics)),
        *extra_tables,
        ("training", "Training", _training_table(metrics)),
    ]
    more_html = (
        "<h3>Comparison (validation split)</h3>"
        + _comparison_html(metrics, "val", highlight=False)
        + "".join(f"<h3>{_e(title)}</h3>{table_html(t, tid)}" for tid, title, t in more)
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>fairdistill report — {_e(name)}</title>
<style>{_CSS}</style>
</head>
<body>
<header>
<h1>fairdistill report — {_e(name)}</h1>
<p class="facts">{_facts(metrics)}</p>
<nav><a href="#summary">verdict</a><a href="#comparison">comparison</a><a href="#amplification">amplification</a>
<a href="#figures">figures</a><a href="#what-changed">what changed</a><a href="#more">more tables</a></nav>
</header>
<section id="summary">
<h2>Did distillation amplify bias?</h2>
{_verdict_html(metrics)}
{summary_html}
</section>
<section id="comparison">
<h2>Comparison (test split)</h2>
<p class="note">Click a column header to sort. Bold: the best value of each column. Definitions: docs/metrics.md
and docs/methods.md in the fairdistill repository.</p>
{_comparison_html(metrics)}
</section>
<section id="amplification">
<h2>Teacher → student bias amplification</h2>
{_amplification_html(metrics)}
</section>
<section id="figures">
<h2>Figures</h2>
{figure_html}
</section>
<section id="what-changed">
<h2>What changed</h2>
{_changes_html(changes, renderer, class_names)}
</section>
<section id="more">
<h2>More tables</h2>
{more_html}
</section>
<script>{_JS}</script>
</body>
</html>
"""
