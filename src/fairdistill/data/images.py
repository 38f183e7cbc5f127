"""The image pipeline without torchvision: Pillow decoding, torch transforms, lazy splits and a decoded cache.

Loaders of image datasets (``image-csv``, ``waterbirds``, ``celeba``, ``wider-attribute``) list their examples
as :class:`ImageRecord` s per split and call :func:`image_splits`; nothing reads the whole dataset into memory.

Pipeline (the same with and without the cache, so ``cache: true`` never changes a result)
    1. decode: ``PIL.Image.open(path).convert("RGB")`` → uint8 (3, H, W); a missing or undecodable file is a
       :class:`DataError` naming the path.
    2. resize: the shorter side to ``resize`` (default ``round(image_size · 256 / 224)``), aspect kept, with
       ``torch.nn.functional.interpolate(mode="bilinear", antialias=True)`` (Pillow-like antialiasing when
       shrinking), rounded back to uint8.
    3. base crop: the centre ``cache_size`` × ``cache_size`` square (default ``resize``): the "base image", which
       the decoded cache stores. It is larger than ``image_size`` so random crops still have room.
    4. view (uint8): eval — the centre ``image_size`` square; train with ``train_augment: crop-flip`` — a random
       ``image_size`` square of the base image, mirrored horizontally with probability 1/2.
    5. normalise: uint8 → float ``x / 255``, then ``(x − mean) / std`` per channel (ImageNet by default).

Seeded augmentation
    A train view depends only on (seed, epoch, example index): its offsets and flip are drawn from a
    ``torch.Generator`` seeded with ``np.random.SeedSequence([seed, epoch, index])`` (:func:`view_seed`), where
    seed and epoch are the training sampler's (``EpochShuffleSampler.seed`` / ``.epoch``). So a run is
    reproducible, a resumed run sees the same views, and the views do not depend on the number of workers or
    on the batch an example falls in. Views are random only in the training loader (a :class:`BatchLoader`
    whose sampler has a seed); reading a split otherwise (``split[i]``, prediction, the teacher cache) gives the
    eval view, also for the train split.

Decoded-image cache (``cache: true``)
    Each split's base images are written once as one uint8 ``.npy`` array (n, 3, S, S), read back as a
    read-only memmap, under ``<FAIRDISTILL_CACHE or ~/.cache/fairdistill>/images/``. The key is a sha256 of the
    pipeline settings (``resize``, ``cache_size``) and every example's (absolute path, size, mtime in ns), in
    split order: ``stat`` costs microseconds per file where hashing CelebA's 200k files would read ~1.4 GB per
    load, and rewriting a file changes its mtime (and usually its size), so an edited image gives a new key and
    the split is decoded again. The array is written to a temporary sibling and renamed into place under an
    ``flock`` (a half-written cache is never read; concurrent runs build it once); workers only read it.

Workers
    ``workers: N`` (default 0: decode in the main process; reproducible and cheapest for small data) serves the
    batches of a lazy split through a ``torch.utils.data.DataLoader`` with N worker processes, in exactly the
    order of the sampler (:class:`~fairdistill.data.core.BatchLoader`); the cache build uses them too.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, model_validator
from pydantic_core import PydanticCustomError
from torch.utils.data import DataLoader, Dataset

from fairdistill.data.core import DatasetInfo, DatasetOptions, SplitDataset, Splits
from fairdistill.errors import DataError

log = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)
#: The encoding that holds each example's file fingerprint (so the teacher cache's content digest covers the
#: image files); it is never a model input.
FINGERPRINT_ENCODING = "image_fingerprint"
#: Bump when the stored base images would differ (a change of the resize or crop rule).
CACHE_FORMAT = 1
SPLIT_NAMES: tuple[str, str, str] = ("train", "val", "test")


# --------------------------------------------------------------------------------------------------- options


class ImageOptions(DatasetOptions):
    """Options every image dataset accepts (``data.image_size``, ``data.workers``, ...); loaders subclass it."""

    #: Side of the square the model sees.
    image_size: int = Field(default=224, ge=8, le=4096)
    #: The shorter side is resized to this first (default ``round(image_size · 256 / 224)``).
    resize: int | None = Field(default=None, ge=8, le=8192)
    #: Side of the centre square kept after resizing (and stored by the cache); default ``resize``.
    cache_size: int | None = Field(default=None, ge=8, le=8192)
    #: Per-channel mean and standard deviation of the normalisation (of x / 255); ImageNet's by default.
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    #: Training views: ``none`` (the eval view) or ``crop-flip`` (seeded random crop + horizontal flip).
    train_augment: Literal["none", "crop-flip"] = "none"
    #: Keep the decoded, resized images in a uint8 memmap under the fairdistill cache folder.
    cache: bool = False
    #: DataLoader worker processes decoding images (0: in the main process).
    workers: int = Field(default=0, ge=0, le=64)

    @model_validator(mode="after")
    def _sizes(self) -> ImageOptions:
        problems = []
        if self.resize is not None and self.resize < self.image_size:
            problems.append(f"resize ({self.resize}) must be at least image_size ({self.image_size})")
        if self.cache_size is not None:
            if self.cache_size < self.image_size:
                problems.append(f"cache_size ({self.cache_size}) must be at least image_size ({self.image_size})")
            if self.cache_size > self.resized_side:
                problems.append(f"cache_size ({self.cache_size}) must be at most resize ({self.resized_side})")
        if any(s <= 0 for s in self.std):
            problems.append("std values must be positive")
        if problems:
            raise PydanticCustomError("image_options", "; ".join(problems))
        return self

    @property
    def resized_side(self) -> int:
        return self.resize if self.resize is not None else round(self.image_size * 256 / 224)

    @property
    def base_side(self) -> int:
        return self.cache_size if self.cache_size is not None else self.resized_side


# --------------------------------------------------------------------------------------------------- transforms


def decode_image(path: Path) -> torch.Tensor:
    """The image at ``path`` as uint8 (3, H, W) RGB; a DataError naming the path when missing or undecodable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            rgb = np.asarray(image.convert("RGB"), dtype=np.uint8)
    except FileNotFoundError:
        raise DataError(f"image file not found: {path}") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise DataError(f"cannot decode image {path}: {exc}") from None
    return torch.from_numpy(rgb.copy()).permute(2, 0, 1).contiguous()


