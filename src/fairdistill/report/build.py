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

from fairdistill.atomic_io import atomic_path
from fairdistill.errors import FairdistillError
from fairdistill.evaluate.analysis import add_analysis, student_names, teacher_name
from fairdistill.report.changes import ExampleRenderer, comparison_pairs, pair_changes
from fairdistill.report.html import render_html
from fairdistill.report.markdown import render_markdown
from fairdistill.report.plots import run_figures
from fairdistill.rundir import FIGURES, load_frames

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReportFiles:
    html: Path
    markdown: Path
    figures: list[Path]


def write_report(run_dir: Path, metrics: dict[str, Any], renderer: ExampleRenderer | None = None) -> ReportFiles:
    """Draw the figures and write report.html and report.md into ``run_dir`` (atomically, file by file).

    When ``metrics`` lacks the ``amplification`` / ``intervals`` / ``margins`` sections (a run written before they
    existed)
    they are computed from the predictions for the report; metrics.json itself is not rewritten. Everything is
    rendered first and every output path checked before the first file is written: a blocked path (``figures``
    a file, ``report.html`` a directory) raises a FairdistillError naming it and leaves the run directory as it was.
    """
    frames_by_seed = load_frames(run_dir, metrics, "test")
    if (
        "margins" not in metrics
        or "intervals" not in metrics
        or ("amplification" not in metrics and teacher_name(metrics) is not None)
    ):
        metrics = add_analysis(metrics, frames_by_seed, seed=next(iter(frames_by_seed)))
    frames = frames_by_seed[next(iter(frames_by_seed))]
    teacher, students = teacher_name(metrics), student_names(metrics)

    figures = run_figures(metrics, frames, teacher, students)
    group_names = metrics["dataset"]["group_names"]
    changes = [pair_changes(frames[a], frames[b], group_names, a, b) for a, b in comparison_pairs(metrics)]
    figure_links = [(f.title, f"{FIGURES}/{f.name}.png") for f in figures]
    html_path, md_path = run_dir / "report.html", run_dir / "report.md"
    figure_paths = [run_dir / FIGURES / f"{f.name}.png" for f in figures]
    outputs = dict(zip(figure_paths, (f.png for f in figures), strict=True))
    outputs[html_path] = render_html(metrics, figures, changes, renderer, _transfer_table(metrics)).encode("utf-8")
    outputs[md_path] = render_markdown(metrics, figures=figure_links, changes=changes).encode("utf-8")

    for path in outputs:
        check_writable(run_dir, path)
    for path, content in outputs.items():
        _write(path, content)
    log.info("report written: %s (%d figures)", html_path, len(figures))
    return ReportFiles(html_path, md_path, figure_paths)


def check_writable(run_dir: Path, path: Path) -> None:
    """Raises a FairdistillError when ``path`` (inside ``run_dir``) cannot be written as a file: it is a
    directory or something else, or one of its folders below ``run_dir`` is not a directory."""
    for folder in reversed(path.relative_to(run_dir).parents[:-1]):
        where = run_dir / folder
        if where.exists() and not where.is_dir():
            raise FairdistillError(f"{where}: cannot write the report's files into it: it is not a directory")
    if path.exists() and not path.is_file():
        kind = "a directory" if path.is_dir() else "not a regular file"
        raise FairdistillError(f"{path}: cannot write the report here: it is {kind}")


def _write(path: Path, content: bytes) -> None:
    try:
        with atomic_path(path) as tmp:
            tmp.write_bytes(content)
    except OSError as exc:
        raise FairdistillError(f"{path}: cannot write ({exc.strerror or exc})") from None


def _transfer_table(metrics: dict[str, Any]) -> list:
    """The teacher-student table of :mod:`fairdistill.report.transfer`, when that module is present."""
    try:
        from fairdistill.report.transfer import transfer_table
    except ImportError:  # pragma: no cover - the module ships with the package
        return []
    table = transfer_table(metrics, "test")
    return [("transfer", "Teacher → student (percent, test)", table)] if table.rows else []
