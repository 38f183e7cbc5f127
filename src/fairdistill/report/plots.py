"""The report's figures (matplotlib, Agg, PNG bytes), drawn from a run's metrics and its test predictions.

Figures are ``matplotlib.figure.Figure`` objects drawn by the Agg canvas directly (no pyplot): no global state
and no GUI backend, so drawing is safe in a worker process or a test. Every function returns the PNG as bytes.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.text import Text

from fairdistill.evaluate.margins import FINAL_LAYER, layer_probabilities, wrong_example_margins
from fairdistill.evaluate.metrics import reliability_bins
from fairdistill.report.tables import display_name

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
    colours: dict[str, Any] = {}
    k = 0
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
        ax.bar(
            x + (i - (len(names) - 1) / 2) * width,
            np.nan_to_num(heights),
            width,
            label=label,
            color=colours[name],
            yerr=errors if std else None,
            capsize=2,
        )
    ax.axhline(0.0, color="black", linewidth=0.8)
    ax.set_xticks(x, classes, rotation=30 if len(classes) > 6 else 0, ha="right" if len(classes) > 6 else "center")
    attrs = dataset["attr_names"]
    between = f"{attrs[1]} − {attrs[0]}" if len(attrs) == 2 else "max − min over values"
    ax.set_ylabel(f"recall disparity ({between})")
    ax.set_title(f"Per-class recall disparity by {dataset.get('attr_label', 'attribute')} ({split})")
    fig.legend(*ax.get_legend_handles_labels(), loc="outside lower center", fontsize=8, ncols=min(len(names), 4))
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def group_accuracy_png(metrics: dict[str, Any], split: str = "test") -> bytes:
    """Heatmap of accuracy, models × groups (mean over seeds), each cell annotated."""
    groups = list(metrics["dataset"]["group_names"])
    names = list(metrics["models"])
    accuracy = {n: metrics["models"][n]["splits"][split].get("group_accuracy") or {} for n in names}
    grid = np.array(
        [[np.nan if accuracy[n].get(g) is None else accuracy[n][g] for g in groups] for n in names], dtype=float
    )
    fig = _new_figure(figsize=(max(6.0, 0.9 * len(groups) + 2.5), 0.55 * len(names) + 1.8))
    ax = fig.subplots()
    image = ax.imshow(np.ma.masked_invalid(grid), cmap="RdYlGn", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(
        range(len(groups)), groups, rotation=30 if len(groups) > 4 else 0, ha="right" if len(groups) > 4 else "center"
    )
    ax.set_yticks(range(len(names)), names)
    for i in range(len(names)):
        for j in range(len(groups)):
            text = "—" if np.isnan(grid[i, j]) else f"{grid[i, j]:.2f}"
            ax.text(
                j,
                i,
                text,
                ha="center",
                va="center",
                fontsize=8,
                color="black" if np.isnan(grid[i, j]) or 0.25 < grid[i, j] < 0.85 else "white",
            )
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
    for ax, name in zip(axes, names, strict=False):
        entry = models[name]
        layers = list(entry["layers"])
        x = np.arange(len(layers))
        everyone = [entry["layers"][layer]["all"] for layer in layers]
        worst = [
            np.nan if entry["layers"][layer]["worst_group"] is None else entry["layers"][layer]["worst_group"]
            for layer in layers
        ]
        ax.bar(x - 0.2, everyone, 0.4, label="all examples", color="#4c78a8")
        ax.bar(x + 0.2, np.nan_to_num(worst), 0.4, label="worst group", color="#e45756")
        ax.set_xticks(x, layers, rotation=20 if len(layers) > 2 else 0)
        group = entry.get("worst_group_name", entry["worst_group"])
        ax.set_title(f"{name}\nworst group {group} (n={entry['worst_group_size']})", fontsize=9)
        ax.set_ylim(0.0, 1.0)
        ax.grid(axis="y", alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    axes[0].set_ylabel("mean margin p(1) − p(2)")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="outside lower center", fontsize=8, ncols=2)
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
        for patch, colour in zip(boxes["boxes"], colours, strict=True):
            patch.set_facecolor(colour)
        ax.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
    else:
        ax.text(0.5, 0.5, "no student makes an error on this split", ha="center", va="center")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("margin p(1) − p(2)")
    ax.set_title("Teacher vs student confidence margins on the student's errors (test)")
    ax.grid(axis="y", alpha=0.3)
    return _png(fig)


def _reliability_bins(frame: pd.DataFrame, n_bins: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Per non-empty confidence bin: mean confidence, accuracy and size; and the expected calibration error."""
    return reliability_bins(frame["y"].to_numpy(), layer_probabilities(frame)[FINAL_LAYER], n_bins)


