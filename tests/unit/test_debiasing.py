"""Weightings, Teacher's pet mixing and the adversary, against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from fairdistill.config import MethodConfig
from fairdistill.data.core import Batch, DatasetInfo, SplitDataset, label_attr_groups
from fairdistill.distill import MethodContext, TeacherOutputs, TrainState, build_method
from fairdistill.distill.adversary import Adversary, AdversaryOptions, dann_strength
from fairdistill.distill.core import LossTerms
from fairdistill.distill.mixing import AdaptiveMargin, AdaptiveMarginOptions, PerGroupAlpha, PerGroupAlphaOptions
from fairdistill.distill.readout import EarlyReadout, EarlyReadoutOptions, dedier_weights, entropy_weights
from fairdistill.distill.weighting import (
    GroupBalanced,
    GroupDRO,
    GroupDROOptions,
    JTTOptions,
    JustTrainTwice,
    WeightingOptions,
)
from fairdistill.errors import ConfigError
from fairdistill.models import build_model
from fairdistill.models.core import ModelOutput

INFO = DatasetInfo("toy", 2, ("n", "p"), ("a0", "a1"), label_attr_groups(("n", "p"), ("a0", "a1")), "tabular", (4,))


def split(y: list[int], attr: list[int], x: torch.Tensor | None = None) -> SplitDataset:
    yt, at = torch.tensor(y), torch.tensor(attr)
    x = x if x is not None else torch.randn(len(y), 4, generator=torch.Generator().manual_seed(0))
    return SplitDataset({"x": x}, yt, at, yt * 2 + at)


def batch_of(data: SplitDataset, idx: list[int]) -> Batch:
    i = torch.tensor(idx)
    return Batch({"x": data.encodings["x"][i]}, data.y[i], data.attr[i], data.group[i], i)


TRAIN = split([0, 0, 0, 0, 1, 1, 1, 0], [0, 0, 0, 1, 1, 1, 0, 0])  # groups: 0,0,0,1,3,3,2,0


def _hand_dedier(probs: list[list[float]], y: list[int], beta: float, alpha: float) -> list[float]:
    """exp(β·(p(1) − p(2))^α) where the readout's top class is wrong, else 1, by a loop over the rows."""
    out = []
    for row, c in zip(probs, y, strict=True):
        top = sorted(row, reverse=True)
        out.append(math.exp(beta * (top[0] - top[1]) ** alpha) if int(np.argmax(row)) != c else 1.0)
    return out


def test_dedier_weights_power_and_product_forms() -> None:
    probs = torch.tensor([[0.9, 0.1], [0.6, 0.4], [0.3, 0.7]])
    y = torch.tensor([1, 0, 1])  # first is wrong (margin 0.8), second right, third right
    w = dedier_weights(probs, y, beta=3.0, alpha=0.2, form="power")
    assert w.tolist() == pytest.approx([math.exp(3.0 * 0.8**0.2), 1.0, 1.0], rel=1e-6)
    w = dedier_weights(probs, y, beta=3.0, alpha=0.2, form="product")
    assert w[0].item() == pytest.approx(math.exp(3.0 * 0.8 * 0.2), rel=1e-6)


def test_entropy_weights() -> None:
    probs = torch.tensor([[0.5, 0.5], [1.0, 0.0], [0.8, 0.2]])
    h = -(0.8 * math.log(0.8) + 0.2 * math.log(0.2)) / math.log(2)
    assert entropy_weights(probs, 2.0).tolist() == pytest.approx([math.exp(2.0), 1.0, math.exp(2.0 * h)], rel=1e-6)


def test_group_balanced_weights() -> None:
    weighting = GroupBalanced(WeightingOptions(), MethodContext(INFO, TRAIN), "m")
    counts = {0: 4, 1: 1, 2: 1, 3: 2}  # N = 8, G = 4 present
    expected = [8 / (4 * counts[g]) for g in TRAIN.group.tolist()]
    assert weighting.table.tolist() == pytest.approx(expected)


