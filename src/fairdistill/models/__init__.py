"""Models: the tapped wrapper, the registry and the built-in architectures."""

from fairdistill.models import small  # noqa: F401  (registers mlp, cnn)
from fairdistill.models.core import (
    MODELS,
    ModelOutput,
    TappedModel,
    build_model,
    count_parameters,
    default_model_spec,
)

__all__ = ["MODELS", "ModelOutput", "TappedModel", "build_model", "count_parameters", "default_model_spec"]