def reliability_png(frames: dict[str, pd.DataFrame], n_bins: int = 15, teacher: str | None = None) -> bytes:
    """Reliability diagrams as small multiples, one panel per model: accuracy against mean confidence in
    equal-width bins (marker area ∝ bin size), the diagonal, and the teacher's curve in grey for reference."""
    names = list(frames)
    colours = model_colours(names)
    ncols = min(len(names), 4)
    nrows = -(-len(names) // ncols)
    fig = _new_figure(figsize=(3.0 * ncols + 0.4, 2.9 * nrows + 0.5))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, sharex=True, sharey=True, squeeze=False)).ravel()
    curves = {name: _reliability_bins(frames[name], n_bins) for name in names}
    lower = min(0.5, min(float(layer_probabilities(f)[FINAL_LAYER].max(axis=1).min()) for f in frames.values()))
    for ax, name in zip(axes, names, strict=False):
        ax.plot([0, 1], [0, 1], color="black", linestyle="--", linewidth=0.8)
        if teacher is not None and teacher in curves and name != teacher:
            t_conf, t_acc, _, _ = curves[teacher]
            ax.plot(t_conf, t_acc, color="0.6", linewidth=1.0, label=f"{teacher} (reference)")
        conf, acc, sizes, ece = curves[name]
        ax.plot(conf, acc, color=colours[name], linewidth=1.2)
        ax.scatter(conf, acc, s=8 + 120 * sizes / sizes.max(), color=colours[name], zorder=3)
        ax.set_title(f"{name}: ECE {ece:.3f}", fontsize=9)
        ax.set_xlim(max(0.0, lower - 0.05), 1.02)
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    for ax in axes[len(names) :]:
        ax.set_visible(False)
    for ax in axes[::ncols]:
        ax.set_ylabel("accuracy", fontsize=8)
    for ax in axes[(nrows - 1) * ncols :]:
        ax.set_xlabel("confidence (max probability)", fontsize=8)
    fig.suptitle(
        f"Reliability ({n_bins} bins, test); dashed: perfect calibration"
        + (f"; grey: {teacher}" if teacher in curves else ""),
        fontsize=10,
    )
    return _png(fig)


def history_keys(metrics: dict[str, Any]) -> list[str]:
    """Numeric per-epoch statistics recorded by any model (train loss, validation scores, method statistics)."""
    seen: dict[str, None] = {}
    for history in _histories(metrics).values():
        for runs in history:
            for record in runs:
                for key, value in record.items():
                    if key != "epoch" and _is_number(value):
                        seen.setdefault(key)
    ordered = [k for k in _CURVE_ORDER if k in seen] + [k for k in seen if k not in _CURVE_ORDER]
    return ordered[:_MAX_CURVES]


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def constant_history_keys(metrics: dict[str, Any]) -> list[str]:
    """The per-epoch statistics with a single value over every model, seed and epoch (panels not worth drawing)."""
    values: dict[str, set[float]] = {}
    for runs in _histories(metrics).values():
        for records in runs:
            for record in records:
                for key, value in record.items():
                    if key != "epoch" and _is_number(value):
                        values.setdefault(key, set()).add(round(float(value), 12))
    return [key for key in history_keys(metrics) if len(values.get(key, ())) <= 1]


def _histories(metrics: dict[str, Any]) -> dict[str, list[list[dict[str, Any]]]]:
    """Per model, the per-epoch history of each seed."""
    result = {}
    for name, model in metrics["models"].items():
        seeds = model.get("seeds")
        runs = [entry.get("history") or [] for entry in seeds.values()] if seeds else [model.get("history") or []]
        result[name] = [r for r in runs if r]
    return result


def _selected_epochs(metrics: dict[str, Any]) -> dict[str, list[Any]]:
    """Per model, the selected epoch of each seed that has a history (None where not recorded)."""
    result = {}
    for name, model in metrics["models"].items():
        seeds = model.get("seeds")
        entries = list(seeds.values()) if seeds else [model]
        result[name] = [entry.get("selected_epoch") for entry in entries if entry.get("history")]
    return result