def resize_shorter(image: torch.Tensor, side: int) -> torch.Tensor:
    """uint8 (3, H, W) with the shorter side resized to ``side`` (bilinear, antialiased), aspect kept."""
    h, w = image.shape[-2:]
    short = min(h, w)
    size = (side, max(side, round(w * side / short))) if h <= w else (max(side, round(h * side / short)), side)
    if (h, w) == size:
        return image
    out = F.interpolate(image[None].float(), size=size, mode="bilinear", antialias=True, align_corners=False)
    return out[0].round_().clamp_(0, 255).to(torch.uint8)


def centre_crop(image: torch.Tensor, side: int) -> torch.Tensor:
    """The centre ``side`` × ``side`` square (top/left offsets rounded down)."""
    h, w = image.shape[-2:]
    top, left = (h - side) // 2, (w - side) // 2
    return image[..., top : top + side, left : left + side]


def view_seed(seed: int, epoch: int, index: int) -> int:
    """The generator seed of example ``index``'s train view in ``epoch`` of a run seeded ``seed``."""
    state = np.random.SeedSequence([seed, epoch, index]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 ^ int(state[1])


@dataclass(frozen=True)
class ImageTransform:
    """Base image (decode, resize, centre square) and view (crop, flip, normalise) of one pipeline."""

    image_size: int = 224
    resize: int = 256
    base_size: int = 256
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    augment: bool = False

    @classmethod
    def from_options(cls, options: ImageOptions) -> ImageTransform:
        return cls(
            image_size=options.image_size,
            resize=options.resized_side,
            base_size=options.base_side,
            mean=tuple(options.mean),  # type: ignore[arg-type]
            std=tuple(options.std),  # type: ignore[arg-type]
            augment=options.train_augment == "crop-flip",
        )

    def base(self, image: torch.Tensor) -> torch.Tensor:
        """Decoded uint8 image → uint8 (3, base_size, base_size): what the cache stores."""
        return centre_crop(resize_shorter(image, self.resize), self.base_size).contiguous()

    def view(self, base: torch.Tensor, seed: int | None = None) -> torch.Tensor:
        """Base image → normalised float (3, image_size, image_size); random (crop, flip) when ``seed`` is given
        and augmentation is on, else the centre crop."""
        side = self.image_size
        if seed is None or not self.augment:
            crop = centre_crop(base, side)
        else:
            generator = torch.Generator().manual_seed(seed)
            room_h, room_w = base.shape[-2] - side, base.shape[-1] - side
            top = int(torch.randint(room_h + 1, (), generator=generator))
            left = int(torch.randint(room_w + 1, (), generator=generator))
            crop = base[..., top : top + side, left : left + side]
            if bool(torch.randint(2, (), generator=generator)):
                crop = crop.flip(-1)
        return self.normalise(crop)

    def normalise(self, image: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, dtype=torch.float32).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=torch.float32).view(3, 1, 1)
        return (image.float() / 255.0 - mean) / std


# --------------------------------------------------------------------------------------------------- lazy split


