"""Shared data types: what every dataset loader produces and what every model and method consumes."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import Field
from torch.utils.data import DataLoader, Dataset

from fairdistill.errors import ConfigError
from fairdistill.registry import Options, Registry

Modality = Literal["image", "text", "tabular"]

#: The encoding key used by datasets whose examples have one tensor encoding (image, tabular).
DEFAULT_ENCODING = "x"

#: An encoding of a split's inputs: one tensor, or a dict of tensors (e.g. token ids + attention mask),
#: each with the split's examples along the first dimension.
Encoding = torch.Tensor | dict[str, torch.Tensor]


@dataclass(frozen=True)
class DatasetInfo:
    """What a model, a method and the metrics need to know about a dataset."""

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    attr_names: tuple[str, ...]
    group_names: tuple[str, ...]
    modality: Modality
    #: Shape of one example of the default encoding, e.g. (3, 28, 28) or (n_features,); None for text.
    input_shape: tuple[int, ...] | None = None
    #: Human-readable description of the attribute (e.g. "sex", "colour").
    attr_label: str = "attr"
    #: False when the data has no real group/attribute labels (methods that need them refuse to run).
    groups_known: bool = True
    #: Examples per class in the train split, set when the splits were made long-tailed (``long_tail``); the
    #: metrics then add head / medium / tail class accuracies (data/long_tail.py). None otherwise.
    train_class_counts: tuple[int, ...] | None = None

    @property
    def num_groups(self) -> int:
        return len(self.group_names)

    @property
    def num_attrs(self) -> int:
        return len(self.attr_names)


def label_attr_groups(class_names: tuple[str, ...], attr_names: tuple[str, ...]) -> tuple[str, ...]:
    """Group names for the (label, attribute) grouping; group index = y * num_attrs + attr."""
    return tuple(f"{c}|{a}" for c in class_names for a in attr_names)


def label_attr_group_index(y: torch.Tensor, attr: torch.Tensor, num_attrs: int) -> torch.Tensor:
    """Group index of each example under the (label, attribute) grouping."""
    return y.long() * num_attrs + attr.long()


@dataclass
class SplitDataset(Dataset):
    """One split: per-example labels, attributes and groups, plus one or more encodings of the inputs.

    Several encodings of the same examples let the teacher and the student each read their own
    (e.g. two tokenizers); a model reads the encoding named by its ``input_key``.
    """

    encodings: dict[str, Encoding]
    y: torch.Tensor
    attr: torch.Tensor
    group: torch.Tensor
    name: str = "train"
    #: Raw text fields of a text dataset (``{"text": [...], "text_pair": [...]}``, one string per example);
    #: a model with a tokenizer encodes them into its own encoding (see ``ensure_encoding``). None otherwise.
    texts: dict[str, list[str]] | None = None

    def __post_init__(self) -> None:
        n = len(self.y)
        for field_name, values in (self.texts or {}).items():
            if len(values) != n:
                raise ValueError(f"split {self.name}: text field {field_name!r} has {len(values)} rows, y has {n}")
        for tensor_name, tensor in (("attr", self.attr), ("group", self.group)):
            if len(tensor) != n:
                raise ValueError(f"split {self.name}: {tensor_name} has {len(tensor)} rows, y has {n}")
        for key, enc in self.encodings.items():
            for part in _encoding_parts(enc):
                if len(part) != n:
                    raise ValueError(f"split {self.name}: encoding {key!r} has {len(part)} rows, y has {n}")

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, i: int) -> dict:
        inputs = {key: _take(enc, i) for key, enc in self.encodings.items()}
        return {"inputs": inputs, "y": self.y[i], "attr": self.attr[i], "group": self.group[i], "index": i}

    def take(self, index: torch.Tensor) -> Batch:
        """The examples at ``index`` (a 1-D tensor of positions in the split) as one Batch, in that order.

        In-memory encodings are gathered by tensor indexing, so a batch costs a few indexing operations instead
        of one ``__getitem__`` per example; the result equals ``collate([self[i] for i in index])``. A subclass
        that overrides ``__getitem__`` (a lazy source, whose examples need per-example work) is collated from
        its items.
        """
        index = torch.as_tensor(index, dtype=torch.long)
        if is_lazy(self):
            return collate([self[i] for i in index.tolist()])
        return Batch(
            inputs={key: _gather(enc, index) for key, enc in self.encodings.items()},
            y=self.y.index_select(0, index).long(),
            attr=self.attr.index_select(0, index).long(),
            group=self.group.index_select(0, index).long(),
            index=index,
        )

    @property
    def random_views(self) -> bool:
        """Whether the training loader serves random views of the examples (augmentation), so that outputs
        computed once on ``split[i]`` are not of the view a training batch holds. False for in-memory splits."""
        return False

    def subset(self, index: torch.Tensor) -> SplitDataset:
        """The examples at ``index`` (positions in this split, in that order) as a split of the same kind: every
        encoding, label, attribute, group and raw text. Lazy splits override it to subset their sources too."""
        rows = torch.as_tensor(index, dtype=torch.long)
        positions = rows.tolist()
        texts = None if self.texts is None else {k: [v[i] for i in positions] for k, v in self.texts.items()}
        return dataclasses.replace(
            self,
            encodings={key: _gather(enc, rows) for key, enc in self.encodings.items()},
            y=self.y.index_select(0, rows),
            attr=self.attr.index_select(0, rows),
            group=self.group.index_select(0, rows),
            texts=texts,
        )

    def add_encoding(self, key: str, encoding: Encoding) -> None:
        """Register another encoding of the same examples (same order)."""
        for part in _encoding_parts(encoding):
            if len(part) != len(self):
                raise ValueError(f"split {self.name}: encoding {key!r} has {len(part)} rows, expected {len(self)}")
        self.encodings[key] = encoding


def is_lazy(split: Dataset) -> bool:
    """Whether ``split`` makes its examples one by one (a subclass overriding ``__getitem__``, e.g. decoded images)."""
    return type(split).__getitem__ is not SplitDataset.__getitem__


def ensure_encoding(model: object, splits: Splits) -> None:
    """Give every split the encoding ``model`` reads, if the model can make it from the split's raw texts.

    A model that tokenises (it has ``encode_texts(texts) -> Encoding`` and an ``input_key``) gets its encoding
    added once per split; models reading an existing encoding (images, tables) are left alone. A split without
    raw texts (not a text dataset) is a ConfigError: such a model cannot read it.
    """
    encode = getattr(model, "encode_texts", None)
    key = getattr(model, "input_key", DEFAULT_ENCODING)
    if encode is None:
        return
    for name, split in splits.items():
        if key in split.encodings:
            continue
        if split.texts is None:
            raise ConfigError(
                f"the model tokenises raw texts (encoding {key!r}) but split {name} has none: it needs a text "
                "dataset (modality text)"
            )
        split.add_encoding(key, encode(split.texts))


def _encoding_parts(enc: Encoding) -> list[torch.Tensor]:
    return list(enc.values()) if isinstance(enc, Mapping) else [enc]


def _gather(enc: Encoding, index: torch.Tensor) -> Encoding:
    """Rows ``index`` of an encoding (``index_select``: the same rows as ``enc[index]``, a faster kernel)."""
    if isinstance(enc, Mapping):
        return {k: v.index_select(0, index) for k, v in enc.items()}
    return enc.index_select(0, index)


def _take(enc: Encoding, i: int) -> Encoding:
    if isinstance(enc, Mapping):
        return {k: v[i] for k, v in enc.items()}
    return enc[i]


@dataclass
class Batch:
    """A collated mini-batch; ``index`` is each example's position in its split (used by caches and weights)."""

    inputs: dict[str, Encoding]
    y: torch.Tensor
    attr: torch.Tensor
    group: torch.Tensor
    index: torch.Tensor

    def to(self, device: torch.device | str) -> Batch:
        def move(enc: Encoding) -> Encoding:
            if isinstance(enc, Mapping):
                return {k: v.to(device) for k, v in enc.items()}
            return enc.to(device)

        return Batch(
            inputs={k: move(v) for k, v in self.inputs.items()},
            y=self.y.to(device),
            attr=self.attr.to(device),
            group=self.group.to(device),
            index=self.index.to(device),
        )

    def __len__(self) -> int:
        return len(self.y)


