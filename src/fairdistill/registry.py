"""One small registry class used for every extension point (datasets, models, losses, ...).

An entry is registered under a name together with an optional pydantic model of its options, so a config
entry such as ``{name: adult, protected: race}`` can be validated with errors that name the field path.
"""

from __future__ import annotations

import difflib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError, ValidationInfo, field_validator

from fairdistill.errors import ConfigError, shown_value

T = TypeVar("T")


class Options(BaseModel):
    """Base class of every entry's options: unknown keys are errors, values are validated strictly by type.

    Numbers must be finite, and a number field takes neither a boolean (``epochs: true`` is not 1) nor a text
    (``lr: "1e-3"``); pydantic would otherwise convert both silently.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, value: Any, info: ValidationInfo) -> Any:
        field = cls.model_fields.get(info.field_name or "")
        if field is None or not isinstance(value, (bool, str)):
            return value
        accepted = _accepted_types(field.annotation)
        if accepted is None:
            return value
        expected = "an integer" if float not in accepted else "a number"
        if isinstance(value, bool) and bool not in accepted and accepted & {int, float}:
            raise ValueError(f"expected {expected}, got the boolean {value}")
        if isinstance(value, str) and accepted & {int, float} and not accepted - {int, float, type(None)}:
            raise ValueError(f"expected {expected}, got the text {shown_value(value)}")
        return value


@dataclass(frozen=True)
class Entry(Generic[T]):
    name: str
    target: T
    options: type[Options]
    summary: str
    #: Free-form facts about the entry (e.g. a dataset's modality), used for planning and listing.
    meta: dict[str, Any]


class Registry(Generic[T]):
    """Maps names to registered objects (classes or factories) and their options models."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._entries: dict[str, Entry[T]] = {}

    def register(self, name: str, *, options: type[Options] = Options, **meta: Any) -> Callable[[T], T]:
        """Decorator: ``@REGISTRY.register("name", options=MyOptions, **facts)``."""

        def decorate(target: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            doc = (getattr(target, "__doc__", None) or "").strip().splitlines()
            self._entries[name] = Entry(name, target, options, doc[0] if doc else "", dict(meta))
            return target

        return decorate

    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def get(self, name: str, *, where: str | None = None) -> Entry[T]:
        """The entry called ``name``; an unknown name raises a ConfigError listing the valid names."""
        if name in self._entries:
            return self._entries[name]
        place = f"{where}: " if where else ""
        close = difflib.get_close_matches(str(name), self.names(), n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ConfigError(
            f"{place}unknown {self.kind} {name!r}.{hint} Valid {self.kind} names: {', '.join(self.names())}"
        )

    def options(self, name: str, raw: Mapping[str, Any], *, where: str) -> Options:
        """Validate ``raw`` (without its ``name``/``kind`` key) against the entry's options model."""
        entry = self.get(name, where=where)
        return validate_options(entry.options, raw, where=where)


def _accepted_types(annotation: Any) -> set[Any] | None:
    """The plain types an annotation admits (``Annotated``, ``Optional``, unions unpacked; Literal values'
    types), or None when it admits anything."""
    if annotation is Any or annotation is None:
        return None
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _accepted_types(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        accepted: set[Any] = set()
        for arg in typing.get_args(annotation):
            inner = _accepted_types(arg)
            if inner is None:
                return None
            accepted |= inner
        return accepted
    if origin is typing.Literal:
        return {type(v) for v in typing.get_args(annotation)}
    return {origin or annotation}


def validate_options(model: type[Options], raw: Mapping[str, Any], *, where: str) -> Options:
    """Build ``model`` from ``raw``; a validation failure becomes one ConfigError naming each bad field path."""
    try:
        return model.model_validate(dict(raw))
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, where)) from None


def format_validation_error(exc: ValidationError, where: str) -> str:
    """Render pydantic errors as ``path.to.field: message (got value)`` lines."""
    lines = []
    for err in exc.errors():
        path = ".".join([where, *(str(p) for p in err["loc"])]) if where else ".".join(str(p) for p in err["loc"])
        if err["type"] == "extra_forbidden":
            lines.append(f"{path}: unknown field")
        elif err["type"] == "missing":
            lines.append(f"{path}: required field is missing")
        else:
            message = err["msg"].removeprefix("Value error, ")
            # a check of the whole entry (empty loc) or one of ours (value_error, which names the value) is
            # not followed by the input: that would repeat the entry or the value
            echo = "" if err["type"] == "value_error" or not err["loc"] else f" (got {shown_value(err.get('input'))})"
            lines.append(f"{path or 'config'}: {message}{echo}")
    return "invalid config:\n  " + "\n  ".join(lines)
