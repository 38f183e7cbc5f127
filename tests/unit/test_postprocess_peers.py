"""Post-processing with fairlearn's ThresholdOptimizer and the ExponentiatedGradient peers: the rows equal fairlearn
called directly, the config is validated, and data the peers cannot read (text, images read from files, more
than two classes) is refused; with a tolerance, the mixture of the optimizer and the model against hand computations.

The end-to-end run (a tiny Adult run, its metrics against fairlearn called directly, resume) is in
tests/integration/test_postprocess_peers_run.py.
"""

from __future__ import annotations

import typing

import numpy as np
import pytest
from fairlearn.postprocessing import ThresholdOptimizer
from fairlearn.reductions import DemographicParity, EqualizedOdds, ExponentiatedGradient
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression

from fairdistill.config import PostprocessConfig, ThresholdConstraint, ThresholdObjective, TrainConfig, parse_config
from fairdistill.data.core import DatasetInfo, SplitDataset, Splits, label_attr_groups
from fairdistill.errors import ConfigError
from fairdistill.evaluate.peers import check_peer_data, fit_peer, plan_peers
from fairdistill.evaluate.postprocess import (
    NO_CONFIDENCE,
    check_binary,
    mixing_share,
    postprocess,
    violation,
    without_calibration,
)
from fairdistill.evaluate.predict import Predictions
from fairdistill.plan import make_plan

BASE = {"name": "pp", "data": {"name": "adult"}, "methods": [{"name": "kd", "loss": {"kind": "kd"}}]}


class Scores(BaseEstimator):
    """The test's own prefit estimator: its prediction is the first column of X (the precomputed score)."""

    def fit(self, X, y=None):  # noqa: N803
        return self

    def predict(self, X):  # noqa: N803
        return np.asarray(X)[:, 0]

    def __sklearn_is_fitted__(self) -> bool:
        return True


def synthetic(n: int, seed: int) -> Predictions:
    """A biased binary scorer: the score depends on y and, for attribute 1, is shifted down."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    attr = (rng.random(n) < 0.4).astype(int)
    p1 = 1 / (1 + np.exp(-(2.0 * y - 1.0 + rng.normal(0, 1.0, n) - 0.8 * attr)))
    probs = np.stack([1 - p1, p1], axis=1).astype(np.float32)
    return Predictions(index=np.arange(n), y=y, attr=attr, group=y * 2 + attr, probs=probs)


@pytest.mark.parametrize("criterion", ["equalized_odds", "demographic_parity", "true_positive_rate_parity"])
def test_threshold_rows_are_fairlearns_predictions(criterion: str) -> None:
    val, test = synthetic(600, 0), synthetic(500, 1)
    settings = PostprocessConfig(threshold=criterion)
    done = postprocess(val, test, settings, seed=7)
    direct = ThresholdOptimizer(estimator=Scores(), constraints=criterion, prefit=True, predict_method="predict")
    direct.fit(val.probs[:, 1:2].astype(np.float64), val.y, sensitive_features=val.attr)
    for split, source in (("val", val), ("test", test)):
        x = source.probs[:, 1:2].astype(np.float64)
        expected = direct.predict(x, sensitive_features=source.attr, random_state=7)
        got = done.predictions[split]
        np.testing.assert_array_equal(got.pred, expected)
        np.testing.assert_array_equal(got.probs.sum(axis=1), 1.0)  # one-hot of the drawn label
        np.testing.assert_array_equal(got.y, source.y)
        np.testing.assert_allclose(done.pmf[split], direct._pmf_predict(x, sensitive_features=source.attr))
    # randomised: the labels really are drawn (some examples have a probability strictly between 0 and 1)
    pmf = done.pmf["test"][:, 1]
    if criterion == "equalized_odds":
        assert ((pmf > 0) & (pmf < 1)).any()
    again = postprocess(val, test, settings, seed=7)
    np.testing.assert_array_equal(again.predictions["test"].pred, done.predictions["test"].pred)
    assert done.settings == {
        "kind": "threshold-optimizer",
        "constraints": criterion,
        "objective": "accuracy_score",
        "grid_size": 1000,
        "fitted_on": "val",
    }


def test_equalized_odds_threshold_closes_the_gaps_on_val() -> None:
    """Fitted on val, the EO post-processor's expected TPR and FPR agree between the attribute values there."""
    val = synthetic(4000, 3)
    done = postprocess(val, val, PostprocessConfig(threshold="equalized_odds"), seed=0)
    p = done.pmf["val"][:, 1]
    rates = {
        (a, label): p[(val.attr == a) & (val.y == label)].mean() for a in (0, 1) for label in (0, 1)
    }  # expected P(ŷ = 1 | y, a)
    before = {
        (a, label): (val.probs[:, 1] >= 0.5)[(val.attr == a) & (val.y == label)].mean()
        for a in (0, 1)
        for label in (0, 1)
    }
    assert abs(before[(1, 1)] - before[(0, 1)]) > 0.1  # the scorer is biased
    assert abs(rates[(1, 1)] - rates[(0, 1)]) < 0.02 and abs(rates[(1, 0)] - rates[(0, 0)]) < 0.02


