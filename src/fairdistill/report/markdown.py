"""report.md: the comparison tables and per-group accuracies of a run, from its metrics.json content."""

from __future__ import annotations

from typing import Any, Sequence

from fairdistill.report.changes import PairChanges
from fairdistill.report.tables import (
    amplification_table,
    comparison_table,
    escape_cell,
    group_accuracy_table,
    to_markdown,
)
from fairdistill.report.transfer import transfer_markdown


def render_markdown(
    metrics: dict[str, Any], figures: Sequence[tuple[str, str]] = (), changes: Sequence[PairChanges] = ()
) -> str:
    """A Markdown report: run facts, test comparison and bias-amplification tables, val comparison, per-group
    test accuracy, training; then links to ``figures`` ((title, relative path)) and "what changed" counts."""
    dataset = metrics["dataset"]
    run = metrics["run"]
    seeds = run.get("seeds") or [run["seed"]]
    seed_text = f"Seed {seeds[0]}" if len(seeds) == 1 else (
        f"Seeds {', '.join(map(str, seeds))} (cells: mean ± sample std over seeds)")
    lines = [
        f"# fairdistill report — {run['name']}",
        "",
        f"Dataset **{dataset['name']}** ({dataset['num_classes']} classes; attribute: {dataset['attr_label']}; "
        f"groups: {', '.join(dataset['group_names'])}). {seed_text}; checkpoint selection: {run['select']}.",
        "",
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
            f"| {name} | {'/'.join(str(r.get('selected_epoch', '—')) for r in runs)} | "
            f"{'/'.join(str(len(r.get('history', []))) for r in runs)} | {model['train_seconds']:.1f} |"
        )
    if figures:
        lines += ["", "## Figures", ""]
        lines += [f"![{title}]({path})" for title, path in figures]
    if changes:
        lines += ["", "## What changed (test split)", ""]
        for pair in changes:
            lines += [
                f"**{pair.other} vs {pair.reference}**: {pair.fixed} examples right with {pair.other} and wrong "
                f"with {pair.reference}, {pair.broken} the other way round.",
                "",
                f"| group | examples | {pair.other} right, {pair.reference} wrong | "
                f"{pair.reference} right, {pair.other} wrong |",
                "|---|---|---|---|",
            ]
            lines += [f"| {escape_cell(g.group)} | {g.size} | {len(g.fixed)} | {len(g.broken)} |" for g in pair.groups]
            lines.append("")
    lines.append("")
    return "\n".join(lines)


def _amplification_markdown(metrics: dict[str, Any]) -> str:
    table = amplification_table(metrics)
    if table is None:
        return "_No teacher → student comparison in this run._"
    section = metrics["amplification"]
    return "\n".join([
        to_markdown(table),
        "",
        f"Δ = M(student) − M(teacher) on the {section['split']} split (lower M is fairer, so Δ > 0 means the "
        f"student amplifies the teacher's bias); {round(100 * section['confidence'])}% percentile interval over "
        f"{section['resamples']:,} paired bootstrap resamples of the test examples; relative Δ = Δ / M(teacher).",
    ])
