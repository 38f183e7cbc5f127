"""The fair-constraint weighting (FairBatch-style cell weights) against hand-computed updates.

The student of these tests is a TappedModel around ``nn.Identity``: its logits are its inputs, so the predictions
on the train split, and with them every measured rate, are chosen by hand.
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.multiprocessing as mp
from torch import nn

from cli_runner import run_cli, tiny_config
from fairdistill.config import MethodConfig
from fairdistill.data.core import Batch, DatasetInfo, SplitDataset, label_attr_groups
from fairdistill.distill import WEIGHTINGS, Method, MethodContext, TrainState, build_method
from fairdistill.distill.fair_constraint import DEFAULT_STEP, FairConstraintOptions, FairConstraintWeighting
from fairdistill.distill.losses import CrossEntropyLoss
from fairdistill.errors import ConfigError
from fairdistill.models.core import ModelOutput, TappedModel
from fairdistill.processes import Processes
from fairdistill.registry import Options

INFO = DatasetInfo("toy", 2, ("neg", "pos"), ("a0", "a1"), label_attr_groups(("neg", "pos"), ("a0", "a1")), "tabular")


def dataset(cells: list[tuple[int, int, int, int]], num_classes: int = 2) -> SplitDataset:
    """Examples from (label, attribute, count, how many of them the student predicts as `label`) rows.

    The input of an example is the one-hot of its prediction: the label when right, else the next class.
    """
    y, attr, pred = [], [], []
    for label, value, count, right in cells:
        y += [label] * count
        attr += [value] * count
        pred += [label] * right + [(label + 1) % num_classes] * (count - right)
    yt, at = torch.tensor(y), torch.tensor(attr)
    x = torch.eye(num_classes)[torch.tensor(pred)]
    return SplitDataset({"x": x}, yt, at, yt * 2 + at)


# 20 examples. TPR: a0 1/4, a1 5/6 (error 0.75 vs 1/6); FPR: a0 1/5, a1 3/5.
# Selection rate P(ŷ = pos | a): a0 (1 + 1)/9, a1 (5 + 3)/11.
TRAIN = dataset([(1, 0, 4, 1), (1, 1, 6, 5), (0, 0, 5, 4), (0, 1, 5, 2)])
STUDENT = TappedModel(nn.Identity())


def make(train: SplitDataset = TRAIN, info: DatasetInfo = INFO, **options) -> FairConstraintWeighting:
    return FairConstraintWeighting(FairConstraintOptions(**options), MethodContext(info, train), "m.weighting")


def step(weighting: FairConstraintWeighting, epoch: int = 0) -> dict[str, float]:
    state = TrainState(epoch=epoch, model=STUDENT)
    weighting.on_epoch_end(state)
    return weighting.epoch_stats(state)


def approx_rows(rows: list[list[float]]) -> object:
    """pytest.approx of a matrix given by rows (compared with a flattened tensor)."""
    return pytest.approx([v for row in rows for v in row])


def cell(weighting: FairConstraintWeighting, label: int, value: int) -> float:
    return float(weighting.weight_table[label, value])


def test_first_epoch_weighs_every_example_one() -> None:
    for constraint in ("equalized-odds", "equal-opportunity", "demographic-parity"):
        weighting = make(constraint=constraint)
        assert weighting.weight_table.flatten().tolist() == [1.0] * 4


def share_update(shares: list[float], violations: list[float], eta: float) -> list[float]:
    """λ_k·exp(η·v_k) / Σ λ_k'·exp(η·v_k'), written out."""
    scaled = [lam * math.exp(eta * v) for lam, v in zip(shares, violations, strict=True)]
    return [value / sum(scaled) for value in scaled]


def test_equalized_odds_update_by_hand() -> None:
    weighting = make(constraint="equalized-odds", step=2.0)
    stats = step(weighting)
    # label pos: errors 3/4 (a0) and 1/6 (a1), pooled 4/10: v = (0.35, -0.2333); shares (4/10, 6/10)
    pos = share_update([0.4, 0.6], [0.75 - 0.4, 1 / 6 - 0.4], 2.0)
    # label neg: FPRs 1/5 (a0) and 3/5 (a1), pooled 4/10: v = (-0.2, 0.2); shares (5/10, 5/10)
    neg = share_update([0.5, 0.5], [0.2 - 0.4, 0.6 - 0.4], 2.0)
    assert weighting.shares.flatten().tolist() == approx_rows([neg, pos])
    assert pos[0] == pytest.approx(0.681615, abs=1e-6) and neg[1] == pytest.approx(0.689974, abs=1e-6)
    # w = λ·N_y / N_(y,a): toward the violating cells (a0's positives, a1's negatives)
    assert cell(weighting, 1, 0) == pytest.approx(pos[0] * 10 / 4) == pytest.approx(1.704037, abs=1e-6)
    assert cell(weighting, 1, 1) == pytest.approx(pos[1] * 10 / 6)
    assert cell(weighting, 0, 0) == pytest.approx(neg[0] * 10 / 5)
    assert cell(weighting, 0, 1) == pytest.approx(neg[1] * 10 / 5)
    assert stats["fair_train_gap_pos"] == pytest.approx(0.75 - 1 / 6)
    assert stats["fair_train_gap_neg"] == pytest.approx(0.6 - 0.2)
    assert stats["fair_train_gap"] == pytest.approx(0.75 - 1 / 6)
    assert stats["fair_weight_pos|a0"] == pytest.approx(pos[0] * 10 / 4, rel=1e-6)
    # the weights are per (label, attribute) cell, and their mean over the train split stays 1
    table = weighting.weights(batch(TRAIN), ModelOutput(torch.zeros(20, 2)), torch.ones(20), TrainState())
    expected = [cell(weighting, int(y), int(a)) for y, a in zip(TRAIN.y, TRAIN.attr, strict=True)]
    assert table.tolist() == pytest.approx(expected)
    assert float(table.mean()) == pytest.approx(1.0)


def test_shares_are_read_from_the_buffer_not_recomputed() -> None:
    """A second update starts from the stored shares (not the empirical ones) and moves them again."""
    weighting = make(constraint="equal-opportunity", step=2.0)
    step(weighting)
    step(weighting)  # the same predictions, so the same violations
    once = share_update([0.4, 0.6], [0.35, 1 / 6 - 0.4], 2.0)
    twice = share_update(once, [0.35, 1 / 6 - 0.4], 2.0)
    assert weighting.shares[1].tolist() == pytest.approx(twice)
    assert cell(weighting, 1, 0) == pytest.approx(twice[0] * 10 / 4)


def test_equal_opportunity_moves_only_the_positive_label() -> None:
    weighting = make(constraint="equal-opportunity", step=2.0)
    stats = step(weighting)
    pos = share_update([0.4, 0.6], [0.35, 1 / 6 - 0.4], 2.0)
    assert weighting.shares.flatten().tolist() == approx_rows([[0.5, 0.5], pos])
    assert weighting.weight_table[0].tolist() == [1.0, 1.0]
    assert set(stats) >= {"fair_train_gap_pos"} and "fair_train_gap_neg" not in stats


def test_demographic_parity_update_by_hand() -> None:
    weighting = make(constraint="demographic-parity", step=2.0)
    stats = step(weighting)
    assert stats["fair_train_gap"] == pytest.approx(8 / 11 - 2 / 9)
    # blocks are attribute values with shares over labels: a0 (neg 5/9, pos 4/9), a1 (neg 5/11, pos 6/11).
    # pooled selection rate 10/20; a0 selects 2/9 (too rarely: its positives gain), a1 8/11 (its negatives gain)
    short0, short1 = 0.5 - 2 / 9, 0.5 - 8 / 11
    neg0, pos0 = share_update([5 / 9, 4 / 9], [-short0, short0], 2.0)
    neg1, pos1 = share_update([5 / 11, 6 / 11], [-short1, short1], 2.0)
    assert weighting.shares.flatten().tolist() == approx_rows([[neg0, neg1], [pos0, pos1]])
    # w = μ·N_a / N_(y,a)
    assert cell(weighting, 1, 0) == pytest.approx(pos0 * 9 / 4) and cell(weighting, 1, 0) > 1.0
    assert cell(weighting, 0, 0) == pytest.approx(neg0 * 9 / 5)
    assert cell(weighting, 1, 1) == pytest.approx(pos1 * 11 / 6) and cell(weighting, 1, 1) < 1.0
    assert cell(weighting, 0, 1) == pytest.approx(neg1 * 11 / 5)


def test_a_large_step_stays_finite_and_keeps_every_share() -> None:
    weighting = make(constraint="equalized-odds", step=100.0)
    for epoch in range(20):  # the ratio of a0's to a1's positive share grows by e^58 per update
        step(weighting, epoch)
    assert torch.isfinite(weighting.shares).all() and torch.isfinite(weighting.weight_table).all()
    assert weighting.shares.sum(1).tolist() == pytest.approx([1.0, 1.0])
    assert float(weighting.shares[1, 0]) == pytest.approx(1.0) and float(weighting.shares[0, 1]) == pytest.approx(1.0)


def test_no_gap_no_move() -> None:
    fair = dataset([(1, 0, 4, 2), (1, 1, 6, 3), (0, 0, 5, 5), (0, 1, 5, 5)])
    weighting = make(fair, constraint="equalized-odds", step=5.0)
    assert step(weighting)["fair_train_gap"] == 0.0
    assert weighting.weight_table.flatten().tolist() == pytest.approx([1.0] * 4)


def test_several_attribute_values_every_cell_moves_by_its_violation() -> None:
    attrs = ("a", "b", "c")
    info = DatasetInfo("toy3", 2, ("neg", "pos"), attrs, label_attr_groups(("neg", "pos"), attrs), "tabular")
    # positives: TPR a 2/4, b 1/4, c 4/4; pooled error 5/12
    train = dataset([(1, 0, 4, 2), (1, 1, 4, 1), (1, 2, 4, 4), (0, 0, 3, 3), (0, 1, 3, 3), (0, 2, 3, 3)])
    weighting = make(train, info, constraint="equal-opportunity", step=2.0)
    stats = step(weighting)
    pos = share_update([1 / 3] * 3, [0.5 - 5 / 12, 0.75 - 5 / 12, 0.0 - 5 / 12], 2.0)
    assert weighting.shares[1].tolist() == pytest.approx(pos)
    assert weighting.weight_table[1].tolist() == pytest.approx([3 * v for v in pos])
    assert pos[1] > 1 / 3 > pos[2] and pos[1] > pos[0] > pos[2]  # ordered like the errors
    assert stats["fair_train_gap_pos"] == pytest.approx(0.75)


def test_several_classes_every_class_is_positive_for_equal_opportunity() -> None:
    labels = ("x", "y", "z")
    info = DatasetInfo("toy-c3", 3, labels, ("a0", "a1"), label_attr_groups(labels, ("a0", "a1")), "tabular")
    # recall per class: x a0 1/2, a1 2/2 (pooled error 1/4); y a0 2/2, a1 1/4 (pooled 3/6); z 1/1, 1/1
    train = dataset([(0, 0, 2, 1), (0, 1, 2, 2), (1, 0, 2, 2), (1, 1, 4, 1), (2, 0, 1, 1), (2, 1, 1, 1)], 3)
    weighting = make(train, info, constraint="equal-opportunity", step=1.0)
    stats = step(weighting)
    x = share_update([0.5, 0.5], [0.5 - 0.25, 0.0 - 0.25], 1.0)
    y = share_update([2 / 6, 4 / 6], [0.0 - 0.5, 0.75 - 0.5], 1.0)
    assert weighting.shares.flatten().tolist() == approx_rows([x, y, [0.5, 0.5]])
    assert stats["fair_train_gap_x"] == pytest.approx(0.5) and stats["fair_train_gap_y"] == pytest.approx(0.75)
    assert stats["fair_train_gap_z"] == 0.0
    for constraint in ("equalized-odds", "demographic-parity"):
        with pytest.raises(
            ConfigError,
            match=rf"m\.weighting\.constraint: {constraint} is defined here for two classes, and dataset toy-c3 "
            r"has 3; use constraint: equal-opportunity",
        ):
            make(train, info, constraint=constraint)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"step": 0}, r"weighting\.step: Input should be greater than 0"),
        ({"step": 100.5}, r"weighting\.step: Input should be less than or equal to 100"),
        ({"step": True}, r"weighting\.step: expected a number, got the boolean True"),
        ({"step": "0.1"}, r"weighting\.step: expected a number, got the text"),
        ({"step": float("nan")}, r"weighting\.step: Input should be a finite number"),
        ({"constraint": "equalised-odds"}, r"weighting\.constraint: Input should be 'equal-opportunity', "),
        ({"focus": "worst"}, r"weighting\.focus: unknown field"),
        ({"eta": 0.1}, r"weighting\.eta: unknown field"),
    ],
)
def test_options_are_validated_naming_the_field(raw: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        WEIGHTINGS.options("fair-constraint", raw, where="methods.0(m).weighting")


def test_defaults_and_registration() -> None:
    options = WEIGHTINGS.options("fair-constraint", {}, where="w")
    assert isinstance(options, FairConstraintOptions)
    assert (options.constraint, options.step, options.normalize) == ("equal-opportunity", DEFAULT_STEP, False)
    assert WEIGHTINGS.get("fair-constraint").target is FairConstraintWeighting


def test_listed_by_the_command_line(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(monkeypatch, "list") == 0
    out = capsys.readouterr().out
    (line,) = [row for row in out.splitlines() if row.strip().startswith("fair-constraint")]
    assert "cell weights" in line


def test_refuses_data_without_an_attribute() -> None:
    info = DatasetInfo("plain", 2, ("neg", "pos"), ("all",), ("neg|all", "pos|all"), "tabular", groups_known=False)
    with pytest.raises(ConfigError, match="needs group labels, but dataset plain has none"):
        make(info=info)
    one_value = dataset([(1, 1, 4, 2), (0, 1, 4, 4)])
    with pytest.raises(
        ConfigError,
        match=r"m\.weighting: weighting fair-constraint compares attribute values, and the train split "
        r"of dataset toy has one \(a1\)",
    ):
        make(one_value)


def test_state_is_carried_by_the_method_state_dict() -> None:
    """Checkpoints and --resume carry the shares: a fresh weighting loading them weighs like the moved one."""
    config = MethodConfig.model_validate(
        {"name": "m", "loss": {"kind": "erm"}, "weighting": {"kind": "fair-constraint", "step": 2.0}}
    )
    context = MethodContext(INFO, TRAIN)
    moved, fresh = build_method(config, context, "m"), build_method(config, context, "m")
    assert isinstance(moved.weighting, FairConstraintWeighting) and isinstance(fresh.weighting, FairConstraintWeighting)
    step(moved.weighting)
    assert "weighting.shares" in moved.state_dict()
    fresh.load_state_dict(moved.state_dict())
    assert torch.equal(fresh.weighting.weight_table, moved.weighting.weight_table)
    assert float(fresh.weighting.weight_table[1, 0]) == pytest.approx(1.704037, abs=1e-6)


def batch(data: SplitDataset) -> Batch:
    idx = torch.arange(len(data))
    return Batch({"x": data.encodings["x"]}, data.y, data.attr, data.group, idx)


def _distributed_step(rank: int, world: int, init_file: str, out: str) -> None:
    """One between-epoch update through the method, per process; process 1's student predicts differently."""
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        weighting = make(constraint="equal-opportunity", step=2.0)
        method = Method("fair", CrossEntropyLoss(Options(), MethodContext(INFO, TRAIN)), weighting)
        # on process 1 every positive of a1 is missed; each process predicts its shard of the train split
        student = STUDENT if rank == 0 else TappedModel(_MissPositivesOf(1))
        method.on_epoch_end(TrainState(model=student, processes=Processes.current()))
        torch.save(weighting.shares.clone(), f"{out}/{rank}.pt")
    finally:
        dist.destroy_process_group()


