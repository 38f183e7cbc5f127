"""The report side's pure functions on hand-made inputs: sweep grids (parse_grid, grid_points, point_label),
the Pareto front and trade-off plot, "what changed" (pair_changes), the several-seed combination (mean and
sample std), the comparison / compare tables and their Markdown and HTML forms, and reading a run directory.

Expected values are worked out by hand (or with numpy) here, not read back from the code under test.
"""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from fairdistill.errors import ConfigError, FairdistillError
from fairdistill.report import plots
from fairdistill.report.aggregate import combine_seeds
from fairdistill.report.changes import comparison_pairs, pair_changes
from fairdistill.report.html import table_html
from fairdistill.report.plots import pareto_front, tradeoff_png
from fairdistill.report.tables import ComparisonTable, compare_table, comparison_table, to_markdown
from fairdistill.rundir import read_metrics
from fairdistill.sweep import (
    GridAxis,
    grid_points,
    headline,
    parse_grid,
    point_label,
    run_sweep,
    split_values,
    sweep_table,
)

# ----------------------------------------------------------------------------------------------- sweep grid


def test_parse_grid_simple() -> None:
    axis = parse_grid("methods.kd.loss.tau=1,4")
    assert axis == GridAxis("methods.kd.loss.tau", ("1", "4"), (1, 4))
    assert axis.short == "tau"
    assert parse_grid(" student.train.lr = 0.001 , 0.01 ").values == (0.001, 0.01)
    assert parse_grid("x=only").values == ("only",)


def test_parse_grid_keeps_commas_inside_brackets_and_quotes() -> None:
    axis = parse_grid("teacher.model.hidden=[64, 64],[128],{a: 1, b: 2},'x,y',\"p, q\"")
    assert axis.texts == ("[64, 64]", "[128]", "{a: 1, b: 2}", "'x,y'", '"p, q"')
    assert axis.values == ([64, 64], [128], {"a": 1, "b": 2}, "x,y", "p, q")
    assert split_values("[[1, 2], [3]], 4") == ["[[1, 2], [3]]", "4"]


