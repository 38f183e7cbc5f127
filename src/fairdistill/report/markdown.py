"""report.md: the comparison tables and per-group accuracies of a run, from its metrics.json content."""

from __future__ import annotations

from typing import Any

from fairdistill.report.tables import comparison_table, to_markdown


def render_markdown(metrics: dict[str, Any]) -> str:
    """A Markdown report: run facts, test and val comparison tables, per-group test accuracy per model."""
    dataset = metrics["dataset"]
    run = metrics["run"]
    lines = [
        f"# fairdistill report — {run['name']}",
        "",
        f"Dataset **{dataset['name']}** ({dataset['num_classes']} classes; attribute: {dataset['attr_label']}; "
        f"groups: {', '.join(dataset['group_names'])}). Seed {run['seed']}; checkpoint selection: {run['select']}.",
        "",
        "## Test split",
        "",
        to_markdown(comparison_table(metrics, "test")),
        "",
        "## Validation split",
        "",
        to_markdown(comparison_table(metrics, "val")),
        "",
        "## Per-group test accuracy",
        "",
    ]
    groups = dataset["group_names"]
    lines.append("| model | " + " | ".join(groups) + " |")
    lines.append("|---|" + "|".join("---" for _ in groups) + "|")
    for name, model in metrics["models"].items():
        accuracy = model["splits"]["test"]["group_accuracy"]
        cells = ["—" if accuracy.get(g) is None else f"{accuracy[g]:.4f}" for g in groups]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += ["", "## Training", "", "| model | selected epoch | epochs | train seconds |", "|---|---|---|---|"]
    for name, model in metrics["models"].items():
        lines.append(
            f"| {name} | {model.get('selected_epoch', '—')} | {len(model.get('history', []))} | "
            f"{model['train_seconds']:.1f} |"
        )
    lines.append("")
    return "\n".join(lines)