class _MissPositivesOf(nn.Module):
    """Predicts neg for every example of attribute value ``value`` (read from the train split by position)."""

    def __init__(self, value: int) -> None:
        super().__init__()
        self.value = value

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        miss = (TRAIN.attr == self.value) & (TRAIN.y == 1)
        if len(x) != len(TRAIN):  # a shard: the rows at odd positions (process 1 of 2)
            miss = miss[1::2]
        return torch.where(miss[:, None], torch.tensor([1.0, 0.0]), x)


def test_several_processes_take_the_same_step() -> None:
    # what process 1 alone would do: the a1 positives are all missed, so a1 gains
    alone = make(constraint="equal-opportunity", step=2.0)
    alone.on_epoch_end(TrainState(model=TappedModel(_MissPositivesOf(1))))
    # errors 3/4 (a0) and 6/6 (a1), pooled 9/10
    assert alone.shares[1].tolist() == pytest.approx(share_update([0.4, 0.6], [0.75 - 0.9, 1.0 - 0.9], 2.0))
    with tempfile.TemporaryDirectory() as folder:
        mp.spawn(_distributed_step, args=(2, f"{folder}/init", folder), nprocs=2, join=True)
        shares = [torch.load(f"{folder}/{rank}.pt") for rank in (0, 1)]
    # the measurement is of the gathered predictions: even positions as process 0's student predicts them, odd
    # positions as process 1's; counted here by hand from the rows
    logits = TRAIN.encodings["x"].clone()
    odd = torch.arange(len(TRAIN)) % 2 == 1
    missed = odd & (TRAIN.attr == 1) & (TRAIN.y == 1)
    logits[missed] = torch.tensor([1.0, 0.0])
    wrong = logits.argmax(1) != TRAIN.y
    positives = TRAIN.y == 1
    errors = [float(wrong[positives & (TRAIN.attr == a)].float().mean()) for a in (0, 1)]
    pooled = float(wrong[positives].float().mean())
    expected = share_update([0.4, 0.6], [errors[0] - pooled, errors[1] - pooled], 2.0)
    assert shares[0][1].tolist() == pytest.approx(expected)
    assert torch.equal(shares[0], shares[1])