@pytest.mark.parametrize(
    "spec,message",
    [
        ("methods.kd.loss.tau", "expected key.path=value1,value2"),
        ("=1,2", "the key path is empty or has an empty segment"),
        ("methods..tau=1,2", "the key path is empty or has an empty segment"),
        ("a.b.=1", "the key path is empty or has an empty segment"),
        ("a.b=1,,2", "empty value"),
        ("a.b=", "empty value"),
        ("a.b=1,2,", "empty value"),
        ("a.b=1,2,1", "a value is repeated"),
        ("a.b=[1, 2", "unclosed bracket or quote"),
        ("a.b='x,y", "unclosed bracket or quote"),
        ("a.b=1],2", "unbalanced ']'"),
        ("a.b=@x", "is not valid YAML"),
    ],
)
def test_parse_grid_refuses_bad_specs(spec: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_grid(spec)
    assert message in str(info.value)
    assert str(info.value).startswith("--grid")


def test_grid_points_is_the_cartesian_product_in_order() -> None:
    tau, alpha = parse_grid("methods.kd.loss.tau=1,4"), parse_grid("methods.kd.loss.alpha=0.1,0.5,0.9")
    points = grid_points([tau, alpha])
    assert len(points) == 6
    assert [[(a.path, k) for a, k in p] for p in points] == [
        [("methods.kd.loss.tau", i), ("methods.kd.loss.alpha", j)] for i in range(2) for j in range(3)
    ]
    assert [point_label(p) for p in points] == [
        "tau=1, alpha=0.1",
        "tau=1, alpha=0.5",
        "tau=1, alpha=0.9",
        "tau=4, alpha=0.1",
        "tau=4, alpha=0.5",
        "tau=4, alpha=0.9",
    ]
    # one axis: the value as written
    assert [point_label(p) for p in grid_points([parse_grid("student.train.lr=1e-3,0.01")])] == ["1e-3", "0.01"]


def test_grid_points_refuses_a_repeated_axis() -> None:
    with pytest.raises(ConfigError, match="methods.kd.loss.tau given more than once"):
        grid_points([parse_grid("methods.kd.loss.tau=1,2"), parse_grid("methods.kd.loss.tau=4")])


def test_run_sweep_checks_every_point_before_running(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give at least one --grid"):
        run_sweep(None, [], output=tmp_path / "out")
    # the second point is invalid: nothing trains and no sweep directory is made
    with pytest.raises(ConfigError) as info:
        run_sweep(None, ["student.train.epochs=1,0"], output=tmp_path / "out")
    assert "sweep point 1 (0)" in str(info.value) and "epochs" in str(info.value)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


# ----------------------------------------------------------------------------------------------- trade-off


def test_pareto_front_lower_x_better() -> None:
    # x: a disparity (lower is better), y: accuracy (higher is better)
    mad = [0.10, 0.20, 0.15, 0.30, 0.10, math.nan, 0.05]
    acc = [0.90, 0.95, 0.85, 0.95, 0.90, 0.99, math.nan]
    front = pareto_front(mad, acc, x_higher=False, y_higher=True)
    # 0 and 4 tie (neither dominates the other); 2 is dominated by 0, 3 by 1; NaN points are never on the front
    # and never dominate (5 would dominate every point, 6 too on x)
    assert front.tolist() == [True, True, False, False, True, False, False]


def test_pareto_front_higher_x_better() -> None:
    wga = [0.2, 0.5, 0.4, 0.5]
    acc = [0.9, 0.8, 0.7, 0.8]
    assert pareto_front(wga, acc, x_higher=True, y_higher=True).tolist() == [True, True, False, True]
    assert pareto_front([], [], True, True).tolist() == []
    assert pareto_front([0.3], [0.1], False, True).tolist() == [True]


def test_tradeoff_plot_labels_points_and_marks_the_front(monkeypatch) -> None:
    drawn = []
    real_png = plots._png
    monkeypatch.setattr(plots, "_png", lambda fig: drawn.append(fig) or real_png(fig))

    def point(label: str, model: str, role: str, acc: float | None, mad: float | None, wga: float) -> dict[str, Any]:
        return {
            "label": label,
            "model": model,
            "role": role,
            "accuracy": acc,
            "recall_disparity_mad": mad,
            "worst_group_accuracy": wga,
        }

    points = [
        point("1", "teacher", "teacher", 0.95, 0.30, 0.60),
        point("1", "kd", "student", 0.90, 0.10, 0.70),
        point("4", "teacher", "teacher", 0.95, 0.30, 0.60),
        point("4", "kd", "student", 0.92, 0.20, 0.50),
        point("1", "dedier", "student", 0.85, 0.25, 0.45),  # dominated by kd@1 on both panels
        point("9", "kd", "student", None, None, 0.40),
    ]
    png = tradeoff_png(points, "toy sweep")
    with Image.open(io.BytesIO(png)) as image:
        image.load()
        assert image.width > image.height > 200
    (fig,) = drawn
    assert fig._suptitle.get_text() == "toy sweep"
    left, right = fig.axes[:2]
    assert "MAD" in left.get_xlabel() and "worst-group" in right.get_xlabel()
    for ax in (left, right):
        labels = sorted(t.get_text() for t in ax.texts)
        # students labelled by their swept value (kd@9 has no values: not drawn); the teacher, identical at both
        # points, is drawn twice at one place and gets one label instead of two overprinted ones
        assert labels == ["1", "1", "4", "every point"]
        (front,) = [line for line in ax.get_lines() if line.get_label() == "Pareto front (students)"]
        xs = sorted(front.get_xdata().tolist())
        # students: kd@1 (0.10 MAD / 0.70 WGA, acc 0.90), kd@4 (0.20 / 0.50, acc 0.92): neither dominates on
        # the MAD panel; on the WGA panel neither does either (kd@1 better WGA, kd@4 better accuracy)
        assert xs == ([0.10, 0.20] if ax is left else [0.50, 0.70])


def test_headline_and_sweep_table() -> None:
    metrics = {
        "models": {
            "teacher": {"role": "teacher", "method": "erm", "splits": {"test": {"accuracy": 0.9, "ece": 0.1}}},
            "kd": {
                "role": "student",
                "method": "kd",
                "splits": {"test": {"accuracy": 0.8, "worst_group_accuracy": 0.5}},
                "splits_std": {"test": {"accuracy": 0.02, "worst_group_accuracy": None}},
            },
        },
        "amplification": {"students": {"kd": {"recall_disparity_mad": {"delta": 0.25}}}},
    }
    result = headline(metrics)
    assert result["teacher"]["accuracy"] == 0.9 and result["teacher"]["worst_group_accuracy"] is None
    assert "accuracy_std" not in result["teacher"]
    assert result["kd"]["accuracy_std"] == 0.02 and result["kd"]["worst_group_accuracy_std"] is None
    assert result["kd"]["amplification_delta"] == {"recall_disparity_mad": 0.25}
    document = {"points": [{"label": "1", "models": result}, {"label": "4", "models": {"kd": {"accuracy": 0.75}}}]}
    table = sweep_table(document)
    assert table.headers[:2] == ["point", "model"]
    assert [row[:3] for row in table.rows] == [["1", "teacher", "0.9000"], ["1", "kd", "0.8000"], ["4", "kd", "0.7500"]]
    assert table.rows[2][3] == "—"


# ----------------------------------------------------------------------------------------------- what changed


def _frame(index, y, group, pred) -> pd.DataFrame:
    return pd.DataFrame({"index": index, "y": y, "attr": np.asarray(group) % 2, "group": group, "pred": pred})


def test_pair_changes_counts_per_group() -> None:
    index = [10, 11, 12, 13, 14, 15, 16, 17]
    y = [0, 0, 0, 1, 1, 1, 0, 1]
    group = [0, 0, 1, 2, 3, 3, 1, 2]
    ref_pred = [0, 1, 1, 1, 0, 1, 0, 0]  # right on 10, 13, 15, 16
    other_pred = [1, 0, 0, 1, 1, 1, 0, 1]  # right on 11, 12, 13, 14, 15, 16, 17
    reference = _frame(index, y, group, ref_pred)
    other = _frame(index, y, group, other_pred).iloc[::-1].reset_index(drop=True)  # another order: matched by index
    changes = pair_changes(reference, other, ["a", "b", "c", "d", "empty"], "kd", "dedier")
    assert (changes.reference, changes.other) == ("kd", "dedier")
    by_group = {g.group: (g.size, g.fixed, g.broken) for g in changes.groups}
    assert by_group == {
        "a": (2, [11], [10]),
        "b": (2, [12], []),
        "c": (2, [17], []),
        "d": (2, [14], []),
        "empty": (0, [], []),
    }
    assert changes.fixed == 4 and changes.broken == 1
    assert changes.labels == {10: (0, 0, 1), 11: (0, 1, 0), 12: (0, 1, 0), 14: (1, 0, 1), 17: (1, 0, 1)}


def test_comparison_pairs() -> None:
    def run(*students: str) -> dict[str, Any]:
        models = {"teacher": {"role": "teacher"}, **{s: {"role": "student"} for s in students}}
        return {"models": models}

    assert comparison_pairs(run("erm", "kd", "dedier")) == [("kd", "erm"), ("kd", "dedier")]
    assert comparison_pairs(run("erm", "dedier", "groupdro")) == [("erm", "dedier"), ("erm", "groupdro")]
    assert comparison_pairs(run("kd")) == []


# ----------------------------------------------------------------------------------------------- seeds


def _seed_document(seed: int, accuracy: float, groups: dict[str, float], ece: float | None) -> dict[str, Any]:
    return {
        "run": {"name": "toy", "seed": seed},
        "dataset": {"name": "toy"},
        "models": {
            "kd": {
                "role": "student",
                "method": "kd",
                "model": {"name": "cnn", "width": 4},
                "params": 438,
                "train_seconds": 1.0 + seed,
                "selected_epoch": seed + 1,
                "history": [{"epoch": 1, "train_loss": seed}],
                "splits": {"test": {"n": 100, "accuracy": accuracy, "group_accuracy": groups, "ece": ece}},
            }
        },
    }


def test_combine_seeds_mean_and_sample_std() -> None:
    accuracy = [0.50, 0.70, 0.66]
    group_a = [0.1, 0.4, 0.4]
    documents = {
        s: _seed_document(s, accuracy[k], {"a": group_a[k], "b": 1.0}, [0.1, None, 0.3][k])
        for k, s in enumerate([3, 5, 8])
    }
    combined = combine_seeds(documents)
    assert combined["run"]["seeds"] == [3, 5, 8] and combined["run"]["seed"] == 3
    kd = combined["models"]["kd"]
    test, std = kd["splits"]["test"], kd["splits_std"]["test"]
    assert test["accuracy"] == pytest.approx(np.mean(accuracy), abs=1e-15)
    assert std["accuracy"] == pytest.approx(np.std(accuracy, ddof=1), abs=1e-15)  # sample std (ddof = 1)
    assert test["group_accuracy"]["a"] == pytest.approx(np.mean(group_a))
    assert std["group_accuracy"]["a"] == pytest.approx(np.std(group_a, ddof=1))
    assert test["group_accuracy"]["b"] == 1.0 and std["group_accuracy"]["b"] == 0.0
    assert test["n"] == 100 and isinstance(test["n"], int)
    # undefined for one seed: mean and std over the seeds where it is defined
    assert test["ece"] == pytest.approx(0.2) and std["ece"] == pytest.approx(np.std([0.1, 0.3], ddof=1))
    # per-seed values kept as they were
    assert set(kd["seeds"]) == {"3", "5", "8"}
    for k, s in enumerate([3, 5, 8]):
        assert kd["seeds"][str(s)]["splits"]["test"]["accuracy"] == accuracy[k]
        assert kd["seeds"][str(s)]["selected_epoch"] == s + 1
        assert kd["seeds"][str(s)]["history"] == [{"epoch": 1, "train_loss": s}]
    assert "history" not in kd and "selected_epoch" not in kd
    assert kd["train_seconds"] == pytest.approx(np.mean([4.0, 6.0, 9.0]))
    assert kd["model"] == {"name": "cnn", "width": 4} and kd["params"] == 438 and kd["role"] == "student"


def test_combine_one_seed_is_the_single_seed_document() -> None:
    combined = combine_seeds({7: _seed_document(7, 0.5, {"a": 0.5}, 0.1)})
    assert combined["run"]["seeds"] == [7]
    kd = combined["models"]["kd"]
    assert "splits_std" not in kd and "seeds" not in kd and kd["selected_epoch"] == 8
    with pytest.raises(ValueError):
        combine_seeds({})


# ----------------------------------------------------------------------------------------------- tables


def _model(role: str, accuracy: float, mad: float, std: dict[str, float | None] | None = None) -> dict[str, Any]:
    entry = {
        "role": role,
        "method": "kd" if role == "student" else "erm",
        "params": 12345,
        "splits": {"test": {"accuracy": accuracy, "recall_disparity_mad": mad}},
    }
    if std is not None:
        entry["splits_std"] = {"test": std}
    return entry


def test_comparison_table_cells() -> None:
    columns = (("accuracy", "accuracy", True), ("MAD", "recall_disparity_mad", False), ("ECE", "ece", False))
    several = {"models": {"kd": _model("student", 0.81234, 0.1, {"accuracy": 0.0123, "recall_disparity_mad": None})}}
    table = comparison_table(several, "test", columns)
    assert table.headers == ["model", "role", "method", "params", "accuracy", "MAD", "ECE"]
    assert table.rows == [["kd", "student", "kd", "12,345", "0.8123 ± 0.0123", "0.1000 ± —", "—"]]
    single = {"models": {"kd": _model("student", 0.81234, 0.1)}}
    assert comparison_table(single, "test", columns).rows[0][4:] == ["0.8123", "0.1000", "—"]


def test_compare_table_difference_and_verdict() -> None:
    a = {
        "models": {
            "teacher": _model("teacher", 0.90, 0.30),
            "kd": _model("student", 0.80, 0.20),
            "erm": _model("student", 0.70, 0.10),
        }
    }
    b = {
        "models": {
            "teacher": _model("teacher", 0.90, 0.30),
            "kd": _model("student", 0.85, 0.25),
            "groupdro": _model("student", 0.60, 0.05),
        }
    }
    columns = (("accuracy", "accuracy", True), ("MAD", "recall_disparity_mad", False))
    table = compare_table(a, b, "test", columns)
    assert table.headers == ["model", "metric", "run A", "run B", "B − A", "B vs A"]
    assert table.rows == [
        ["teacher", "accuracy", "0.9000", "0.9000", "+0.0000", "same"],
        ["teacher", "MAD", "0.3000", "0.3000", "+0.0000", "same"],
        ["kd", "accuracy", "0.8000", "0.8500", "+0.0500", "better"],
        ["kd", "MAD", "0.2000", "0.2500", "+0.0500", "worse"],
        ["erm", "accuracy", "0.7000", "—", "—", "—"],
        ["erm", "MAD", "0.1000", "—", "—", "—"],
        ["groupdro", "accuracy", "—", "0.6000", "—", "—"],
        ["groupdro", "MAD", "—", "0.0500", "—", "—"],
    ]
    assert table.values[2][4] == pytest.approx(0.05)


def test_markdown_escapes_pipes() -> None:
    table = ComparisonTable(["group", "acc"], [["<5|red", "0.5000"]])
    assert to_markdown(table).splitlines() == ["| group | acc |", "|---|---|", "| <5\\|red | 0.5000 |"]


def test_table_html_sortable_values_and_best() -> None:
    table = ComparisonTable(
        ["model", "accuracy", "MAD"],
        [["a", "0.9", "0.3"], ["b", "0.8", "0.1"], ["c", "—", "0.2"]],
        [[None, 0.9, 0.3], [None, 0.8, 0.1], [None, None, 0.2]],
        [None, True, False],
    )
    page = table_html(table, "t<1>", highlight=True)
    assert '<table id="t&lt;1&gt;" class="sortable">' in page
    assert '<td class="num best" data-value="0.9">0.9</td>' in page  # highest accuracy
    assert '<td class="num best" data-value="0.1">0.1</td>' in page  # lowest MAD
    assert page.count("best") == 2
    assert '<td class="num">—</td>' in page  # no value: no data-value, sorted as text
    assert 'class="plain"' in table_html(table, "t", sortable=False)


# ----------------------------------------------------------------------------------------------- run directory


def test_read_metrics_errors(tmp_path: Path) -> None:
    with pytest.raises(FairdistillError, match="run directory not found"):
        read_metrics(tmp_path / "missing")
    with pytest.raises(FairdistillError, match="no metrics.json"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.json").write_text("{")
    with pytest.raises(FairdistillError, match="not valid JSON"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps([1, 2]))
    with pytest.raises(FairdistillError, match="not a fairdistill metrics file"):
        read_metrics(tmp_path)
    (tmp_path / "metrics.json").write_text(json.dumps({"models": {}, "dataset": {}}))
    with pytest.raises(FairdistillError, match="metrics.json: schema_version: missing"):
        read_metrics(tmp_path)


def test_text_examples_show_both_fields_escaped() -> None:
    import torch

    from fairdistill.data.core import SplitDataset
    from fairdistill.report.changes import example_renderer

    y = torch.tensor([0, 1])
    split = SplitDataset(
        {},
        y,
        y,
        y,
        name="test",
        texts={"text": ["A man <b>sleeps</b>.", "x" * 300], "text_pair": ["Nobody sleeps.", "ok"]},
    )
    render = example_renderer(split, "text")
    assert render(0) == ('<span class="snippet">A man &lt;b&gt;sleeps&lt;/b&gt;. <b>/</b> Nobody sleeps.</span>')
    assert render(1) == f'<span class="snippet">{"x" * 159}… <b>/</b> ok</span>'


# ----------------------------------------------------------------------------------------------- hostile names

SCRIPT = "<script>alert(1)</script>"
#: A model name names files, so it holds no "/"; the rest of the names may hold anything.
MODEL = "<b onmouseover=alert(3)>kd"


def _hostile_document() -> dict[str, Any]:
    """A metrics document whose run, dataset, class, attribute, group and model names hold HTML and pipes."""
    classes, attrs = [SCRIPT, "a|b"], ["x", "<img src=x onerror=alert(2)>"]
    groups = [f"{c}|{a}" for c in classes for a in attrs]
    split = {"accuracy": 0.5, "worst_group_accuracy": 0.25, "group_accuracy": {g: 0.5 for g in groups}}

    def model(role: str) -> dict[str, Any]:
        return {
            "role": role,
            "method": "kd",
            "params": 10,
            "train_seconds": 1.0,
            "splits": {"val": split, "test": split},
        }

    return {
        "schema_version": 1,
        "dataset": {
            "name": SCRIPT,
            "num_classes": 2,
            "class_names": classes,
            "attr_label": "a|b" + SCRIPT,
            "attr_names": attrs,
            "group_names": groups,
        },
        "run": {"name": SCRIPT, "seed": 0, "select": "last"},
        "models": {MODEL: model("student"), "a|b": model("student")},
    }


def test_markdown_escapes_html_and_pipes_in_names(tmp_path: Path) -> None:
    from fairdistill.report.changes import GroupChange, PairChanges
    from fairdistill.report.html import render_html
    from fairdistill.report.markdown import render_markdown
    from fairdistill.rundir import check_metrics

    metrics = check_metrics(_hostile_document(), tmp_path / "metrics.json")
    groups = metrics["dataset"]["group_names"]
    changes = [PairChanges("a|b", MODEL, [GroupChange(g, 1) for g in groups], {})]
    md = render_markdown(metrics, changes=changes)
    assert "<script" not in md and "</script" not in md and "<img" not in md and "<b " not in md
    assert "&lt;script>alert(1)&lt;/script>" in md and "a\\|b" in md and "&lt;b onmouseover" in md
    # every row of a table has as many cells as its header: no pipe from a name splits a cell
    for block in md.split("\n\n"):
        rows = [line for line in block.splitlines() if line.startswith("|")]
        widths = {len(re.split(r"(?<!\\)\|", row)) for row in rows}
        assert len(widths) <= 1, rows
    page = render_html(metrics, [], changes)
    assert SCRIPT not in page and "<img" not in page and "<b onmouseover" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_md_escape_keeps_plain_comparisons_readable() -> None:
    from fairdistill.report.tables import md_escape

    assert md_escape("<5|red") == "<5\\|red"
    assert md_escape(">=5") == ">=5"
    assert md_escape("R&D <b>") == "R&amp;D &lt;b>"
    assert md_escape("back\\|slash") == "back\\\\\\|slash"


# ----------------------------------------------------------------------------------------------- what a person sees


def test_table_examples_show_raw_feature_values() -> None:
    import torch

    from fairdistill.data.core import SplitDataset
    from fairdistill.report.changes import example_renderer

    y = torch.tensor([0])
    # age standardised with mean 40 and std 10: z = 0 (the mean) must show as 40, z = -1.5 as 25
    x = torch.tensor([[0.0, -1.5, 1.0, 0.0]])
    split = SplitDataset({"x": x}, y, y, y, name="test")
    names = ["age", "hours", "sex=Male", "sex=Female"]
    scale = {"age": {"mean": 40.0, "std": 10.0}, "hours": {"mean": 40.0, "std": 10.0}}
    render = example_renderer(split, "table", names, scale)
    assert render(0) == '<code class="snippet">age=40, hours=25, sex=Male</code>'


def test_model_intervals_hold_the_point_value() -> None:
    from fairdistill.evaluate.amplification import LabelArrays, model_intervals

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 400)
    attr = rng.integers(0, 2, 400)
    pred = np.where(rng.random(400) < 0.8, y, 1 - y)
    labels = LabelArrays.of(y, attr, y * 2 + attr, 2, 2, 4)
    result = model_intervals(labels, [pred], resamples=200)
    assert result["accuracy"]["value"] == pytest.approx(float((pred == y).mean()))
    for entry in result.values():
        assert entry["ci_low"] <= entry["value"] <= entry["ci_high"]


def _history_metrics() -> dict[str, Any]:
    history = [
        {"epoch": e, "train_loss": 1.0 / e, "val_acc": 0.5 + 0.1 * e, "adversary_strength": 1.0} for e in (1, 2, 3)
    ]
    model = {"role": "student", "method": "kd", "history": history, "selected_epoch": 2}
    return {"models": {"teacher": {**model, "role": "teacher"}, "kd": model}}


def test_training_curves_drop_constant_panels() -> None:
    metrics = _history_metrics()
    assert plots.constant_history_keys(metrics) == ["adversary_strength"]
    png = plots.training_curves_png(metrics)
    assert png is not None and png.startswith(b"\x89PNG")
    for model in metrics["models"].values():
        for record in model["history"]:
            record.pop("train_loss", None), record.pop("val_acc", None)
    assert plots.training_curves_png(metrics) is None
