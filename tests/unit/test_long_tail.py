"""Long-tailed splits, head / medium / tail accuracy and the long-tail distillation losses (data/long_tail.py,
distill/long_tail_losses.py).

Expected values are computed by hand (the per-class counts, the accuracies) or with plain Python lists and the
``math`` module (the losses), never with the code under test.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fairdistill.config import load_config
from fairdistill.data import load_dataset
from fairdistill.data.core import Batch, DatasetInfo, LongTailOptions, SplitDataset, Splits, label_attr_groups
from fairdistill.data.long_tail import frequency_groups, long_tail_counts, make_long_tailed
from fairdistill.distill import LOSSES, MethodContext, TeacherOutputs, TrainState
from fairdistill.distill.long_tail_losses import group_log_probs
from fairdistill.errors import ConfigError
from fairdistill.evaluate.metrics import compute_metrics
from fairdistill.models.core import ModelOutput
from fairdistill.plan import make_plan
from fairdistill.report.tables import comparison_table

# ------------------------------------------------------------------------------------ fixtures


def _info(num_classes: int, train_counts: tuple[int, ...] | None = None) -> DatasetInfo:
    names = tuple(f"c{k}" for k in range(num_classes))
    return DatasetInfo(
        "toy", num_classes, names, ("a0", "a1"), label_attr_groups(names, ("a0", "a1")), "tabular", (1,),
        train_class_counts=train_counts,
    )  # fmt: skip


def _split(per_class: list[int], name: str, rng: np.random.Generator, start: int) -> SplitDataset:
    """A split with ``per_class[k]`` examples of class k in random order; x = a unique row id (start, start+1, …)."""
    y = rng.permutation(np.repeat(np.arange(len(per_class)), per_class))
    attr = rng.integers(0, 2, len(y))
    ids = torch.arange(start, start + len(y), dtype=torch.float32)[:, None]
    return SplitDataset(
        {"x": ids},
        torch.from_numpy(y),
        torch.from_numpy(attr),
        torch.from_numpy(y * 2 + attr),
        name=name,
        texts={"text": [f"row {start + i}" for i in range(len(y))]},
    )


def _splits(train: list[int], val: list[int], test: list[int]) -> Splits:
    rng = np.random.default_rng(7)
    return Splits(
        _split(train, "train", rng, 0),
        _split(val, "val", rng, 100_000),
        _split(test, "test", rng, 200_000),
        _info(len(train)),
        provenance={"dataset": "toy"},
    )


# ------------------------------------------------------------------------------------ long-tailed splits

# 300·100^(−k/9), rounded down, by hand: 100^(1/9) = 1.6681, so 300/1.6681 = 179.8; 300/2.7826 = 107.8;
# 300/4.6416 = 64.6; 300/7.7426 = 38.7; 300/12.915 = 23.2; 300/21.544 = 13.9; 300/35.938 = 8.3;
# 300/59.948 = 5.004; 300/100 = 3.
CMNIST_LT_100 = [300, 179, 107, 64, 38, 23, 13, 8, 5, 3]


def test_long_tail_counts_for_imbalance_100_and_ten_classes() -> None:
    splits = _splits([300] * 10, [30, 25, 40, 22, 35, 50, 28, 31, 26, 45], [10, 11, 12, 13, 14, 15, 16, 17, 18, 19])
    lt = make_long_tailed(splits, LongTailOptions(imbalance=100), seed=0)
    assert np.bincount(lt.train.y.numpy(), minlength=10).tolist() == CMNIST_LT_100
    assert np.bincount(lt.val.y.numpy(), minlength=10).tolist() == [22] * 10  # the smallest val class
    assert np.bincount(lt.test.y.numpy(), minlength=10).tolist() == [10] * 10
    assert lt.info.train_class_counts == tuple(CMNIST_LT_100)
    record = lt.provenance["long_tail"]
    assert record["train_class_counts"] == {f"c{k}": n for k, n in enumerate(CMNIST_LT_100)}
    assert record["val_per_class"] == 22 and record["test_per_class"] == 10
    assert record["frequency_groups"] == {"head": ["c0", "c1", "c2", "c3"], "medium": ["c4", "c5", "c6"],
                                          "tail": ["c7", "c8", "c9"]}  # fmt: skip
    assert lt.provenance["dataset"] == "toy"


def test_kept_examples_are_whole_rows_in_their_loaded_order() -> None:
    splits = _splits([300] * 10, [30] * 10, [12] * 10)
    lt = make_long_tailed(splits, LongTailOptions(imbalance=100), seed=0)
    for (_, before), (_, after) in zip(splits.items(), lt.items(), strict=True):
        ids = after.encodings["x"][:, 0].long()
        start = int(before.encodings["x"][0, 0])
        rows = ids - start
        assert torch.all(ids[1:] > ids[:-1])  # loaded order kept, no repeats
        assert torch.equal(after.y, before.y[rows]) and torch.equal(after.attr, before.attr[rows])
        assert torch.equal(after.group, before.group[rows])
        assert after.texts == {"text": [f"row {int(i)}" for i in ids]}


def test_long_tail_is_deterministic_for_the_seed() -> None:
    splits = _splits([300] * 10, [30] * 10, [12] * 10)
    first = make_long_tailed(splits, LongTailOptions(imbalance=100), seed=3)
    again = make_long_tailed(splits, LongTailOptions(imbalance=100), seed=3)
    other = make_long_tailed(splits, LongTailOptions(imbalance=100), seed=4)
    for name in ("train", "val", "test"):
        assert torch.equal(getattr(first, name).encodings["x"], getattr(again, name).encodings["x"])
    assert not torch.equal(first.train.encodings["x"], other.train.encodings["x"])


def test_n_max_is_the_largest_head_every_class_can_supply() -> None:
    # a = (100, 100, 5), ρ = 4, C = 3: ρ^(k/2) = 1, 2, 4, so n_max = min(100, 200, 20) = 20 and n = 20, 10, 5.
    assert long_tail_counts([100, 100, 5], 4.0) == [20, 10, 5]
    # ρ = 1 is balanced: every class keeps the smallest class's count.
    assert long_tail_counts([50, 40, 70], 1.0) == [40, 40, 40]


def test_a_class_left_without_examples_is_a_config_error() -> None:
    # 10 per class, ρ = 20, C = 3: n_max = min(10, 10·√20, 200) = 10, the tail keeps ⌊10/20⌋ = 0.
    with pytest.raises(ConfigError, match=r"data\.long_tail\.imbalance: .*class 'c2' would keep no training"):
        make_long_tailed(_splits([10, 10, 10], [5, 5, 5], [5, 5, 5]), LongTailOptions(imbalance=20), seed=0)
    with pytest.raises(ConfigError, match=r"the val split has no example of class 'c1'"):
        make_long_tailed(_splits([10, 10, 10], [5, 0, 5], [5, 5, 5]), LongTailOptions(imbalance=2), seed=0)


@pytest.mark.parametrize(
    ("long_tail", "message"),
    [
        ({"imbalance": 0.5}, r"data\.long_tail\.imbalance: Input should be greater than or equal to 1"),
        ({"imbalance": True}, r"data\.long_tail\.imbalance: expected a number, got the boolean True"),
        ({"imbalance": "100"}, r"data\.long_tail\.imbalance: expected a number"),
        ({}, r"data\.long_tail\.imbalance: required field is missing"),
        ({"imbalance": 10, "order": "reversed"}, r"data\.long_tail\.order: unknown field"),
    ],
)
def test_long_tail_options_are_validated(long_tail: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_dataset("colored-mnist", {"classes": 10, "long_tail": long_tail})


def test_colored_mnist_ten_classes_long_tailed() -> None:
    splits = load_dataset("colored-mnist", {"classes": 10, "long_tail": {"imbalance": 100}})
    assert np.bincount(splits.train.y.numpy(), minlength=10).tolist() == CMNIST_LT_100
    assert np.bincount(splits.val.y.numpy(), minlength=10).tolist() == [100] * 10
    assert np.bincount(splits.test.y.numpy(), minlength=10).tolist() == [100] * 10
    assert splits.train.encodings["x"].shape == (sum(CMNIST_LT_100), 3, 28, 28)
    with pytest.raises(ConfigError, match="would keep no training example"):  # 3 train images per digit
        load_dataset("colored-mnist", {"classes": 10, "max_examples": 50, "long_tail": {"imbalance": 100}})


def test_a_table_dataset_is_long_tailed_the_same_way(tmp_path: Path) -> None:
    def table(counts: list[int]) -> pd.DataFrame:
        labels = np.repeat(np.arange(len(counts)), counts)
        return pd.DataFrame({"f": np.arange(len(labels), dtype=float), "label": labels, "sex": labels % 2})

    files = {}
    for name, counts in (("train", [40, 40, 40]), ("val", [9, 7, 8]), ("test", [6, 5, 4])):
        files[name] = str(tmp_path / f"{name}.csv")
        table(counts).to_csv(files[name], index=False)
    splits = load_dataset("csv", {**files, "label": "label", "attr": "sex", "long_tail": {"imbalance": 4}})
    # a = 40 each, ρ = 4, C = 3: n = 40, 40/2, 40/4 = 40, 20, 10; val / test balanced to 7 and 4 per class.
    assert np.bincount(splits.train.y.numpy()).tolist() == [40, 20, 10]
    assert np.bincount(splits.val.y.numpy()).tolist() == [7, 7, 7]
    assert np.bincount(splits.test.y.numpy()).tolist() == [4, 4, 4]


# ------------------------------------------------------------------------------------ head / medium / tail


def test_frequency_groups_are_thirds_by_train_count() -> None:
    # counts (5, 20, 20, 1, 7): by count, most first, ties by index: 1, 2, 4, 0, 3 → [1, 2] [4, 0] [3].
    head, medium, tail = frequency_groups((5, 20, 20, 1, 7))
    assert head.tolist() == [1, 2] and medium.tolist() == [4, 0] and tail.tolist() == [3]
    head, medium, tail = frequency_groups(tuple(CMNIST_LT_100))
    assert head.tolist() == [0, 1, 2, 3] and medium.tolist() == [4, 5, 6] and tail.tolist() == [7, 8, 9]


def _one_hot_probs(pred: list[int], num_classes: int) -> np.ndarray:
    probs = np.full((len(pred), num_classes), 0.1 / (num_classes - 1))
    probs[np.arange(len(pred)), pred] = 0.9
    return probs


def test_head_medium_tail_accuracy_hand_computed() -> None:
    y = [0, 0, 1, 1, 1, 2, 3, 3, 4, 4]
    pred = [0, 1, 1, 1, 0, 2, 3, 3, 4, 1]
    # head {1, 2}: rows 2-5, right 3 of 4; medium {4, 0}: rows 0, 1, 8, 9, right 2 of 4; tail {3}: rows 6, 7, 2 of 2.
    attr = np.zeros(len(y), dtype=np.int64)
    info = _info(5, (5, 20, 20, 1, 7))
    metrics = compute_metrics(np.array(y), _one_hot_probs(pred, 5), attr, np.array(y) * 2, info)
    assert metrics["head_accuracy"] == pytest.approx(0.75)
    assert metrics["medium_accuracy"] == pytest.approx(0.5)
    assert metrics["tail_accuracy"] == pytest.approx(1.0)
    assert metrics["accuracy"] == pytest.approx(0.7)


def test_head_medium_tail_only_for_long_tailed_runs_with_three_classes_or_more() -> None:
    y, attr = np.array([0, 1, 2, 1]), np.zeros(4, dtype=np.int64)
    plain = compute_metrics(y, _one_hot_probs([0, 1, 2, 0], 3), attr, y * 2, _info(3))
    assert "tail_accuracy" not in plain
    y2 = np.array([0, 1, 1, 0])
    binary = compute_metrics(y2, _one_hot_probs([0, 1, 0, 0], 2), attr, y2 * 2, _info(2, (10, 3)))
    assert "head_accuracy" not in binary


def test_a_third_without_examples_is_undefined_with_its_reason() -> None:
    y, attr = np.array([0, 0, 1]), np.zeros(3, dtype=np.int64)  # class 2, the tail, is absent
    metrics = compute_metrics(y, _one_hot_probs([0, 1, 1], 3), attr, y * 2, _info(3, (9, 5, 1)))
    assert metrics["head_accuracy"] == pytest.approx(0.5) and metrics["medium_accuracy"] == pytest.approx(1.0)
    assert metrics["tail_accuracy"] is None
    assert metrics["undefined"]["tail_accuracy"] == "no example of the tail classes in this split"


def test_comparison_table_shows_head_medium_tail_when_present() -> None:
    def metrics(extra: dict) -> dict:
        test = {"accuracy": 0.5, **extra}
        return {"models": {"kd": {"role": "student", "method": "kd", "params": 10, "splits": {"test": test}}}}

    table = comparison_table(metrics({"head_accuracy": 0.9, "medium_accuracy": 0.4, "tail_accuracy": 0.125}))
    assert table.headers[-3:] == ["head acc", "medium acc", "tail acc"]
    assert table.rows[0][-3:] == ["0.9000", "0.4000", "0.1250"]
    assert "tail acc" not in comparison_table(metrics({})).headers


# ------------------------------------------------------------------------------------ losses: hand computations

STUDENT = [[1.0, -0.5, 0.3, 0.7, -1.2], [0.2, 0.8, -1.1, 0.4, 0.9], [-0.4, 0.1, 0.9, -0.8, 1.5]]
TEACHER = [[2.0, 0.1, -1.0, 0.6, -0.3], [-0.3, 1.5, 0.2, -0.9, 1.1], [0.5, -0.2, 1.2, 0.3, -1.4]]
LABELS = [0, 1, 4]
#: Train labels: class counts 8, 6, 4, 2, 1 (N = 21), so π = (8, 6, 4, 2, 1) / 21.
TRAIN_COUNTS = [8, 6, 4, 2, 1]


def _softmax(row: list[float], tau: float = 1.0) -> list[float]:
    top = max(row)
    exps = [math.exp((v - top) / tau) for v in row]
    return [e / sum(exps) for e in exps]


def _kl(p: list[float], q: list[float]) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def _normalise(values: list[float]) -> list[float]:
    return [v / sum(values) for v in values]


def _context(counts: list[int] = TRAIN_COUNTS) -> MethodContext:
    y = torch.from_numpy(np.repeat(np.arange(len(counts)), counts))
    zeros = torch.zeros(len(y), dtype=torch.long)
    train = SplitDataset({"x": torch.zeros(len(y), 1)}, y, zeros, zeros)
    teacher = TeacherOutputs(logits=np.zeros((len(y), len(counts)), dtype=np.float32))
    return MethodContext(_info(len(counts)), train, teacher_train=teacher)


def _loss_values(kind: str, options: dict, context: MethodContext | None = None) -> list[float]:
    loss = LOSSES.get(kind).target(LOSSES.options(kind, options, where="loss"), context or _context())
    z = torch.zeros(len(LABELS), dtype=torch.long)
    batch = Batch(inputs={}, y=torch.tensor(LABELS), attr=z, group=z, index=torch.arange(len(LABELS)))
    student = ModelOutput(torch.tensor(STUDENT, dtype=torch.float64))
    teacher = ModelOutput(torch.tensor(TEACHER, dtype=torch.float64))
    return loss(batch, student, teacher, TrainState()).tolist()


def _hand_la_kd(tau: float, alpha: float, adjustment: float, kd_term: str) -> list[float]:
    log_prior = [math.log(n / sum(TRAIN_COUNTS)) for n in TRAIN_COUNTS]
    out = []
    for s, t, y in zip(STUDENT, TEACHER, LABELS, strict=True):
        adjusted = [v + adjustment * lp for v, lp in zip(s, log_prior, strict=True)]
        ce = -math.log(_softmax(adjusted)[y])
        kl = _kl(_softmax(t, tau), _softmax(adjusted if kd_term == "adjusted" else s, tau))
        out.append((1 - alpha) * ce + alpha * tau * tau * kl)
    return out


@pytest.mark.parametrize(
    ("tau", "alpha", "adjustment", "kd_term"),
    [(2.0, 0.9, 1.0, "adjusted"), (3.0, 0.6, 0.7, "adjusted"), (2.0, 0.5, 1.5, "plain"), (2.0, 0.9, 0.0, "plain")],
)
def test_logit_adjusted_kd_hand_computed(tau: float, alpha: float, adjustment: float, kd_term: str) -> None:
    options = {"tau": tau, "alpha": alpha, "adjustment": adjustment, "kd_term": kd_term}
    expected = _hand_la_kd(tau, alpha, adjustment, kd_term)
    assert _loss_values("logit-adjusted-kd", options) == pytest.approx(expected, rel=1e-10)


def test_logit_adjusted_kd_without_adjustment_is_kd() -> None:
    options = {"tau": 2.0, "alpha": 0.8, "adjustment": 0.0}
    assert _loss_values("logit-adjusted-kd", options) == pytest.approx(
        _loss_values("kd", {"tau": 2.0, "alpha": 0.8}), rel=1e-12
    )


#: The head / medium / tail groups of TRAIN_COUNTS (8, 6, 4, 2, 1): thirds of 5 classes by count, [0, 1] [2, 3] [4].
GROUPS = [[0, 1], [2, 3], [4]]


def _groups_of(probs: list[float]) -> tuple[list[float], list[list[float]]]:
    mass = [sum(probs[c] for c in g) for g in GROUPS]
    within = [[probs[c] / mass[i] for c in g] for i, g in enumerate(GROUPS)]
    return mass, within


def _hand_ltkd(tau: float, alpha: float, cross_w: float, within_w: float, rebalance: str) -> list[float]:
    teacher = [_softmax(t, tau) for t in TEACHER]
    masses = [_groups_of(p)[0] for p in teacher]
    if rebalance == "batch":
        scale = [sum(m[g] for m in masses) / len(masses) for g in range(len(GROUPS))]
    elif rebalance == "prior":
        scale = [sum(TRAIN_COUNTS[c] for c in g) / sum(TRAIN_COUNTS) for g in GROUPS]
    else:
        scale = [1.0] * len(GROUPS)
    out = []
    for s, p_t, y in zip(STUDENT, teacher, LABELS, strict=True):
        mass_t, within_t = _groups_of(p_t)
        mass_s, within_s = _groups_of(_softmax(s, tau))
        target = _normalise([m / k for m, k in zip(mass_t, scale, strict=True)])
        cross = _kl(target, mass_s)
        within = sum(_kl(a, b) for a, b in zip(within_t, within_s, strict=True))
        ce = -math.log(_softmax(s)[y])
        out.append((1 - alpha) * ce + alpha * tau * tau * (cross_w * cross + within_w * within))
    return out


@pytest.mark.parametrize(
    ("tau", "alpha", "cross_weight", "within_weight", "rebalance"),
    [
        (2.0, 0.9, 1.0, 1.0, "batch"),
        (3.0, 0.7, 0.6, 1.4, "batch"),
        (2.0, 0.9, 1.0, 1.0, "prior"),
        (1.5, 0.5, 2.0, 0.5, "prior"),
        (2.0, 0.9, 1.0, 1.0, "none"),
    ],
)
def test_ltkd_hand_computed(
    tau: float, alpha: float, cross_weight: float, within_weight: float, rebalance: str
) -> None:
    options = {
        "tau": tau,
        "alpha": alpha,
        "cross_weight": cross_weight,
        "within_weight": within_weight,
        "rebalance": rebalance,
    }
    expected = _hand_ltkd(tau, alpha, cross_weight, within_weight, rebalance)
    assert _loss_values("ltkd", options) == pytest.approx(expected, rel=1e-10)


def test_group_decomposition_recovers_the_kd_divergence() -> None:
    # KL(p_t ‖ p_s) = KL(P_t ‖ P_s) + Σ_g P_t,g·KL(q_t,g ‖ q_s,g): what ltkd reweights.
    tau = 2.0
    groups = [torch.tensor(g) for g in GROUPS]
    mass_t, within_t = group_log_probs(torch.tensor(TEACHER, dtype=torch.float64), tau, groups)
    mass_s, within_s = group_log_probs(torch.tensor(STUDENT, dtype=torch.float64), tau, groups)
    for i, (s, t) in enumerate(zip(STUDENT, TEACHER, strict=True)):
        cross = _kl(mass_t[i].exp().tolist(), mass_s[i].exp().tolist())
        within = sum(
            math.exp(float(mass_t[i, g])) * _kl(within_t[g][i].exp().tolist(), within_s[g][i].exp().tolist())
            for g in range(len(GROUPS))
        )
        assert cross + within == pytest.approx(_kl(_softmax(t, tau), _softmax(s, tau)), rel=1e-10)


def test_long_tail_losses_expose_their_terms_for_the_teachers_pet_mixings() -> None:
    for kind in ("logit-adjusted-kd", "ltkd"):
        target = LOSSES.get(kind).target
        assert target.supports_terms() and target.requires_teacher


@pytest.mark.parametrize(
    ("kind", "options", "message"),
    [
        ("ltkd", {"rebalance": "sometimes"}, r"loss\.rebalance: Input should be 'batch', 'prior' or 'none'"),
        ("ltkd", {"cross_weight": -1.0}, r"loss\.cross_weight: Input should be greater than or equal to 0"),
        ("ltkd", {"alpha": 1.5}, r"loss\.alpha: Input should be less than or equal to 1"),
        ("logit-adjusted-kd", {"adjustment": -0.5}, r"loss\.adjustment: Input should be greater than or equal"),
        ("logit-adjusted-kd", {"kd_term": "both"}, r"loss\.kd_term: Input should be 'adjusted' or 'plain'"),
        ("logit-adjusted-kd", {"tau": True}, r"loss\.tau: expected a number, got the boolean True"),
        ("logit-adjusted-kd", {"temperature": 2.0}, r"loss\.temperature: unknown field"),
    ],
)
def test_long_tail_loss_options_are_validated(kind: str, options: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        LOSSES.options(kind, options, where="loss")


def test_a_class_without_training_examples_has_no_prior() -> None:
    with pytest.raises(ConfigError, match=r"loss logit-adjusted-kd: class 'c2' has no training example"):
        _loss_values("logit-adjusted-kd", {}, _context([8, 6, 0, 2, 1]))


def test_the_packaged_benchmark_config_plans() -> None:
    plan = make_plan(load_config("long-tail-mnist"))
    assert plan.data_options.long_tail == LongTailOptions(imbalance=100)
    assert [m.loss_kind for m in plan.methods] == ["erm", "kd", "kd", "kd", "logit-adjusted-kd", "ltkd"]
    assert [m.config.mixing.options()["by"] for m in plan.methods if m.config.mixing is not None] == ["class"] * 2
