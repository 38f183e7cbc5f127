"""Vision backbones: resnet-small, EfficientNet (efficientnet-pytorch), and the timm / torchvision adapters.

timm and torchvision are not installed in the project's environment (their CPU builds here break imports), so
the adapters are exercised with stand-in libraries that build our own ResNet, through the same module-path →
tap code; the tests against the real libraries skip, with the reason, where they cannot be imported.
"""

from __future__ import annotations

import importlib.util
import sys
import types

import pytest
import torch
from torch import nn

from fairdistill.data.core import DatasetInfo
from fairdistill.distill.features import pool_tap
from fairdistill.errors import ConfigError
from fairdistill.models import build_model, resolve_model_spec
from fairdistill.models.hub import default_taps, import_library, replace_classifier, tapped_by_paths
from fairdistill.models.small import ResNetSmall

IMAGE32 = DatasetInfo("img", 3, ("a", "b", "c"), ("r", "g"), ("a|r",), "image", (3, 32, 32))
GRAY = DatasetInfo("gray", 2, ("a", "b"), ("r", "g"), ("a|r",), "image", (1, 28, 28))


def test_resnet_small_taps_embedding_and_head() -> None:
    model = build_model({"name": "resnet-small", "widths": [4, 8, 12, 16], "depths": [1, 2, 1, 1]}, IMAGE32, where="m")
    model.eval()
    out = model({"x": torch.randn(5, 3, 32, 32)})
    assert {k: tuple(v.shape) for k, v in out.taps.items()} == {
        "layer1": (5, 4, 32, 32),
        "layer2": (5, 8, 16, 16),
        "layer3": (5, 12, 8, 8),
        "layer4": (5, 16, 4, 4),
    }
    assert len(model.module.layer2) == 2
    # the embedding is the global average of layer4, and fc of it gives the logits
    assert torch.allclose(out.embedding, out.taps["layer4"].mean(dim=(2, 3)), atol=1e-6)
    assert torch.allclose(model.module.fc(out.embedding), out.logits, atol=1e-6)


def test_resnet_small_imagenet_stem_and_bad_widths() -> None:
    model = build_model({"name": "resnet-small", "stem": "imagenet"}, IMAGE32, where="m")
    out = model({"x": torch.randn(2, 3, 32, 32)})
    assert out.taps["layer1"].shape[-1] == 8 and out.taps["layer4"].shape[-1] == 1  # /4 stem, then /2 per stage
    with pytest.raises(ConfigError, match=r"model.depths: every value must be positive"):
        build_model({"name": "resnet-small", "depths": [1, 0, 1, 1]}, IMAGE32, where="m")
    with pytest.raises(ConfigError, match=r"widths"):
        build_model({"name": "resnet-small", "widths": [4, 8]}, IMAGE32, where="m")


# b0 repeats its seven rows 1, 2, 2, 3, 3, 4, 1 times: the stages end at blocks 0, 2, 4, 7, 10, 14, 15. b3 has
# depth coefficient 1.4: ceil(1.4 × repeats) = 2, 3, 3, 5, 5, 6, 2 → ends 1, 4, 7, 12, 17, 23, 25.
B0_ENDS = [0, 2, 4, 7, 10, 14, 15]
B3_ENDS = [1, 4, 7, 12, 17, 23, 25]


@pytest.mark.parametrize(
    ("variant", "ends", "widths", "embedding"),
    [
        ("b0", B0_ENDS, [16, 24, 40, 80, 112, 192, 320], 1280),
        ("b3", B3_ENDS, [24, 32, 48, 96, 136, 232, 384], 1536),  # round_filters(w × 1.2) to multiples of 8
    ],
)
def test_efficientnet_stage_taps_and_embedding(
    variant: str, ends: list[int], widths: list[int], embedding: int
) -> None:
    model = build_model({"name": "efficientnet", "variant": variant}, IMAGE32, where="m")
    assert model.tap_paths == {f"stage{k + 1}": f"_blocks.{i}" for k, i in enumerate(ends)}
    assert len(model.module._blocks) == ends[-1] + 1
    model.eval()
    out = model({"x": torch.randn(2, 3, 32, 32)})
    sides = [16, 8, 4, 2, 2, 1, 1]  # strides 2, 4, 8, 16, 16, 32, 32 of 32 px
    assert [tuple(out.taps[f"stage{k + 1}"].shape) for k in range(7)] == [
        (2, w, s, s) for w, s in zip(widths, sides, strict=True)
    ]
    assert out.embedding.shape == (2, embedding) and out.logits.shape == (2, 3)
    # eval: dropout is the identity, so the classifier of the embedding is the logits
    assert torch.allclose(model.module._fc(out.embedding), out.logits, atol=1e-5)
    # an early readout pools a stage's map to one vector per example (global average)
    assert torch.allclose(pool_tap(out.taps["stage3"]), out.taps["stage3"].mean(dim=(2, 3)))


