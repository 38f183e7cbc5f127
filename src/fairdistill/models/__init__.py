"""Models: the tapped wrapper, the registry and the built-in architectures."""

# registers hf, mlp, cnn, resnet-small, efficientnet, timm, torchvision (hf, efficientnet, timm and torchvision
# import their libraries lazily, when a model is built)
from fairdistill.models import efficientnet, hf, hub, small  # noqa: F401
from fairdistill.models.core import (
    MODELS,
    ModelOutput,
    TappedModel,
    build_model,
    count_parameters,
    resolve_model_spec,
)
from fairdistill.models.defaults import default_model_spec

__all__ = [
    "MODELS",
    "ModelOutput",
    "TappedModel",
    "build_model",
    "count_parameters",
    "default_model_spec",
    "resolve_model_spec",
]
