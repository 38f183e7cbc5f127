"""The sweep report: ``sweep.html`` (self-contained: inline CSS, the trade-off plot as a data URI) and
``sweep.md`` (linking ``tradeoff.png``), written next to sweep.json.

Both hold the sweep's facts, the trade-off plot and one table row per (grid point, model) with the headline test
metrics and their 95% bootstrap intervals; rows of models reused from an earlier point (not retrained) say so.

The intervals are percentile intervals over bootstrap resamples of the test examples, computed from each run's
saved predictions with the resampling of :mod:`fairdistill.evaluate.amplification` (with several seeds the
metric of a resample is the mean over seeds, as for the amplification intervals).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from fairdistill.atomic_io import write_text
from fairdistill.evaluate.amplification import LabelArrays
from fairdistill.evaluate.amplification import model_intervals as evaluated_intervals
from fairdistill.report.html import _CSS, _JS, _data_uri, _e, table_html
from fairdistill.report.tables import ComparisonTable, md_escape, to_markdown

log = logging.getLogger(__name__)

#: Bootstrap resamples and confidence of the per-model intervals.
RESAMPLES = 1000
CONFIDENCE = 0.95

#: The table's metric columns: title, key, higher is better.
COLUMNS = (
    ("accuracy", "accuracy", True),
    ("worst-group acc", "worst_group_accuracy", True),
    ("MAD", "recall_disparity_mad", False),
    ("EO diff", "eo_difference", False),
)
#: Metrics that get an interval.
INTERVAL_KEYS = ("accuracy", "worst_group_accuracy", "recall_disparity_mad", "eo_difference")


def model_intervals(
    labels: LabelArrays, preds: list[Any], *, resamples: int = RESAMPLES, confidence: float = CONFIDENCE, seed: int = 0
) -> dict[str, list[float] | None]:
    """Percentile bootstrap intervals of accuracy, worst-group accuracy, recall-disparity MAD and EO difference of
    one model (``preds``: its predicted classes, one array per seed), as ``[low, high]``; ``None`` where a metric
    is undefined (computed by :func:`fairdistill.evaluate.amplification.model_intervals`)."""
    intervals = evaluated_intervals(
        labels, preds, resamples=resamples, confidence=confidence, seed=seed, metrics=INTERVAL_KEYS
    )
    return {
        key: None if entry["ci_low"] is None or entry["ci_high"] is None else [entry["ci_low"], entry["ci_high"]]
        for key, entry in intervals.items()
    }


def run_intervals(
    run_dir: Path, metrics: dict[str, Any], *, resamples: int = RESAMPLES, confidence: float = CONFIDENCE
) -> dict[str, dict[str, list[float] | None]]:
    """Per model of a finished run: :func:`model_intervals` on its test predictions (``{}`` with a warning when
    the predictions cannot be read)."""
    from fairdistill.errors import FairdistillError
    from fairdistill.rundir import load_frames

    try:
        frames = load_frames(run_dir, metrics, "test")
        seeds = list(frames)
        reference = next(iter(frames[seeds[0]].values()))
        dataset = metrics["dataset"]
        labels = LabelArrays.from_predictions(reference, dataset)
        return {
            name: model_intervals(
                labels,
                [frames[s][name]["pred"] for s in seeds],
                resamples=resamples,
                confidence=confidence,
                seed=seeds[0],
            )
            for name in frames[seeds[0]]
        }
    except (FairdistillError, OSError, ValueError, KeyError) as exc:
        log.warning("sweep report: no intervals for %s (%s)", run_dir.name, exc)
        return {}


def _cell(entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    if value is None or not math.isfinite(value):
        return "—"
    interval = (entry.get("interval") or {}).get(key)
    return f"{value:.4f} [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else f"{value:.4f}"


def report_table(document: dict[str, Any]) -> tuple[ComparisonTable, list[int]]:
    """The report's table (metric [95% interval] per cell, where trained) and the positions of reused rows."""
    rows: list[list[str]] = []
    values: list[list[float | None]] = []
    reused_rows: list[int] = []
    for point in document["points"]:
        for name, entry in point["models"].items():
            reused = entry.get("reused_from")
            if reused:
                reused_rows.append(len(rows))
            rows.append(
                [
                    point["label"],
                    entry.get("display") or name,
                    *(_cell(entry, key) for _, key, _ in COLUMNS),
                    f"reused from {reused}" if reused else (point.get("run_dir") or "—"),
                ]
            )
            values.append([None, None, *(entry.get(key) for _, key, _ in COLUMNS), None])
    table = ComparisonTable(
        ["point", "model", *(title for title, _, _ in COLUMNS), "trained in"],
        rows,
        values,
        [None, None, *(higher for _, _, higher in COLUMNS), None],
        notes=(
            (
                f"Test split. Brackets: {CONFIDENCE:.0%} percentile bootstrap intervals over {RESAMPLES} resamples "
                'of the test examples. "reused from pK": the model did not change at this point and was not '
                "retrained; its numbers are those of point pK."
            ),
        ),
    )
    return table, reused_rows