def test_efficientnet_teacher_b3_and_student_b0_pair() -> None:
    teacher = build_model({"name": "efficientnet", "variant": "b3"}, IMAGE32, where="teacher.model")
    student = build_model({"name": "efficientnet", "variant": "b0", "dropout": 0.1}, IMAGE32, where="student.model")
    x = {"x": torch.randn(3, 3, 32, 32)}
    t, s = teacher(x), student(x)
    assert t.logits.shape == s.logits.shape == (3, 3)
    assert t.embedding.shape == (3, 1536) and s.embedding.shape == (3, 1280)  # kdpp projects, rkd compares within
    assert sum(p.numel() for p in teacher.parameters()) > 2 * sum(p.numel() for p in student.parameters())
    assert student.module._dropout.p == 0.1 and teacher.module._dropout.p == 0.3  # b3's own rate


def test_efficientnet_reads_one_channel_images() -> None:
    model = build_model({"name": "efficientnet"}, GRAY, where="m")
    out = model({"x": torch.randn(2, 1, 28, 28)})
    assert out.logits.shape == (2, 2) and out.taps["stage1"].shape == (2, 16, 14, 14)


def test_efficientnet_pretrained_offline_is_one_clear_error(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import urllib.error

    import efficientnet_pytorch.utils as utils

    def offline(*_args, **_kwargs):
        raise urllib.error.URLError("no network")

    monkeypatch.setattr(utils.model_zoo, "load_url", offline)
    with pytest.raises(ConfigError, match=r"cannot load the pretrained efficientnet-b0 weights from the internet"):
        build_model({"name": "efficientnet", "pretrained": True}, IMAGE32, where="m")
    missing = tmp_path / "b0.pth"
    with pytest.raises(ConfigError, match=r"from the file .*b0\.pth.*give weights: a local \.pth file"):
        build_model({"name": "efficientnet", "weights": str(missing)}, IMAGE32, where="m")


def test_efficientnet_loads_local_weights(tmp_path) -> None:
    source = build_model({"name": "efficientnet"}, DatasetInfo("i", 1000, (), (), (), "image", (3, 32, 32)), where="m")
    path = tmp_path / "b0.pth"
    torch.save(source.module.state_dict(), path)
    model = build_model({"name": "efficientnet", "weights": str(path)}, IMAGE32, where="m")
    assert torch.equal(model.module._blocks[3]._depthwise_conv.weight, source.module._blocks[3]._depthwise_conv.weight)
    assert model.module._fc.out_features == 3  # a new classifier for the dataset's classes


def test_efficientnet_missing_package_names_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "efficientnet_pytorch", None)
    with pytest.raises(ConfigError, match=r"needs the efficientnet-pytorch package.*fairdistill\[vision\]"):
        build_model({"name": "efficientnet"}, IMAGE32, where="m")


def test_efficientnet_option_errors() -> None:
    with pytest.raises(ConfigError, match=r"m.variant"):
        build_model({"name": "efficientnet", "variant": "b9"}, IMAGE32, where="m")
    with pytest.raises(ConfigError, match=r"needs image inputs"):
        build_model({"name": "efficientnet"}, DatasetInfo("t", 2, (), (), (), "image", (10,)), where="m")


# -- timm / torchvision: names, default taps, the adapters ------------------------------------------------------


def test_prefixed_names_resolve_to_the_kind_and_arch() -> None:
    assert resolve_model_spec({"name": "timm:resnet50", "pretrained": True}) == {
        "name": "timm",
        "arch": "resnet50",
        "pretrained": True,
    }
    assert resolve_model_spec({"name": "torchvision:resnet18"}) == {"name": "torchvision", "arch": "resnet18"}
    assert resolve_model_spec({"name": "cnn", "width": 4}) == {"name": "cnn", "width": 4}
    assert resolve_model_spec({"name": "nope:x"}) == {"name": "nope:x"}  # left for the registry's error
    with pytest.raises(ConfigError, match=r"teacher.model.name: 'timm:resnet50' already names the architecture"):
        resolve_model_spec({"name": "timm:resnet50", "arch": "resnet18"}, where="teacher.model")
    with pytest.raises(ConfigError, match=r"names no architecture"):
        resolve_model_spec({"name": "timm:"})


