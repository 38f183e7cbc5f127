"""Image backbones from timm and torchvision: ``{name: "timm:resnet50"}`` or ``{name: timm, arch: resnet50}``.

Neither library is a dependency of fairdistill (on CPU machines their PyPI builds may expect a CUDA torch and
break other imports), so each is imported only when such a model is built, with one clear error when it is
missing or broken. The classifier is sized to the dataset's classes (timm: ``num_classes``; torchvision:
``num_classes``, or with pretrained weights the ImageNet head replaced by a new linear layer).

Taps and the embedding are forward hooks on module paths (the model is not rewritten). Defaults per family,
read from the module names (:func:`default_taps`): a ResNet-like model (``layer1``..``layer4``, as in
torchvision's and timm's ResNets, ResNeXts, Wide ResNets) taps ``layer1``..``layer4``; timm's ``stages.K``
(ConvNeXt, RegNet, ...) tap ``stage1``..; timm's EfficientNets/MobileNets ``blocks.K`` tap ``stage1``..;
torchvision's ``features.K`` (EfficientNet, MobileNet, VGG, ...) tap ``features1``... The embedding is the
pooled vector the classifier reads: ``global_pool`` (timm), else ``avgpool`` (torchvision). ``taps: {name:
module.path}`` replaces the default taps and ``embedding: module.path`` the default embedding.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

from pydantic import Field
from torch import nn

from fairdistill.data.core import DatasetInfo
from fairdistill.errors import ConfigError
from fairdistill.models.core import MODELS, ModelOptions, TappedModel

CUDA_CAVEAT = (
    "install it into the same environment as a torch build it matches (on a CPU-only machine the default "
    "PyPI build may pull or expect a CUDA torch: pin torch with -c constraints.txt or use the CPU wheel index)"
)


class HubOptions(ModelOptions):
    #: The library's model name (timm: ``resnet50``, ``resnet50.a1_in1k``, ``efficientnet_b0``; torchvision:
    #: ``resnet50``, ``efficientnet_b0``).
    arch: str = Field(min_length=1)
    #: Load the library's pretrained weights (downloaded once: timm from the Hugging Face hub, torchvision from
    #: download.pytorch.org; both cache them).
    pretrained: bool = False
    #: torchvision only: the weights enum value (e.g. ``IMAGENET1K_V2``); default with pretrained: ``DEFAULT``.
    weights: str | None = None
    #: Tap name → module path; replaces the family's default taps.
    taps: dict[str, str] | None = None
    #: Module path of the embedding; default: the family's pooled features.
    embedding: str | None = None
    #: Extra keyword arguments of ``timm.create_model`` / the torchvision constructor (e.g. drop_rate).
    kwargs: dict[str, Any] = Field(default_factory=dict)


def default_taps(module: nn.Module) -> tuple[dict[str, str], str | None]:
    """The family's default taps and embedding path, read from the module's submodule names."""
    names = {name for name, _ in module.named_modules()}

    def numbered(prefix: str) -> list[str]:
        k = 0
        while f"{prefix}.{k}" in names:
            k += 1
        return [f"{prefix}.{i}" for i in range(k)]

    if all(f"layer{k}" in names for k in range(1, 5)):
        taps = {f"layer{k}": f"layer{k}" for k in range(1, 5)}
    elif numbered("stages"):
        taps = {f"stage{k}": path for k, path in enumerate(numbered("stages"), start=1)}
    elif numbered("blocks"):
        taps = {f"stage{k}": path for k, path in enumerate(numbered("blocks"), start=1)}
    elif numbered("features"):
        taps = {f"features{k}": path for k, path in enumerate(numbered("features"), start=1)}
    else:
        taps = {}
    embedding = next((p for p in ("global_pool", "head.global_pool", "avgpool") if p in names), None)
    return taps, embedding


def tapped_by_paths(
    module: nn.Module, taps: Mapping[str, str] | None, embedding: str | None, *, where: str
) -> TappedModel:
    """Wrap ``module`` with the given taps/embedding, the family's defaults for those not given."""
    default_tap_paths, default_embedding = default_taps(module)
    chosen = dict(taps) if taps is not None else default_tap_paths
    submodules = dict(module.named_modules())
    for tap, path in chosen.items():
        if path not in submodules:
            close = [n for n in submodules if n and n.split(".")[0] == path.split(".")[0]][:8]
            hint = f" (modules under {path.split('.')[0]!r}: {', '.join(close)})" if close else ""
            raise ConfigError(f"{where}.taps.{tap}: the model has no submodule {path!r}{hint}")
    embedding_path = embedding if embedding is not None else default_embedding
    if embedding_path is not None and embedding_path not in submodules:
        raise ConfigError(f"{where}.embedding: the model has no submodule {embedding_path!r}")
    return TappedModel(module, taps=chosen, embedding=embedding_path)


