""" "What changed": test examples a debiased student gets right and the plain KD student
gets wrong, and the reverse, per group — with a way to show each example (a thumbnail, a text snippet, a row).

Which pairs: the student of a method named ``kd`` against every other student when the run has one; otherwise
the first student against the others.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: Renders one example of the test split (by its index) as an HTML fragment.
ExampleRenderer = Callable[[int], str]

#: Examples shown per group and direction.
EXAMPLES_PER_GROUP = 6


@dataclass
class GroupChange:
    """One group: its size, and the examples only the other student / only the reference gets right."""

    group: str
    size: int
    fixed: list[int] = field(default_factory=list)  # reference wrong, other right
    broken: list[int] = field(default_factory=list)  # reference right, other wrong


@dataclass
class PairChanges:
    reference: str
    other: str
    groups: list[GroupChange]
    #: index → (true class, reference's prediction, other's prediction), for captions.
    labels: dict[int, tuple[int, int, int]]

    @property
    def fixed(self) -> int:
        return sum(len(g.fixed) for g in self.groups)

    @property
    def broken(self) -> int:
        return sum(len(g.broken) for g in self.groups)


def comparison_pairs(metrics: dict[str, Any]) -> list[tuple[str, str]]:
    """(reference, other) student pairs: ``kd`` (by method name) vs the others, else the first vs the others."""
    students = [name for name, m in metrics["models"].items() if m.get("role") == "student"]
    if len(students) < 2:
        return []
    reference = "kd" if "kd" in students else students[0]
    return [(reference, other) for other in students if other != reference]


def pair_changes(
    reference: pd.DataFrame, other: pd.DataFrame, group_names: Sequence[str], reference_name: str, other_name: str
) -> PairChanges:
    """Per group, the examples on which exactly one of the two students is right (matched by ``index``)."""
    other = other.set_index("index").loc[reference["index"].to_numpy()].reset_index()
    index = reference["index"].to_numpy()
    y = reference["y"].to_numpy()
    ref_right = reference["pred"].to_numpy() == y
    other_right = other["pred"].to_numpy() == y
    group = reference["group"].to_numpy()
    groups = []
    for g, name in enumerate(group_names):
        rows = group == g
        groups.append(
            GroupChange(
                group=name,
                size=int(rows.sum()),
                fixed=[int(i) for i in index[rows & ~ref_right & other_right]],
                broken=[int(i) for i in index[rows & ref_right & ~other_right]],
            )
        )
    changed = ref_right != other_right
    labels = {
        int(i): (int(t), int(a), int(b))
        for i, t, a, b in zip(
            index[changed],
            y[changed],
            reference["pred"].to_numpy()[changed],
            other["pred"].to_numpy()[changed],
            strict=True,
        )
    }
    return PairChanges(reference_name, other_name, groups, labels)


def image_html(array: np.ndarray, alt: str) -> str:
    """An <img> with the image as a base64 PNG data URI; (C, H, W) or (H, W), rescaled to [0, 1] if needed."""
    from matplotlib.image import imsave

    image = np.asarray(array, dtype=np.float64)
    if image.ndim == 3 and image.shape[0] in (1, 3, 4) and image.shape[-1] not in (1, 3, 4):
        image = np.moveaxis(image, 0, -1)
    if image.ndim == 3 and image.shape[-1] == 1:
        image = image[..., 0]
    low, high = float(image.min()), float(image.max())
    if low < 0.0 or high > 1.0:
        image = (image - low) / (high - low) if high > low else np.zeros_like(image)
    buffer = io.BytesIO()
    imsave(buffer, image, format="png", cmap="gray" if image.ndim == 2 else None, vmin=0.0, vmax=1.0)
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="thumb" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def example_renderer(
    split: Any,
    modality: str,
    feature_names: Sequence[str] | None = None,
    standardisation: dict[str, dict[str, float]] | None = None,
) -> ExampleRenderer:
    """How to show an example of ``split`` (a SplitDataset): an image thumbnail, a text snippet or a feature row.

    Text needs the raw strings: a split with a ``texts`` attribute shows them; otherwise the first token ids.
    A feature row shows the set one-hot columns and every numeric column in its raw unit: ``standardisation``
    (the table datasets' ``provenance["standardisation"]``, column → train mean and std) undoes the z-score.
    """
    encodings = split.encodings
    key = "x" if "x" in encodings else next(iter(encodings), None)
    encoding = encodings[key] if key is not None else None

    def encoded() -> Any:  # a split without encodings (raw texts only) can show only its text snippets
        if encoding is None:
            raise ValueError(f"split {getattr(split, 'name', '?')!r} has no encoding to show examples from")
        return encoding

    if modality == "image" and not isinstance(encoding, dict):
        return lambda i: image_html(encoded()[i].detach().cpu().numpy(), f"example {i}")
    if modality == "text":
        texts = getattr(split, "texts", None)
        if texts:
            fields = list(texts.values()) if isinstance(texts, dict) else [texts]

            def snippet(i: int) -> str:  # text, then text_pair (premise / hypothesis), each shortened
                parts = [html.escape(_shorten(str(field[i]), 160)) for field in fields]
                return f'<span class="snippet">{" <b>/</b> ".join(parts)}</span>'

            return snippet

        def tokens(i: int) -> str:
            enc = encoded()
            ids = enc["input_ids"][i] if isinstance(enc, dict) and "input_ids" in enc else enc[i]
            return f'<code class="snippet">token ids {html.escape(str(ids[:24].tolist()))} …</code>'

        return tokens

    def row(i: int) -> str:
        values = encoded()[i].detach().cpu().numpy().reshape(-1)
        names = (
            list(feature_names)
            if feature_names is not None and len(feature_names) == len(values)
            else [f"x{j}" for j in range(len(values))]
        )
        parts = []
        for name, value in zip(names, values, strict=True):
            if "=" in name:  # a one-hot column: show it only when set
                if value > 0.5:
                    parts.append(name)
            elif standardisation and name in standardisation:
                parts.append(f"{name}={_raw(value, standardisation[name])}")
            elif value != 0.0:
                parts.append(f"{name}={value:.2f}")
        return f'<code class="snippet">{html.escape(_shorten(", ".join(parts), 220))}</code>'

    return row


def _raw(z: float, scale: dict[str, float]) -> str:
    """A standardised value back in the column's unit: whole numbers without decimals, others to 4 digits."""
    value = float(z) * float(scale.get("std", 1.0)) + float(scale.get("mean", 0.0))
    return f"{round(value):d}" if abs(value - round(value)) < 1e-3 * max(1.0, abs(value)) else f"{value:.4g}"


def _shorten(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
