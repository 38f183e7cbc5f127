"""The report's verdict sentence on hand-built runs whose answer is known."""

from __future__ import annotations

from typing import Any

from fairdistill.report.html import render_html
from fairdistill.report.markdown import render_markdown
from fairdistill.report.verdict import (
    NO_VERDICT,
    amplification_grid,
    grid_marks,
    verdict_sentences,
)


def _entry(teacher: float, student: float, low: float, high: float) -> dict[str, Any]:
    return {
        "teacher": teacher,
        "student": student,
        "delta": student - teacher,
        "relative": None,
        "ci_low": low,
        "ci_high": high,
        "resamples": 1000,
    }


def _model(role: str, method: str, accuracy: float) -> dict[str, Any]:
    split = {
        "accuracy": accuracy,
        "worst_group_accuracy": 0.8,
        "recall_disparity_mad": 0.05,
        "group_accuracy": {"g0": 0.8, "g1": 0.9},
    }
    return {
        "role": role,
        "method": method,
        "params": 10,
        "train_seconds": 1.0,
        "model": {"name": "mlp"},
        "splits": {"test": split, "val": split},
    }


def _run(students: dict[str, dict[str, dict[str, Any]]], accuracy: dict[str, float]) -> dict[str, Any]:
    models = {"teacher": _model("teacher", "erm", 0.99)}
    models.update({name: _model("student", name.split("-")[0], accuracy[name]) for name in students})
    return {
        "dataset": {
            "name": "toy",
            "modality": "table",
            "num_classes": 2,
            "class_names": ["a", "b"],
            "attr_names": ["x", "y"],
            "group_names": ["g0", "g1"],
            "counts": {"test": 100},
        },
        "run": {"name": "built", "seed": 0, "select": "last"},
        "models": models,
        "amplification": {
            "split": "test",
            "reference": "teacher",
            "resamples": 1000,
            "confidence": 0.95,
            "bootstrap_seed": 0,
            "seeds": [0],
            "students": students,
        },
    }


AMPLIFIED = _run(
    {
        "kd": {
            "recall_disparity_mad": _entry(0.040, 0.070, 0.012, 0.049),
            "worst_group_error": _entry(0.10, 0.16, 0.02, 0.10),
        },
        "dedier": {
            "recall_disparity_mad": _entry(0.040, 0.042, -0.010, 0.015),
            "worst_group_error": _entry(0.10, 0.11, -0.02, 0.04),
        },
        "fitnet": {
            "recall_disparity_mad": _entry(0.040, 0.065, 0.010, 0.040),
            "worst_group_error": _entry(0.10, 0.15, 0.01, 0.09),
        },
    },
    {"kd": 0.981, "dedier": 0.969, "fitnet": 0.980},
)

NOISE = _run(
    {
        "kd": {
            "recall_disparity_mad": _entry(0.040, 0.046, -0.004, 0.016),
            "worst_group_error": _entry(0.10, 0.11, -0.03, 0.05),
        },
        "dedier": {
            "recall_disparity_mad": _entry(0.040, 0.041, -0.012, 0.014),
            "worst_group_error": _entry(0.10, 0.10, -0.02, 0.02),
        },
    },
    {"kd": 0.98, "dedier": 0.975},
)


def test_amplified_and_recovered_at_a_stated_cost() -> None:
    headline, mad, worst, fix_mad, fix_worst = verdict_sentences(AMPLIFIED)
    assert headline == (
        "Distillation amplified bias: kd is worse than the teacher on recall-disparity MAD and "
        "worst-group accuracy, with 95% intervals excluding 0."
    )
    assert mad == (
        "kd's recall-disparity MAD rises from 0.040 (teacher) to 0.070 (Δ +0.030, 95% interval "
        "[+0.012, +0.049]; excluding 0)."
    )
    assert worst.startswith("kd's worst-group accuracy falls from 0.900 (teacher) to 0.840 (1 − WGA Δ +0.060")
    # fitnet stays above the teacher: only dedier recovers, and it costs 1.2 accuracy points against kd.
    assert fix_mad == (
        "dedier brings recall-disparity MAD back to the teacher's level (0.042; Δ +0.002, 95% "
        "interval [-0.010, +0.015]) at an accuracy cost of 1.2 points against kd (0.981 → 0.969; "
        "teacher 0.990)."
    )
    assert fix_worst.startswith("dedier brings worst-group accuracy back to the teacher's level (0.890;")
    assert "fitnet" not in fix_mad + fix_worst