def test_group_balanced_weights_count_only_the_groups_present() -> None:
    # No example of group 2 (n|a1 ... groups are 2·y + attr): G = 3 present groups, not the 4 of the dataset.
    train = split([0, 0, 0, 1, 1, 0], [0, 0, 1, 1, 1, 0])  # groups 0,0,1,3,3,0
    weighting = GroupBalanced(WeightingOptions(), MethodContext(INFO, train), "m")
    counts = {0: 3, 1: 1, 3: 2}  # N = 6
    assert weighting.table.tolist() == pytest.approx([6 / (3 * counts[g]) for g in train.group.tolist()])
    # every present group weighs N / G in total
    totals = [
        sum(w for w, g in zip(weighting.table.tolist(), train.group.tolist(), strict=True) if g == k) for k in counts
    ]
    assert totals == pytest.approx([2.0, 2.0, 2.0])


def _erm_ce(logits: list[list[float]], y: list[int]) -> list[float]:
    return [math.log(sum(math.exp(v) for v in row)) - row[c] for row, c in zip(logits, y, strict=True)]


@pytest.mark.parametrize("normalize", [False, True])
def test_weighted_batch_loss_normalize_divides_by_the_weight_sum(normalize: bool) -> None:
    from fairdistill.distill import LOSSES
    from fairdistill.distill.method import Method
    from fairdistill.registry import Options

    weighting = GroupBalanced(WeightingOptions(normalize=normalize), MethodContext(INFO, TRAIN), "m")
    method = Method("m", LOSSES.get("erm").target(Options(), MethodContext(INFO, TRAIN)), weighting=weighting)
    idx = [0, 3, 4, 6]  # groups 0, 1, 3, 2: weights 8/16, 8/4, 8/8, 8/4 (sum 5.5, not the batch size 4)
    logits = [[0.3, -0.2], [1.0, 0.5], [-0.4, 0.9], [0.0, 2.0]]
    y = [TRAIN.y[i].item() for i in idx]
    loss = method.batch_loss(
        batch_of(TRAIN, idx), ModelOutput(torch.tensor(logits, dtype=torch.float64)), None, TrainState()
    )
    w = [0.5, 2.0, 1.0, 2.0]
    ce = _erm_ce(logits, y)
    weighted = sum(wi * li for wi, li in zip(w, ce, strict=True))
    assert float(loss) == pytest.approx(weighted / sum(w) if normalize else weighted / 4, rel=1e-9)


def test_groupdro_update_by_hand() -> None:
    weighting = GroupDRO(GroupDROOptions(eta=0.5), MethodContext(INFO, TRAIN), "m")
    batch = batch_of(TRAIN, [0, 1, 4, 5])  # groups 0,0,3,3
    losses = torch.tensor([1.0, 3.0, 0.5, 0.5])
    w = weighting.weights(batch, ModelOutput(torch.zeros(4, 2)), losses, TrainState())
    q = np.array([0.25 * math.exp(0.5 * 2.0), 0.25, 0.25, 0.25 * math.exp(0.5 * 0.5)])
    q /= q.sum()
    assert weighting.q.tolist() == pytest.approx(q.tolist())
    expected = [4 * q[0] / 2, 4 * q[0] / 2, 4 * q[3] / 2, 4 * q[3] / 2]
    assert w.tolist() == pytest.approx(expected, rel=1e-6)
    # mean(w · ℓ) equals Σ_g q_g L_g over the groups in the batch
    assert float((w * losses).mean()) == pytest.approx(q[0] * 2.0 + q[3] * 0.5, rel=1e-6)


def test_jtt_upweights_the_errors_of_the_first_stage_and_reinitialises() -> None:
    torch.manual_seed(0)
    model = build_model({"name": "mlp", "hidden": [3]}, INFO, where="m")
    context = MethodContext(INFO, TRAIN, num_epochs=3)
    weighting = JustTrainTwice(JTTOptions(identify_epochs=1, upweight=5.0), context, "m")
    state = TrainState(epoch=0, num_epochs=3, model=model)
    weighting.on_epoch_start(state)
    assert state.select_from_epoch == 2
    weighting.on_epoch_end(state)
    with torch.no_grad():
        wrong = model({"x": TRAIN.encodings["x"]}).logits.argmax(1) != TRAIN.y
    assert 0 < int(wrong.sum()) < len(wrong)  # both kinds occur, so an ignored upweight (all 1) is seen
    assert weighting.table.tolist() == [5.0 if bad else 1.0 for bad in wrong.tolist()]
    assert state.reinitialize_student
    with pytest.raises(ConfigError, match="identify_epochs: must be smaller"):
        JustTrainTwice(JTTOptions(identify_epochs=3), context, "m")