@dataclass
class ImageSplit(SplitDataset):
    """A split whose images are decoded per example (or read from the decoded cache), never all at once.

    ``encodings`` holds only :data:`FINGERPRINT_ENCODING`; items carry the view under ``"x"``.
    """

    paths: list[Path] = field(default_factory=list)
    transform: ImageTransform = field(default_factory=ImageTransform)
    #: DataLoader workers serving this split's batches (BatchLoader reads it).
    workers: int = 0
    #: The decoded cache of this split's base images (a .npy file), or None.
    cache_file: Path | None = None
    #: Row of ``cache_file`` holding each example's base image (None: row i for example i); set by :meth:`subset`.
    cache_rows: list[int] | None = None
    _cached: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def random_views(self) -> bool:
        """True with ``train_augment`` other than ``none``: the training loader serves random views."""
        return self.transform.augment

    def subset(self, index: torch.Tensor) -> ImageSplit:
        """The examples at ``index`` (in that order): their paths, fingerprints, labels and decoded-cache rows, so a
        subset reads the same base images as the full split (no re-decoding, the same cache file)."""
        rows = torch.as_tensor(index, dtype=torch.long)
        positions = rows.tolist()
        base = super().subset(rows)
        cache_rows = None
        if self.cache_file is not None:
            cache_rows = [self.cache_rows[i] for i in positions] if self.cache_rows is not None else positions
        return replace(
            self,
            encodings=base.encodings,
            y=base.y,
            attr=base.attr,
            group=base.group,
            texts=base.texts,
            paths=[self.paths[i] for i in positions],
            cache_rows=cache_rows,
        )

    def __getitem__(self, i: int) -> dict:
        return self.example(i)

    def example(self, i: int, seed: int | None = None, epoch: int = 0) -> dict:
        """Item ``i``; a train view seeded by (seed, epoch, i) when ``seed`` is given (see the module docstring)."""
        base = self.base(i)
        view = self.transform.view(base, None if seed is None else view_seed(seed, epoch, i))
        return {"inputs": {"x": view}, "y": self.y[i], "attr": self.attr[i], "group": self.group[i], "index": i}

    def base(self, i: int) -> torch.Tensor:
        if self.cache_file is not None:
            if self._cached is None:  # opened once per process (workers included)
                self._cached = np.load(self.cache_file, mmap_mode="r")
            row = i if self.cache_rows is None else self.cache_rows[i]
            return torch.from_numpy(np.array(self._cached[row]))
        return self.transform.base(decode_image(self.paths[i]))

    def epoch_view(self, seed: int | None, epoch: int) -> Dataset:
        """This split as the training loader of (seed, epoch) serves it (random views when augmenting)."""
        return _EpochView(self, seed if self.transform.augment else None, epoch)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_cached"] = None  # a memmap is reopened in the worker, not pickled as a copy
        return state


class _EpochView(Dataset):
    def __init__(self, split: ImageSplit, seed: int | None, epoch: int) -> None:
        self.split, self.seed, self.epoch = split, seed, epoch

    def __len__(self) -> int:
        return len(self.split)

    def __getitem__(self, i: int) -> dict:
        return self.split.example(i, self.seed, self.epoch)


class _BaseImages(Dataset):
    """Decoded base images, for building the cache (in workers when asked)."""

    def __init__(self, paths: list[Path], transform: ImageTransform) -> None:
        self.paths, self.transform = paths, transform

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> torch.Tensor:
        return self.transform.base(decode_image(self.paths[i]))


# --------------------------------------------------------------------------------------------------- cache


def _fingerprints(paths: list[Path]) -> torch.Tensor:
    """Per-example int64 (n, 2): the first 16 bytes of sha256(path, size, mtime_ns)."""
    out = np.empty((len(paths), 2), dtype=np.int64)
    for k, path in enumerate(paths):
        st = os.stat(path)
        digest = hashlib.sha256(f"{path}\0{st.st_size}\0{st.st_mtime_ns}".encode()).digest()[:16]
        out[k] = np.frombuffer(digest, dtype=np.int64)
    return torch.from_numpy(out)


def image_cache_dir() -> Path:
    """``<FAIRDISTILL_CACHE or ~/.cache/fairdistill>/images``."""
    from fairdistill.train.cache import default_cache_dir

    return default_cache_dir() / "images"


def cache_entry(fingerprints: torch.Tensor, transform: ImageTransform) -> Path:
    payload = json.dumps({"format": CACHE_FORMAT, "resize": transform.resize, "size": transform.base_size})
    digest = hashlib.sha256(payload.encode())
    digest.update(fingerprints.numpy().tobytes())
    return image_cache_dir() / f"{digest.hexdigest()[:24]}.npy"


def _usable(entry: Path, shape: tuple[int, ...]) -> bool:
    try:
        array = np.load(entry, mmap_mode="r")
    except (OSError, ValueError):
        return False
    return tuple(array.shape) == shape and array.dtype == np.uint8


