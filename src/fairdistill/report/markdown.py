"""report.md: the comparison tables and per-group accuracies of a run, from its metrics.json content."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from fairdistill.report.changes import PairChanges
from fairdistill.report.tables import (
    ComparisonTable,
    comparison_table,
    group_accuracy_table,
    md_escape,
    to_markdown,
)
from fairdistill.report.transfer import transfer_markdown
from fairdistill.report.verdict import amplification_grid, verdict_sentences
from fairdistill.rundir import run_seeds


def render_markdown(
    metrics: dict[str, Any], figures: Sequence[tuple[str, str]] = (), changes: Sequence[PairChanges] = ()
) -> str:
    """A Markdown report: run facts, the verdict, test comparison and bias-amplification tables, val comparison,
    per-group
    test accuracy, training; then links to ``figures`` ((title, relative path)) and "what changed" counts.

    Every name (run, dataset, models, classes, groups) goes through :func:`md_escape`: no raw HTML, no broken
    table rows."""
    dataset = metrics["dataset"]
    run = metrics["run"]
    seeds = run_seeds(metrics)
    seed_text = (
        f"Seed {seeds[0]}"
        if len(seeds) == 1
        else (f"Seeds {', '.join(map(str, seeds))} (cells: mean ± sample std over seeds)")
    )
    groups = ", ".join(md_escape(g) for g in dataset["group_names"])
    lines = [
        f"# fairdistill report — {md_escape(run['name'])}",
        "",
        f"Dataset **{md_escape(dataset['name'])}** ({dataset.get('num_classes', '?')} classes; attribute: "
        f"{md_escape(dataset.get('attr_label', 'attribute'))}; groups: {groups}). {seed_text}; checkpoint "
        f"selection: {md_escape(run.get('select', '—'))}.",
        "",
        "Definitions: the metrics in `docs/metrics.md`, the methods in `docs/methods.md` of the fairdistill "
        "repository.",
        "",
        *_verdict_markdown(metrics),
        "## Test split",
        "",
        to_markdown(comparison_table(metrics, "test")),
        "",
        "## Teacher → student bias amplification",
        "",
        _amplification_markdown(metrics),
        "",
        "## Validation split",
        "",
        to_markdown(comparison_table(metrics, "val")),
        "",
        "## Teacher → student",
        "",
        transfer_markdown(metrics, "test"),
        "",
        "## Per-group test accuracy",
        "",
    ]
    lines.append(to_markdown(group_accuracy_table(metrics, "test")))
    lines += ["", "## Training", "", "| model | selected epoch | epochs | train seconds |", "|---|---|---|---|"]
    for name, model in metrics["models"].items():
        runs = list(model["seeds"].values()) if model.get("seeds") else [model]
        lines.append(
            f"| {md_escape(name)} | {'/'.join(str(r.get('selected_epoch', '—')) for r in runs)} | "
            f"{'/'.join(str(len(r.get('history', []))) for r in runs)} | {model.get('train_seconds', 0.0):.1f} |"
        )
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{title}]({path})" for title, path in figures]
    if changes:
        lines += ["", "## What changed (test split)", ""]
        for pair in changes:
            other, reference = md_escape(pair.other), md_escape(pair.reference)
            lines += [
                f"**{other} vs {reference}**: {pair.fixed} examples right with {other} and wrong "
                f"with {reference}, {pair.broken} the other way round.",
                "",
                f"| group | examples | {other} right, {reference} wrong | {reference} right, {other} wrong |",
                "|---|---|---|---|",
            ]
            lines += [f"| {md_escape(g.group)} | {g.size} | {len(g.fixed)} | {len(g.broken)} |" for g in pair.groups]
            lines.append("")
    lines.append("")
    return "\n".join(lines)


def _verdict_markdown(metrics: dict[str, Any]) -> list[str]:
    """The verdict as a block quote, one sentence a line."""
    return ["> " + "  \n> ".join(md_escape(s) for s in verdict_sentences(metrics)), ""]


def _amplification_markdown(metrics: dict[str, Any]) -> str:
    grid = amplification_grid(metrics)
    if grid is None:
        return "_No teacher → student comparison in this run._"
    section = metrics["amplification"]
    flat = ComparisonTable(
        grid.headers,
        [[cell.replace("\n", " ") for cell in row] for row in grid.rows],
        grid.values,
        grid.higher_is_better,
        grid.notes,
    )
    return "\n".join(
        [
            to_markdown(flat),
            "",
            f"Δ = M(student) − M(teacher) on the {section['split']} split (lower M is fairer, so Δ > 0 means the "
            f"student amplifies the teacher's bias); {round(100 * section['confidence'])}% percentile interval over "
            f"{section['resamples']:,} paired bootstrap resamples of the test examples.",
        ]
    )