def import_library(library: str, arch: str) -> Any:
    """``import library``; one ConfigError naming the install command when it is missing or cannot import."""
    try:
        return importlib.import_module(library)
    except ImportError as exc:
        if getattr(exc, "name", None) in (library, None) or library in str(exc):
            raise ConfigError(
                f"model {library}:{arch} needs {library}, which is not installed; run pip install {library} and "
                f"{CUDA_CAVEAT}"
            ) from None
        raise ConfigError(
            f"model {library}:{arch}: {library} is installed but cannot be imported ({exc}); {CUDA_CAVEAT}"
        ) from None
    except Exception as exc:  # a build for another torch/CUDA fails with OSError, RuntimeError, AttributeError...
        raise ConfigError(
            f"model {library}:{arch}: {library} is installed but cannot be imported ({type(exc).__name__}: "
            f"{str(exc)[:200]}); {CUDA_CAVEAT}"
        ) from None


def _image_shape(info: DatasetInfo, kind: str) -> tuple[int, ...]:
    if info.input_shape is None or len(info.input_shape) != 3:
        raise ConfigError(
            f"model {kind} needs image inputs (C, H, W); dataset {info.name} has shape {info.input_shape}"
        )
    return tuple(info.input_shape)


@MODELS.register("timm", options=HubOptions, modality="image", requires="timm", arch_prefix=True)
def build_timm(options: HubOptions, info: DatasetInfo) -> TappedModel:
    """Any timm model (``timm:<arch>``), ``num_classes`` and ``in_chans`` from the data; taps by module path."""
    channels = _image_shape(info, "timm")[0]
    timm = import_library("timm", options.arch)
    if options.weights is not None:
        raise ConfigError("model.weights: timm names its weights in the arch (e.g. resnet50.a1_in1k); remove weights")
    try:
        module = timm.create_model(
            options.arch,
            pretrained=options.pretrained,
            num_classes=info.num_classes,
            in_chans=channels,
            **options.kwargs,
        )
    except RuntimeError as exc:  # an unknown architecture
        raise ConfigError(f"model timm:{options.arch}: {exc}") from None
    except (OSError, ValueError) as exc:  # no network for the weights, a missing hub file
        raise ConfigError(
            f"model timm:{options.arch}: cannot load it ({type(exc).__name__}: {str(exc)[:200]}); pretrained "
            "weights come from the Hugging Face hub: run once with network access or use pretrained: false"
        ) from None
    return tapped_by_paths(module, options.taps, options.embedding, where="model")


def replace_classifier(module: nn.Module, num_classes: int) -> str:
    """Replace the last ``nn.Linear`` of ``module`` (its classifier) by a new one with ``num_classes`` outputs."""
    linears = [name for name, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise ConfigError("model: cannot find the classifier (no linear layer) to size to the dataset's classes")
    path = linears[-1]
    parent_path, _, attr = path.rpartition(".")
    parent = module.get_submodule(parent_path) if parent_path else module
    old = getattr(parent, attr)
    setattr(parent, attr, nn.Linear(old.in_features, num_classes, bias=old.bias is not None))
    return path


@MODELS.register("torchvision", options=HubOptions, modality="image", requires="torchvision", arch_prefix=True)
def build_torchvision(options: HubOptions, info: DatasetInfo) -> TappedModel:
    """Any torchvision classification model (``torchvision:<arch>``); the classifier sized to the data."""
    channels = _image_shape(info, "torchvision")[0]
    if channels != 3:
        raise ConfigError(
            f"model torchvision:{options.arch} reads 3-channel images; dataset {info.name} has {channels}"
        )
    torchvision = import_library("torchvision", options.arch)
    weights = options.weights or ("DEFAULT" if options.pretrained else None)
    try:
        if weights is None:
            module = torchvision.models.get_model(
                options.arch, weights=None, num_classes=info.num_classes, **options.kwargs
            )
        else:
            module = torchvision.models.get_model(options.arch, weights=weights, **options.kwargs)
            replace_classifier(module, info.num_classes)
    except (ValueError, KeyError) as exc:  # an unknown architecture or weights name
        raise ConfigError(f"model torchvision:{options.arch}: {exc}") from None
    except (OSError, RuntimeError) as exc:  # no network for the weights
        raise ConfigError(
            f"model torchvision:{options.arch}: cannot load the weights {weights} ({type(exc).__name__}: "
            f"{str(exc)[:200]}); run once with network access (torch caches them) or use pretrained: false"
        ) from None
    return tapped_by_paths(module, options.taps, options.embedding, where="model")
