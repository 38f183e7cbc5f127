"""The kd and erm losses against hand computations written with plain Python loops."""

from __future__ import annotations

import math

import pytest
import torch

from fairdistill.data.core import Batch, DatasetInfo, SplitDataset
from fairdistill.distill import LOSSES, MethodContext, TrainState
from fairdistill.distill.losses import KDOptions
from fairdistill.models.core import ModelOutput
from fairdistill.registry import Options

INFO = DatasetInfo("toy", 3, ("a", "b", "c"), ("0", "1"), ("g",), "tabular", (2,))
_Z = torch.zeros(4, dtype=torch.long)
CONTEXT = MethodContext(INFO, SplitDataset({"x": torch.zeros(4, 2)}, _Z, _Z, _Z))


def _softmax(row: list[float], tau: float = 1.0) -> list[float]:
    exps = [math.exp(v / tau) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def _batch(y: list[int]) -> Batch:
    n = len(y)
    z = torch.zeros(n, dtype=torch.long)
    return Batch(inputs={}, y=torch.tensor(y), attr=z, group=z, index=torch.arange(n))


STUDENT = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0], [2.0, 2.0, 2.0], [-0.3, 0.7, 0.1]]
TEACHER = [[0.5, 3.0, -1.0], [1.0, 0.0, 2.0], [4.0, 0.0, 1.0], [0.2, 0.1, 0.0]]
LABELS = [1, 2, 0, 1]


def test_erm_is_per_example_cross_entropy() -> None:
    loss = LOSSES.get("erm").target(Options(), CONTEXT)
    out = loss(_batch(LABELS), ModelOutput(torch.tensor(STUDENT)), None, TrainState())
    expected = [-math.log(_softmax(row)[y]) for row, y in zip(STUDENT, LABELS, strict=True)]
    assert out.shape == (4,)
    assert out.tolist() == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("tau,alpha", [(2.0, 0.9), (1.0, 0.5), (4.0, 1.0), (3.0, 0.0)])
def test_kd_matches_hand_computation(tau: float, alpha: float) -> None:
    loss = LOSSES.get("kd").target(KDOptions(tau=tau, alpha=alpha), CONTEXT)
    out = loss(
        _batch(LABELS),
        ModelOutput(torch.tensor(STUDENT, dtype=torch.float64)),
        ModelOutput(torch.tensor(TEACHER, dtype=torch.float64)),
        TrainState(),
    )
    expected = []
    for s_row, t_row, y in zip(STUDENT, TEACHER, LABELS, strict=True):
        ce = -math.log(_softmax(s_row)[y])
        p_t, p_s = _softmax(t_row, tau), _softmax(s_row, tau)
        kl = sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
        expected.append((1 - alpha) * ce + alpha * tau * tau * kl)
    assert out.tolist() == pytest.approx(expected, abs=1e-9)


def test_kd_is_zero_kl_when_student_equals_teacher() -> None:
    loss = LOSSES.get("kd").target(KDOptions(tau=2.0, alpha=1.0), CONTEXT)
    logits = torch.tensor(TEACHER)
    out = loss(_batch(LABELS), ModelOutput(logits), ModelOutput(logits.clone()), TrainState())
    assert torch.allclose(out, torch.zeros(4), atol=1e-6)


def test_kd_requires_a_teacher_and_erm_does_not() -> None:
    assert LOSSES.get("kd").target.requires_teacher
    assert not LOSSES.get("erm").target.requires_teacher


def test_kd_options_are_validated() -> None:
    with pytest.raises(ValueError):
        KDOptions(tau=0.0)
    with pytest.raises(ValueError):
        KDOptions(alpha=1.5)
