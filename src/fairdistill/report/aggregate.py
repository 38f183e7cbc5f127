"""Several seeds into one metrics document: per-seed values kept, means and standard deviations on top.

A run with ``seeds: [0, 1, 2]`` produces one metrics document per seed (the single-seed format). They are
combined so that every consumer of the single-seed format keeps working: ``models.<name>.splits`` holds the
mean over seeds of every number (nested mappings such as ``group_accuracy`` element-wise), and the additions
are ``models.<name>.splits_std`` (sample standard deviation, ddof = 1), ``models.<name>.seeds`` (each seed's
own ``splits``, ``history``, ``selected_epoch``, ``train_seconds``) and ``run.seeds``. A value that is
undefined (``None``) for some seeds is averaged over the seeds where it is defined; ``splits.<split>.undefined``
keeps the reasons of the values undefined for every seed.
"""

from __future__ import annotations

import copy
import math
from typing import Any

#: Per-model keys that describe one training run; with several seeds they live under ``seeds.<k>`` only.
PER_SEED_KEYS = ("train_seconds", "selected_epoch", "history", "splits")


def combine_seeds(documents: dict[int, dict[str, Any]]) -> dict[str, Any]:
    """One metrics document from one document per seed (same models, in the same order)."""
    if not documents:
        raise ValueError("no per-seed metrics to combine")
    seeds = list(documents)
    first = documents[seeds[0]]
    combined = copy.deepcopy(first)
    combined["run"]["seed"] = seeds[0]
    combined["run"]["seeds"] = seeds
    if len(seeds) == 1:
        return combined
    models: dict[str, Any] = {}
    for name, model in first["models"].items():
        entries = [documents[s]["models"][name] for s in seeds]
        entry: dict[str, Any] = {}
        for key, _value in model.items():
            if key in PER_SEED_KEYS:
                continue
            entry[key] = mean_tree([e.get(key) for e in entries])
        entry["train_seconds"] = mean_tree([e.get("train_seconds", 0.0) for e in entries])
        entry["splits"] = {split: _mean_split([e["splits"][split] for e in entries]) for split in model["splits"]}
        entry["splits_std"] = {
            split: std_tree([_without_reasons(e["splits"][split]) for e in entries]) for split in model["splits"]
        }
        entry["seeds"] = {
            str(seed): {key: e[key] for key in PER_SEED_KEYS if key in e}
            for seed, e in zip(seeds, entries, strict=True)
        }
        models[name] = entry
    combined["models"] = models
    return combined


def _without_reasons(split: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in split.items() if key != "undefined"}


def _mean_split(splits: list[dict[str, Any]]) -> dict[str, Any]:
    """The mean over seeds of one split's metrics; ``undefined`` keeps the reason (the first seed's) of each
    metric that is still undefined in the mean, i.e. undefined for every seed."""
    mean = mean_tree([_without_reasons(s) for s in splits])
    reasons: dict[str, str] = {}
    for split in splits:
        for key, reason in (split.get("undefined") or {}).items():
            reasons.setdefault(key, reason)
    kept = {key: reason for key, reason in reasons.items() if mean.get(key) is None}
    if kept:
        mean["undefined"] = kept
    return mean


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def mean_tree(values: list[Any]) -> Any:
    """Element-wise mean of equally-shaped values: numbers averaged (ints that agree stay ints), mappings
    recursed into, anything else taken from the first value."""
    if all(isinstance(v, dict) for v in values):
        keys = list(dict.fromkeys(k for v in values for k in v))
        return {k: mean_tree([v.get(k) for v in values]) for k in keys}
    defined = [v for v in values if v is not None]
    if defined and all(_is_number(v) for v in defined):
        if all(isinstance(v, int) for v in defined) and len(set(defined)) == 1:
            return defined[0]
        return math.fsum(float(v) for v in defined) / len(defined)
    return values[0] if values else None


def std_tree(values: list[Any]) -> Any:
    """Element-wise sample standard deviation (ddof = 1) of numbers; None with fewer than two defined values
    or for values that are not numbers."""
    if all(isinstance(v, dict) for v in values):
        keys = list(dict.fromkeys(k for v in values for k in v))
        return {k: std_tree([v.get(k) for v in values]) for k in keys}
    defined = [float(v) for v in values if v is not None and _is_number(v)]
    if len(defined) < 2 or len(defined) != len([v for v in values if v is not None]):
        return None
    mean = math.fsum(defined) / len(defined)
    return math.sqrt(math.fsum((v - mean) ** 2 for v in defined) / (len(defined) - 1))