def test_group_methods_refuse_data_without_groups() -> None:
    info = DatasetInfo("nogroups", 2, ("n", "p"), ("all",), ("n|all", "p|all"), "tabular", (4,), groups_known=False)
    with pytest.raises(ConfigError, match="needs group labels, but dataset nogroups has none"):
        GroupDRO(GroupDROOptions(), MethodContext(info, TRAIN), "methods.0(groupdro).weighting")


def teacher_val_context() -> MethodContext:
    val = split([0, 0, 1, 1, 1], [0, 1, 0, 1, 1])  # groups 0,1,2,3,3
    # teacher predicts: right, wrong, right, right, wrong
    logits = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 2.0], [2.0, 0.0]], dtype=np.float32)
    return MethodContext(INFO, TRAIN, val=val, teacher_val=TeacherOutputs(logits))


def test_per_group_alpha_uses_validation_reliability() -> None:
    context = teacher_val_context()
    by_class = PerGroupAlpha(PerGroupAlphaOptions(by="class", alpha_max=0.9), context, "m")
    # class 0: 1/2 right, class 1: 2/3 right
    assert by_class.alphas().tolist() == pytest.approx([0.9 * 0.5, 0.9 * 2 / 3])
    by_group = PerGroupAlpha(PerGroupAlphaOptions(by="group", alpha_max=1.0, gamma=2.0), context, "m")
    assert by_group.alphas().tolist() == pytest.approx([1.0, 0.0, 1.0, 0.25])
    batch = batch_of(TRAIN, [0, 4])  # classes 0 and 1
    terms = LossTerms(label=torch.tensor([1.0, 2.0]), teacher=torch.tensor([3.0, 5.0]))
    mixed = by_class.mix(batch, terms, ModelOutput(torch.zeros(2, 2)), TrainState())
    a0, a1 = 0.45, 0.6
    assert mixed.tolist() == pytest.approx([(1 - a0) * 1.0 + a0 * 3.0, (1 - a1) * 2.0 + a1 * 5.0])


def test_per_group_alpha_composes_with_the_loss_weights() -> None:
    context = teacher_val_context()
    rule = PerGroupAlpha(PerGroupAlphaOptions(by="class", alpha_max=0.9), context, "m")
    batch = batch_of(TRAIN, [0, 4])  # classes 0 and 1: α = 0.45, 0.6
    a = [0.45, 0.6]
    label, teacher = [1.0, 2.0], [3.0, 5.0]
    # A balance (1 − α, α) of the loss itself (kd, ctkd) is replaced by the per-group α.
    balance = LossTerms(torch.tensor(label), torch.tensor(teacher), label_weight=0.1, teacher_weight=0.9)
    assert rule.mix(batch, balance, ModelOutput(torch.zeros(2, 2)), TrainState()).tolist() == pytest.approx(
        [(1 - a[i]) * label[i] + a[i] * teacher[i] for i in range(2)]
    )
    # Other weights (dkd's warm-up on the teacher term) are kept as factors.
    warm = LossTerms(torch.tensor(label), torch.tensor(teacher), label_weight=1.0, teacher_weight=0.25)
    assert rule.mix(batch, warm, ModelOutput(torch.zeros(2, 2)), TrainState()).tolist() == pytest.approx(
        [(1 - a[i]) * label[i] + a[i] * 0.25 * teacher[i] for i in range(2)]
    )


def _log_softmax(row: list[float], tau: float) -> list[float]:
    z = [v / tau for v in row]
    top = max(z)
    lse = top + math.log(sum(math.exp(v - top) for v in z))
    return [v - lse for v in z]