def collate(examples: list[dict]) -> Batch:
    """Stack a list of ``SplitDataset`` items into a ``Batch``."""
    first = examples[0]["inputs"]
    inputs: dict[str, Encoding] = {}
    for key, value in first.items():
        if isinstance(value, Mapping):
            inputs[key] = {k: torch.stack([ex["inputs"][key][k] for ex in examples]) for k in value}
        else:
            inputs[key] = torch.stack([ex["inputs"][key] for ex in examples])
    return Batch(
        inputs=inputs,
        y=torch.stack([torch.as_tensor(ex["y"]) for ex in examples]).long(),
        attr=torch.stack([torch.as_tensor(ex["attr"]) for ex in examples]).long(),
        group=torch.stack([torch.as_tensor(ex["group"]) for ex in examples]).long(),
        index=torch.tensor([ex["index"] for ex in examples], dtype=torch.long),
    )


class BatchLoader:
    """The batches of a split, ``batch_size`` examples at a time, each gathered at once by :meth:`SplitDataset.take`.

    The examples come in the order of ``sampler`` (an object with ``indices() -> Tensor``, or any iterable of
    positions), or in split order without one. It stands in for ``DataLoader(split, batch_size, sampler=...,
    collate_fn=collate)`` and yields the same batches in the same order (the last one possibly shorter) without
    the per-example work. Like that DataLoader, every pass draws one number from the global torch generator
    (DataLoader seeds its workers with it), so the random stream that follows — dropout, augmentation, every
    result — is the same as with the DataLoader it replaced.
    """

    def __init__(self, split: SplitDataset, batch_size: int, sampler: Iterable[int] | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.split, self.batch_size, self.sampler = split, batch_size, sampler

    def order(self) -> torch.Tensor:
        """The positions of one pass, in the order they are served."""
        if self.sampler is None:
            return torch.arange(len(self.split))
        if isinstance(self.sampler, torch.Tensor):  # positions given directly (a process's shard)
            return self.sampler.long()
        indices = getattr(self.sampler, "indices", None)
        if indices is not None:
            return torch.as_tensor(indices(), dtype=torch.long)
        return torch.tensor(list(self.sampler), dtype=torch.long)

    def __len__(self) -> int:
        num_batches = getattr(self.sampler, "num_batches", None)
        if num_batches is not None:
            return int(num_batches(self.batch_size))
        size = len(self.split) if self.sampler is None else len(self.sampler)  # type: ignore[arg-type]
        return -(-size // self.batch_size)

    def batch_positions(self) -> list[torch.Tensor]:
        """The positions of each batch of one pass: the sampler's own ``batches(batch_size)`` when it cuts them
        (several processes), else its order cut every ``batch_size``."""
        batches = getattr(self.sampler, "batches", None)
        if batches is not None:
            return list(batches(self.batch_size))
        return list(self.order().split(self.batch_size))

    def __iter__(self) -> Iterator[Batch]:
        positions = self.batch_positions()
        if is_lazy(self.split):
            return self._lazy_batches(positions)
        torch.empty((), dtype=torch.int64).random_()  # the draw DataLoader makes per pass (see the class docstring)
        return (self.split.take(batch) for batch in positions)

    def _lazy_batches(self, positions: list[torch.Tensor]) -> Iterator[Batch]:
        """A lazy split's batches through a DataLoader with the split's ``workers`` (attribute; default 0), in
        exactly this order. The split's ``epoch_view(seed, epoch)``, when it has one, is given the sampler's seed and
        epoch (seeded augmentation). The DataLoader makes the per-pass draw itself."""
        batches = [batch.tolist() for batch in positions]
        dataset: Dataset = self.split
        epoch_view = getattr(self.split, "epoch_view", None)
        seed = getattr(self.sampler, "seed", None)
        if epoch_view is not None and seed is not None:
            dataset = epoch_view(seed, getattr(self.sampler, "epoch", 0))
        workers = int(getattr(self.split, "workers", 0))
        return iter(DataLoader(dataset, batch_sampler=batches, num_workers=workers, collate_fn=collate))


@dataclass
class Splits:
    """The train/val/test splits of a dataset and its description."""

    train: SplitDataset
    val: SplitDataset
    test: SplitDataset
    info: DatasetInfo
    #: Free-form provenance (source files, seeds, counts) written into metrics.json.
    provenance: dict = field(default_factory=dict)

    def items(self) -> list[tuple[str, SplitDataset]]:
        return [("train", self.train), ("val", self.val), ("test", self.test)]


class LongTailOptions(Options):
    """``long_tail:`` in a dataset's options: an exponentially long-tailed train split, balanced val and test.

    Applied to any dataset after it is loaded (:func:`fairdistill.data.long_tail.make_long_tailed`): class k
    keeps n_max·imbalance^(−k/(C−1)) train examples (rounded down), class 0 the most.
    """

    #: Ratio of the largest to the smallest train class, n_0 / n_(C−1); 1 keeps the classes balanced.
    imbalance: float = Field(ge=1.0, le=1e6)


class DatasetOptions(Options):
    """Options every dataset accepts; a dataset's own options subclass this."""

    #: Seed of the train/val/test split (independent of the training seeds, so seeds vary models, not data).
    split_seed: int = 0
    #: Make the train split long-tailed and val/test class-balanced (None: the splits as loaded).
    long_tail: LongTailOptions | None = None


#: Dataset loaders: ``loader(options) -> Splits``, registered with their options model.
DATASETS: Registry = Registry("dataset")
