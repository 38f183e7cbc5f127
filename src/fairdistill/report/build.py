"""Writes a run's report — ``figures/*.png``, ``report.html`` and ``report.md`` — from its directory.

Used at the end of a run and by ``fairdistill report RUN_DIR``: everything comes from ``metrics.json``'s
content and the saved test predictions, so a rebuilt report is the run's report. Example thumbnails need the
dataset; the caller passes a renderer when it has the data (``None``: the "what changed" counts without them).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fairdistill.atomic_io import atomic_path, write_text
from fairdistill.report.analysis import add_analysis, student_names, teacher_name
from fairdistill.report.changes import ExampleRenderer, comparison_pairs, pair_changes
from fairdistill.report.html import render_html
from fairdistill.report.markdown import render_markdown
from fairdistill.report.plots import run_figures
from fairdistill.report.rundir import FIGURES, load_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    figures: list[Path]


def write_report(run_dir: Path, metrics: dict[str, Any], renderer: ExampleRenderer | None = None) -> ReportFiles:
    """Draw the figures and write report.html and report.md into ``run_dir`` (atomically, file by file).

    When ``metrics`` lacks the ``amplification`` / ``margins`` sections (a run written before they existed)
    they are computed from the predictions for the report; metrics.json itself is not rewritten.
    """
    frames_by_seed = load_frames(run_dir, metrics, "test")
    if "margins" not in metrics or ("amplification" not in metrics and teacher_name(metrics) is not None):
        metrics = add_analysis(metrics, frames_by_seed, seed=next(iter(frames_by_seed)))
    frames = frames_by_seed[next(iter(frames_by_seed))]
    teacher, students = teacher_name(metrics), student_names(metrics)

    figures = run_figures(metrics, frames, teacher, students)
    paths = []
    for figure in figures:
        path = run_dir / FIGURES / f"{figure.name}.png"
        with atomic_path(path) as tmp:
            tmp.write_bytes(figure.png)
        paths.append(path)

    group_names = metrics["dataset"]["group_names"]
    changes = [pair_changes(frames[a], frames[b], group_names, a, b) for a, b in comparison_pairs(metrics)]
    extra = _transfer_table(metrics)
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    write_text(html_path, render_html(metrics, figures, changes, renderer, extra))
    figure_links = [(f.title, f"{FIGURES}/{f.name}.png") for f in figures]
    write_text(md_path, render_markdown(metrics, figures=figure_links, changes=changes))
    log.info("report written: %s (%d figures)", html_path, len(figures))
    return ReportFiles(html_path, md_path, paths)


def _transfer_table(metrics: dict[str, Any]) -> list:
    """The seeds/002 teacher-student table of :mod:`fairdistill.report.transfer`, when that module is present."""
    try:
        from fairdistill.report.transfer import transfer_table
    except ImportError:  # pragma: no cover - the module ships with the package
        return []
    table = transfer_table(metrics, "test")
    return [("transfer", "Teacher → student (percent, test; seeds/002 format)", table)] if table.rows else []