def test_dkd_and_kd_with_per_group_alpha_end_to_end() -> None:
    """dkd + per-group-alpha keeps dkd's warm-up; kd + per-group-alpha uses α_k in place of kd's α (docs)."""
    context = teacher_val_context()
    idx = [0, 4, 1]  # classes 0, 1, 0: α_k = 0.45, 0.6, 0.45
    alpha = [0.45, 0.6, 0.45]
    y = [TRAIN.y[i].item() for i in idx]
    s_logits = [[0.5, -0.3], [0.2, 0.9], [-1.0, 0.4]]
    t_logits = [[1.5, -0.5], [-0.2, 1.1], [0.3, 0.0]]
    out_s = ModelOutput(torch.tensor(s_logits, dtype=torch.float64))
    out_t = ModelOutput(torch.tensor(t_logits, dtype=torch.float64))
    ce = _erm_ce(s_logits, y)
    state = TrainState(epoch=0, num_epochs=10)  # dkd warm-up: min(1, 1 / (0.2·10)) = 0.5

    dkd = build_method(
        MethodConfig.model_validate(
            {"name": "d", "loss": {"kind": "dkd"}, "mixing": {"kind": "per-group-alpha", "by": "class"}}
        ),
        context,
        "m",
    )
    with pytest.warns(UserWarning, match="NCKD"):
        mixed = dkd.per_example_loss(batch_of(TRAIN, idx), out_s, out_t, state)
    expected = []
    for i, _c in enumerate(y):
        ls, lt = _log_softmax(s_logits[i], 4.0), _log_softmax(t_logits[i], 4.0)
        # binary: the target-vs-rest distribution is the distribution itself; TCKD = τ²·KL(b_t ‖ b_s), NCKD = 0
        tckd = 16.0 * sum(math.exp(lt[k]) * (lt[k] - ls[k]) for k in range(2))
        expected.append((1 - alpha[i]) * ce[i] + alpha[i] * 0.5 * 1.0 * tckd)
    assert mixed.tolist() == pytest.approx(expected, rel=1e-9)

    kd = build_method(
        MethodConfig.model_validate(
            {
                "name": "k",
                "loss": {"kind": "kd", "tau": 2.0, "alpha": 0.7},
                "mixing": {"kind": "per-group-alpha", "by": "class"},
            }
        ),
        context,
        "m",
    )
    mixed = kd.per_example_loss(batch_of(TRAIN, idx), out_s, out_t, state)
    expected = []
    for i, _c in enumerate(y):
        ls, lt = _log_softmax(s_logits[i], 2.0), _log_softmax(t_logits[i], 2.0)
        kl = sum(math.exp(lt[k]) * (lt[k] - ls[k]) for k in range(2))
        expected.append((1 - alpha[i]) * ce[i] + alpha[i] * 4.0 * kl)
    assert mixed.tolist() == pytest.approx(expected, rel=1e-9)


def test_adaptive_margin_shifts_the_true_logit() -> None:
    context = teacher_val_context()
    rule = AdaptiveMargin(AdaptiveMarginOptions(by="class", kappa=2.0), context, "m")
    assert rule.margins().tolist() == pytest.approx([2.0 * 0.5, 2.0 / 3])
    batch = batch_of(TRAIN, [0, 4])
    logits = torch.tensor([[1.0, 0.5], [0.2, 0.4]])
    terms = LossTerms(label=torch.zeros(2), teacher=torch.tensor([0.7, 0.1]), label_weight=0.25, teacher_weight=0.75)
    mixed = rule.mix(batch, terms, ModelOutput(logits), TrainState())
    ce0 = -math.log(math.exp(1.0 - 1.0) / (math.exp(1.0 - 1.0) + math.exp(0.5)))
    ce1 = -math.log(math.exp(0.4 - 2 / 3) / (math.exp(0.2) + math.exp(0.4 - 2 / 3)))
    assert mixed.tolist() == pytest.approx([0.25 * ce0 + 0.75 * 0.7, 0.25 * ce1 + 0.75 * 0.1], rel=1e-6)


def test_mixing_needs_a_loss_with_a_teacher_term() -> None:
    context = teacher_val_context()
    config = MethodConfig.model_validate({"name": "x", "loss": {"kind": "erm"}, "mixing": {"kind": "per-group-alpha"}})
    with pytest.raises(ConfigError, match="loss 'erm' has no teacher term"):
        build_method(config, context, "methods.0(x)")