def training_curves_png(metrics: dict[str, Any]) -> bytes | None:
    """One panel per per-epoch statistic that varies, one line per model (and seed), the selected epoch ringed;
    None when no model has a history or nothing varies."""
    constant = set(constant_history_keys(metrics))
    keys = [k for k in history_keys(metrics) if k not in constant]
    if not keys:
        return None
    histories, selected = _histories(metrics), _selected_epochs(metrics)
    colours = model_colours(list(metrics["models"]))
    ncols = min(len(keys), 3)
    nrows = -(-len(keys) // ncols)
    fig = _new_figure(figsize=(4.2 * ncols, 3.0 * nrows + 0.8))
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).ravel()
    for ax, key in zip(axes, keys, strict=False):
        for name, runs in histories.items():
            for k, records in enumerate(runs):
                points = [(r["epoch"], r[key]) for r in records if _is_number(r.get(key))]
                if not points:
                    continue
                epochs, values = zip(*points, strict=True)
                ax.plot(
                    epochs,
                    values,
                    marker="o",
                    markersize=3,
                    color=colours[name],
                    alpha=0.9 if k == 0 else 0.45,
                    label=name if k == 0 else None,
                )
                chosen = selected[name][k] if k < len(selected[name]) else None
                if chosen in epochs:
                    ax.scatter(
                        [chosen],
                        [values[epochs.index(chosen)]],
                        s=90,
                        facecolors="none",
                        edgecolors=colours[name],
                        linewidths=1.5,
                        zorder=4,
                    )
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("epoch", fontsize=8)
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    for ax in axes[len(keys) :]:
        ax.set_visible(False)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1 : len(keys)]:  # a method's own statistic has its model only in its panel
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            if label not in labels:
                handles.append(handle)
                labels.append(label)
    fig.legend(handles, labels, loc="outside lower center", fontsize=8, ncols=min(len(labels), 6))
    several = any(len(runs) > 1 for runs in histories.values())
    fig.suptitle(
        "Per-epoch curves; ring: the selected epoch" + (" (one line per seed)" if several else ""), fontsize=10
    )
    return _png(fig)


#: Marker of each role in the run's Pareto plot (and of the post-processed models and peers in a sweep's).
ROLE_MARKERS = {"teacher": "X", "student": "o", "postprocessed": "^", "reduced": "s", "peer": "D"}
#: How the legends name each role.
ROLE_NAMES = {
    "teacher": "teacher",
    "student": "student",
    "postprocessed": "post-processed (ThresholdOptimizer)",
    "reduced": "distilled in ExponentiatedGradient",
    "peer": "peer (not distilled)",
}


def role_colours(metrics: dict[str, Any]) -> dict[str, Any]:
    """:func:`model_colours` for the models of a run, a post-processed model drawn in the colour of its source."""
    models = metrics["models"]
    own = model_colours([n for n, m in models.items() if m.get("role") != "postprocessed"])
    return {n: own.get(str(m.get("source")), "0.5") if n not in own else own[n] for n, m in models.items()}


def _front_label(roles: Sequence[Any]) -> str:
    """The legend of the Pareto front: of the students, and of the post-processed models and peers drawn."""
    shown_kinds = (("post-processed", "postprocessed"), ("reduced", "reduced"), ("peers", "peer"))
    kinds = [k for k, shown in shown_kinds if shown in roles]
    return f"Pareto front (students{''.join(f', {k}' for k in kinds)})"


