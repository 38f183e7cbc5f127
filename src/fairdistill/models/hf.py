"""Any Hugging Face transformers encoder (BERT, DistilBERT, RoBERTa, MiniLM, ...) with a classification head.

The encoder is loaded from a local directory (or, only with ``hub: true``, from the hub), or built randomly
initialised from a transformers config dict. Taps ``layer:K`` are the first-token ([CLS]) vectors of hidden
layer K, read by forward hooks on the encoder's layers; the embedding is the pooled output (the BERT pooler
when the architecture has one, else the last layer's [CLS] vector), which the linear head classifies.

The model tokenises a text dataset's raw texts itself (``encode_texts``), so a teacher and a student with
different tokenizers each read their own encoding; tokenised splits are cached on disk.
"""

from __future__ import annotations

import hashlib
import inspect
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from pydantic import Field, ValidationInfo, field_validator
from torch import nn
from tqdm.auto import tqdm

from fairdistill.atomic_io import atomic_path
from fairdistill.data.core import DatasetInfo
from fairdistill.errors import ConfigError, DataError
from fairdistill.models.core import MODELS, ModelOptions, TappedModel

log = logging.getLogger(__name__)

#: Version of the on-disk format of tokenised splits (part of the cache key).
TOKEN_CACHE_FORMAT = 1
#: Examples tokenised per tokenizer call.
TOKENIZE_CHUNK = 2048
#: Splits at least this large show a progress bar while they are tokenised.
PROGRESS_MIN_EXAMPLES = 10_000
#: The encoding fields a model may read, in the order they are stored.
ENCODING_FIELDS = ("input_ids", "attention_mask", "token_type_ids")

_NOT_LOCAL = (
    "is not a local directory; set hub: true to download it from the Hugging Face hub, or give a local directory"
)