@pytest.mark.parametrize("strength", [0.5, 4.0])
def test_adversary_gradient_reaches_the_student_reversed(strength: float) -> None:
    context = MethodContext(INFO, TRAIN, student_embedding_dim=3)
    adversary = Adversary(AdversaryOptions(input="embedding", weight=strength), context, "m")
    batch = batch_of(TRAIN, [0, 3, 4, 6])
    embedding = torch.randn(4, 3, requires_grad=True)
    out = ModelOutput(torch.zeros(4, 2), embedding=embedding)
    adversary(batch, out, TrainState()).mean().backward()
    reversed_grad = embedding.grad.clone()
    # the same adversary without reversal: plain gradient of its loss w.r.t. the embedding
    plain = embedding.detach().clone().requires_grad_(True)
    nn.functional.cross_entropy(adversary.net(plain), batch.attr).backward()
    assert torch.allclose(reversed_grad, -strength * plain.grad, atol=1e-6)
    # the adversary's own parameters get the ordinary gradient (it minimises its loss)
    assert all(p.grad is not None for p in adversary.net.parameters())


def test_adversary_inputs_and_dann_schedule() -> None:
    context = MethodContext(INFO, TRAIN)
    assert Adversary(AdversaryOptions(input="probs"), context, "m").net[0].in_features == 2
    assert Adversary(AdversaryOptions(input="probs+label"), context, "m").net[0].in_features == 4
    with pytest.raises(ConfigError, match="has no embedding"):
        Adversary(AdversaryOptions(input="embedding"), context, "m")
    assert dann_strength(2.0, 0.0) == 0.0
    assert dann_strength(2.0, 1.0) == pytest.approx(2.0 * (2 / (1 + math.exp(-10)) - 1))
    adversary = Adversary(AdversaryOptions(schedule="dann", weight=2.0), context, "m")
    assert adversary.strength(TrainState(step=5, num_epochs=1, steps_per_epoch=10)) == pytest.approx(
        dann_strength(2.0, 0.5)
    )


def readout_context(model, train: SplitDataset) -> MethodContext:
    return MethodContext(
        INFO,
        train,
        student_taps=tuple(model.tap_names),
        student_model="mlp",
        student_tap_dims={"hidden1": 6, "hidden2": 5},
        seed=0,
    )


def test_early_readout_refits_each_epoch_and_weights_its_errors() -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(60, 4, generator=g)
    y = (x[:, 0] > 0).long().tolist()
    train = split(y, [int(v > 0.5) for v in x[:, 1].tolist()], x)
    model = build_model({"name": "mlp", "hidden": [6, 5]}, INFO, where="m")
    readout = EarlyReadout(EarlyReadoutOptions(tap="hidden1", beta=3.0, alpha=0.2), readout_context(model, train), "m")
    assert torch.equal(readout.table, torch.ones(60))  # epoch 1: w = 1
    state = TrainState(epoch=0, num_epochs=3, model=model)
    readout.on_epoch_end(state)
    with torch.no_grad():
        features = model({"x": x}).taps["hidden1"]
        probs = torch.softmax(readout.head(features), 1)
    assert readout.table.tolist() == pytest.approx(_hand_dedier(probs.tolist(), y, 3.0, 0.2), rel=1e-5)
    assert readout.epoch_stats(state)["readout_train_acc"] == pytest.approx(
        np.mean([int(np.argmax(p) == c) for p, c in zip(probs.tolist(), y, strict=True)])
    )
    # The head was fit on this epoch's features: its standardisation is theirs and it beats a constant predictor.
    assert readout.head.mean.tolist() == pytest.approx(features.mean(0).tolist(), abs=1e-6)
    base_rate = np.mean(y)
    constant_nll = -(base_rate * math.log(base_rate) + (1 - base_rate) * math.log(1 - base_rate))
    with torch.no_grad():
        nll = float(torch.nn.functional.cross_entropy(readout.head(features), train.y))
    assert nll < constant_nll - 0.05
    first = readout.table.clone()
    # Re-initialised, not warm-started: fitting again on the same features with the same seed gives the same table.
    readout.on_epoch_end(TrainState(epoch=0, num_epochs=3, model=model))
    assert torch.equal(first, readout.table)
    # With other student weights the weights are recomputed from the new features.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.5 * torch.randn(p.shape, generator=g))
    readout.on_epoch_end(TrainState(epoch=1, num_epochs=3, model=model))
    with torch.no_grad():
        probs = torch.softmax(readout.head(model({"x": x}).taps["hidden1"]), 1)
    assert readout.table.tolist() == pytest.approx(_hand_dedier(probs.tolist(), y, 3.0, 0.2), rel=1e-5)


