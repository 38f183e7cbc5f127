"""Models: the tapped wrapper, the registry and the built-in architectures."""

from fairdistill.models import hf, small  # noqa: F401  (registers hf, mlp, cnn; hf imports transformers lazily)
from fairdistill.models.core import (
    MODELS,
    ModelOutput,
    TappedModel,
    build_model,
    count_parameters,
)
from fairdistill.models.defaults import default_model_spec

__all__ = ["MODELS", "ModelOutput", "TappedModel", "build_model", "count_parameters", "default_model_spec"]
