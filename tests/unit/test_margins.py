"""Tests of fairdistill.evaluate.margins on hand-built predictions frames with early-readout columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fairdistill.evaluate.margins import (
    FINAL_LAYER,
    confidence_margin,
    layer_probabilities,
    margins_by_layer,
    margins_summary,
    worst_group,
    wrong_example_margins,
)


def frame_with_readouts() -> pd.DataFrame:
    """4 examples, 3 classes; readouts at taps block1 and block2; group 1 is the worst (half right)."""
    final = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.5, 0.3, 0.2], [0.2, 0.2, 0.6]])
    block1 = np.array([[0.4, 0.3, 0.3], [0.3, 0.4, 0.3], [0.34, 0.33, 0.33], [0.3, 0.3, 0.4]])
    block2 = np.array([[0.6, 0.3, 0.1], [0.2, 0.6, 0.2], [0.45, 0.35, 0.2], [0.1, 0.3, 0.6]])
    frame = pd.DataFrame({"index": [0, 1, 2, 3], "y": [0, 1, 1, 2], "attr": [0, 1, 0, 1], "group": [0, 1, 1, 2]})
    frame["pred"] = final.argmax(axis=1)
    for c in range(3):
        frame[f"prob_{c}"] = final[:, c]
    for tap, probs in (("block1", block1), ("block2", block2)):
        for c in range(3):
            frame[f"readout_{tap}_prob_{c}"] = probs[:, c]
    return frame


def test_confidence_margin_is_top1_minus_top2() -> None:
    probs = np.array([[0.7, 0.2, 0.1], [0.3, 0.3, 0.4], [0.5, 0.5, 0.0]])
    assert confidence_margin(probs) == pytest.approx([0.5, 0.1, 0.0])
    with pytest.raises(ValueError):
        confidence_margin(np.ones((3, 1)))


def test_layers_are_the_readouts_in_order_then_final() -> None:
    layers = layer_probabilities(frame_with_readouts())
    assert list(layers) == ["block1", "block2", FINAL_LAYER]
    assert layers["block2"].shape == (4, 3)


def test_margins_by_layer_on_all_and_on_the_worst_group() -> None:
    frame = frame_with_readouts()
    assert worst_group(frame) == 1  # example 2 (group 1) is misclassified
    result = margins_by_layer(frame)
    assert result["worst_group"] == 1 and result["worst_group_size"] == 2
    layers = result["layers"]
    assert layers[FINAL_LAYER]["all"] == pytest.approx(np.mean([0.5, 0.7, 0.2, 0.4]))
    assert layers[FINAL_LAYER]["worst_group"] == pytest.approx(np.mean([0.7, 0.2]))
    assert layers["block1"]["all"] == pytest.approx(np.mean([0.1, 0.1, 0.01, 0.1]))
    assert layers["block1"]["worst_group"] == pytest.approx(np.mean([0.1, 0.01]))
    assert layers["block2"]["worst_group"] == pytest.approx(np.mean([0.4, 0.1]))
    # an explicit group
    assert margins_by_layer(frame, group=2)["layers"][FINAL_LAYER]["worst_group"] == pytest.approx(0.4)


def test_final_layer_only_without_readouts() -> None:
    frame = frame_with_readouts()
    plain = frame[[c for c in frame.columns if not c.startswith("readout_")]]
    assert list(margins_by_layer(plain)["layers"]) == [FINAL_LAYER]


def test_teacher_and_student_margins_on_the_students_errors() -> None:
    student = frame_with_readouts()
    teacher = student.copy()
    teacher[["prob_0", "prob_1", "prob_2"]] = [[0.9, 0.05, 0.05], [0.0, 1.0, 0.0], [0.2, 0.7, 0.1], [0.0, 0.0, 1.0]]
    teacher["pred"] = teacher[["prob_0", "prob_1", "prob_2"]].to_numpy().argmax(axis=1)
    shuffled = teacher.iloc[[3, 1, 0, 2]].reset_index(drop=True)  # rows are matched by index, not position
    result = wrong_example_margins(student, shuffled)
    assert result["index"].tolist() == [2]
    assert result["student"] == pytest.approx([0.2])
    assert result["teacher"] == pytest.approx([0.5])
    summary = margins_summary({"teacher": teacher, "kd": student}, group_names=["g0", "g1", "g2"])
    assert summary["student_errors"]["kd"] == {
        "n": 1,
        "teacher_mean": pytest.approx(0.5),
        "student_mean": pytest.approx(0.2),
    }
    assert summary["models"]["kd"]["worst_group_name"] == "g1"
    with pytest.raises(ValueError, match="same examples"):
        wrong_example_margins(student, teacher.iloc[:3])