def _facts(document: dict[str, Any]) -> list[str]:
    points = document["points"]
    runs = [p for p in points if p.get("run_dir")]
    rows = [e for p in points for e in p["models"].values()]
    reused = sum(1 for e in rows if e.get("reused_from"))
    trained = sum(len(p.get("trained", [])) for p in points)
    grid = "; ".join(f"{path} = {', '.join(map(str, values))}" for path, values in document["grid"].items())
    facts = [f"config: {document['config']}", f"grid: {grid}"]
    if document.get("overrides"):
        facts.append(f"overrides: {' '.join(document['overrides'])}")
    facts.append(
        f"{len(points)} points, {len(runs)} runs, {trained} models trained, {reused} of {len(rows)} "
        f"rows reused from an earlier point" + (f", {document['seconds']:.1f} s" if "seconds" in document else "")
    )
    return facts


_PLOT_CAPTION = (
    "Test accuracy against recall-disparity MAD (left), worst-group accuracy (middle) and equalized-odds "
    "difference (right), one marker per (grid point, model), labelled by the swept value (post-processed "
    "models: triangles; peers, the non-distilled references: diamonds); bars: 95% bootstrap intervals; the "
    "dashed line and rings mark the Pareto front of every model but the teacher."
)


def render_sweep_html(document: dict[str, Any], png: bytes) -> str:
    table, reused_rows = report_table(document)
    classes = {(i, j): "reused" for i in reused_rows for j in range(len(table.headers))}
    facts = "".join(f'<p class="facts">{_e(f)}</p>' for f in _facts(document))
    runs = "".join(
        f'<li>{_e(p["label"])}: <a href="{_e(p["run_dir"])}/report.html">{_e(p["run_dir"])}</a></li>'
        if p.get("run_dir")
        else f"<li>{_e(p['label'])}: no run (every model reused)</li>"
        for p in document["points"]
    )
    css = _CSS + "td.reused { color: var(--muted); font-style: italic; }\n"
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_e(document["name"])}: sweep'
        f"</title><style>{css}</style></head><body>\n<h1>{_e(document['name'])}: sweep</h1>{facts}\n"
        f'<h2>Trade-off</h2><figure><img alt="trade-off plot" src="{_data_uri(png)}">'
        f"<figcaption>{_e(_PLOT_CAPTION)}</figcaption></figure>\n"
        f"<h2>Results</h2>{table_html(table, 'sweep', highlight=True, text_columns=2, cell_classes=classes)}\n"
        f"<h2>Runs</h2><ul>{runs}</ul>\n<script>{_JS}</script></body></html>\n"
    )


def render_sweep_markdown(document: dict[str, Any], figure: str = "tradeoff.png") -> str:
    table, _ = report_table(document)
    runs = [
        f"- {md_escape(p['label'])}: [{md_escape(p['run_dir'])}]({p['run_dir']}/report.md)"
        if p.get("run_dir")
        else f"- {md_escape(p['label'])}: no run (every model reused)"
        for p in document["points"]
    ]
    return "\n".join(
        [
            f"# {md_escape(document['name'])}: sweep",
            "",
            *(f"- {md_escape(f)}" for f in _facts(document)),
            "",
            "## Trade-off",
            "",
            f"![trade-off plot]({figure})",
            "",
            md_escape(_PLOT_CAPTION),
            "",
            "## Results",
            "",
            to_markdown(table),
            "",
            "## Runs",
            "",
            *runs,
            "",
        ]
    )


def write_sweep_report(sweep_dir: Path, document: dict[str, Any], png: bytes) -> tuple[Path, Path]:
    """Write sweep.html and sweep.md into the sweep directory; returns their paths."""
    html_path, md_path = sweep_dir / "sweep.html", sweep_dir / "sweep.md"
    write_text(html_path, render_sweep_html(document, png))
    write_text(md_path, render_sweep_markdown(document, document.get("figure", "tradeoff.png")))
    return html_path, md_path