def run_pareto_png(metrics: dict[str, Any]) -> bytes | None:
    """The run's trade-offs: accuracy against worst-group accuracy, against MAD and against EO difference, one
    point per model (teacher, students, post-processed models, peers; marker by role) with its bootstrap
    intervals (``intervals`` section) as error bars, and the Pareto front of every model but the teacher ringed
    and joined; every point labelled (models at one place share a label). None without the section."""
    section = metrics.get("intervals")
    if not section or not section.get("models"):
        return None
    entries = section["models"]
    names = list(entries)
    models = metrics["models"]
    colours = role_colours(metrics)
    roles = {name: models.get(name, {}).get("role", "student") for name in names}
    labels = [display_name(name, models.get(name)) for name in names]
    fig = _new_figure(figsize=(17.0, 5.4))
    axes = fig.subplots(1, 3, sharey=True)
    panels = (
        ("worst_group_accuracy", "worst-group accuracy (higher is better)", True),
        ("recall_disparity_mad", "recall disparity MAD (lower is better)", False),
        ("eo_difference", "equalized-odds difference (lower is better)", False),
    )
    all_texts = []
    for ax, (key, label, higher) in zip(axes, panels, strict=True):
        xs = np.array([_pareto_value(metrics, entries[n], n, key) for n in names])
        ys = np.array([_interval_value(entries[n], "accuracy") for n in names])
        for name, xv, yv in zip(names, xs, ys, strict=True):
            if not (np.isfinite(xv) and np.isfinite(yv)):
                continue
            role = roles[name]
            ax.errorbar(
                [xv],
                [yv],
                xerr=_bar(entries[name], key),
                yerr=_bar(entries[name], "accuracy"),
                fmt=ROLE_MARKERS.get(role, "o"),
                markersize=9 if role == "teacher" else 6,
                color=colours.get(name, "0.5"),
                ecolor=colours.get(name, "0.5"),
                elinewidth=1.0,
                capsize=2,
                alpha=0.9,
                zorder=4 if role == "teacher" else 3,
            )
        compared = np.array([roles[n] != "teacher" for n in names])
        _draw_front(ax, np.where(compared, xs, np.nan), np.where(compared, ys, np.nan), higher)
        ax.margins(0.12)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
        fig.canvas.draw()
        texts = []
        left, right = ax.get_xlim()
        for (xv, yv), at in _places(labels, xs, ys).items():
            to_left = (xv - left) > 0.6 * (right - left)
            text = ax.annotate(
                ", ".join(at),
                (xv, yv),
                textcoords="offset points",
                xytext=(-7 if to_left else 7, 5),
                ha="right" if to_left else "left",
                fontsize=8,
                zorder=6,
                arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5, "shrinkA": 0, "shrinkB": 4},
            )
            text.set_in_layout(False)
            texts.append(text)
        all_texts.append(texts)
    axes[0].set_ylabel("accuracy (test)")
    shown_roles = [r for r in ROLE_MARKERS if r in roles.values() or r in ("teacher", "student")]
    handles = [
        Line2D(
            [],
            [],
            marker=ROLE_MARKERS[r],
            linestyle="none",
            color="0.35",
            markersize=8 if r == "teacher" else 6,
            label=ROLE_NAMES[r],
        )
        for r in shown_roles
    ]
    handles.append(
        Line2D(
            [],
            [],
            color="black",
            linestyle="--",
            linewidth=1,
            marker="o",
            markersize=10,
            markerfacecolor="none",
            markeredgecolor="black",
            label=_front_label(list(roles.values())),
        )
    )
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), fontsize=8)
    level = round(100 * section.get("confidence", 0.95))
    fig.suptitle(
        f"Accuracy vs fairness ({section.get('split', 'test')}; bars: {level}% bootstrap intervals over "
        f"{section.get('resamples', 0):,} resamples of the test examples)",
        fontsize=10,
    )
    fig.canvas.draw()
    for texts in all_texts:
        _spread_labels(fig, texts)
    return _png(fig)


def _pareto_value(metrics: dict[str, Any], entry: dict[str, Any], name: str, key: str) -> float:
    """A model's value of ``key`` for the Pareto plot: from its ``intervals`` entry, else (a metric without an
    interval, such as the EO difference) its test value in ``models``."""
    if key in entry:
        return _interval_value(entry, key)
    value = metrics["models"].get(name, {}).get("splits", {}).get("test", {}).get(key)
    return np.nan if value is None or isinstance(value, (dict, list)) else float(value)


def _interval_value(entry: dict[str, Any], key: str) -> float:
    value = (entry.get(key) or {}).get("value")
    return np.nan if value is None else float(value)


def _bar(entry: dict[str, Any], key: str) -> list[list[float]] | None:
    """Asymmetric error bar ``[[below], [above]]`` of a metric's interval, None without one."""
    item = entry.get(key) or {}
    value, low, high = item.get("value"), item.get("ci_low"), item.get("ci_high")
    if value is None or low is None or high is None:
        return None
    return [[max(0.0, value - low)], [max(0.0, high - value)]]


def _places(names: Sequence[str], xs: np.ndarray, ys: np.ndarray) -> dict[tuple[float, float], list[str]]:
    """The models drawn at each (finite) position, so that points on top of each other share one label."""
    at: dict[tuple[float, float], list[str]] = {}
    for name, xv, yv in zip(names, xs, ys, strict=True):
        if np.isfinite(xv) and np.isfinite(yv):
            at.setdefault((round(float(xv), 6), round(float(yv), 6)), []).append(name)
    return at