class HFOptions(ModelOptions):
    """Options of the ``hf`` model: exactly one of ``path`` (pretrained) or ``config`` (random init)."""

    #: Allow downloads from the Hugging Face hub (``path``/``tokenizer`` may then be hub ids).
    hub: bool = False
    #: A local directory holding a transformers model, or (with ``hub: true``) a hub id.
    path: str | None = None
    #: A transformers config dict with ``model_type`` (e.g. bert): the encoder is randomly initialised.
    #: ``vocab_size`` and ``pad_token_id`` default to the tokenizer's.
    config: dict[str, Any] | None = Field(default=None, validate_default=True)
    #: The tokenizer (local directory or, with ``hub: true``, hub id); default: ``path``. Required with ``config``.
    tokenizer: str | None = Field(default=None, validate_default=True)
    #: Every text is padded or truncated to this many tokens.
    max_length: int = Field(default=128, gt=1)
    #: Overrides the encoder's hidden and attention dropout and sets the head's dropout (default: the encoder's).
    dropout: float | None = Field(default=None, ge=0.0, lt=1.0)

    @field_validator("path")
    @classmethod
    def _path_is_local_or_hub(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is not None and not info.data.get("hub", False) and not Path(value).expanduser().is_dir():
            raise ValueError(f"{value!r} {_NOT_LOCAL}")
        return value

    @field_validator("config")
    @classmethod
    def _exactly_one_source(cls, value: dict[str, Any] | None, info: ValidationInfo) -> dict[str, Any] | None:
        if "path" not in info.data:  # path itself was invalid; that error is reported
            return value
        path = info.data["path"]
        if value is not None and path is not None:
            raise ValueError("give either path (a pretrained model) or config (a random model), not both")
        if value is None and path is None:
            raise ValueError("give path (a pretrained model directory) or config (a transformers config dict)")
        if value is not None and not isinstance(value.get("model_type"), str):
            raise ValueError("needs a model_type (e.g. bert, distilbert, roberta)")
        return value

    @field_validator("tokenizer")
    @classmethod
    def _tokenizer_source(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            if info.data.get("config") is not None:
                raise ValueError(
                    "required when config is used (a local tokenizer directory or, with hub: true, a hub id)"
                )
            return value
        if not info.data.get("hub", False) and not Path(value).expanduser().is_dir():
            raise ValueError(f"{value!r} {_NOT_LOCAL}")
        return value


def first_token(t: torch.Tensor) -> torch.Tensor:
    """The first ([CLS]) position of a (batch, tokens, features) layer output."""
    return t[:, 0]


class HFClassifier(nn.Module):
    """A transformers encoder, its pooled output (``pooled``, an identity the embedding is read from) and a
    dropout + linear head. ``forward`` takes the tokenizer's tensors as keyword arguments and returns logits."""

    def __init__(self, encoder: nn.Module, hidden_size: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.encoder = encoder
        self.pooled = nn.Identity()
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(hidden_size, num_classes)
        self.uses_token_type_ids = "token_type_ids" in inspect.signature(encoder.forward).parameters

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        extra = {"token_type_ids": token_type_ids} if token_type_ids is not None and self.uses_token_type_ids else {}
        out = self.encoder(input_ids=input_ids, attention_mask=attention_mask, return_dict=True, **extra)
        pooled = getattr(out, "pooler_output", None)
        if pooled is None:
            pooled = out.last_hidden_state[:, 0]
        return self.head(self.dropout(self.pooled(pooled)))


class HFModel(TappedModel):
    """A tapped ``HFClassifier`` that also tokenises raw texts into the encoding it reads (its ``input_key``)."""

    def __init__(
        self,
        module: HFClassifier,
        tokenizer: Any,
        tokenizer_identity: str,
        max_length: int,
        layer_paths: list[str],
        cache_dir: Path | None = None,
    ) -> None:
        taps = {f"layer:{k}": path for k, path in enumerate(layer_paths, start=1)}
        super().__init__(
            module,
            taps=taps,
            embedding="pooled",
            input_key=f"tokens:{tokenizer_identity}:{max_length}",
            transforms={name: first_token for name in taps},
        )
        self.tokenizer = tokenizer
        self.tokenizer_identity = tokenizer_identity
        self.max_length = max_length
        #: Where tokenised splits are cached (None: ``$FAIRDISTILL_CACHE/tokens`` or ``~/.cache/fairdistill/tokens``).
        self.token_cache_dir = cache_dir

    def no_weight_decay_names(self) -> set[str]:
        """Parameter names that get no weight decay: every bias and every LayerNorm weight."""
        names = {name for name, _ in self.named_parameters() if name.endswith("bias")}
        for module_name, module in self.named_modules():
            if isinstance(module, nn.LayerNorm) or "layernorm" in type(module).__name__.lower():
                prefix = f"{module_name}." if module_name else ""
                names.update(prefix + name for name, _ in module.named_parameters(recurse=False))
        return names

    def encode_texts(self, texts: Mapping[str, list[str]]) -> dict[str, torch.Tensor]:
        """Tokenise ``texts["text"]`` (paired with ``texts["text_pair"]`` when present), padded and truncated to
        ``max_length``: int64 ``input_ids``, ``attention_mask`` (and ``token_type_ids``), cached on disk."""
        if "text" not in texts:
            raise DataError(f"text dataset gives no 'text' field to tokenise (fields: {', '.join(texts) or 'none'})")
        text = list(texts["text"])
        pair = list(texts["text_pair"]) if texts.get("text_pair") is not None else None
        if pair is not None and len(pair) != len(text):
            raise DataError(f"text_pair has {len(pair)} rows, text has {len(text)}")
        path = self._cache_path(text, pair)
        cached = _read_tokens(path, len(text), self.max_length)
        if cached is not None:
            log.info("tokenised texts cache hit: %s", path)
            return cached
        encoding = self._tokenize(text, pair)
        _write_tokens(path, encoding)
        return encoding

    def _tokenize(self, text: list[str], pair: list[str] | None) -> dict[str, torch.Tensor]:
        parts: dict[str, list[torch.Tensor]] = {}
        starts = range(0, len(text), TOKENIZE_CHUNK)
        progress = tqdm(
            starts,
            desc="tokenising",
            unit="chunk",
            leave=False,
            disable=None if len(text) >= PROGRESS_MIN_EXAMPLES else True,
        )
        for start in progress:
            chunk = text[start : start + TOKENIZE_CHUNK]
            chunk_pair = pair[start : start + TOKENIZE_CHUNK] if pair is not None else None
            out = self.tokenizer(
                chunk,
                chunk_pair,
                padding="max_length",
                truncation=True,
                max_length=self.max_length,
                return_tensors="pt",
            )
            for name in ENCODING_FIELDS:
                if name in out:
                    parts.setdefault(name, []).append(out[name].long())
        if not parts:
            return {name: torch.zeros(0, self.max_length, dtype=torch.long) for name in ENCODING_FIELDS[:2]}
        return {name: torch.cat(chunks) for name, chunks in parts.items()}

    def _cache_path(self, text: list[str], pair: list[str] | None) -> Path:
        digest = hashlib.sha256()
        vocab = sorted(self.tokenizer.get_vocab().items())
        header = (
            TOKEN_CACHE_FORMAT,
            self.tokenizer_identity,
            type(self.tokenizer).__name__,
            self.max_length,
            hashlib.sha256(repr(vocab).encode()).hexdigest(),
            len(text),
            pair is not None,
        )
        digest.update(repr(header).encode())
        for field in (text, pair or []):
            for value in field:
                encoded = str(value).encode("utf-8", "surrogatepass")
                digest.update(len(encoded).to_bytes(8, "little"))
                digest.update(encoded)
        root = self.token_cache_dir or _default_cache_dir() / "tokens"
        return root / f"{digest.hexdigest()}.pt"


def _default_cache_dir() -> Path:
    return Path(os.environ.get("FAIRDISTILL_CACHE", Path.home() / ".cache" / "fairdistill")).expanduser()


def _read_tokens(path: Path, n: int, max_length: int) -> dict[str, torch.Tensor] | None:
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        if not isinstance(payload, dict) or payload.get("format") != TOKEN_CACHE_FORMAT:
            raise ValueError("unknown format")
        tensors = payload["tensors"]
        if "input_ids" not in tensors or set(tensors) - set(ENCODING_FIELDS):
            raise ValueError(f"unexpected fields {sorted(tensors)}")
        for name, t in tensors.items():
            if not isinstance(t, torch.Tensor) or tuple(t.shape) != (n, max_length):
                raise ValueError(f"{name} has shape {getattr(t, 'shape', None)}, expected {(n, max_length)}")
    except Exception as exc:  # torch raises many types for corrupt files
        log.warning("tokenised texts cache %s is unreadable (%s: %s); recomputing it", path, type(exc).__name__, exc)
        return None
    return {name: tensors[name].long() for name in ENCODING_FIELDS if name in tensors}


def _write_tokens(path: Path, encoding: dict[str, torch.Tensor]) -> None:
    # int32 on disk halves the file; vocabularies are far below 2**31
    payload = {"format": TOKEN_CACHE_FORMAT, "tensors": {k: v.to(torch.int32) for k, v in encoding.items()}}
    try:
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    except OSError as exc:
        log.warning("could not write the tokenised texts cache %s (%s); continuing without it", path, exc)


def _transformers() -> Any:
    try:
        import transformers
    except ImportError:
        raise ConfigError("model hf needs transformers; run pip install 'fairdistill[text]'") from None
    return transformers


def _source(value: str, hub: bool) -> tuple[str, str, bool]:
    """(what to pass to from_pretrained, identity, local_files_only) of a local directory or hub id."""
    local = Path(value).expanduser()
    if local.is_dir():
        resolved = str(local.resolve())
        return resolved, resolved, True
    if not hub:
        raise ConfigError(f"model: {value!r} {_NOT_LOCAL}")
    return value, value, False


def _apply_dropout(config: Any, dropout: float | None) -> None:
    if dropout is None:
        return
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout"):
        if hasattr(config, name):
            setattr(config, name, dropout)


def _head_dropout(config: Any, dropout: float | None) -> float:
    if dropout is not None:
        return dropout
    for name in ("classifier_dropout", "hidden_dropout_prob", "dropout"):
        value = getattr(config, name, None)
        if isinstance(value, float):
            return value
    return 0.1


def _layer_paths(encoder: nn.Module, num_layers: int) -> list[str]:
    """Paths (relative to the HFClassifier) of the encoder's transformer layers, in order."""
    for name, module in encoder.named_modules():
        if (
            isinstance(module, nn.ModuleList)
            and len(module) == num_layers
            and name.split(".")[-1] in {"layer", "layers"}
        ):
            return [f"encoder.{name}.{k}" for k in range(num_layers)]
    raise ConfigError(
        f"model hf: cannot find the {num_layers} transformer layers of {type(encoder).__name__} "
        "(expected a module list named layer or layers) to tap"
    )


@MODELS.register("hf", options=HFOptions, modality="text")
def build_hf(options: HFOptions, info: DatasetInfo) -> HFModel:
    """A transformers encoder with a linear head; taps ``layer:1``..``layer:N`` are [CLS] vectors of each layer."""
    transformers = _transformers()
    tokenizer_source = options.tokenizer or options.path
    assert tokenizer_source is not None  # guaranteed by HFOptions
    tok_arg, tok_identity, tok_local = _source(tokenizer_source, options.hub)
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(tok_arg, local_files_only=tok_local)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"model.tokenizer: cannot load a tokenizer from {tokenizer_source!r} ({exc})") from None

    if options.config is not None:
        raw = dict(options.config)
        model_type = raw.pop("model_type")
        raw.setdefault("vocab_size", len(tokenizer))
        if tokenizer.pad_token_id is not None:
            raw.setdefault("pad_token_id", tokenizer.pad_token_id)
        try:
            config = transformers.AutoConfig.for_model(model_type, **raw)
        except (ValueError, TypeError) as exc:
            raise ConfigError(f"model.config: not a valid transformers config ({exc})") from None
        _apply_dropout(config, options.dropout)
        encoder = transformers.AutoModel.from_config(config)
    else:
        assert options.path is not None
        model_arg, _, model_local = _source(options.path, options.hub)
        try:
            config = transformers.AutoConfig.from_pretrained(model_arg, local_files_only=model_local)
            _apply_dropout(config, options.dropout)
            encoder = transformers.AutoModel.from_pretrained(model_arg, config=config, local_files_only=model_local)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"model.path: cannot load a transformers model from {options.path!r} ({exc})") from None

    vocab = getattr(config, "vocab_size", None)
    if isinstance(vocab, int) and len(tokenizer) > vocab:
        raise ConfigError(
            f"model.tokenizer: the tokenizer has {len(tokenizer)} tokens but the model's vocabulary has {vocab}"
        )
    positions = getattr(config, "max_position_embeddings", None)
    if isinstance(positions, int) and options.max_length > positions:
        raise ConfigError(f"model.max_length: {options.max_length} exceeds the model's {positions} positions")
    num_layers = int(config.num_hidden_layers)
    module = HFClassifier(encoder, int(config.hidden_size), info.num_classes, _head_dropout(config, options.dropout))
    return HFModel(module, tokenizer, tok_identity, options.max_length, _layer_paths(module.encoder, num_layers))