class TimmStyle(nn.Module):
    """timm's layout for ConvNeXt-like models: ``stages.K`` and ``head.global_pool`` (flattened) + ``head.fc``."""

    def __init__(self) -> None:
        super().__init__()
        self.stages = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.Conv2d(4, 6, 3, stride=2))
        self.head = nn.Module()
        self.head.global_pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.head.fc = nn.Linear(6, 2)

    def forward(self, x):
        return self.head.fc(self.head.global_pool(self.stages(x)))


class FeaturesStyle(nn.Module):
    """torchvision's layout for EfficientNet / MobileNet: ``features.K``, ``avgpool``, ``classifier``."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 5, 3))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(5, 1000))

    def forward(self, x):
        return self.classifier(self.avgpool(self.features(x)).flatten(1))


def test_default_taps_per_family() -> None:
    assert default_taps(ResNetSmall(3, [4, 4, 4, 4], [1, 1, 1, 1], 2)) == (
        {"layer1": "layer1", "layer2": "layer2", "layer3": "layer3", "layer4": "layer4"},
        "avgpool",
    )
    assert default_taps(TimmStyle()) == ({"stage1": "stages.0", "stage2": "stages.1"}, "head.global_pool")
    assert default_taps(FeaturesStyle()) == (
        {"features1": "features.0", "features2": "features.1", "features3": "features.2"},
        "avgpool",
    )
    assert default_taps(nn.Linear(2, 2)) == ({}, None)


def test_taps_by_module_path_read_the_named_outputs() -> None:
    module = ResNetSmall(3, [4, 6, 8, 10], [1, 1, 1, 1], 2).eval()
    model = tapped_by_paths(module, {"early": "layer1.0.conv1", "mid": "layer2"}, None, where="model")
    x = torch.randn(2, 3, 16, 16)
    out = model({"x": x})
    assert set(out.taps) == {"early", "mid"}
    expected_early = module.layer1[0].conv1(module.relu(module.bn1(module.conv1(x))))
    assert torch.allclose(out.taps["early"], expected_early, atol=1e-6)
    assert out.taps["mid"].shape == (2, 6, 8, 8) and out.embedding.shape == (2, 10)
    timm_like = tapped_by_paths(TimmStyle(), None, None, where="model")({"x": torch.randn(2, 3, 16, 16)})
    assert timm_like.embedding.shape == (2, 6) and set(timm_like.taps) == {"stage1", "stage2"}
    with pytest.raises(ConfigError, match=r"model.taps.bad: the model has no submodule 'layer9'"):
        tapped_by_paths(module, {"bad": "layer9"}, None, where="model")
    with pytest.raises(ConfigError, match=r"model.taps.bad: .*'layer1.7'.*modules under 'layer1': layer1, layer1.0"):
        tapped_by_paths(module, {"bad": "layer1.7"}, None, where="model")
    with pytest.raises(ConfigError, match=r"model.embedding: the model has no submodule 'pool'"):
        tapped_by_paths(module, None, "pool", where="model")


def test_replace_classifier_sizes_the_last_linear() -> None:
    module = FeaturesStyle()
    assert replace_classifier(module, 7) == "classifier.1"
    assert module.classifier[1].out_features == 7 and module.classifier[1].in_features == 5
    with pytest.raises(ConfigError, match=r"no linear layer"):
        replace_classifier(nn.Conv2d(1, 1, 1), 2)


def test_missing_library_is_one_error_naming_the_install(monkeypatch: pytest.MonkeyPatch) -> None:
    for library in ("timm", "torchvision"):
        monkeypatch.setitem(sys.modules, library, None)
        with pytest.raises(ConfigError) as caught:
            build_model({"name": f"{library}:resnet50"}, IMAGE32, where="teacher.model")
        message = str(caught.value)
        assert f"model {library}:resnet50 needs {library}, which is not installed; run pip install {library}" in message
        assert "CUDA" in message


def test_broken_library_build_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.import_module

    def broken(name: str, *args, **kwargs):
        if name == "torchvision":
            raise OSError("libcudart.so.12: cannot open shared object file")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", broken)
    with pytest.raises(ConfigError, match=r"torchvision is installed but cannot be imported \(OSError: libcudart"):
        import_library("torchvision", "resnet18")


def fake_timm() -> types.ModuleType:
    """A stand-in for timm whose ``create_model`` builds our ResNet with timm's arguments (recorded)."""
    module = types.ModuleType("timm")
    module.calls = []  # type: ignore[attr-defined]

    def create_model(arch, pretrained=False, num_classes=1000, in_chans=3, **kwargs):
        module.calls.append((arch, pretrained, num_classes, in_chans, kwargs))
        if arch == "nonexistent":
            raise RuntimeError("Unknown model (nonexistent)")
        return ResNetSmall(in_chans, [4, 8, 8, 16], [1, 1, 1, 1], num_classes)

    module.create_model = create_model  # type: ignore[attr-defined]
    return module