def test_intervals_holding_zero_are_called_noise() -> None:
    headline, mad, worst, rest = verdict_sentences(NOISE)
    assert headline == (
        "No amplification is shown: kd's changes from the teacher are not distinguishable from "
        "noise (every interval includes 0)."
    )
    assert mad.endswith(
        "(Δ +0.006, 95% interval [-0.004, +0.016]; not distinguishable from noise: the interval includes 0)."
    )
    assert "not distinguishable from noise" in worst
    assert rest == "No other student's MAD differs from the teacher's by more than noise either."


def test_fairer_mad_but_worse_worst_group() -> None:
    run = _run(
        {
            "kd": {
                "recall_disparity_mad": _entry(0.19, 0.04, -0.22, -0.07),
                "worst_group_error": _entry(0.76, 1.0, 0.11, 0.39),
            },
            "groupdro": {
                "recall_disparity_mad": _entry(0.19, 0.11, -0.14, -0.01),
                "worst_group_error": _entry(0.76, 0.92, -0.02, 0.30),
            },
        },
        {"kd": 0.769, "groupdro": 0.809},
    )
    headline, _, _, fix = verdict_sentences(run)
    assert headline == (
        "Distillation amplified bias: kd is worse than the teacher on worst-group accuracy, with "
        "95% intervals excluding 0 (its recall-disparity MAD improves)."
    )
    assert fix.startswith("groupdro brings worst-group accuracy back to the teacher's level (0.080;")
    assert fix.endswith("at no accuracy cost: it is 4.0 points more accurate than kd (0.769 → 0.809; teacher 0.990).")


def test_no_debiaser_recovers() -> None:
    students = {k: v for k, v in AMPLIFIED["amplification"]["students"].items() if k != "dedier"}
    run = _run(students, {"kd": 0.981, "fitnet": 0.980})
    assert verdict_sentences(run)[3].startswith(
        "No method brings recall-disparity MAD back to the teacher's level: the closest, fitnet (0.065"
    )


def test_no_teacher_no_verdict() -> None:
    run = dict(AMPLIFIED)
    del run["amplification"]
    assert verdict_sentences(run) == [NO_VERDICT]
    assert NO_VERDICT.endswith("no verdict on amplification.")


def test_grid_has_a_row_per_student_and_marks_intervals() -> None:
    grid = amplification_grid(AMPLIFIED)
    assert grid is not None
    assert grid.headers == ["model", "recall disparity MAD", "1 − WGA"]
    assert [row[0] for row in grid.rows] == ["teacher", "kd", "dedier", "fitnet"]
    assert grid.rows[1][1] == "0.0700\nΔ +0.0300 [+0.0120, +0.0490]"
    marks = grid_marks(AMPLIFIED)
    assert marks[(1, 1)] == "up" and (2, 1) not in marks and marks[(3, 2)] == "up"


def test_verdict_leads_both_reports() -> None:
    page = render_html(AMPLIFIED, [])
    assert page.index('id="verdict"') < page.index('id="comparison-test"')
    assert "dedier brings recall-disparity MAD back to the teacher&#x27;s level" in page
    md = render_markdown(AMPLIFIED)
    assert md.index("Distillation amplified bias") < md.index("## Test split")


def test_a_debiaser_beyond_the_teacher() -> None:
    students = dict(AMPLIFIED["amplification"]["students"])
    students["dedier"] = {**students["dedier"], "recall_disparity_mad": _entry(0.040, 0.020, -0.031, -0.008)}
    run = _run(students, {"kd": 0.981, "dedier": 0.985, "fitnet": 0.980})
    fix = verdict_sentences(run)[3]
    assert fix.startswith("dedier brings recall-disparity MAD to better than the teacher's (0.020;")
    assert fix.endswith("at no accuracy cost: it is 0.4 points more accurate than kd (0.981 → 0.985; teacher 0.990).")
