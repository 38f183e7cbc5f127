"""Engine options: gradient accumulation, gradient clipping, weight-decay groups and mixed precision."""

from __future__ import annotations

import math

import pytest
import torch

from fairdistill.config import MethodConfig, TrainConfig
from fairdistill.data.core import DatasetInfo, SplitDataset, label_attr_groups
from fairdistill.distill import MethodContext, build_method
from fairdistill.models import build_model
from fairdistill.train.engine import fit, make_accelerator
from fairdistill.train.optim import build_optimizer

INFO = DatasetInfo("toy", 2, ("n", "p"), ("a0", "a1"), label_attr_groups(("n", "p"), ("a0", "a1")), "tabular", (5,))


def toy_split(n: int = 96) -> SplitDataset:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 5, generator=g)
    y = (x[:, 0] + 0.3 * torch.randn(n, generator=g) > 0).long()
    attr = (x[:, 1] > 0).long()
    return SplitDataset({"x": x}, y, attr, y * 2 + attr)


def train_erm(config: TrainConfig, accelerator=None):
    train = toy_split()
    torch.manual_seed(1)
    model = build_model({"name": "mlp", "hidden": [8]}, INFO, where="m")
    method = build_method(MethodConfig(name="erm", loss={"kind": "erm"}), MethodContext(INFO, train), "m")
    result = fit(model, method, train, config, accelerator=accelerator or make_accelerator("cpu"), seed=0)
    return model, result


def test_accumulating_two_half_batches_equals_one_full_batch() -> None:
    # the shuffled order depends only on (seed, epoch), so batches of 8 taken two at a time are exactly the
    # batches of 16; with mean-reduced losses the summed half-gradients / 2 are the full-batch gradient
    full, _ = train_erm(TrainConfig(epochs=2, batch_size=16, lr=0.01))
    halves, _ = train_erm(TrainConfig(epochs=2, batch_size=8, lr=0.01, gradient_accumulation_steps=2))
    single, _ = train_erm(TrainConfig(epochs=2, batch_size=8, lr=0.01))
    for (name, a), (_, b), (_, _c) in zip(
        full.state_dict().items(), halves.state_dict().items(), single.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6, msg=name)
    assert any(
        not torch.allclose(a, c) for a, c in zip(full.state_dict().values(), single.state_dict().values(), strict=True)
    )


def test_clipping_happens_once_per_optimiser_step(monkeypatch: pytest.MonkeyPatch) -> None:
    accelerator = make_accelerator("cpu")
    norms: list[float] = []
    original = accelerator.clip_grad_norm_

    def record(parameters, max_norm, *args, **kwargs):
        parameters = list(parameters)
        total = original(parameters, max_norm, *args, **kwargs)
        after = math.sqrt(sum(float(p.grad.pow(2).sum()) for p in parameters if p.grad is not None))
        norms.append(after)
        assert after <= max_norm * (1 + 1e-4)
        return total

    monkeypatch.setattr(accelerator, "clip_grad_norm_", record)
    # 96 examples / batch 10 = 10 batches an epoch, accumulated 3 at a time → 4 optimiser steps an epoch
    train_erm(
        TrainConfig(epochs=2, batch_size=10, lr=0.01, max_grad_norm=0.05, gradient_accumulation_steps=3), accelerator
    )
    assert len(norms) == 8


def test_biases_and_norm_weights_get_no_weight_decay() -> None:
    layer, norm = torch.nn.Linear(3, 2), torch.nn.LayerNorm(2)
    named = [
        ("layer.weight", layer.weight),
        ("layer.bias", layer.bias),
        ("norm.weight", norm.weight),
        ("norm.bias", norm.bias),
    ]
    optimizer = build_optimizer(named, TrainConfig(weight_decay=0.1, optimizer="adamw"))
    decayed = {id(p) for g in optimizer.param_groups if g["weight_decay"] == 0.1 for p in g["params"]}
    assert decayed == {id(layer.weight)}
    everything = build_optimizer(named, TrainConfig(weight_decay=0.1, decay_bias_and_norm=True))
    assert [g["weight_decay"] for g in everything.param_groups] == [0.1]
    by_name = build_optimizer(named, TrainConfig(weight_decay=0.1), no_decay={"layer.weight"})
    assert all(g["weight_decay"] == 0.0 for g in by_name.param_groups)


def test_bf16_mixed_precision_trains_on_the_cpu() -> None:
    try:
        accelerator = make_accelerator("cpu", "bf16")
        assert accelerator.mixed_precision == "bf16"
        model, result = train_erm(TrainConfig(epochs=2, batch_size=16, lr=0.01), accelerator)
        assert all(math.isfinite(r["train_loss"]) for r in result.history)
        assert result.history[-1]["train_loss"] < result.history[0]["train_loss"] * 1.05
    finally:
        assert make_accelerator("cpu").mixed_precision == "no", "the next run gets full precision back"
