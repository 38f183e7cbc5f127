"""The teacher → student table (teacher and student values side by side, as in KD benchmarks) against values
worked out by hand from a hand-written metrics dict."""

from __future__ import annotations

from io import StringIO

import pytest
from rich.console import Console

from fairdistill.report.markdown import render_markdown
from fairdistill.report.transfer import (
    TRANSFER_HEADERS,
    format_change,
    format_pair,
    model_text,
    transfer_markdown,
    transfer_rich,
    transfer_rows,
    transfer_table,
)


def _split(acc, recall, precision, f1, mad) -> dict:
    return {
        "accuracy": acc,
        "macro_recall": recall,
        "macro_precision": precision,
        "macro_f1": f1,
        "recall_disparity_mad": mad,
        "worst_group_accuracy": 0.5,
        "balanced_accuracy": 0.6,
        "group_accuracy": {"g0": 0.5, "g1": 0.7},
    }


TEACHER = {
    "role": "teacher",
    "method": "erm",
    "model": {"name": "mlp", "hidden": [256, 256]},
    "params": 1000,
    "train_seconds": 1.0,
    "splits": {"test": _split(0.649, 0.6491, 0.66, 0.646, 0.084), "val": _split(0.7, 0.7, 0.7, 0.7, 0.1)},
}
STUDENT = {"name": "mlp", "hidden": [16]}
METRICS = {
    "schema_version": 1,
    "dataset": {"name": "toy", "num_classes": 2, "attr_label": "sex", "group_names": ["g0", "g1"]},
    "run": {"name": "zoo", "seed": 0, "select": "last"},
    "models": {
        "teacher": TEACHER,
        "kd": {
            "role": "student",
            "method": "kd",
            "model": STUDENT,
            "params": 50,
            "train_seconds": 1.0,
            "splits": {"test": _split(0.65, 0.6504, 0.65, 0.647, 0.1226), "val": _split(0.6, 0.6, 0.6, 0.6, 0.2)},
        },
        "rkd-strong": {
            "role": "student",
            "method": "rkd",
            "model": STUDENT,
            "params": 50,
            "train_seconds": 1.0,
            "splits": {"test": _split(0.656, 0.656, 0.657, 0.652, 0.0748), "val": _split(0.6, 0.6, 0.6, 0.6, 0.2)},
        },
        "missing": {
            "role": "student",
            "method": "kdpp",
            "model": STUDENT,
            "params": 50,
            "train_seconds": 1.0,
            "splits": {"test": _split(0.5, 0.5, 0.5, 0.5, None), "val": _split(0.5, 0.5, 0.5, 0.5, None)},
        },
    },
}


def test_rows_hold_teacher_and_student_values() -> None:
    rows = transfer_rows(METRICS)
    assert [r.name for r in rows] == ["kd", "rkd-strong", "missing"]
    kd = rows[0]
    assert kd.method == "kd" and kd.models == "mlp hidden=256x256 - mlp hidden=16"
    assert kd.pairs["accuracy"] == (0.649, 0.65)
    assert kd.pairs["recall_disparity_mad"] == (0.084, 0.1226)
    # a MAD of 0.0840 → 0.1226 is a 46% increase
    assert kd.mad_change == pytest.approx((0.1226 - 0.084) / 0.084)
    assert kd.mad_change == pytest.approx(0.459523809, abs=1e-8)
    assert rows[1].mad_change == pytest.approx((0.0748 - 0.084) / 0.084)
    assert rows[2].mad_change is None


def test_formatting_in_percent() -> None:
    assert format_pair(0.649, 0.65) == "64.9-65.0"
    assert format_pair(0.0908, 0.098) == "9.1-9.8"
    assert format_pair(None, 0.5) == "—-50.0"
    assert format_change(0.4595238) == "+46.0%"
    assert format_change(-0.1095238) == "-11.0%"
    assert format_change(None) == "—"
    assert model_text({"name": "cnn", "width": 4}) == "cnn width=4"


def test_table_strings() -> None:
    table = transfer_table(METRICS)
    assert table.headers == list(TRANSFER_HEADERS)
    assert table.headers == [
        "method",
        "teacher - student",
        "top-1 acc",
        "worst-group acc",
        "macro recall",
        "macro precision",
        "macro F1",
        "MAD",
        "MAD change",
    ]
    assert table.rows[0] == [
        "kd",
        "mlp hidden=256x256 - mlp hidden=16",
        "64.9-65.0",
        "50.0-50.0",
        "64.9-65.0",
        "66.0-65.0",
        "64.6-64.7",
        "8.4-12.3",
        "+46.0%",
    ]
    assert table.rows[1] == [
        "rkd-strong (rkd)",
        "mlp hidden=256x256 - mlp hidden=16",
        "64.9-65.6",
        "50.0-50.0",
        "64.9-65.6",
        "66.0-65.7",
        "64.6-65.2",
        "8.4-7.5",
        "-11.0%",
    ]
    assert table.rows[2][-2:] == ["8.4-—", "—"]
    val = transfer_table(METRICS, "val")
    assert val.rows[0][2] == "70.0-60.0" and val.rows[0][-1] == "+100.0%"


def test_markdown_and_rich_renderings() -> None:
    md = transfer_markdown(METRICS)
    assert "| method | teacher - student | top-1 acc |" in md
    assert (
        "| kd | mlp hidden=256x256 - mlp hidden=16 | 64.9-65.0 | 50.0-50.0 | 64.9-65.0 | 66.0-65.0 | 64.6-64.7 "
        "| 8.4-12.3 | +46.0% |"
    ) in md
    out = StringIO()
    Console(file=out, width=200).print(transfer_rich(METRICS, title="zoo"))
    text = out.getvalue()
    assert "rkd-strong (rkd)" in text and "8.4→12.3" in text and "+46.0%" in text  # arrows in the terminal


def test_no_teacher_gives_no_rows() -> None:
    metrics = {"models": {"kd": METRICS["models"]["kd"]}}
    assert transfer_rows(metrics) == []
    assert "No teacher" in transfer_markdown(metrics)


def test_report_has_the_teacher_to_student_section() -> None:
    report = render_markdown(METRICS)
    assert "## Teacher → student" in report
    section = report.split("## Teacher → student", 1)[1]
    assert "| kd | mlp hidden=256x256 - mlp hidden=16 | 64.9-65.0 |" in section