def test_calibration_is_null_with_a_reason() -> None:
    metrics = {"accuracy": 0.8, "ece": 0.2, "group_ece": {"a": 0.1, "b": 0.3}, "undefined": {"eo": "x"}}
    hard = without_calibration(metrics)
    assert hard["ece"] is None and hard["group_ece"] == {"a": None, "b": None}
    assert hard["undefined"] == {"eo": "x", "ece": NO_CONFIDENCE} and hard["accuracy"] == 0.8
    assert metrics["ece"] == 0.2  # the input is left as it was


def test_config_names_are_fairlearns() -> None:
    from fairlearn.postprocessing._threshold_optimizer import ALL_CONSTRAINTS, OBJECTIVES_FOR_SIMPLE_CONSTRAINTS

    assert set(typing.get_args(ThresholdConstraint)) == set(ALL_CONSTRAINTS)
    assert set(typing.get_args(ThresholdObjective)) == set(OBJECTIVES_FOR_SIMPLE_CONSTRAINTS)


@pytest.mark.parametrize(
    "extra, message",
    [
        ({"postprocess": {"threshold": "eo"}}, "postprocess.threshold: Input should be 'demographic_parity'"),
        ({"postprocess": {}}, "postprocess.threshold: required field is missing"),
        ({"postprocess": {"threshold": "equalized_odds", "grid_size": 0}}, "postprocess.grid_size"),
        (
            {"postprocess": {"threshold": "equalized_odds", "objective": "selection_rate"}},
            "objective 'selection_rate' cannot be used with threshold: equalized_odds",
        ),
        ({"postprocess": {"threshold": "demographic_parity", "tol": 0.1}}, "postprocess.tol: unknown field"),
        ({"peers": []}, "peers: List should have at least 1 item"),
        ({"peers": [{"kind": "grid", "constraint": "equalized-odds"}]}, "peers.0.kind: Input should be 'expgrad'"),
        ({"peers": [{"kind": "expgrad", "constraint": "eo"}]}, "peers.0.constraint: Input should be 'equalized-odds'"),
        ({"peers": [{"kind": "expgrad", "constraint": "equalized-odds", "estimator": "svm"}]}, "peers.0.estimator"),
        (
            {"peers": [{"kind": "expgrad", "constraint": "equalized-odds", "hidden": [8]}]},
            "peers.0: hidden: only for estimator mlp",
        ),
        (
            {"peers": [{"kind": "expgrad", "constraint": "demographic-parity", "estimator": "mlp", "hidden": []}]},
            "peers.0.hidden",
        ),
        ({"peers": [{"kind": "expgrad", "constraint": "equalized-odds", "name": "a/b"}]}, "peer name 'a/b'"),
        ({"peers": [{"kind": "expgrad", "constraint": "equalized-odds", "name": "KD"}]}, "like model 'kd'"),
        (
            {"peers": [{"kind": "expgrad", "constraint": "equalized-odds"}] * 2},
            "peers.1 is named 'expgrad-eo-logistic', like peers.0",
        ),
        (
            {
                "postprocess": {"threshold": "equalized_odds"},
                "methods": [{"name": "kd"}, {"name": "kd+threshold", "loss": {"kind": "kd"}}],
            },
            "the post-processed kd is named 'kd+threshold', like model 'kd+threshold'",
        ),
    ],
)
def test_config_errors(extra: dict, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config({**BASE, **extra})
    assert message in str(caught.value)


def test_defaults_and_names() -> None:
    config = parse_config(
        {
            **BASE,
            "student": {"model": {"name": "mlp", "hidden": [12, 6]}, "train": {"epochs": 4, "lr": 0.01}},
            "postprocess": {"threshold": "false_negative_rate_parity"},
            "peers": [
                {"kind": "expgrad", "constraint": "equalized-odds"},
                {"kind": "expgrad", "constraint": "demographic-parity", "estimator": "mlp"},
                {
                    "kind": "expgrad",
                    "constraint": "demographic-parity",
                    "estimator": "mlp",
                    "hidden": [3],
                    "name": "m3",
                },
            ],
        }
    )
    assert config.postprocess is not None and config.postprocess.objective == "accuracy_score"
    plan = make_plan(config)
    peers = plan_peers(config, plan.modality, plan.student.spec, plan.student.train)
    assert [p.name for p in peers] == ["expgrad-eo-logistic", "expgrad-dp-mlp", "m3"]
    assert [p.label for p in peers] == [
        "peer: expgrad-eo (logistic)",
        "peer: expgrad-dp (mlp)",
        "peer: expgrad-dp (mlp)",
    ]
    assert peers[0].hidden is None
    assert (peers[1].hidden, peers[1].epochs, peers[1].lr, peers[1].batch_size) == ((12, 6), 4, 0.01, 64)
    assert peers[2].hidden == (3,)
    assert peers[1].method == "expgrad(demographic-parity, mlp 12x6)"


def test_mlp_peer_of_a_student_that_is_no_mlp_needs_hidden() -> None:
    config = parse_config({**BASE, "peers": [{"kind": "expgrad", "constraint": "equalized-odds", "estimator": "mlp"}]})
    with pytest.raises(ConfigError, match=r"peers\.0\(expgrad-eo-mlp\)\.hidden: an mlp peer takes the student's"):
        plan_peers(config, "tabular", {"name": "linear"}, TrainConfig())
    (peer,) = plan_peers(config, "tabular", {"name": "mlp"}, TrainConfig())
    assert peer.hidden == (64, 64)  # the mlp's default hidden sizes


def test_peers_are_refused_on_text_data_when_planned() -> None:
    config = parse_config(
        {
            "name": "txt",
            "data": {"name": "civilcomments", "path": "x"},
            "methods": [{"name": "kd", "loss": {"kind": "kd"}}],
            "peers": [{"kind": "expgrad", "constraint": "equalized-odds"}],
        }
    )
    with pytest.raises(ConfigError, match="peers: .*need table data or in-memory images .*data civilcomments is text"):
        make_plan(config)


def test_peers_are_planned_on_in_memory_images() -> None:
    config = parse_config(
        {
            "name": "img",
            "data": {"name": "colored-mnist"},
            "methods": [{"name": "kd", "loss": {"kind": "kd"}}],
            "peers": [
                {"kind": "expgrad", "constraint": "equalized-odds"},
                {"kind": "expgrad", "constraint": "equalized-odds", "estimator": "distilled"},
            ],
        }
    )
    plan = make_plan(config)
    assert plan.modality == "image"
    assert [p.name for p in plan_peers(config, plan.modality, plan.student.spec, plan.student.train)] == [
        "expgrad-eo-logistic",
        "expgrad-eo-distilled",
    ]


def test_postprocessing_is_allowed_on_image_data() -> None:
    config = parse_config(
        {
            "name": "img",
            "data": {"name": "colored-mnist"},
            "methods": [{"name": "kd", "loss": {"kind": "kd"}}],
            "postprocess": {"threshold": "equalized_odds"},
        }
    )
    assert make_plan(config).modality == "image"


def info_of(num_classes: int, groups_known: bool = True) -> DatasetInfo:
    classes = tuple(f"c{k}" for k in range(num_classes))
    return DatasetInfo(
        "toy", num_classes, classes, ("a0", "a1"), label_attr_groups(classes, ("a0", "a1")), "tabular", (3,),
        groups_known=groups_known,
    )  # fmt: skip


def test_more_than_two_classes_are_refused() -> None:
    check_binary(info_of(2), "postprocess")
    with pytest.raises(ConfigError, match=r"postprocess: .*binary labels only, but data toy has 3 classes \(c0, c1"):
        check_binary(info_of(3), "postprocess")
    with pytest.raises(ConfigError, match="peers: needs the attribute of every example"):
        check_binary(info_of(2, groups_known=False), "peers")


def toy_splits(seed: int = 0) -> Splits:
    """A small table: two informative features, one correlated with the attribute."""
    rng = np.random.default_rng(seed)
    import torch

    def split(n: int, name: str) -> SplitDataset:
        attr = (rng.random(n) < 0.5).astype(np.int64)
        x = rng.normal(0, 1, (n, 3)) + np.stack([attr * 0.8, np.zeros(n), np.zeros(n)], axis=1)
        y = ((x[:, 0] + 0.5 * x[:, 1] + rng.normal(0, 0.7, n)) > 0.4).astype(np.int64)
        return SplitDataset(
            {"x": torch.tensor(x, dtype=torch.float32)},
            torch.tensor(y),
            torch.tensor(attr),
            torch.tensor(y * 2 + attr),
            name=name,
        )

    return Splits(split(500, "train"), split(200, "val"), split(200, "test"), info_of(2))


@pytest.mark.parametrize(
    "constraint, moment", [("equalized-odds", EqualizedOdds), ("demographic-parity", DemographicParity)]
)
def test_logistic_peer_is_exponentiated_gradient_called_directly(constraint: str, moment: type) -> None:
    splits = toy_splits()
    config = parse_config({**BASE, "peers": [{"kind": "expgrad", "constraint": constraint, "eps": 0.02}]})
    (peer,) = plan_peers(config, "tabular", {"name": "mlp", "hidden": [4]}, TrainConfig())
    fitted = fit_peer(peer, splits, seed=5)
    direct = ExponentiatedGradient(LogisticRegression(max_iter=1000, random_state=5), constraints=moment(), eps=0.02)
    x = {name: s.encodings["x"].numpy().astype(np.float64) for name, s in splits.items()}
    direct.fit(x["train"], splits.train.y.numpy(), sensitive_features=splits.train.attr.numpy())
    for name in ("val", "test"):
        expected = direct.predict(x[name], random_state=5)
        np.testing.assert_array_equal(fitted.predictions[name].pred, expected)
        np.testing.assert_allclose(fitted.pmf[name], direct._pmf_predict(x[name]))
        np.testing.assert_array_equal(fitted.predictions[name].y, getattr(splits, name).y.numpy())
    assert fitted.params == 3 + 1  # three weights and a bias
    assert fitted.mixture == int((direct.weights_ > 0).sum())


@pytest.mark.parametrize(
    "constraint, moment", [("equalized-odds", EqualizedOdds), ("demographic-parity", DemographicParity)]
)
def test_difference_bound_is_the_moments_bound_and_relaxes_the_reduction(constraint: str, moment: type) -> None:
    splits = toy_splits()
    peers = [
        {"kind": "expgrad", "constraint": constraint, "difference_bound": 0.15, "name": "loose"},
        {"kind": "expgrad", "constraint": constraint, "name": "default"},
    ]
    loose, default = plan_peers(parse_config({**BASE, "peers": peers}), "tabular", {"name": "mlp"}, TrainConfig())
    assert loose.describe()["difference_bound"] == 0.15 and default.describe()["difference_bound"] is None
    fitted = {peer.name: fit_peer(peer, splits, seed=3) for peer in (loose, default)}
    x = {name: s.encodings["x"].numpy().astype(np.float64) for name, s in splits.items()}
    y, attr = splits.train.y.numpy(), splits.train.attr.numpy()
    # the moment's conditioning events: (label, attribute) cells against their label for equalized odds, the
    # attribute values against everyone for demographic parity
    if constraint == "equalized-odds":
        events = [((y == label) & (attr == a), y == label) for label in (0, 1) for a in (0, 1)]
    else:
        events = [(attr == a, np.ones_like(y, dtype=bool)) for a in (0, 1)]
    deviation = {}
    for name, bound in (("loose", 0.15), ("default", None)):
        direct = ExponentiatedGradient(
            LogisticRegression(max_iter=1000, random_state=3), constraints=moment(difference_bound=bound)
        )
        direct.fit(x["train"], y, sensitive_features=attr)
        np.testing.assert_allclose(fitted[name].pmf["test"], direct._pmf_predict(x["test"]))
        # the largest deviation of the mixture's rate on train from the pooled one, which the bound caps
        h = direct._pmf_predict(x["train"])[:, 1]
        deviation[name] = max(abs(h[cell].mean() - h[pooled].mean()) for cell, pooled in events)
    assert deviation["default"] <= 0.01 + 0.005 < deviation["loose"] <= 0.15 + 0.005


def test_the_plan_lists_the_post_processing_and_each_peer_with_its_bound() -> None:
    peers = [
        {"kind": "expgrad", "constraint": "equalized-odds"},
        {"kind": "expgrad", "constraint": "equalized-odds", "estimator": "distilled", "difference_bound": 0.02},
    ]
    postprocess = {"threshold": "equalized_odds", "tolerance": 0.05}
    text = make_plan(parse_config({**BASE, "postprocess": postprocess, "peers": peers})).describe().splitlines()
    assert (
        "postprocess: fairlearn ThresholdOptimizer(equalized_odds, accuracy_score, tolerance 0.05) fitted on val, "
        "one <model>+threshold row per model"
    ) in text
    assert text[-2:] == [
        "  - expgrad-eo-logistic: expgrad(equalized-odds, logistic)",
        "  - expgrad-eo-distilled: expgrad(equalized-odds bound=0.02, kd alpha=0.5 tau=2)",
    ]
    assert not any(
        line.startswith(("postprocess", "peers")) for line in make_plan(parse_config(BASE)).describe().splitlines()
    )


@pytest.mark.parametrize("bad", [0.0, -0.1, 1.5])
def test_a_difference_bound_outside_0_1_is_refused_naming_the_field(bad: float) -> None:
    peer = {"kind": "expgrad", "constraint": "equalized-odds", "difference_bound": bad}
    with pytest.raises(ConfigError, match="peers.0.difference_bound"):
        parse_config({**BASE, "peers": [peer]})


def test_peer_fit_refuses_text_splits() -> None:
    splits = toy_splits()
    text = Splits(splits.train, splits.val, splits.test, DatasetInfo(**{**splits.info.__dict__, "modality": "text"}))
    config = parse_config({**BASE, "peers": [{"kind": "expgrad", "constraint": "equalized-odds"}]})
    (peer,) = plan_peers(config, "tabular", {"name": "mlp"}, TrainConfig())
    with pytest.raises(ConfigError, match="peers: need table data or in-memory images, but data toy is text"):
        fit_peer(peer, text, seed=0)


def image_splits(seed: int = 0) -> Splits:
    """Toy 1 × 2 × 2 'images': pixel (0, 0) carries the label signal and the attribute, the others noise."""
    rng = np.random.default_rng(seed)
    import torch

    def split(n: int, name: str) -> SplitDataset:
        attr = (rng.random(n) < 0.5).astype(np.int64)
        pixels = rng.normal(0, 1, (n, 1, 2, 2))
        pixels[:, 0, 0, 0] += attr * 0.8
        y = ((pixels[:, 0, 0, 0] + 0.5 * pixels[:, 0, 1, 1] + rng.normal(0, 0.7, n)) > 0.4).astype(np.int64)
        return SplitDataset(
            {"x": torch.tensor(pixels, dtype=torch.float32)}, torch.tensor(y), torch.tensor(attr),
            torch.tensor(y * 2 + attr), name=name,
        )  # fmt: skip

    info = DatasetInfo(**{**info_of(2).__dict__, "modality": "image", "input_shape": (1, 2, 2)})
    return Splits(split(400, "train"), split(150, "val"), split(150, "test"), info)


def test_image_peer_is_exponentiated_gradient_on_the_flattened_pixels() -> None:
    splits = image_splits()
    config = parse_config({**BASE, "peers": [{"kind": "expgrad", "constraint": "equalized-odds"}]})
    (peer,) = plan_peers(config, "image", {"name": "cnn"}, TrainConfig())
    fitted = fit_peer(peer, splits, seed=1)
    # the rows scikit-learn sees, built here by hand: pixel (c, i, j) of example k in column 4c + 2i + j
    x = {}
    for name, split in splits.items():
        images = split.encodings["x"].numpy().astype(np.float64)
        x[name] = np.stack([images[:, 0, 0, 0], images[:, 0, 0, 1], images[:, 0, 1, 0], images[:, 0, 1, 1]], 1)
    direct = ExponentiatedGradient(LogisticRegression(max_iter=1000, random_state=1), constraints=EqualizedOdds())
    direct.fit(x["train"], splits.train.y.numpy(), sensitive_features=splits.train.attr.numpy())
    for name in ("val", "test"):
        np.testing.assert_array_equal(fitted.predictions[name].pred, direct.predict(x[name], random_state=1))
        np.testing.assert_allclose(fitted.pmf[name], direct._pmf_predict(x[name]))
    assert fitted.params == 4 + 1  # a weight per pixel and a bias


class FileImages(SplitDataset):
    """A split that makes its examples one by one, like images decoded from files."""

    def __getitem__(self, i: int) -> dict:
        return super().__getitem__(i)


def test_images_read_from_files_are_refused_by_name() -> None:
    splits = image_splits()
    check_peer_data(splits)  # in-memory images pass
    train = splits.train
    lazy = FileImages(train.encodings, train.y, train.attr, train.group, name="train")
    with pytest.raises(ConfigError, match="peers: split train reads its examples from files one at a time"):
        check_peer_data(Splits(lazy, splits.val, splits.test, splits.info))
    no_tensor = SplitDataset({}, splits.val.y, splits.val.attr, splits.val.group, name="val")
    with pytest.raises(ConfigError, match="peers: split val has no tensor of examples"):
        check_peer_data(Splits(splits.train, no_tensor, splits.test, splits.info))


# ----------------------------------------------------------------------------------------------- report


def _entry(teacher: float, student: float, low: float, high: float) -> dict:
    return {"teacher": teacher, "student": student, "delta": student - teacher, "ci_low": low, "ci_high": high}


def _report_metrics() -> dict:
    """teacher; kd amplifies MAD; kd+threshold and teacher+threshold bring it down; a peer is fairest of all."""

    def model(role: str, method: str, acc: float, mad: float, eo: float, wga: float, **extra) -> dict:
        split = {
            "accuracy": acc,
            "recall_disparity_mad": mad,
            "eo_difference": eo,
            "worst_group_accuracy": wga,
            "group_accuracy": {"g0": wga, "g1": 0.9},
        }
        if role in ("postprocessed", "peer"):
            split = {**split, "ece": None, "undefined": {"ece": NO_CONFIDENCE}}
        return {"role": role, "method": method, "params": 10, "splits": {"test": split, "val": split}, **extra}

    settings = {"constraints": "equalized_odds", "objective": "accuracy_score"}
    models = {
        "teacher": model("teacher", "erm", 0.95, 0.10, 0.10, 0.80),
        "kd": model("student", "kd", 0.90, 0.30, 0.25, 0.60),
        "teacher+threshold": model(
            "postprocessed", "erm + threshold(eo)", 0.94, 0.02, 0.03, 0.82, source="teacher", postprocess=settings
        ),
        "kd+threshold": model(
            "postprocessed", "kd + threshold(eo)", 0.88, 0.08, 0.05, 0.70, source="kd", postprocess=settings
        ),
        "expgrad-eo-logistic": model(
            "peer", "expgrad(equalized-odds, logistic)", 0.93, 0.01, 0.02, 0.85, label="peer: expgrad-eo (logistic)"
        ),
    }
    entries = {
        "kd": {"recall_disparity_mad": _entry(0.10, 0.30, 0.15, 0.25)},
        "teacher+threshold": {"recall_disparity_mad": _entry(0.10, 0.02, -0.12, -0.04)},
        "kd+threshold": {"recall_disparity_mad": _entry(0.10, 0.08, -0.05, 0.01)},
        "expgrad-eo-logistic": {"recall_disparity_mad": _entry(0.10, 0.01, -0.13, -0.05)},
    }
    intervals = {
        name: {
            key: {
                "value": m["splits"]["test"][key],
                "ci_low": m["splits"]["test"][key] - 0.01,
                "ci_high": m["splits"]["test"][key] + 0.01,
            }
            for key in ("accuracy", "worst_group_accuracy", "recall_disparity_mad")
        }
        for name, m in models.items()
    }
    return {
        "dataset": {
            "name": "toy",
            "num_classes": 2,
            "class_names": ["a", "b"],
            "attr_names": ["x", "y"],
            "group_names": ["g0", "g1"],
        },
        "run": {"name": "toy", "seed": 0},
        "models": models,
        "amplification": {"split": "test", "confidence": 0.95, "resamples": 1000, "students": entries},
        "intervals": {"split": "test", "confidence": 0.95, "resamples": 1000, "models": intervals},
    }


def test_verdict_counts_post_processed_students_as_fixes_and_names_peers_apart() -> None:
    from fairdistill.report.verdict import verdict_sentences

    sentences = verdict_sentences(_report_metrics())
    assert sentences[0].startswith("Distillation amplified bias: kd is worse than the teacher on recall-disparity MAD")
    # the fix is the post-processed student: not the post-processed teacher, nor the (fairer) peer
    assert sentences[2].startswith("kd+threshold brings recall-disparity MAD back to the teacher's level (0.080")
    assert "accuracy cost of 2.0 points against kd" in sentences[2]
    assert sentences[-1] == (
        "For reference, without a teacher (not distilled): peer: expgrad-eo (logistic) accuracy 0.930, MAD 0.010; "
        "kd: accuracy 0.900, MAD 0.300."
    )


def test_tables_label_peers_and_explain_the_extra_rows() -> None:
    from fairdistill.report.tables import comparison_table, group_accuracy_table, terminal_table
    from fairdistill.report.verdict import amplification_grid

    metrics = _report_metrics()
    table = comparison_table(metrics)
    assert [row[0] for row in table.rows] == [
        "teacher",
        "kd",
        "teacher+threshold",
        "kd+threshold",
        "peer: expgrad-eo (logistic)",
    ]
    assert [row[1] for row in table.rows][-1] == "peer"
    notes = " ".join(table.notes)
    assert "ECE of teacher+threshold, kd+threshold, peer: expgrad-eo (logistic) (test split)" in notes
    assert (
        "fairlearn's ThresholdOptimizer (equalized_odds, objective accuracy_score), fitted on the val split;" in notes
    )
    assert "in-sample" in " ".join(comparison_table(metrics, "val").notes)
    assert "peer: a non-distilled reference, fairlearn's ExponentiatedGradient" in notes
    assert terminal_table(metrics, width=200).rows[-1][0] == "peer: expgrad-eo (logistic)"
    assert group_accuracy_table(metrics).rows[-1][0] == "peer: expgrad-eo (logistic)"
    grid = amplification_grid(metrics)
    assert grid is not None and [row[0] for row in grid.rows][1:] == [
        "kd",
        "teacher+threshold",
        "kd+threshold",
        "peer: expgrad-eo (logistic)",
    ]


def test_run_pareto_plot_has_the_eo_panel_and_a_front_of_every_model_but_the_teacher(monkeypatch) -> None:
    from fairdistill.report import plots

    drawn = []
    real_png = plots._png
    monkeypatch.setattr(plots, "_png", lambda fig: drawn.append(fig) or real_png(fig))
    assert plots.run_pareto_png(_report_metrics()) is not None
    (fig,) = drawn
    wga, mad, eo = fig.axes[:3]
    assert "worst-group" in wga.get_xlabel() and "MAD" in mad.get_xlabel() and "equalized-odds" in eo.get_xlabel()
    for ax, expected in ((mad, [0.01, 0.02]), (eo, [0.02, 0.03]), (wga, [0.82, 0.85])):
        # the peer is the fairest and teacher+threshold (0.94) the most accurate but for the teacher (0.95), which is
        # left out of the front; kd and kd+threshold are dominated by both
        (front,) = [line for line in ax.get_lines() if line.get_linestyle() == "--"]
        assert sorted(front.get_xdata().tolist()) == expected
        assert "peer: expgrad-eo (logistic)" in [t.get_text() for t in ax.texts]
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "post-processed (ThresholdOptimizer)" in legend and "peer (not distilled)" in legend
    assert "Pareto front (students, post-processed, peers)" in legend
    # the EO panel has no interval of its own: the value comes from the model's test metrics
    assert plots._pareto_value(_report_metrics(), {}, "kd", "eo_difference") == 0.25


def test_sweep_tradeoff_plot_has_the_eo_panel_and_role_markers(monkeypatch) -> None:
    from fairdistill.report import plots

    drawn = []
    real_png = plots._png
    monkeypatch.setattr(plots, "_png", lambda fig: drawn.append(fig) or real_png(fig))

    def point(model: str, role: str, acc: float, mad: float, eo: float, **extra) -> dict:
        return {"label": "1", "model": model, "role": role, "accuracy": acc, "recall_disparity_mad": mad,
                "worst_group_accuracy": 0.5, "eo_difference": eo, **extra}  # fmt: skip

    points = [
        point("teacher", "teacher", 0.95, 0.30, 0.30),
        point("kd", "student", 0.90, 0.20, 0.25),
        point("kd+threshold", "postprocessed", 0.88, 0.05, 0.04),
        point("expgrad-eo-logistic", "peer", 0.85, 0.10, 0.02, display="peer: expgrad-eo (logistic)"),
    ]
    plots.tradeoff_png(points, "toy")
    (fig,) = drawn
    mad, _, eo = fig.axes[:3]
    assert "equalized-odds" in eo.get_xlabel()
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "peer: expgrad-eo (logistic)" in labels and "Pareto front (students, post-processed, peers)" in labels
    (front,) = [line for line in eo.get_lines() if line.get_label().startswith("Pareto front")]
    # on EO: kd (0.25, 0.90), kd+threshold (0.04, 0.88), peer (0.02, 0.85): none dominates another
    assert sorted(front.get_xdata().tolist()) == [0.02, 0.04, 0.25]
    (front,) = [line for line in mad.get_lines() if line.get_label().startswith("Pareto front")]
    # on MAD the peer (0.10, 0.85) is dominated by kd+threshold (0.05, 0.88)
    assert sorted(front.get_xdata().tolist()) == [0.05, 0.20]


# ---------------------------------------------------------------------------------------------------------------
# postprocess.tolerance: the optimizer mixed with the model


def test_violation_is_the_largest_gap_of_the_criterions_rates() -> None:
    y = np.array([1, 1, 1, 1, 0, 0, 0, 0])
    attr = np.array([0, 0, 1, 1, 0, 0, 1, 1])
    positive = np.array([1.0, 0.5, 0.0, 0.5, 0.5, 0.0, 0.0, 0.0])
    # TPR: 0.75 (a = 0) vs 0.25 (a = 1); FPR: 0.25 vs 0; selection rate: 0.5 vs 0.125
    assert violation(y, positive, attr, "true_positive_rate_parity") == pytest.approx(0.5)
    assert violation(y, positive, attr, "false_positive_rate_parity") == pytest.approx(0.25)
    assert violation(y, positive, attr, "equalized_odds") == pytest.approx(0.5)
    assert violation(y, positive, attr, "demographic_parity") == pytest.approx(0.375)
    assert violation(y, positive, np.zeros(8, dtype=int), "equalized_odds") == 0.0  # one attribute value


def test_mixing_share_is_the_smallest_within_the_tolerance() -> None:
    y = np.array([1, 1, 0, 0])
    attr = np.array([0, 1, 0, 1])
    model = np.array([1.0, 0.0, 0.0, 0.0])  # TPR gap 1, FPR gap 0
    optimizer = np.array([0.5, 0.5, 0.0, 0.0])  # no gap
    # the mixture's TPR gap is 1 − p: within 0.3 from p = 0.7
    assert mixing_share(y, model, optimizer, attr, "equalized_odds", 0.3) == pytest.approx(0.7, abs=1e-9)
    assert mixing_share(y, model, optimizer, attr, "equalized_odds", 1.0) == 0.0  # the model already is within
    worse = np.array([0.2, 0.9, 0.0, 0.0])  # the optimizer's own gap (0.7) exceeds the tolerance: p = 1
    assert mixing_share(y, model, worse, attr, "equalized_odds", 0.3) == 1.0


def test_a_tolerance_mixes_the_optimizer_with_the_model_and_meets_it_on_val() -> None:
    val, test = synthetic(800, 0), synthetic(700, 1)
    plain = postprocess(val, test, PostprocessConfig(threshold="equalized_odds"), seed=3)
    own_violation = violation(val.y, val.probs.argmax(1).astype(float), val.attr, "equalized_odds")
    assert own_violation > 0.1  # the scorer is biased: there is something to fix

    loose = postprocess(val, test, PostprocessConfig(threshold="equalized_odds", tolerance=0.99), seed=3)
    assert loose.settings["share"] == 0.0
    for split, source in (("val", val), ("test", test)):
        np.testing.assert_array_equal(loose.predictions[split].probs.argmax(1), source.probs.argmax(1))

    strict = postprocess(val, test, PostprocessConfig(threshold="equalized_odds", tolerance=1e-9), seed=3)
    assert strict.settings["share"] == pytest.approx(1.0, abs=1e-6)  # the optimizer meets it exactly in expectation
    for split in ("val", "test"):
        np.testing.assert_array_equal(strict.predictions[split].probs, plain.predictions[split].probs)
        np.testing.assert_allclose(strict.pmf[split], plain.pmf[split], atol=1e-6)

    tolerance = own_violation / 2
    middle = postprocess(val, test, PostprocessConfig(threshold="equalized_odds", tolerance=tolerance), seed=3)
    share = middle.settings["share"]
    assert 0.0 < share < 1.0
    assert middle.settings["val_violation"] == pytest.approx(tolerance, abs=1e-6)  # the smallest share: at the bound
    own = np.eye(2)[test.probs.argmax(1)]
    np.testing.assert_allclose(middle.pmf["test"], share * plain.pmf["test"] + (1 - share) * own)
    labels = middle.predictions["test"].probs.argmax(1)
    from_optimizer = labels == plain.predictions["test"].probs.argmax(1)
    from_model = labels == test.probs.argmax(1)
    assert bool((from_optimizer | from_model).all())  # every label is one of the two
    differ = plain.predictions["test"].probs.argmax(1) != test.probs.argmax(1)
    taken = float(from_optimizer[differ].mean())  # where they differ, the optimizer's label with probability p
    assert abs(taken - share) < 4 * np.sqrt(share * (1 - share) / differ.sum())


@pytest.mark.parametrize("bad", [0, -0.1, 1.5, "0.04", True])
def test_a_tolerance_outside_0_1_is_refused_naming_the_field(bad) -> None:
    config = {
        "name": "x",
        "data": {"name": "adult"},
        "methods": [{"name": "kd", "loss": {"kind": "kd"}}],
        "postprocess": {"threshold": "equalized_odds", "tolerance": bad},
    }
    with pytest.raises(ConfigError, match=r"postprocess\.tolerance"):
        parse_config(config)
