"""Model wrapper exposing intermediate features ("taps") through forward hooks, without rewriting the model."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from fairdistill.data.core import DATASETS, DEFAULT_ENCODING, DatasetInfo, Encoding
from fairdistill.errors import ConfigError
from fairdistill.registry import Options, Registry


@dataclass
class ModelOutput:
    """Logits plus the tapped features and the embedding (penultimate features) of one forward pass."""

    logits: torch.Tensor
    taps: dict[str, torch.Tensor] = field(default_factory=dict)
    embedding: torch.Tensor | None = None


class TappedModel(nn.Module):
    """Wraps any ``nn.Module`` returning logits; taps and the embedding are read by hooks on named submodules.

    ``taps`` maps a tap name (``block1``) to a submodule path (``features.0``); ``embedding`` is the path of
    the module whose output is the embedding. ``input_key`` names the encoding of a ``Batch`` this model reads,
    so a teacher and a student can each read their own encoding of the same examples. ``transforms`` maps a tap
    name to a function applied to the captured output (e.g. keep the first token of a transformer layer's output).
    """

    def __init__(
        self,
        module: nn.Module,
        taps: Mapping[str, str] | None = None,
        embedding: str | None = None,
        input_key: str = DEFAULT_ENCODING,
        logits_of: Callable[[Any], torch.Tensor] | None = None,
        transforms: Mapping[str, Callable[[torch.Tensor], torch.Tensor]] | None = None,
    ) -> None:
        super().__init__()
        self.module = module
        self.tap_paths = dict(taps or {})
        self.embedding_path = embedding
        self.input_key = input_key
        self._logits_of = logits_of
        self.tap_transforms = dict(transforms or {})
        unknown = set(self.tap_transforms) - set(self.tap_paths)
        if unknown:
            raise ValueError(f"transforms for unknown taps: {', '.join(sorted(unknown))}")
        self._captured: dict[str, torch.Tensor] = {}
        submodules = dict(module.named_modules())
        for tap, path in [*self.tap_paths.items(), *([("__embedding__", embedding)] if embedding else [])]:
            if path not in submodules:
                raise ConfigError(f"tap {tap!r}: the model has no submodule {path!r}")
            submodules[path].register_forward_hook(self._capture(tap))

    def _capture(self, name: str) -> Callable[..., None]:
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self._captured[name] = output[0] if isinstance(output, tuple) else output

        return hook

    def _transformed(self, name: str, t: torch.Tensor) -> torch.Tensor:
        transform = self.tap_transforms.get(name)
        return t if transform is None else transform(t)

    @property
    def tap_names(self) -> list[str]:
        return list(self.tap_paths)

    def forward(self, inputs: Mapping[str, Encoding]) -> ModelOutput:
        if self.input_key not in inputs:
            raise KeyError(f"batch has no encoding {self.input_key!r} (has: {', '.join(inputs)})")
        x = inputs[self.input_key]
        self._captured = {}
        raw = self.module(**x) if isinstance(x, Mapping) else self.module(x)
        logits = self._logits_of(raw) if self._logits_of is not None else raw
        captured, self._captured = self._captured, {}
        taps = {name: self._transformed(name, captured[name]) for name in self.tap_paths if name in captured}
        return ModelOutput(logits=logits, taps=taps, embedding=_flatten(captured.get("__embedding__")))


def _flatten(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.flatten(1)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


#: Model builders: ``builder(options, info) -> TappedModel``. An entry may declare the data it reads with the
#: fact ``modality="text"`` (or a tuple of modalities); without it the model reads a dataset's tensor encoding
#: (see ``TENSOR_MODALITIES``).
MODELS: Registry = Registry("model")

#: The architecture used when a config omits ``teacher.model`` / ``student.model``, per modality and role.
MODALITY_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "tabular": {"teacher": {"name": "mlp", "hidden": [256, 256]}, "student": {"name": "mlp", "hidden": [16]}},
    "image": {"teacher": {"name": "cnn", "width": 32}, "student": {"name": "cnn", "width": 4}},
}

#: What a model that declares no ``modality`` reads: the tensor inputs of image and tabular datasets. Text
#: datasets carry raw texts only, which just a tokenising model (such as ``hf``) can encode.
TENSOR_MODALITIES: tuple[str, ...] = ("image", "tabular")


def model_modalities(name: str) -> tuple[str, ...]:
    """The dataset modalities the registered model ``name`` can read."""
    declared = MODELS.get(name).meta.get("modality", TENSOR_MODALITIES)
    return (declared,) if isinstance(declared, str) else tuple(declared)


def check_model_modality(name: str, modality: str, *, where: str, dataset: str) -> None:
    """A ConfigError (naming ``where``) when model ``name`` cannot read data of ``modality``; it suggests the
    default model of that modality and lists the datasets the model can read."""
    readable = model_modalities(name)
    if modality in readable:
        return
    if "text" in readable:
        needs = "a text dataset (modality text, whose splits carry the raw texts its tokenizer encodes)"
    else:
        needs = f"{' or '.join(readable)} data"
    default = "hf" if modality == "text" else MODALITY_DEFAULTS.get(modality, {}).get("teacher", {}).get("name")
    article = "an" if modality[:1] in "aeiou" else "a"
    instead = (
        f"{article} {modality} model ({default} is the default: leave {where} out)" if default else "another model"
    )
    datasets = [d for d in DATASETS.names() if DATASETS.get(d).meta.get("modality") in readable]
    raise ConfigError(
        f"{where}.name: model {name} needs {needs}, but data {dataset} is {modality}. Use {instead} or a dataset "
        f"{name} can read ({', '.join(datasets) or 'none registered'})"
    )


def resolve_model_spec(spec: Mapping[str, Any], *, where: str = "model") -> dict[str, Any]:
    """``{name: "timm:resnet50", ...}`` → ``{name: "timm", arch: "resnet50", ...}`` for a kind registered with
    the fact ``arch_prefix=True`` (timm, torchvision); any other spec is returned unchanged."""
    spec = dict(spec)
    name = spec.get("name")
    if not isinstance(name, str) or ":" not in name:
        return spec
    kind, _, arch = name.partition(":")
    if kind not in MODELS or not MODELS.get(kind).meta.get("arch_prefix"):
        return spec
    if "arch" in spec:
        raise ConfigError(f"{where}.name: {name!r} already names the architecture; remove {where}.arch")
    if not arch:
        raise ConfigError(f"{where}.name: {name!r} names no architecture; give it after the colon ({kind}:resnet50)")
    return {"name": kind, "arch": arch, **{k: v for k, v in spec.items() if k != "name"}}


def build_model(spec: Mapping[str, Any], info: DatasetInfo, *, where: str) -> TappedModel:
    """Build the model named in ``spec`` (``{name: ..., **options}``; ``timm:<arch>`` and ``torchvision:<arch>``
    name the ``timm`` / ``torchvision`` kind and its ``arch``) for a dataset."""
    spec = resolve_model_spec(spec, where=where)
    name = spec.pop("name", None)
    if not isinstance(name, str):
        raise ConfigError(f"{where}.name: required field is missing (models: {', '.join(MODELS.names())})")
    options = MODELS.options(name, spec, where=where)
    check_model_modality(name, info.modality, where=where, dataset=info.name)
    return MODELS.get(name).target(options, info)


class ModelOptions(Options):
    """Options every model accepts."""
