"""The distilled student as a scikit-learn classifier inside fairlearn's ExponentiatedGradient: what its fit
optimises (weights, labels and the teacher term, checked on constructed cases), and the peer wiring against
fairlearn called directly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fairlearn.reductions import EqualizedOdds, ExponentiatedGradient

from fairdistill.config import PeerConfig, TrainConfig
from fairdistill.data.core import DatasetInfo, SplitDataset, Splits, label_attr_groups
from fairdistill.evaluate.distilled_estimator import DistilledClassifier
from fairdistill.evaluate.peers import fit_peer, plan_peers

INFO = DatasetInfo("toy", 2, ("no", "yes"), ("u", "v"), label_attr_groups(("no", "yes"), ("u", "v")), "tabular", (3,))
SPEC = {"name": "mlp", "hidden": [4]}


def _data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    attr = (rng.random(n) < 0.5).astype(int)
    y = ((x[:, 0] + 0.8 * attr + 0.3 * rng.normal(size=n)) > 0.4).astype(int)
    teacher = np.stack([-x[:, 0] - attr, x[:, 0] + attr], 1).astype(np.float32)
    return x, y, attr, teacher


def _weights(model: DistilledClassifier) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.model_.parameters()]


def test_zero_weights_drop_rows_exactly() -> None:
    """Full batch: weights 0 on some rows give the fit on the other rows alone (the weights are normalised)."""
    x, y, _, teacher = _data(60, 0)
    keep = np.arange(60) % 3 != 0
    weights = keep.astype(np.float64) * 2.5  # any common scale
    kwargs = {"epochs": 5, "lr": 0.01, "batch_size": 1000, "alpha": 0.5, "tau": 2.0, "random_state": 3}
    weighted = DistilledClassifier(teacher, SPEC, INFO, **kwargs).fit(x, y, sample_weight=weights)
    alone = DistilledClassifier(teacher[keep], SPEC, INFO, **kwargs).fit(x[keep], y[keep])
    for a, b in zip(_weights(weighted), _weights(alone), strict=True):
        assert torch.allclose(a, b, atol=1e-6)
    # and the weights matter: uniform weights give another model
    uniform = DistilledClassifier(teacher, SPEC, INFO, **kwargs).fit(x, y)
    assert not all(torch.allclose(a, b) for a, b in zip(_weights(uniform), _weights(weighted), strict=True))


def test_read_only_arrays_are_copied_without_a_warning(recwarn: pytest.WarningsRecorder) -> None:
    """fairlearn passes read-only labels and weights; the fit copies them instead of sharing them with torch
    (which warns about non-writable arrays) and leaves them untouched."""
    x, y, _, teacher = _data(40, 2)
    weights = np.linspace(0.5, 1.5, 40)
    for array in (x, y, weights):
        array.setflags(write=False)
    model = DistilledClassifier(teacher, SPEC, INFO, epochs=2, batch_size=16).fit(x, y, sample_weight=weights)
    assert model.predict(x).shape == (40,)
    assert not [w for w in recwarn if "not writable" in str(w.message)]
    assert np.array_equal(weights, np.linspace(0.5, 1.5, 40))


def test_alpha_chooses_between_the_labels_and_the_teacher() -> None:
    x, _, _, _ = _data(200, 1)
    y = np.zeros(200, dtype=int)  # every label says "no"
    teacher = np.tile(np.array([[0.0, 6.0]], dtype=np.float32), (200, 1))  # the teacher says "yes" for all
    kwargs = {"epochs": 30, "lr": 0.05, "batch_size": 50, "tau": 1.0, "random_state": 0}
    labels_only = DistilledClassifier(teacher, SPEC, INFO, alpha=0.0, **kwargs).fit(x, y)
    teacher_only = DistilledClassifier(teacher, SPEC, INFO, alpha=1.0, **kwargs).fit(x, y)
    assert (labels_only.predict(x) == 0).all() and (teacher_only.predict(x) == 1).all()
    # α = 1 at τ = 1: the student's probabilities approach the teacher's σ(6) ≈ 0.9975
    assert teacher_only.predict_proba(x)[:, 1].mean() == pytest.approx(1 / (1 + np.exp(-6.0)), abs=0.02)


def test_rows_must_be_the_teachers() -> None:
    x, y, _, teacher = _data(20, 2)
    with pytest.raises(ValueError, match="X has 19 rows but the teacher's logits 20"):
        DistilledClassifier(teacher, SPEC, INFO).fit(x[:19], y[:19])


def _splits(seed: int) -> Splits:
    def split(name: str, n: int, offset: int) -> SplitDataset:
        x, y, attr, _ = _data(n, seed + offset)
        yt, at = torch.as_tensor(y), torch.as_tensor(attr)
        return SplitDataset({"x": torch.as_tensor(x)}, yt, at, yt * 2 + at, name=name)

    return Splits(split("train", 300, 0), split("val", 100, 1), split("test", 100, 2), INFO)


def test_the_distilled_peer_is_exponentiated_gradient_around_the_estimator_called_directly() -> None:
    from fairdistill.config import RunConfig

    splits = _splits(5)
    _, _, _, teacher = _data(300, 5)
    config = RunConfig.model_validate(
        {
            "data": {"name": "adult"},
            "methods": [{"name": "kd", "loss": {"kind": "kd"}}],
            "peers": [{"kind": "expgrad", "constraint": "equalized-odds", "estimator": "distilled", "max_iter": 6}],
        }
    )
    student_train = TrainConfig(epochs=3, lr=0.01, batch_size=64)
    (plan,) = plan_peers(config, "tabular", SPEC, student_train)
    assert plan.role == "reduced" and plan.method == "expgrad(equalized-odds, kd alpha=0.5 tau=2)"
    fitted = fit_peer(plan, splits, seed=4, teacher_logits=teacher)
    direct = ExponentiatedGradient(
        DistilledClassifier(teacher, SPEC, INFO, epochs=3, lr=0.01, batch_size=64, alpha=0.5, tau=2.0, random_state=4),
        constraints=EqualizedOdds(),
        eps=0.01,
        max_iter=6,
    )
    direct.fit(
        splits.train.encodings["x"].numpy().astype(np.float64),
        splits.train.y.numpy(),
        sensitive_features=splits.train.attr.numpy(),
    )
    for name in ("val", "test"):
        x = getattr(splits, name).encodings["x"].numpy().astype(np.float64)
        np.testing.assert_allclose(fitted.pmf[name], direct._pmf_predict(x), atol=1e-6)
        np.testing.assert_array_equal(fitted.predictions[name].probs.argmax(1), direct.predict(x, random_state=4))
    assert fitted.params == 3 * 4 + 4 + 4 * 2 + 2


def test_distilled_options_belong_to_the_distilled_estimator() -> None:
    PeerConfig.model_validate(
        {"kind": "expgrad", "constraint": "equalized-odds", "estimator": "distilled", "alpha": 0.9}
    )
    with pytest.raises(ValueError, match="alpha: only for estimator distilled"):
        PeerConfig.model_validate({"kind": "expgrad", "constraint": "equalized-odds", "alpha": 0.9})
    with pytest.raises(ValueError, match="hidden: only for estimator mlp"):
        PeerConfig.model_validate(
            {"kind": "expgrad", "constraint": "equalized-odds", "estimator": "distilled", "hidden": [3]}
        )


IMAGE_INFO = DatasetInfo(
    "toy-images", 2, ("no", "yes"), ("u", "v"), label_attr_groups(("no", "yes"), ("u", "v")), "image", (1, 3, 3)
)


def test_rows_of_pixels_are_shaped_back_into_images() -> None:
    """ExponentiatedGradient hands over flattened images: fitting and predicting on those rows is fitting and
    predicting on the images themselves (same seed, same model), and a row of the wrong width is refused."""
    rng = np.random.default_rng(4)
    images = rng.normal(size=(80, 1, 3, 3)).astype(np.float32)
    y = (images[:, 0, 1, 1] > 0).astype(int)
    teacher = np.stack([-images[:, 0, 1, 1], images[:, 0, 1, 1]], 1).astype(np.float32)
    spec = {"name": "cnn", "width": 2, "blocks": 1}
    kwargs = {"epochs": 2, "lr": 0.01, "batch_size": 16, "random_state": 2}
    flat = DistilledClassifier(teacher, spec, IMAGE_INFO, **kwargs).fit(images.reshape(80, 9), y)
    shaped = DistilledClassifier(teacher, spec, IMAGE_INFO, **kwargs).fit(images, y)
    for a, b in zip(_weights(flat), _weights(shaped), strict=True):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(flat.predict_proba(images.reshape(80, 9)), shaped.predict_proba(images))
    with pytest.raises(ValueError, match=r"X has rows of shape \(8,\), expected 9 numbers \(one example of shape"):
        flat.predict(images.reshape(80, 9)[:, :8])
