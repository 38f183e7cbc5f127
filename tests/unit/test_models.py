"""Built-in models, taps through forward hooks, and the registry's error messages."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from fairdistill.data.core import DatasetInfo
from fairdistill.errors import ConfigError
from fairdistill.models import MODELS, TappedModel, build_model, count_parameters, default_model_spec

IMAGE = DatasetInfo("img", 2, ("a", "b"), ("r", "g"), ("a|r", "a|g", "b|r", "b|g"), "image", (3, 28, 28))
TABLE = DatasetInfo("tab", 3, ("a", "b", "c"), ("f", "m"), ("x",), "tabular", (10,))


def test_cnn_taps_and_embedding_shapes() -> None:
    model = build_model({"name": "cnn", "width": 4}, IMAGE, where="student.model")
    out = model({"x": torch.randn(5, 3, 28, 28)})
    assert out.logits.shape == (5, 2)
    assert set(out.taps) == {"block1", "block2", "block3"}
    assert out.taps["block1"].shape == (5, 4, 14, 14)
    assert out.taps["block3"].shape == (5, 16, 7, 7)
    assert out.embedding.shape == (5, 16)
    # the embedding is the pooled last block, and the head maps it to the logits
    assert torch.allclose(out.embedding, out.taps["block3"].mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(model.module.head(out.embedding), out.logits, atol=1e-6)


def test_mlp_taps_are_hidden_activations() -> None:
    model = build_model({"name": "mlp", "hidden": [8, 6]}, TABLE, where="teacher.model")
    x = torch.randn(7, 10)
    out = model({"x": x})
    assert out.logits.shape == (7, 3)
    assert out.taps["hidden1"].shape == (7, 8) and out.taps["hidden2"].shape == (7, 6)
    assert (out.taps["hidden1"] >= 0).all()  # post-ReLU
    assert torch.equal(out.embedding, out.taps["hidden2"])
    expected_hidden1 = torch.relu(model.module[0][0](x))
    assert torch.allclose(out.taps["hidden1"], expected_hidden1)


def test_parameter_count_is_exact() -> None:
    model = build_model({"name": "mlp", "hidden": [4]}, TABLE, where="m")
    assert count_parameters(model) == (10 * 4 + 4) + (4 * 3 + 3)


def test_wrapping_an_arbitrary_module() -> None:
    module = nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2))
    model = TappedModel(module, taps={"mid": "1"}, embedding="1", input_key="tokens")
    out = model({"tokens": torch.randn(2, 3)})
    assert out.taps["mid"].shape == (2, 5) and out.embedding.shape == (2, 5)


def test_unknown_tap_path_names_the_tap() -> None:
    with pytest.raises(ConfigError, match=r"tap 'deep': the model has no submodule 'layers\.9'"):
        TappedModel(nn.Linear(2, 2), taps={"deep": "layers.9"})


def test_unknown_model_lists_choices_and_suggests() -> None:
    with pytest.raises(
        ConfigError,
        match=r"unknown model 'cnnn'\. Did you mean 'cnn'\? Valid model names: cnn, efficientnet, hf, mlp, "
        r"resnet-small, timm, torchvision",
    ):
        build_model({"name": "cnnn"}, IMAGE, where="student.model")


def test_bad_model_option_names_the_field() -> None:
    with pytest.raises(ConfigError, match=r"student\.model\.widht: unknown field"):
        build_model({"name": "cnn", "widht": 3}, IMAGE, where="student.model")


def test_model_modality_mismatch_is_explained() -> None:
    with pytest.raises(
        ConfigError,
        match=r"student.model.name: model mlp needs tabular data, but data img is image. Use an image model \(cnn",
    ):
        build_model({"name": "mlp"}, IMAGE, where="student.model")


def test_modality_defaults_exist_for_images_and_tables() -> None:
    for modality in ("image", "tabular"):
        for role in ("teacher", "student"):
            assert default_model_spec(modality, role)["name"] in MODELS
