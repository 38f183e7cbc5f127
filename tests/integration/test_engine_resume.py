"""The training engine continues from its per-epoch checkpoint exactly as an uninterrupted fit would (CPU)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fairdistill.config import MethodConfig, TrainConfig
from fairdistill.data.core import DatasetInfo, SplitDataset, label_attr_groups
from fairdistill.distill import MethodContext, TeacherOutputs, build_method
from fairdistill.errors import FairdistillError
from fairdistill.models import build_model
from fairdistill.train.engine import fit, make_accelerator

INFO = DatasetInfo("toy", 2, ("n", "p"), ("a0", "a1"), label_attr_groups(("n", "p"), ("a0", "a1")), "tabular", (5,))
METHODS = {
    "dedier": {"name": "dedier", "loss": {"kind": "kd"}, "weighting": {"kind": "early-readout", "head_epochs": 3}},
    "groupdro": {"name": "groupdro", "loss": {"kind": "kd"}, "weighting": {"kind": "groupdro", "eta": 0.1}},
    "adversarial": {"name": "adversarial", "loss": {"kind": "kd"}, "adversary": {"weight": 0.5}},
    "jtt": {"name": "jtt", "loss": {"kind": "erm"}, "weighting": {"kind": "jtt", "identify_epochs": 1}},
}


class Crash(RuntimeError):
    pass


def data() -> tuple[SplitDataset, TeacherOutputs]:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(120, 5, generator=g)
    y = (x[:, 0] + 0.3 * torch.randn(120, generator=g) > 0).long()
    attr = (x[:, 1] > 0).long()
    train = SplitDataset({"x": x}, y, attr, y * 2 + attr)
    teacher = TeacherOutputs(np.stack([-x[:, 0].numpy(), x[:, 0].numpy()], 1).astype(np.float32) * 2)
    return train, teacher


COSINE = dict(epochs=4, batch_size=16, lr=0.01, scheduler="cosine", warmup_epochs=1)


def run_fit(method_name: str, checkpoint: Path, crash_at: int | None = None, **train_options):
    train, teacher = data()
    torch.manual_seed(1)
    model = build_model({"name": "mlp", "hidden": [8, 6]}, INFO, where="m")
    context = MethodContext(
        INFO,
        train,
        val=train,
        teacher_train=teacher,
        teacher_val=teacher,
        num_epochs=4,
        student_taps=tuple(model.tap_names),
        student_tap_dims={"hidden1": 8, "hidden2": 6},
        student_embedding_dim=6,
    )
    method = build_method(MethodConfig.model_validate(METHODS[method_name]), context, "m")
    calls = {"n": 0}

    def validate(m) -> dict[str, float]:
        calls["n"] += 1
        if crash_at is not None and calls["n"] == crash_at:
            raise Crash()
        with torch.no_grad():
            pred = m({"x": train.encodings["x"]}).logits.argmax(1)
        correct = (pred == train.y).float()
        groups = [float(correct[train.group == g].mean()) for g in range(4) if (train.group == g).any()]
        return {"val_acc": float(correct.mean()), "val_worst_group_acc": min(groups)}

    train_config = TrainConfig(**(train_options or dict(epochs=4, batch_size=16, lr=0.01)))
    result = fit(
        model,
        method,
        train,
        train_config,
        accelerator=make_accelerator("cpu"),
        seed=0,
        teacher_cache=teacher,
        validate=validate,
        select="val_worst_group_acc",
        desc=method_name,
        checkpoint=checkpoint,
    )
    return model, result


@pytest.mark.parametrize("method_name", list(METHODS))
def test_resume_after_a_crash_ends_like_an_uninterrupted_fit(tmp_path: Path, method_name: str) -> None:
    straight_model, straight = run_fit(method_name, tmp_path / "straight.pt")
    with pytest.raises(Crash):
        run_fit(method_name, tmp_path / "crashed.pt", crash_at=3)  # dies in epoch 3, after 2 checkpoints
    resumed_model, resumed = run_fit(method_name, tmp_path / "crashed.pt")
    strip = lambda history: [{k: v for k, v in e.items()} for e in history]  # noqa: E731
    assert strip(resumed.history) == strip(straight.history)
    assert resumed.best_epoch == straight.best_epoch
    for (name, a), (_, b) in zip(straight_model.state_dict().items(), resumed_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("method_name", ["dedier", "groupdro"])
def test_resume_restores_the_learning_rate_schedule(tmp_path: Path, method_name: str) -> None:
    straight_model, straight = run_fit(method_name, tmp_path / "straight.pt", **COSINE)
    with pytest.raises(Crash):
        run_fit(method_name, tmp_path / "crashed.pt", crash_at=3, **COSINE)
    assert torch.load(tmp_path / "crashed.pt", weights_only=True)["scheduler"]["last_epoch"] == 16
    resumed_model, resumed = run_fit(method_name, tmp_path / "crashed.pt", **COSINE)
    assert resumed.history == straight.history
    for (name, a), (_, b) in zip(straight_model.state_dict().items(), resumed_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    # 120 examples / 16 = 8 steps an epoch, 32 in all, 8 of warm-up; after epoch e the schedule is at step 8e:
    # cosine progress (8e - 8) / 24 → 0.01 * (1 + cos(pi * progress)) / 2 = 0.01, 0.0075, 0.0025, 0
    assert [r["lr"] for r in straight.history] == pytest.approx([0.01, 0.0075, 0.0025, 0.0], abs=1e-12)


def test_a_corrupt_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.pt"
    path.write_bytes(b"not a checkpoint at all")
    with pytest.raises(FairdistillError, match=r"checkpoint .*broken\.pt is corrupt"):
        run_fit("groupdro", path)
