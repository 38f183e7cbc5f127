"""A split whose attribute takes one value: every gap between attribute values (DP, EO, recall disparity) is
undefined — null with a recorded reason, never 0.0, which would read as "perfectly fair" — through the metrics,
the bootstrap amplification, the combination of seeds and both reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fairlearn.metrics import demographic_parity_difference

from fairdistill.data.core import DatasetInfo, label_attr_groups
from fairdistill.evaluate.amplification import LabelArrays, amplification, bias_metrics
from fairdistill.evaluate.metrics import ATTRIBUTE_GAPS, compute_metrics
from fairdistill.report.aggregate import combine_seeds
from fairdistill.report.html import render_html
from fairdistill.report.markdown import render_markdown
from fairdistill.report.tables import comparison_table
from fairdistill.rundir import check_metrics

CLASSES, ATTRS = ("neg", "pos"), ("red", "green")
INFO = DatasetInfo(
    name="toy",
    num_classes=2,
    class_names=CLASSES,
    attr_names=ATTRS,
    group_names=label_attr_groups(CLASSES, ATTRS),
    modality="tabular",
)
REASON = "the attribute has one value (green) in this split"

# Eight examples, all green (attr 1); the predictions are wrong on two of them.
Y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
ATTR = np.ones(8, dtype=int)
PRED = np.array([0, 0, 1, 0, 1, 1, 0, 1])
GROUP = 2 * Y + ATTR


def one_hot(pred: np.ndarray) -> np.ndarray:
    return np.eye(2)[pred] * 0.8 + 0.1


def test_gaps_are_null_with_a_reason() -> None:
    m = compute_metrics(Y, one_hot(PRED), ATTR, GROUP, INFO)
    for key in ATTRIBUTE_GAPS:
        assert m[key] is None, key
        assert m["undefined"][key] == REASON
    assert m["recall_disparity"] == {"neg": None, "pos": None}
    # the rest is defined as usual
    assert m["accuracy"] == pytest.approx(6 / 8)
    assert m["worst_group_accuracy"] == pytest.approx(0.75)
    json.dumps(m, allow_nan=False)


def test_two_attribute_values_keep_their_values_and_record_nothing() -> None:
    attr = np.array([0, 1, 0, 1, 0, 1, 1, 1])
    m = compute_metrics(Y, one_hot(PRED), attr, 2 * Y + attr, INFO)
    assert "undefined" not in m
    assert m["dp_difference"] == pytest.approx(
        demographic_parity_difference(Y, PRED, sensitive_features={"attr": attr})
    )
    assert m["eo_difference"] is not None and m["recall_disparity_mad"] is not None


def test_one_label_only_makes_eo_undefined_with_its_own_reason() -> None:
    y = np.zeros(4, dtype=int)
    attr = np.array([0, 1, 0, 1])
    m = compute_metrics(y, one_hot(np.array([0, 1, 0, 0])), attr, 2 * y + attr, INFO)
    assert m["eo_difference"] is None and m["dp_difference"] is not None
    assert m["undefined"]["eo_difference"] == "every example of this split has the same label"
    assert "dp_difference" not in m["undefined"]


def test_amplification_agrees_and_leaves_the_interval_undefined() -> None:
    labels = LabelArrays.of(Y, ATTR, GROUP, 2, 2, 4)
    full = bias_metrics(labels, PRED)
    assert full["dp_difference"] is None and full["eo_difference"] is None and full["recall_disparity_mad"] is None
    assert full["worst_group_error"] == pytest.approx(0.25)
    result = amplification(labels, [PRED], [Y], resamples=50)
    for key in ("dp_difference", "eo_difference", "recall_disparity_mad"):
        entry = result[key]
        assert entry["teacher"] is entry["student"] is entry["delta"] is entry["ci_low"] is None, key
        assert entry["resamples"] == 0
    assert result["worst_group_error"]["delta"] == pytest.approx(-0.25)


def _split(m: dict) -> dict:
    return {"val": m, "test": m}


def _document(teacher: dict, student: dict) -> dict:
    return {
        "schema_version": 1,
        "dataset": {
            "name": "toy",
            "num_classes": 2,
            "class_names": list(CLASSES),
            "attr_label": "colour",
            "attr_names": list(ATTRS),
            "group_names": list(INFO.group_names),
        },
        "run": {"name": "one-colour", "seed": 0, "select": "last"},
        "models": {
            "teacher": {"role": "teacher", "method": "erm", "params": 10, "train_seconds": 1.0, "splits": teacher},
            "kd": {"role": "student", "method": "kd", "params": 5, "train_seconds": 1.0, "splits": student},
        },
    }


def test_seeds_keep_the_reason_only_where_every_seed_is_undefined() -> None:
    single = compute_metrics(Y, one_hot(PRED), ATTR, GROUP, INFO)
    attr = np.array([0, 1, 0, 1, 0, 1, 1, 1])
    both = compute_metrics(Y, one_hot(PRED), attr, 2 * Y + attr, INFO)
    combined = combine_seeds({0: _document(_split(single), _split(single)), 1: _document(_split(single), _split(both))})
    teacher, kd = (combined["models"][n] for n in ("teacher", "kd"))
    assert teacher["splits"]["test"]["dp_difference"] is None
    assert teacher["splits"]["test"]["undefined"]["dp_difference"] == REASON
    assert kd["splits"]["test"]["dp_difference"] == pytest.approx(both["dp_difference"])  # seed 1's value
    assert "undefined" not in kd["splits"]["test"]
    assert "undefined" not in kd["splits_std"]["test"] and "undefined" not in teacher["splits_std"]["test"]
    check_metrics(combined, Path("combined.json"))


def test_reports_show_a_dash_and_say_why() -> None:
    m = compute_metrics(Y, one_hot(PRED), ATTR, GROUP, INFO)
    labels = LabelArrays.of(Y, ATTR, GROUP, 2, 2, 4)
    metrics = _document(_split(m), _split(m))
    metrics["amplification"] = {
        "split": "test",
        "reference": "teacher",
        "resamples": 20,
        "confidence": 0.95,
        "students": {"kd": amplification(labels, [PRED], [PRED], resamples=20)},
    }
    check_metrics(metrics, Path("metrics.json"))
    table = comparison_table(metrics, "test")
    dp = table.headers.index("DP diff")
    assert all(row[dp] == "—" for row in table.rows)
    note = f"— = undefined: recall disparity MAD, EO diff, DP diff of teacher, kd (test split): {REASON}."
    assert table.notes == (note,)
    md = render_markdown(metrics)
    assert md.count(note) == 2  # the test comparison and the amplification tables
    assert note.replace("test split", "val split") in md
    test_section = md.split("## Test split")[1].split("## ")[0]
    rows = [line.strip("|").split(" | ") for line in test_section.splitlines() if line.startswith("| kd ")]
    assert [row[dp].strip() for row in rows] == ["—"]
    page = render_html(metrics, [])
    assert f'<p class="note">{note}</p>' in page