def pareto_front(
    x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray, x_higher: bool, y_higher: bool
) -> np.ndarray:
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


#: Marker of each student in the trade-off plot (in run order; the teacher is an ``x``).
_STUDENT_MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*", "<", ">", "h", "p")


def tradeoff_png(points: list[dict[str, Any]], title: str) -> bytes:
    """Sweep trade-offs: accuracy vs recall-disparity MAD, vs worst-group accuracy and vs EO difference, one point
    per (grid point, model), labelled by the swept value; the Pareto front of every model but the teacher
    (students, post-processed models, peers) is ringed and joined. A post-processed model is drawn as a triangle
    and a peer as a diamond; a point's ``display`` names its model in the legend (a peer's label).

    Every model has its own colour and marker, later models drawn smaller and on top (the teacher's thin ``x`` on
    top of all), so points at one place stay visible; a point's optional ``interval`` (``{metric: [low, high]}``)
    is drawn as error bars. Labels at one place are merged (``every point`` when a model sits there at every grid
    point; one ``models: labels`` line per distinct label when several models share the place) and pushed apart
    so none overprints another; the legend, Pareto front included, sits outside the axes."""
    names = list(dict.fromkeys(p["model"] for p in points))
    colours = model_colours(names)
    markers, k = {}, 0
    roles = {p["model"]: p.get("role") for p in points}
    shown = {
        name: next((p["display"] for p in points if p["model"] == name and p.get("display")), name) for name in names
    }
    for name in names:
        if any(p.get("role") == "teacher" for p in points if p["model"] == name):
            markers[name] = "x"
        elif roles[name] in ("postprocessed", "reduced", "peer"):
            markers[name] = ROLE_MARKERS[str(roles[name])]
        else:
            markers[name] = _STUDENT_MARKERS[k % len(_STUDENT_MARKERS)]
            k += 1
    fig = _new_figure(figsize=(19.0, 5.2))
    axes = fig.subplots(1, 3)
    panels = (
        ("recall_disparity_mad", "recall disparity MAD (lower is better)", False),
        ("worst_group_accuracy", "worst-group accuracy (higher is better)", True),
        ("eo_difference", "equalized-odds difference (lower is better)", False),
    )
    panel_texts: list[list[Any]] = []
    for ax, (key, label, higher) in zip(axes, panels, strict=True):
        students = [p for p in points if p.get("role") != "teacher"]
        places: dict[tuple[float, float], dict[str, list[str]]] = {}
        for rank, name in enumerate(names):
            mine = [p for p in points if p["model"] == name]
            xs = [_value(p, key) for p in mine]
            ys = [_value(p, "accuracy") for p in mine]
            teacher = markers[name] == "x"
            size = 70 if teacher else max(24.0, 80.0 - 10.0 * rank)
            ax.scatter(
                xs,
                ys,
                color=colours[name],
                marker=markers[name],
                s=size,
                label=shown[name],
                zorder=4.5 if teacher else 3 + 0.01 * rank,
                linewidths=1.5 if teacher else 0.6,
                edgecolors=None if teacher else "white",
                alpha=0.9,
            )
            _error_bars(ax, mine, xs, ys, key, colours[name])
            for place, labels in _coincident_labels(mine, xs, ys).items():
                places.setdefault(place, {})[name] = ["every point"] if len(labels) == len(mine) > 1 else labels
        if students:
            student_xs = np.array([_value(p, key) for p in students], dtype=float)
            student_ys = np.array([_value(p, "accuracy") for p in students], dtype=float)
            _draw_front(ax, student_xs, student_ys, higher, label=_front_label(list(roles.values())))
        ax.set_xlabel(label)
        ax.set_ylabel("accuracy (test)")
        ax.grid(alpha=0.3)
        ax.margins(0.12)
        texts = []
        for (xv, yv), by_model in places.items():
            models_of: dict[str, list[str]] = {}  # label text → the models at this place that it labels
            for model, labels in by_model.items():
                models_of.setdefault(", ".join(labels), []).append(model)
            text = (
                next(iter(models_of))
                if len(by_model) == 1
                else "\n".join(f"{', '.join(models)}: {labels}" for labels, models in models_of.items())
            )
            annotation = ax.annotate(
                text,
                (xv, yv),
                textcoords="offset points",
                xytext=(6, 6),
                fontsize=7,
                zorder=6,
                arrowprops={"arrowstyle": "-", "color": "0.6", "linewidth": 0.5, "shrinkA": 0, "shrinkB": 3},
            )
            annotation.set_in_layout(False)  # a long label must not squeeze the panels
            texts.append(annotation)
        panel_texts.append(texts)
    handles, labels = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:  # the front may exist on one panel only
        for handle, text in zip(*ax.get_legend_handles_labels(), strict=True):
            if text not in labels:
                handles.append(handle)
                labels.append(text)
    fig.legend(handles, labels, loc="outside right upper", fontsize=8)
    fig.suptitle(title, fontsize=11)
    fig.canvas.draw()  # lay out first: the labels are spread in the final pixel positions
    for texts in panel_texts:
        _spread_labels(fig, texts)
    return _png(fig)


