"""Learning-rate schedules: hand-computed multipliers, and the scheduler built from a TrainConfig."""

from __future__ import annotations

import math

import pytest
import torch

from fairdistill.config import TrainConfig
from fairdistill.train.optim import build_optimizer, build_scheduler, lr_factor


def test_warm_up_then_linear_decay_hand_computed() -> None:
    # 10 steps, 2 of warm-up: 1/3, 2/3, then 1 - (s - 2) / 8
    factors = [lr_factor(s, 10, 2, "linear") for s in range(10)]
    assert factors == pytest.approx([1 / 3, 2 / 3, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125])


def test_cosine_without_warm_up_hand_computed() -> None:
    assert [lr_factor(s, 4, 0, "cosine") for s in range(5)] == pytest.approx(
        [1.0, (1 + math.cos(math.pi / 4)) / 2, 0.5, (1 + math.cos(3 * math.pi / 4)) / 2, 0.0]
    )


def test_constant_is_flat_after_warm_up() -> None:
    assert [lr_factor(s, 6, 1, "constant") for s in range(6)] == [0.5, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_scheduler_from_config_steps_per_batch() -> None:
    param = torch.nn.Parameter(torch.zeros(1))
    config = TrainConfig(epochs=2, lr=0.1, scheduler="linear", warmup_epochs=0.5)
    optimizer = build_optimizer([("w", param)], config)
    scheduler = build_scheduler(optimizer, config, steps_per_epoch=4)  # 8 steps, 2 of warm-up
    seen = []
    for _ in range(8):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1 * 5 / 6, 0.1 * 4 / 6, 0.1 * 3 / 6, 0.1 * 2 / 6, 0.1 / 6])


def test_unknown_scheduler_is_refused_by_the_config() -> None:
    from fairdistill.errors import ConfigError
    from fairdistill.registry import validate_options

    with pytest.raises(ConfigError, match="scheduler"):
        validate_options(TrainConfig, {"scheduler": "step"}, where="student.train")