def build_cache(paths: list[Path], transform: ImageTransform, entry: Path, workers: int) -> None:
    """Decode every image once into ``entry`` (atomically, under a lock) unless a complete one is there."""
    from fairdistill.atomic_io import atomic_path
    from fairdistill.train.cache import _entry_lock

    shape = (len(paths), 3, transform.base_size, transform.base_size)
    entry.parent.mkdir(parents=True, exist_ok=True)
    with _entry_lock(entry):
        if _usable(entry, shape):
            return
        with atomic_path(entry) as tmp:
            array = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=shape)
            loader = DataLoader(_BaseImages(paths, transform), batch_size=64, num_workers=workers)
            start = 0
            for batch in loader:
                array[start : start + len(batch)] = batch.numpy()
                start += len(batch)
            array.flush()
            del array
    log.info("decoded %d images into the image cache %s", len(paths), entry)


# --------------------------------------------------------------------------------------------------- splits


class ImageRecord(NamedTuple):
    """One example: its image path (relative to the loader's root, or absolute), label, attribute and group."""

    path: str | Path
    y: int
    attr: int
    #: Explicit group id; None: the (label, attr) group y · num_attrs + attr.
    group: int | None = None
    #: Where the record comes from, for messages (e.g. ``"metadata.csv row 17"``); None: the path alone.
    source: str | None = None


def image_splits(
    records: Mapping[str, Sequence[ImageRecord | tuple]],
    root: Path,
    options: ImageOptions,
    info: DatasetInfo,
    *,
    provenance: dict[str, Any] | None = None,
) -> Splits:
    """Lazy train/val/test splits of image files, for any image loader.

    ``records`` maps ``"train"``, ``"val"`` and ``"test"`` to that split's examples, each an :class:`ImageRecord`
    or a tuple ``(path, y, attr[, group[, source]])``; paths are resolved against ``root``. ``info`` describes
    the dataset (classes, attributes, groups, ``modality="image"``); its ``input_shape`` is set to
    (3, image_size, image_size). Every file must exist: the missing ones are one DataError listing the first
    (with their ``source``). Images are decoded per example when a batch needs them (or once into the decoded
    cache with ``options.cache``); ``options`` (an :class:`ImageOptions`) gives sizes, normalisation,
    ``train_augment`` and ``workers``. ``provenance`` is extended with the pipeline settings and counts.
    """
    transform = ImageTransform.from_options(options)
    root = Path(root).expanduser()
    made: dict[str, ImageSplit] = {}
    for name in SPLIT_NAMES:
        rows = [r if isinstance(r, ImageRecord) else ImageRecord(*r) for r in records[name]]
        if not rows:
            raise DataError(f"{info.name}: the {name} split has no examples")
        paths = [(root / r.path).resolve() if not Path(r.path).is_absolute() else Path(r.path) for r in rows]
        missing = [(r, p) for r, p in zip(rows, paths, strict=True) if not p.is_file()]
        if missing:
            shown = "; ".join(f"{r.source + ': ' if r.source else ''}{p}" for r, p in missing[:10])
            more = f" (first 10 of {len(missing)})" if len(missing) > 10 else ""
            raise DataError(f"{info.name}: image file(s) not found in the {name} split{more}: {shown}")
        y = torch.tensor([int(r.y) for r in rows], dtype=torch.long)
        attr = torch.tensor([int(r.attr) for r in rows], dtype=torch.long)
        if any(r.group is None for r in rows):
            group = y * info.num_attrs + attr
        else:
            group = torch.tensor([int(r.group) for r in rows], dtype=torch.long)  # type: ignore[arg-type]
        fingerprints = _fingerprints(paths)
        cache_file = None
        if options.cache:
            entry = cache_entry(fingerprints, transform)
            try:
                build_cache(paths, transform, entry, options.workers)
                cache_file = entry
            except OSError as exc:
                log.warning("the image cache %s is not usable (%s); decoding images on every read", entry, exc)
        made[name] = ImageSplit(
            encodings={FINGERPRINT_ENCODING: fingerprints},
            y=y,
            attr=attr,
            group=group,
            name=name,
            paths=paths,
            transform=transform,
            workers=options.workers,
            cache_file=cache_file,
        )
    info = replace(info, input_shape=(3, options.image_size, options.image_size))
    meta = dict(provenance or {})
    meta["image_pipeline"] = {
        "image_size": transform.image_size,
        "resize": transform.resize,
        "cache_size": transform.base_size,
        "mean": list(transform.mean),
        "std": list(transform.std),
        "train_augment": options.train_augment,
        "cache": {name: str(s.cache_file) if s.cache_file else None for name, s in made.items()},
        "workers": options.workers,
    }
    meta.setdefault("num_examples", {name: len(s) for name, s in made.items()})
    return Splits(train=made["train"], val=made["val"], test=made["test"], info=info, provenance=meta)