def _value(point: dict[str, Any], key: str) -> float:
    value = point.get(key)
    return np.nan if value is None else float(value)


def _error_bars(ax: Any, points: list[dict[str, Any]], xs: list[float], ys: list[float], key: str, colour: Any) -> None:
    """Horizontal bars of ``key``'s interval and vertical bars of accuracy's, where the points carry them."""
    for p, xv, yv in zip(points, xs, ys, strict=True):
        interval = p.get("interval") or {}
        if not (np.isfinite(xv) and np.isfinite(yv)):
            continue
        x_int, y_int = interval.get(key), interval.get("accuracy")
        xerr = [[max(0.0, xv - x_int[0])], [max(0.0, x_int[1] - xv)]] if x_int else None
        yerr = [[max(0.0, yv - y_int[0])], [max(0.0, y_int[1] - yv)]] if y_int else None
        if xerr is not None or yerr is not None:
            ax.errorbar(
                [xv],
                [yv],
                xerr=xerr,
                yerr=yerr,
                fmt="none",
                ecolor=colour,
                elinewidth=0.8,
                alpha=0.45,
                capsize=0,
                zorder=2.5,
            )


def _draw_front(ax: Any, xs: np.ndarray, ys: np.ndarray, higher: bool, label: str | None = None) -> None:
    """The Pareto front of the finite points (accuracy ``ys`` up; ``xs`` up when ``higher``, else down): a dashed
    line through them, each ringed."""
    front = pareto_front(xs, ys, higher, True)
    if not front.any():
        return
    order = np.argsort(xs[front])
    ax.plot(
        xs[front][order],
        ys[front][order],
        color="black",
        linestyle="--",
        linewidth=1,
        zorder=2,
        marker="o",
        markersize=14,
        markerfacecolor="none",
        markeredgecolor="black",
        markeredgewidth=0.8,
        label=label,
    )


def _spread_labels(fig: Figure, texts: list[Any]) -> None:
    """Move overlapping annotation labels apart, vertically: labels are placed from the top down, and one that
    overlaps a label already placed moves just below it (a thin line joins a moved label to its point).

    The boxes are the labels' text alone (``Text.get_window_extent``): an annotation's own extent includes its
    connecting line, which grows as the label moves, and pushing on that diverged (labels sent 10¹⁰ points
    away, which the PNG renderer refuses). Each label moves at most once per label above it, so this ends, and
    no label moves further than the labels stacked above it."""
    if len(texts) < 2:
        return
    canvas = fig.canvas
    if not isinstance(canvas, FigureCanvasAgg):  # every figure here gets an Agg canvas in _new_figure
        raise TypeError(f"label spreading needs a figure drawn by the Agg canvas, got {type(canvas).__name__}")
    renderer = canvas.get_renderer()
    to_points = 72.0 / fig.dpi

    def box(text: Any) -> Any:
        return Text.get_window_extent(text, renderer).expanded(1.05, 1.15)

    placed: list[Any] = []
    for text in sorted(texts, key=lambda t: -box(t).y1):
        current = box(text)
        for _ in range(len(placed)):
            overlaps = [b for b in placed if min(current.x1, b.x1) > max(current.x0, b.x0) and current.overlaps(b)]
            if not overlaps:
                break
            shift = current.y1 - min(b.y0 for b in overlaps) + 1.0  # pixels down, to just below the lowest
            ox, oy = text.xyann
            text.xyann = (ox, oy - shift * to_points)
            current = box(text)
        placed.append(current)


