"""MultiNLI: natural language inference (premise, hypothesis) → entailment / neutral / contradiction;
attribute = negation words in the hypothesis (the spurious cue for contradiction).

Source
    The Multi-Genre NLI corpus (Williams, Nangia & Bowman, NAACL 2018, https://cims.nyu.edu/~sbowman/multinli/;
    mostly OANC-derived text under permissive licences, see the corpus' data description). Read through the
    ``datasets`` library in one of two ways (exactly one must be chosen):

    * ``hub: true`` — ``datasets.load_dataset("nyu-mll/multi_nli")`` (option ``hub_id`` to use another copy).
      The download (~220 MB) is cached by ``datasets`` under ``$HF_HOME`` (default ``~/.cache/huggingface``);
      with ``HF_HUB_OFFLINE=1`` / ``HF_DATASETS_OFFLINE=1`` only a cached copy can be used.
    * ``path:`` — a local folder holding either
        - a dataset saved with ``DatasetDict.save_to_disk`` (it has ``dataset_dict.json``), or
        - three JSONL files (one JSON object per line, blank lines skipped): ``train.jsonl``,
          ``validation_matched.jsonl`` and ``validation_mismatched.jsonl`` (also accepted: ``dev_matched.jsonl`` /
          ``dev_mismatched.jsonl`` and the original ``multinli_1.0_{train,dev_matched,dev_mismatched}.jsonl``).

    Each example needs the fields ``premise``, ``hypothesis`` and ``label`` (the hub's coding: 0 entailment,
    1 neutral, 2 contradiction, -1 unlabeled). In JSONL files the original corpus keys are accepted too:
    ``sentence1`` / ``sentence2`` for premise / hypothesis and ``gold_label`` (``"entailment"``, ``"neutral"``,
    ``"contradiction"``, ``"-"`` = unlabeled) for the label; a label may also be given by one of those names.
    Unlabeled examples (-1 / ``"-"``) are dropped. A missing folder or file, a line that is not JSON, a missing or
    non-string text field and a label outside {-1, 0, 1, 2} are :class:`DataError` s naming the file and line
    (or, for Arrow data, the split and row index).

Label, attribute and groups
    y = label, class names ``"entailment"``, ``"neutral"``, ``"contradiction"``. attr = 1 if the hypothesis
    contains one of the negation words *nobody, no, never, nothing* (Gururangan et al. 2018; the GroupDRO
    protocol of Sagawa et al. 2020) and 0 otherwise, attr names ``"no negation"``, ``"negation"``. Matching is
    on whole words: the hypothesis is lower-cased, ASCII punctuation (``string.punctuation``) is deleted and the
    rest is split on whitespace, so ``"Nobody,"`` and ``"NO!"`` count but ``"nothingness"``, ``"know"`` and
    ``"nobody's"`` (→ ``"nobodys"``) do not, and neither do ``"no-one"`` (→ ``"noone"``) or ``"n't"`` — the same
    tokenisation as GroupDRO's ``generate_multinli.py`` (which splits on single spaces). Groups are (y, attr):
    group = y * 2 + attr, 6 groups named ``"<label>|<attr>"``. Negation is strongly correlated with
    contradiction, so the small groups are entailment and neutral *with* negation.

Splits (``split:``)
    ``random`` (default; GroupDRO's protocol): train, validation_matched and validation_mismatched are pooled,
    unlabeled examples dropped, and the pool split 50/20/30 into train/val/test, stratified by group and seeded
    by ``split_seed`` (GroupDRO shuffles without stratifying and drops unlabeled rows after splitting; the split
    sizes agree to within 0.1%, the exact rows do not). ``official``: train = the official train split,
    val = validation_matched, test = validation_mismatched (MultiNLI's test labels are not public, so the
    mismatched dev set — other genres — is the held-out test set; this is GroupDRO's ``preset`` split).
    ``max_examples`` then draws a group-stratified subsample of each split, proportional to the split sizes
    (for quick tests).

Inputs
    No encodings: every split carries ``texts = {"text": premises, "text_pair": hypotheses}`` and the model's
    tokenizer encodes them (its own ``max_length`` and caching). Parsing the JSONL files takes a few seconds and
    a hub copy is cached by ``datasets``, so the pooled split indices are recomputed (cheaply, deterministically)
    rather than cached.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from fairdistill.data.core import DATASETS, DatasetInfo, DatasetOptions, Splits, label_attr_groups
from fairdistill.data.sampling import stratified_partition
from fairdistill.data.source_files import json_objects, resolve_path, sha256_file
from fairdistill.data.text_common import (
    first_rows,
    group_counts,
    subsample_splits,
    text_split,
)
from fairdistill.errors import DataError

HUB_ID = "nyu-mll/multi_nli"
CLASS_NAMES: tuple[str, str, str] = ("entailment", "neutral", "contradiction")
ATTR_NAMES: tuple[str, str] = ("no negation", "negation")
NEGATION_WORDS: frozenset[str] = frozenset({"nobody", "no", "never", "nothing"})
#: Label names accepted in JSONL files (the original corpus' ``gold_label``); "-" = no gold label.
LABEL_BY_NAME: dict[str, int] = {"entailment": 0, "neutral": 1, "contradiction": 2, "-": -1}
VALID_LABELS = (-1, 0, 1, 2)
#: The corpus' splits (the hub's names) and the JSONL file names accepted for each.
SOURCES: dict[str, tuple[str, ...]] = {
    "train": ("train.jsonl", "multinli_1.0_train.jsonl"),
    "validation_matched": ("validation_matched.jsonl", "dev_matched.jsonl", "multinli_1.0_dev_matched.jsonl"),
    "validation_mismatched": (
        "validation_mismatched.jsonl",
        "dev_mismatched.jsonl",
        "multinli_1.0_dev_mismatched.jsonl",
    ),
}
RANDOM_FRACTIONS = (0.5, 0.2, 0.3)
OFFICIAL = {"train": "train", "val": "validation_matched", "test": "validation_mismatched"}

_DELETE_PUNCTUATION = str.maketrans("", "", string.punctuation)
_TRUE = {"1", "true", "yes", "on"}


class MultiNLIOptions(DatasetOptions):
    """Options of the ``multinli`` dataset."""

    #: Read ``hub_id`` from the Hugging Face Hub (or the local ``datasets`` cache) instead of ``path``.
    hub: bool = False
    hub_id: str = HUB_ID
    #: Folder with a saved DatasetDict or the three JSONL files (see the module docstring).
    path: str | None = None
    #: ``random``: GroupDRO's pooled 50/20/30 split; ``official``: train / validation_matched / _mismatched.
    split: Literal["random", "official"] = "random"
    #: Subsample train/val/test proportionally (group-stratified, seeded) to about this many examples in total.
    max_examples: int | None = Field(default=None, ge=3)

    @model_validator(mode="after")
    def _one_source(self) -> MultiNLIOptions:
        if self.hub and self.path is not None:
            raise ValueError("give either hub: true or path:, not both")
        if not self.hub and self.path is None:
            raise ValueError(
                "no source: set hub: true (nyu-mll/multi_nli from the Hugging Face Hub) or path: a folder with "
                "train/validation_matched/validation_mismatched JSONL files or a saved dataset"
            )
        return self


def has_negation(hypothesis: str) -> bool:
    """Whether ``hypothesis`` contains a negation word (nobody, no, never, nothing) as a whole word, after
    lower-casing and deleting ASCII punctuation (so ``"Nobody,"`` counts, ``"nothingness"`` does not)."""
    return not NEGATION_WORDS.isdisjoint(hypothesis.lower().translate(_DELETE_PUNCTUATION).split())


# --------------------------------------------------------------------------------------------------- reading


class _Source:
    """One corpus split as parsed: premises, hypotheses, labels (-1 kept here) and where it came from."""

    def __init__(self, premise: list[str], hypothesis: list[str], label: np.ndarray, meta: dict[str, Any]) -> None:
        self.premise, self.hypothesis, self.label, self.meta = premise, hypothesis, label, meta


def _label_from_json(value: Any, key: str, file: Path, line_no: int) -> int:
    if isinstance(value, str) and value.strip().lower() in LABEL_BY_NAME:
        return LABEL_BY_NAME[value.strip().lower()]
    if isinstance(value, int) and not isinstance(value, bool) and value in VALID_LABELS:
        return value
    raise DataError(
        f"multinli: {file}: line {line_no}: {key} {value!r} is not a valid label; expected -1 (unlabeled), "
        f"0 (entailment), 1 (neutral), 2 (contradiction) or one of the names {sorted(LABEL_BY_NAME)}"
    )


def _text_from_json(obj: dict, keys: tuple[str, str], file: Path, line_no: int) -> str:
    for key in keys:
        if key in obj:
            value = obj[key]
            if not isinstance(value, str):
                raise DataError(
                    f"multinli: {file}: line {line_no}: field {key!r} is {type(value).__name__} {value!r}, "
                    "expected a string"
                )
            return value
    raise DataError(f"multinli: {file}: line {line_no}: missing field {keys[0]!r} (or {keys[1]!r})")


def _read_jsonl(file: Path) -> _Source:
    premise: list[str] = []
    hypothesis: list[str] = []
    labels: list[int] = []
    try:
        for line_no, obj in json_objects(file, "multinli", "an object with premise, hypothesis and label"):
            premise.append(_text_from_json(obj, ("premise", "sentence1"), file, line_no))
            hypothesis.append(_text_from_json(obj, ("hypothesis", "sentence2"), file, line_no))
            key = "label" if "label" in obj else "gold_label" if "gold_label" in obj else None
            if key is None:
                raise DataError(f"multinli: {file}: line {line_no}: missing field 'label' (or 'gold_label')")
            labels.append(_label_from_json(obj[key], key, file, line_no))
    except UnicodeDecodeError as exc:
        raise DataError(f"multinli: {file} is not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    except OSError as exc:
        raise DataError(f"multinli: cannot read {file}: {exc}") from None
    meta = {"format": "jsonl", "path": str(file), "sha256": sha256_file(file)}
    return _Source(premise, hypothesis, np.asarray(labels, dtype=np.int64), meta)


def _from_arrow(dataset: Any, split: str, origin: str) -> _Source:
    """Columns of one ``datasets.Dataset`` (a hub or saved split), checked."""
    missing = [c for c in ("premise", "hypothesis", "label") if c not in dataset.column_names]
    if missing:
        raise DataError(
            f"multinli: {origin}: split {split!r} has no field(s) {missing}; its fields are {dataset.column_names}"
        )
    table = dataset.data
    premise = table.column("premise").to_pylist()
    hypothesis = table.column("hypothesis").to_pylist()
    raw_labels = table.column("label").to_pylist()
    for name, values in (("premise", premise), ("hypothesis", hypothesis)):
        bad = [i for i, v in enumerate(values) if not isinstance(v, str)]
        if bad:
            raise DataError(
                f"multinli: {origin}: split {split!r}: field {name!r} is not a string at row index(es) "
                f"{first_rows(np.asarray(bad))} (0-based)"
            )
    bad = [
        i for i, v in enumerate(raw_labels) if isinstance(v, bool) or not isinstance(v, int) or v not in VALID_LABELS
    ]
    if bad:
        raise DataError(
            f"multinli: {origin}: split {split!r}: label {raw_labels[bad[0]]!r} at row index {bad[0]} (0-based; "
            f"{len(bad)} bad row(s) in all: {first_rows(np.asarray(bad))}) is not one of -1 (unlabeled), "
            "0 (entailment), 1 (neutral), 2 (contradiction)"
        )
    return _Source(premise, hypothesis, np.asarray(raw_labels, dtype=np.int64), {"format": "arrow", "origin": origin})


def _from_dataset_dict(data: Any, origin: str) -> dict[str, _Source]:
    present = list(data.keys())
    missing = [s for s in SOURCES if s not in present]
    if missing:
        raise DataError(f"multinli: {origin} has no split(s) {missing}; its splits are {present}")
    return {s: _from_arrow(data[s], s, origin) for s in SOURCES}


def _load_hub(options: MultiNLIOptions) -> dict[str, _Source]:
    import datasets  # imported lazily: only needed for hub and Arrow data

    try:
        data = datasets.load_dataset(options.hub_id)
    except Exception as exc:  # noqa: BLE001 - any failure of the hub/cache becomes a user-facing DataError
        from huggingface_hub.constants import HF_HOME

        offline = [v for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if os.environ.get(v, "").lower() in _TRUE]
        why = (
            f"{' and '.join(offline)} {'is' if len(offline) == 1 else 'are'} set and there is no cached copy, so "
            "this can only be checked on a machine with hub access"
            if offline
            else "check the network connection and the hub id"
        )
        raise DataError(
            f"multinli: cannot load {options.hub_id!r} from the Hugging Face Hub ({type(exc).__name__}: {exc}). "
            f"hub: true needs network access to the Hub or a copy already in the datasets cache under {HF_HOME} "
            f"(HF_HOME); {why}. To run offline, use path: a folder with the MultiNLI JSONL files or a "
            "DatasetDict saved with save_to_disk"
        ) from None
    sources = _from_dataset_dict(data, f"hub dataset {options.hub_id!r}")
    for name, source in sources.items():
        fingerprint = getattr(data[name], "_fingerprint", None)
        source.meta.update({"hub_id": options.hub_id, "fingerprint": fingerprint})
    return sources


def _load_path(path: str) -> dict[str, _Source]:
    folder = resolve_path(path)
    if not folder.exists():
        raise DataError(
            f"multinli: path {folder} does not exist (expected a folder with train/validation_matched/"
            "validation_mismatched JSONL files or a saved dataset)"
        )
    if not folder.is_dir():
        raise DataError(f"multinli: path {folder} is not a folder (expected a folder with the MultiNLI files)")
    if (folder / "dataset_dict.json").is_file():
        import datasets

        try:
            data = datasets.load_from_disk(str(folder))
        except Exception as exc:  # noqa: BLE001
            raise DataError(
                f"multinli: cannot read the saved dataset in {folder}: {type(exc).__name__}: {exc}"
            ) from None
        return _from_dataset_dict(data, f"saved dataset {folder}")
    sources: dict[str, _Source] = {}
    for split, names in SOURCES.items():
        file = next((folder / n for n in names if (folder / n).is_file()), None)
        if file is None:
            raise DataError(
                f"multinli: {folder} has no {split} file; expected one of {', '.join(names)} "
                "(or a dataset saved with DatasetDict.save_to_disk, with dataset_dict.json)"
            )
        sources[split] = _read_jsonl(file)
    return sources


# --------------------------------------------------------------------------------------------------- loader


@DATASETS.register("multinli", options=MultiNLIOptions, modality="text", offline=False)
def load_multinli(options: MultiNLIOptions) -> Splits:
    """MultiNLI (premise, hypothesis) → entailment/neutral/contradiction; attribute = negation in the hypothesis."""
    sources = _load_hub(options) if options.hub else _load_path(options.path or "")
    subsample_rng, split_rng = (np.random.default_rng(s) for s in np.random.SeedSequence(options.split_seed).spawn(2))

    # Pool the labeled examples of every source; remember where each came from.
    premise: list[str] = []
    hypothesis: list[str] = []
    labels, origin = [], []
    source_meta = {}
    for k, (name, source) in enumerate(sources.items()):
        keep = np.flatnonzero(source.label >= 0)
        premise += [source.premise[i] for i in keep]
        hypothesis += [source.hypothesis[i] for i in keep]
        labels.append(source.label[keep])
        origin.append(np.full(len(keep), k))
        source_meta[name] = {
            **source.meta,
            "examples": len(source.label),
            "unlabeled_dropped": int(len(source.label) - len(keep)),
        }
    y = np.concatenate(labels)
    from_source = np.concatenate(origin)
    attr = np.fromiter((has_negation(h) for h in hypothesis), dtype=np.int64, count=len(hypothesis))
    group = y * len(ATTR_NAMES) + attr

    if options.split == "random":
        parts = stratified_partition(group, RANDOM_FRACTIONS, split_rng)
        indices = dict(zip(("train", "val", "test"), parts, strict=True))
        protocol = (
            "random (GroupDRO): train + validation_matched + validation_mismatched pooled, unlabeled dropped, "
            "split 50/20/30 stratified by group, seeded by split_seed"
        )
    else:
        names = list(sources)
        indices = {split: np.flatnonzero(from_source == names.index(src)) for split, src in OFFICIAL.items()}
        protocol = "official: train = train, val = validation_matched, test = validation_mismatched"
    for split, idx in indices.items():
        if len(idx) == 0:
            raise DataError(
                f"multinli: the {split} split is empty (split: {options.split}); the data has too few labeled examples"
            )
    kept = subsample_splits({s: group[idx] for s, idx in indices.items()}, options.max_examples, subsample_rng)
    indices = {s: idx[kept[s]] for s, idx in indices.items()}

    group_names = label_attr_groups(CLASS_NAMES, ATTR_NAMES)
    splits = {
        s: text_split(s, [premise[i] for i in idx], [hypothesis[i] for i in idx], y[idx], attr[idx], len(ATTR_NAMES))
        for s, idx in indices.items()
    }
    info = DatasetInfo(
        name="multinli",
        num_classes=len(CLASS_NAMES),
        class_names=CLASS_NAMES,
        attr_names=ATTR_NAMES,
        group_names=group_names,
        modality="text",
        attr_label="negation in hypothesis",
    )
    provenance = {
        "dataset": "multinli",
        "source": "MultiNLI (Williams, Nangia & Bowman 2018)"
        + (
            f", Hugging Face Hub {options.hub_id}"
            if options.hub
            else f", local files in {resolve_path(options.path or '')}"
        ),
        "sources": source_meta,
        "split": protocol,
        "negation_words": sorted(NEGATION_WORDS),
        "num_examples": {s: len(split) for s, split in splits.items()},
        "group_counts": {s: group_counts(split, group_names) for s, split in splits.items()},
        "negation_rate": {s: float(split.attr.float().mean()) for s, split in splits.items()},
        "options": options.model_dump(mode="json"),
    }
    return Splits(train=splits["train"], val=splits["val"], test=splits["test"], info=info, provenance=provenance)