def test_timm_adapter_with_a_stand_in_library(monkeypatch: pytest.MonkeyPatch) -> None:
    timm = fake_timm()
    monkeypatch.setitem(sys.modules, "timm", timm)
    spec = {"name": "timm:resnet18", "pretrained": True, "kwargs": {"drop_rate": 0.1}}
    model = build_model(spec, GRAY, where="teacher.model")
    assert timm.calls == [("resnet18", True, 2, 1, {"drop_rate": 0.1})]
    out = model({"x": torch.randn(2, 1, 28, 28)})
    assert set(out.taps) == {"layer1", "layer2", "layer3", "layer4"} and out.embedding.shape == (2, 16)
    custom = build_model({"name": "timm", "arch": "resnet18", "taps": {"first": "layer1.0"}}, GRAY, where="m")
    assert custom.tap_names == ["first"]
    with pytest.raises(ConfigError, match=r"model timm:nonexistent: Unknown model"):
        build_model({"name": "timm:nonexistent"}, GRAY, where="m")


def test_torchvision_adapter_with_a_stand_in_library(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[str, object, dict]] = []

    def get_model(arch, weights=None, **kwargs):
        calls.append((arch, weights, kwargs))
        if weights is not None:
            return FeaturesStyle()  # an ImageNet head of 1000 classes
        return ResNetSmall(3, [4, 4, 4, 4], [1, 1, 1, 1], kwargs["num_classes"])

    torchvision = types.ModuleType("torchvision")
    torchvision.models = types.SimpleNamespace(get_model=get_model)  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torchvision", torchvision)
    plain = build_model({"name": "torchvision:resnet18"}, IMAGE32, where="m")
    assert calls[-1] == ("resnet18", None, {"num_classes": 3}) and plain.tap_names[0] == "layer1"
    pretrained = build_model({"name": "torchvision:efficientnet_b0", "pretrained": True}, IMAGE32, where="m")
    assert calls[-1] == ("efficientnet_b0", "DEFAULT", {})
    out = pretrained({"x": torch.randn(2, 3, 32, 32)})
    assert out.logits.shape == (2, 3) and out.embedding.shape == (2, 5) and "features1" in out.taps
    with pytest.raises(ConfigError, match=r"reads 3-channel images"):
        build_model({"name": "torchvision:resnet18"}, GRAY, where="m")


def _importable(library: str) -> bool:
    """The library is installed and imports (a CUDA-only build on a CPU machine does not)."""
    if importlib.util.find_spec(library) is None:
        return False
    try:
        importlib.import_module(library)
    except Exception:
        return False
    return True


@pytest.mark.skipif(not _importable("timm"), reason="timm is not installed here (its CPU build breaks imports)")
def test_real_timm_resnet18() -> None:
    model = build_model({"name": "timm:resnet18"}, IMAGE32, where="m")
    out = model({"x": torch.randn(2, 3, 32, 32)})
    assert out.logits.shape == (2, 3) and out.embedding.shape == (2, 512)
    assert out.taps["layer1"].shape[1] == 64 and out.taps["layer4"].shape[1] == 512


@pytest.mark.skipif(
    not _importable("torchvision"), reason="torchvision is not installed here (its CPU build breaks imports)"
)
def test_real_torchvision_resnet18() -> None:
    model = build_model({"name": "torchvision:resnet18"}, IMAGE32, where="m")
    out = model({"x": torch.randn(2, 3, 32, 32)})
    assert out.logits.shape == (2, 3) and out.embedding.shape == (2, 512)
    assert out.taps["layer4"].shape == (2, 512, 1, 1)
