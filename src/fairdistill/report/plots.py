"""The report's figures (matplotlib, Agg, PNG bytes), drawn from a run's metrics and its test predictions.

Figures are ``matplotlib.figure.Figure`` objects drawn by the Agg canvas directly (no pyplot): no global state
and no GUI backend, so drawing is safe in a worker process or a test. Every function returns the PNG as bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Any, Sequence

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fairdistill.evaluate.margins import FINAL_LAYER, layer_probabilities, wrong_example_margins

#: History keys drawn first, in this order; any other numeric per-epoch statistic follows.
_CURVE_ORDER = ("train_loss", "val_worst_group_acc", "val_acc")
_MAX_CURVES = 12


@dataclass(frozen=True)
class FigureFile:
    """One figure of the report: file stem, title, caption and PNG content."""

    name: str
    title: str
    caption: str
    png: bytes


def model_colours(names: Sequence[str]) -> dict[str, Any]:
    """A stable colour per model (tab10 in run order; the teacher is drawn in grey when named so)."""
    cmap = matplotlib.colormaps["tab10"]
    colours, k = {}, 0
    for name in names:
        if name == "teacher":
            colours[name] = "0.35"
        else:
            colours[name] = cmap(k % 10)
            k += 1
    return colours


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A matplotlib figure drawn by the Agg canvas (no pyplot, no global backend switch)."""
    fig = Figure(figsize=figsize, layout="constrained")  # no overlap of suptitle, titles and axis labels
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
    return buffer.getvalue()


def recall_disparity_png(metrics: dict[str, Any], split: str = "test") -> bytes:
    """Grouped bars: per class, recall disparity d_c of each model (± std over seeds when there are several)."""
    dataset = metrics["dataset"]
    classes = list(dataset["class_names"])
    names = list(metrics["models"])
    colours = model_colours(names)
    width = 0.8 / max(len(names), 1)
    fig = _new_figure(figsize=(max(7.0, 0.45 * len(classes) * max(len(names), 2)), 4.2))
    ax = fig.subplots()
    x = np.arange(len(classes))
    for i, name in enumerate(names):
        model = metrics["models"][name]
        values = model["splits"][split].get("recall_disparity", {})
        std = (model.get("splits_std", {}).get(split) or {}).get("recall_disparity") or {}
        heights = np.array([np.nan if values.get(c) is None else values[c] for c in classes], dtype=float)
        errors = np.array([0.0 if std.get(c) is None else std[c] for c in classes], dtype=float)
        mad = model["splits"][split].get("recall_disparity_mad")
        label = f"{name} (MAD {mad:.3f})" if mad is not None else name
        ax.bar(x + (i - (len(names) - 1) / 2) * width, np.nan_to_num(heights), width, label=label,
               color=colours[name], yerr=errors if std else None, capsize=2)
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, classes, rotation=30 if len(classes) > 6 else 0, ha="right" if len(classes) > 6 else "center")
    attrs = dataset["attr_names"]
    between = f"{attrs[1]} − {attrs[0]}" if len(attrs) == 2 else "max − min over values"
    ax.set_ylabel(f"recall disparity ({between})")
    ax.set_title(f"Per-class recall disparity by {dataset.get('attr_label', 'attribute')} ({split})")
    ax.legend(fontsize=8, ncols=min(len(names), 3))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def group_accuracy_png(metrics: dict[str, Any], split: str = "test") -> bytes:
    """Heatmap of accuracy, models × groups (mean over seeds), each cell annotated."""
    groups = list(metrics["dataset"]["group_names"])
    names = list(metrics["models"])
    accuracy = {n: metrics["models"][n]["splits"][split].get("group_accuracy") or {} for n in names}
    grid = np.array([[np.nan if accuracy[n].get(g) is None else accuracy[n][g] for g in groups] for n in names],
                    dtype=float)
    fig = _new_figure(figsize=(max(6.0, 0.9 * len(groups) + 2.5), 0.55 * len(names) + 1.8))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(groups)), groups, rotation=30 if len(groups) > 4 else 0,
                  ha="right" if len(groups) > 4 else "center")
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(groups)):
            text = "—" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color="black" if np.isnan(grid[i, j]) or 0.25 < grid[i, j] < 0.85 else "white")
    fig.colorbar(image, ax=ax, label="accuracy", fraction=0.04)
    ax.set_title(f"Per-group accuracy ({split})")
    return _png(fig)