#: A tiny Adult run: 2,000 rows, small MLPs, a kd student of 3 epochs (two updates of the weights).
TINY_ADULT: dict[str, Any] = {
    "name": "tiny-adult",
    "seed": 0,
    "data": {"name": "adult", "max_examples": 2000},
    "teacher": {"model": {"name": "mlp", "hidden": [16]}, "train": {"epochs": 2, "batch_size": 128, "lr": 3e-3}},
    "student": {"model": {"name": "mlp", "hidden": [8]}, "train": {"epochs": 3, "batch_size": 128, "lr": 1e-2}},
    "select": "last",
}


@pytest.mark.parametrize("protected", ["sex", "race"])  # two attribute values, and five
def test_end_to_end_tiny_adult(protected: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    methods = [
        {
            "name": "kd-fair",
            "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.9},
            "weighting": {"kind": "fair-constraint", "constraint": "equalized-odds", "step": 5.0},
        }
    ]
    data = {**TINY_ADULT["data"], "protected": protected}
    config = tiny_config(tmp_path / "tiny.yaml", TINY_ADULT, methods=methods, data=data)
    assert run_cli(monkeypatch, "run", str(config), "--output", str(tmp_path / "runs"), "--quiet") == 0
    capsys.readouterr()
    (run_dir,) = (tmp_path / "runs").iterdir()
    metrics = json.loads((run_dir / "metrics.json").read_text())
    entry = metrics["models"]["kd-fair"]
    test = entry["splits"]["test"]
    assert 0.5 < test["accuracy"] <= 1.0 and test["n"] > 0
    assert test["recall_disparity_mad"] is not None and test["eo_difference"] is not None
    first, second, _ = entry["history"]
    # epoch 1 trained with w = 1; the update after it set the per-cell weights epoch 2 trained with
    assert first["weight_mean"] == pytest.approx(1.0) and first["weight_max"] == pytest.approx(1.0)
    moved = {k: v for k, v in first.items() if k.startswith("fair_weight_")}
    # one weight per (label, attribute) cell of the train split (a tiny race split may miss a rare cell)
    every_cell = {f"fair_weight_{group}" for group in metrics["dataset"]["group_names"]}
    assert set(moved) <= every_cell and len(moved) >= 4 and (protected == "race" or set(moved) == every_cell)
    assert first["fair_train_gap"] > 0 and any(v != pytest.approx(1.0) for v in moved.values())
    assert second["weight_max"] == pytest.approx(max(moved.values()), rel=1e-5)
    assert second["weight_mean"] == pytest.approx(1.0, rel=1e-5)  # the weights average 1 over the train split