@pytest.mark.parametrize("refit", ["epoch", "online"])
def test_early_readout_does_no_refit_after_the_last_epoch(refit: str, monkeypatch) -> None:
    """The weights made after the last epoch would serve no epoch: no feature pass, no fit, no statistics."""
    import fairdistill.distill.readout as readout_module

    x = torch.randn(40, 4, generator=torch.Generator().manual_seed(5))
    train = split((x[:, 0] > 0).long().tolist(), [0, 1] * 20, x)
    model = build_model({"name": "mlp", "hidden": [6, 5]}, INFO, where="m")
    readout = EarlyReadout(EarlyReadoutOptions(refit=refit, beta=3.0), readout_context(model, train), "m")
    readout.pending_probs[:5] = 0.5
    passes = []
    real = readout_module.extract_features
    monkeypatch.setattr(readout_module, "extract_features", lambda *a, **k: passes.append(1) or real(*a, **k))
    readout.table.fill_(2.0)
    readout.on_epoch_end(TrainState(epoch=2, num_epochs=3, model=model))
    assert passes == [] and readout.epoch_stats(TrainState()) == {}
    assert torch.equal(readout.table, torch.full((40,), 2.0)) and torch.isnan(readout.pending_probs).all()
    readout.on_epoch_end(TrainState(epoch=1, num_epochs=3, model=model))  # a middle epoch refits
    assert "readout_train_acc" in readout.epoch_stats(TrainState())
    assert passes == ([1] if refit == "epoch" else [])


def test_early_readout_laplace_scores_record_tau() -> None:
    x = torch.randn(50, 4, generator=torch.Generator().manual_seed(4))
    train = split((x[:, 0] > 0).long().tolist(), [0, 1] * 25, x)
    model = build_model({"name": "mlp", "hidden": [6, 5]}, INFO, where="m")
    options = EarlyReadoutOptions(score="laplace-margin", laplace={"predictive": "probit"})
    readout = EarlyReadout(options, readout_context(model, train), "m")
    assert readout.tap == "hidden1"  # the first tap when none is named
    readout.on_epoch_end(TrainState(num_epochs=2, model=model))
    stats = readout.epoch_stats(TrainState())
    assert stats["laplace_tau"] > 0 and 0.0 <= stats["readout_train_acc"] <= 1.0
    assert (readout.table >= 1.0).all()


def test_early_readout_tap_errors_name_the_fix() -> None:
    model = build_model({"name": "mlp", "hidden": [6, 5]}, INFO, where="m")
    with pytest.raises(
        ConfigError, match=r"weighting\.tap: the student \(mlp\) has no tap 'block1'; its taps: hidden1, hidden2"
    ):
        EarlyReadout(EarlyReadoutOptions(tap="block1"), readout_context(model, TRAIN), "methods.2(dedier).weighting")
    bare = MethodContext(INFO, TRAIN, student_model="linear")
    with pytest.raises(ConfigError, match="needs a student with taps, and model linear has none"):
        EarlyReadout(EarlyReadoutOptions(), bare, "methods.2(dedier).weighting")


def test_readout_head_reads_detached_features() -> None:
    """Online refit: the head's loss trains the head only, never the student."""
    model = build_model({"name": "mlp", "hidden": [6, 5]}, INFO, where="m")
    readout = EarlyReadout(EarlyReadoutOptions(refit="online"), readout_context(model, TRAIN), "m")
    batch = batch_of(TRAIN, [0, 1, 4, 5])
    out = model(batch.inputs)
    readout.weights(batch, out, torch.zeros(4), TrainState())
    readout.auxiliary_loss().backward()
    assert all(p.grad is None for p in model.parameters())
    assert readout.head.out.weight.grad is not None
    # predictions of this epoch become the next epoch's weights
    assert not torch.isnan(readout.pending_probs[[0, 1, 4, 5]]).any()
    readout.on_epoch_end(TrainState(num_epochs=2, model=model))
    assert torch.isnan(readout.pending_probs).all()


def test_early_readout_on_a_student_without_taps_names_the_fix() -> None:
    context = MethodContext(INFO, TRAIN, student_taps=(), student_model="custom")
    with pytest.raises(
        ConfigError,
        match=r"methods\.0\(dedier\)\.weighting: an early readout needs a student "
        r"with taps, and model custom has none; use a model with taps",
    ):
        EarlyReadout(EarlyReadoutOptions(), context, "methods.0(dedier).weighting")