def margins_by_layer_png(margins: dict[str, Any]) -> bytes:
    """Per model: mean confidence margin p(1) − p(2) of each layer, on all examples and on its worst group."""
    models = margins["models"]
    names = list(models)
    ncols = min(len(names), 4)
    nrows = -(-len(names) // ncols)
    fig = _new_figure(figsize=(3.2 * ncols + 0.5, 3.0 * nrows + 0.6))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharey=True, squeeze=False)).ravel()
    for ax, name in zip(axes, names):
        entry = models[name]
        layers = list(entry["layers"])
        x = np.arange(len(layers))
        everyone = [entry["layers"][layer]["all"] for layer in layers]
        worst = [np.nan if entry["layers"][layer]["worst_group"] is None else entry["layers"][layer]["worst_group"]
                 for layer in layers]
        ax.bar(x - 0.2, everyone, 0.4, label="all examples", color="#4c78a8")
        ax.bar(x + 0.2, np.nan_to_num(worst), 0.4, label="worst group", color="#e45756")
        ax.set_xticks(x, layers, rotation=20 if len(layers) > 2 else 0)
        group = entry.get("worst_group_name", entry["worst_group"])
        ax.set_title(f"{name}\nworst group {group} (n={entry['worst_group_size']})", fontsize=9)
        ax.set_ylim(0.0, 1.0)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(names):]:
        ax.set_visible(False)
    axes[0].set_ylabel("mean margin p(1) − p(2)")
    axes[0].legend(fontsize=8, loc="upper left")
    only_final = all(list(models[n]["layers"]) == [FINAL_LAYER] for n in names)
    note = " (no early readouts in these predictions: final layer only)" if only_final else ""
    fig.suptitle(f"Confidence margins by layer, {margins.get('split', 'test')}{note}", fontsize=10)
    return _png(fig)