def _coincident_labels(
    points: list[dict[str, Any]], xs: list[float], ys: list[float]
) -> dict[tuple[float, float], list[str]]:
    """The labels of the points drawn at each position (finite ones only), so that points on top of each other
    (e.g. a teacher loaded from one checkpoint at every grid point) get one readable label."""
    at: dict[tuple[float, float], list[str]] = {}
    for p, xv, yv in zip(points, xs, ys, strict=True):
        if np.isfinite(xv) and np.isfinite(yv):
            at.setdefault((round(float(xv), 6), round(float(yv), 6)), []).append(str(p["label"]))
    return at


def _with_probabilities(metrics: dict[str, Any], frames: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The frames of the models with probabilities: not the one-hot labels of post-processed models and peers."""
    roles = {name: model.get("role", "student") for name, model in metrics["models"].items()}
    return {name: frame for name, frame in frames.items() if roles.get(name, "student") in ("teacher", "student")}


def run_figures(
    metrics: dict[str, Any], frames: dict[str, pd.DataFrame], teacher: str | None, students: Sequence[str]
) -> list[FigureFile]:
    """Every figure of a run's report. ``frames``: the (first seed's) test predictions of each model."""
    seeds = metrics.get("run", {}).get("seeds") or []
    first_seed = f" Per-example figures use seed {seeds[0]} of {len(seeds)}." if len(seeds) > 1 else ""
    figures = []
    pareto = run_pareto_png(metrics)
    if pareto is not None:
        figures.append(
            FigureFile(
                "pareto",
                "Accuracy vs worst-group accuracy, MAD and EO difference",
                "One point per model (teacher: ×; post-processed models: ▲ in their source's colour; peers, the "
                "non-distilled references: ◆); bars: bootstrap percentile intervals of accuracy and of the fairness "
                "metric over resamples of the test examples (the EO panel: accuracy only); ringed and joined: the "
                "Pareto front of every model but the teacher (no other one is better on both axes)."
                + (
                    " Values are means over seeds; each resample uses the same test examples for every seed."
                    if len(seeds) > 1
                    else ""
                ),
                pareto,
            )
        )
    figures += [
        FigureFile(
            "recall_disparity",
            "Per-class recall disparity",
            "Recall of each class for one attribute value minus the other (docs/metrics.md); bars near 0 "
            "are fair. The legend gives each model's MAD (mean |disparity| over classes).",
            recall_disparity_png(metrics),
        ),
        FigureFile(
            "group_accuracy",
            "Per-group accuracy",
            "Test accuracy of every model on every (label, attribute) group; the worst cell of a row is "
            "its worst-group accuracy.",
            group_accuracy_png(metrics),
        ),
    ]
    if "margins" in metrics:
        figures.append(
            FigureFile(
                "confidence_margins",
                "Confidence margins by layer",
                "Mean p(1) − p(2) of each early readout and of the final layer, on all test examples and on the "
                "model's worst group." + first_seed,
                margins_by_layer_png(metrics["margins"]),
            )
        )
    if teacher is not None and students:
        figures.append(
            FigureFile(
                "student_error_margins",
                "Teacher vs student margins on the student's errors",
                "Final-layer confidence margins of the teacher and of each student on the test examples that student "
                "misclassifies (box: quartiles; line: median; triangle: mean)." + first_seed,
                student_error_margins_png(frames, teacher, students),
            )
        )
    figures.append(
        FigureFile(
            "reliability",
            "Reliability diagram",
            "One panel per model: accuracy against mean confidence in 15 equal-width confidence bins (empty bins "
            "skipped; marker area ∝ examples in the bin); the teacher's curve in grey in every other panel."
            + (
                " Post-processed models and peers are left out: they predict hard labels, with no confidence."
                if len(_with_probabilities(metrics, frames)) < len(frames)
                else ""
            )
            + first_seed,
            reliability_png(_with_probabilities(metrics, frames), teacher=teacher),
        )
    )
    curves = training_curves_png(metrics)
    if curves is not None:
        constant = constant_history_keys(metrics)
        dropped = f" Not drawn (one value throughout): {', '.join(constant)}." if constant else ""
        figures.append(
            FigureFile(
                "training_curves",
                "Per-epoch curves",
                "Training loss, validation scores and any per-epoch statistic a method records, per model; a ring "
                "marks the epoch selected as the model's checkpoint." + dropped,
                curves,
            )
        )
    return figures