def student_error_margins_png(frames: dict[str, pd.DataFrame], teacher: str, students: Sequence[str]) -> bytes:
    """Box plots: the teacher's and the student's final-layer margins on the examples each student gets wrong."""
    data, labels, colours = [], [], []
    for name in students:
        m = wrong_example_margins(frames[name], frames[teacher])
        if len(m["index"]) == 0:
            continue
        data += [m["teacher"], m["student"]]
        labels += [f"{teacher}\n({name} wrong)", f"{name}\n(n={len(m['index'])})"]
        colours += ["#bab0ac", "#4c78a8"]
    fig = _new_figure(figsize=(max(6.0, 1.1 * len(data) + 1.5), 4.2))
    ax = fig.subplots()
    if data:
        boxes = ax.boxplot(data, patch_artist=True, widths=0.6, showmeans=True)
        for patch, colour in zip(boxes["boxes"], colours):
            patch.set_facecolor(colour)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    else:
        ax.text(0.5, 0.5, "no student makes an error on this split", ha="center", va="center")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("margin p(1) − p(2)")
    ax.set_title("Teacher vs student confidence margins on the student's errors (test)")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def reliability_png(frames: dict[str, pd.DataFrame], n_bins: int = 15) -> bytes:
    """Reliability diagram: accuracy against mean confidence in equal-width confidence bins, per model."""
    names = list(frames)
    colours = model_colours(names)
    fig = _new_figure(figsize=(6.5, 5.0))
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=0.8, label="perfect calibration")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    for name in names:
        probs = layer_probabilities(frames[name])[FINAL_LAYER]
        confidence = probs.max(axis=1)
        correct = probs.argmax(axis=1) == frames[name]["y"].to_numpy()
        bins = np.clip(np.searchsorted(edges[1:-1], confidence, side="left"), 0, n_bins - 1)
        sizes = np.bincount(bins, minlength=n_bins)
        used = sizes > 0
        mean_conf = np.bincount(bins, weights=confidence, minlength=n_bins)[used] / sizes[used]
        accuracy = np.bincount(bins, weights=correct.astype(float), minlength=n_bins)[used] / sizes[used]
        ece = float(np.abs(accuracy - mean_conf) @ sizes[used] / sizes.sum())
        ax.plot(mean_conf, accuracy, marker="o", markersize=4, color=colours[name], label=f"{name} (ECE {ece:.3f})")
    lower = min(0.5, min(float(layer_probabilities(f)[FINAL_LAYER].max(axis=1).min()) for f in frames.values()))
    ax.set_xlim(max(0.0, lower - 0.05), 1.0)
    ax.set_ylim(0.0, 1.0)
    ax.set_xlabel("confidence (max probability)")
    ax.set_ylabel("accuracy")
    ax.set_title(f"Reliability diagram ({n_bins} bins, test)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return _png(fig)


def history_keys(metrics: dict[str, Any]) -> list[str]:
    """Numeric per-epoch statistics recorded by any model (train loss, validation scores, method statistics)."""
    seen: dict[str, None] = {}
    for history in _histories(metrics).values():
        for runs in history:
            for record in runs:
                for key, value in record.items():
                    if key != "epoch" and isinstance(value, (int, float)) and not isinstance(value, bool):
                        seen.setdefault(key)
    ordered = [k for k in _CURVE_ORDER if k in seen] + [k for k in seen if k not in _CURVE_ORDER]
    return ordered[:_MAX_CURVES]


def _histories(metrics: dict[str, Any]) -> dict[str, list[list[dict[str, Any]]]]:
    """Per model, the per-epoch history of each seed."""
    result = {}
    for name, model in metrics["models"].items():
        seeds = model.get("seeds")
        runs = [entry.get("history") or [] for entry in seeds.values()] if seeds else [model.get("history") or []]
        result[name] = [r for r in runs if r]
    return result


def training_curves_png(metrics: dict[str, Any]) -> bytes | None:
    """One panel per per-epoch statistic, one line per model (and seed); None when no model has a history."""
    keys = history_keys(metrics)
    if not keys:
        return None
    histories = _histories(metrics)
    colours = model_colours(list(metrics["models"]))
    ncols = min(len(keys), 3)
    nrows = -(-len(keys) // ncols)
    fig = _new_figure(figsize=(4.2 * ncols, 3.0 * nrows + 0.4))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, key in zip(axes, keys):
        for name, runs in histories.items():
            for k, records in enumerate(runs):
                points = [(r["epoch"], r[key]) for r in records
                          if isinstance(r.get(key), (int, float)) and not isinstance(r.get(key), bool)]
                if not points:
                    continue
                epochs, values = zip(*points)
                ax.plot(epochs, values, marker="o", markersize=3, color=colours[name], alpha=0.9 if k == 0 else 0.45,
                        label=name if k == 0 else None)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes[len(keys):]:
        ax.set_visible(False)
    axes[0].legend(fontsize=7)
    several = any(len(runs) > 1 for runs in histories.values())
    fig.suptitle("Per-epoch training curves" + (" (one line per seed)" if several else ""), fontsize=10)
    return _png(fig)


def pareto_front(x: Sequence[float], y: Sequence[float], x_higher: bool, y_higher: bool) -> np.ndarray:
    """Boolean mask of the points no other point dominates (at least as good on both axes, better on one)."""
    xs = np.asarray(x, dtype=float) * (1 if x_higher else -1)
    ys = np.asarray(y, dtype=float) * (1 if y_higher else -1)
    mask = np.ones(len(xs), dtype=bool)
    for i in range(len(xs)):
        if not (np.isfinite(xs[i]) and np.isfinite(ys[i])):
            mask[i] = False
            continue
        dominated = (xs >= xs[i]) & (ys >= ys[i]) & ((xs > xs[i]) | (ys > ys[i]))
        mask[i] = not dominated.any()
    return mask


def tradeoff_png(points: list[dict[str, Any]], title: str) -> bytes:
    """Sweep trade-offs: accuracy vs recall-disparity MAD and vs worst-group accuracy, one point per
    (grid point, model), labelled by the swept value; the Pareto front of the students is circled and joined."""
    names = list(dict.fromkeys(p["model"] for p in points))
    colours = model_colours(names)
    fig = _new_figure(figsize=(12.0, 5.0))
    axes = fig.subplots(1, 2)
    panels = (("recall_disparity_mad", "recall disparity MAD (lower is better)", False),
              ("worst_group_accuracy", "worst-group accuracy (higher is better)", True))
    for ax, (key, label, higher) in zip(axes, panels):
        students = [p for p in points if p.get("role") != "teacher"]
        for name in names:
            mine = [p for p in points if p["model"] == name]
            xs = [np.nan if p.get(key) is None else p[key] for p in mine]
            ys = [np.nan if p.get("accuracy") is None else p["accuracy"] for p in mine]
            teacher = mine and mine[0].get("role") == "teacher"
            ax.scatter(xs, ys, color=colours[name], marker="x" if teacher else "o", s=36, label=name, zorder=3)
            for (xv, yv), labels in _coincident_labels(mine, xs, ys).items():
                text = "every point" if len(labels) == len(mine) > 1 else ", ".join(labels)
                ax.annotate(text, (xv, yv), textcoords="offset points", xytext=(4, 4), fontsize=7)
        if students:
            xs = np.array([np.nan if p.get(key) is None else p[key] for p in students], dtype=float)
            ys = np.array([np.nan if p.get("accuracy") is None else p["accuracy"] for p in students], dtype=float)
            front = pareto_front(xs, ys, higher, True)
            if front.any():
                order = np.argsort(xs[front])
                ax.plot(xs[front][order], ys[front][order], color="black", linewidth=1, linestyle="--", zorder=2,
                        label="Pareto front (students)")
                ax.scatter(xs[front], ys[front], s=160, facecolors="none", edgecolors="black", zorder=4)
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy (test)")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title, fontsize=11)
    return _png(fig)


def _coincident_labels(points: list[dict[str, Any]], xs: list[float], ys: list[float]
                       ) -> dict[tuple[float, float], list[str]]:
    """The labels of the points drawn at each position (finite ones only), so that points on top of each other
    (e.g. a teacher loaded from one checkpoint at every grid point) get one readable label."""
    at: dict[tuple[float, float], list[str]] = {}
    for p, xv, yv in zip(points, xs, ys):
        if np.isfinite(xv) and np.isfinite(yv):
            at.setdefault((round(float(xv), 6), round(float(yv), 6)), []).append(str(p["label"]))
    return at


def run_figures(
    metrics: dict[str, Any], frames: dict[str, pd.DataFrame], teacher: str | None, students: Sequence[str]
) -> list[FigureFile]:
    """Every figure of a run's report. ``frames``: the (first seed's) test predictions of each model."""
    seeds = metrics.get("run", {}).get("seeds") or []
    first_seed = f" Per-example figures use seed {seeds[0]} of {len(seeds)}." if len(seeds) > 1 else ""
    figures = [
        FigureFile("recall_disparity", "Per-class recall disparity",
                   "Recall of each class for one attribute value minus the other (METHODS.md §7); bars near 0 "
                   "are fair. The legend gives each model's MAD (mean |disparity| over classes).",
                   recall_disparity_png(metrics)),
        FigureFile("group_accuracy", "Per-group accuracy",
                   "Test accuracy of every model on every (label, attribute) group; the worst cell of a row is "
                   "its worst-group accuracy.", group_accuracy_png(metrics)),
    ]
    if "margins" in metrics:
        figures.append(FigureFile(
            "confidence_margins", "Confidence margins by layer",
            "Mean p(1) − p(2) of each early readout and of the final layer, on all test examples and on the "
            "model's worst group (seeds/000)." + first_seed, margins_by_layer_png(metrics["margins"])))
    if teacher is not None and students:
        figures.append(FigureFile(
            "student_error_margins", "Teacher vs student margins on the student's errors",
            "Final-layer confidence margins of the teacher and of each student on the test examples that student "
            "misclassifies (box: quartiles; line: median; triangle: mean)." + first_seed,
            student_error_margins_png(frames, teacher, students)))
    figures.append(FigureFile(
        "reliability", "Reliability diagram",
        "Accuracy against mean confidence in 15 equal-width confidence bins (empty bins skipped)." + first_seed,
        reliability_png(frames)))
    curves = training_curves_png(metrics)
    if curves is not None:
        figures.append(FigureFile(
            "training_curves", "Per-epoch curves",
            "Training loss, validation scores and any per-epoch statistic a method records, per model.", curves))
    return figures
