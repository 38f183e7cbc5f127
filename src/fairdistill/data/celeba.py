"""CelebA (Liu et al. 2015): one of the 40 face attributes as the label, another as the protected attribute.

Source
    CelebFaces Attributes, "Deep Learning Face Attributes in the Wild" (Liu, Luo, Wang & Tang, ICCV 2015),
    https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (non-commercial research use). Any of the usual downloads
    works, unpacked as it comes; nothing is downloaded here:

    - the official Google Drive folder: ``Anno/list_attr_celeba.txt``, ``Eval/list_eval_partition.txt``,
      ``Img/img_align_celeba/`` (the aligned and cropped 178×218 JPEGs);
    - Kaggle ``jessicali9530/celeba-dataset``: ``list_attr_celeba.csv``, ``list_eval_partition.csv`` and the
      nested ``img_align_celeba/img_align_celeba/``;
    - WILDS ``celebA_v1.0``: ``list_attr_celeba.csv``, ``list_eval_partition.csv``, ``img_align_celeba/``.

What ``root:`` must contain
    The attribute file ``list_attr_celeba.csv`` (header ``image_id`` + the 40 attribute names) or the original
    ``list_attr_celeba.txt`` (line 1: the number of images; line 2: the 40 names; then one line per image: file
    name and 40 values), directly in ``root`` or in ``root/Anno``; values are 1 (has the attribute) or −1. The
    partition file ``list_eval_partition.csv`` (``image_id``, ``partition``) or ``.txt`` (file name and partition
    per line, no header), in ``root`` or ``root/Eval``; partition 0/1/2 = train/val/test. The images in
    ``img_align_celeba/img_align_celeba/`` (Kaggle), ``img_align_celeba/`` or ``Img/img_align_celeba/``, the first
    of them that exists. The CSV is preferred when both a CSV and a TXT file are present.

Label, attribute and groups
    y = ``target:`` (default ``Blond_Hair``), attr = ``attr:`` (default ``Male``), each one of the 40 attribute
    names (:data:`ATTRIBUTES`; an unknown name is a ConfigError listing them with a did-you-mean). Value 1 → 1,
    −1 → 0; class names ``"not <target>"``, ``"<target>"``, attr names ``"not <attr>"``, ``"<attr>"``. Groups are
    (y, attr): group = y * 2 + attr; with the defaults, the standard four CelebA groups of Sagawa et al. 2020
    (blond males the smallest).

Splits
    The official partition: 162,770 train / 19,867 val / 19,962 test images. ``max_examples`` keeps a
    group-stratified, seeded subsample of each split, proportional to the split sizes.

Errors
    A missing file (every place looked at listed), a row with the wrong number of values, a value other than
    1/−1 in a used column, a partition outside 0/1/2, an image without a partition and an image named but
    absent from the image folder are each a :class:`DataError` naming the file and the row (CSV: row 1 is the
    header; TXT: line numbers).
"""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
from pydantic import Field, field_validator, model_validator

from fairdistill.data.core import DATASETS, Splits
from fairdistill.data.images import ImageOptions, ImageRecord
from fairdistill.data.source_files import sha256_file
from fairdistill.data.vision_files import (
    ParsedImages,
    dataset_root,
    find_file,
    find_folder,
    image_dataset_splits,
    integer_codes,
    read_csv_strings,
    relative_image_path,
    rows_by_split,
    subsample_rows,
)
from fairdistill.errors import DataError, shown_value

NAME = "celeba"
#: The 40 CelebA attributes, in the order of the official files.
ATTRIBUTES: tuple[str, ...] = (
    "5_o_Clock_Shadow",
    "Arched_Eyebrows",
    "Attractive",
    "Bags_Under_Eyes",
    "Bald",
    "Bangs",
    "Big_Lips",
    "Big_Nose",
    "Black_Hair",
    "Blond_Hair",
    "Blurry",
    "Brown_Hair",
    "Bushy_Eyebrows",
    "Chubby",
    "Double_Chin",
    "Eyeglasses",
    "Goatee",
    "Gray_Hair",
    "Heavy_Makeup",
    "High_Cheekbones",
    "Male",
    "Mouth_Slightly_Open",
    "Mustache",
    "Narrow_Eyes",
    "No_Beard",
    "Oval_Face",
    "Pale_Skin",
    "Pointy_Nose",
    "Receding_Hairline",
    "Rosy_Cheeks",
    "Sideburns",
    "Smiling",
    "Straight_Hair",
    "Wavy_Hair",
    "Wearing_Earrings",
    "Wearing_Hat",
    "Wearing_Lipstick",
    "Wearing_Necklace",
    "Wearing_Necktie",
    "Young",
)
ATTR_FILES: tuple[str, str] = ("list_attr_celeba.csv", "list_attr_celeba.txt")
PARTITION_FILES: tuple[str, str] = ("list_eval_partition.csv", "list_eval_partition.txt")
IMAGE_FOLDERS: tuple[str, ...] = ("img_align_celeba/img_align_celeba", "img_align_celeba", "Img/img_align_celeba")
PARTITION_CODES: dict[int, str] = {0: "train", 1: "val", 2: "test"}


def _known_attribute(name: str) -> str:
    if name in ATTRIBUTES:
        return name
    folded = {a.lower(): a for a in ATTRIBUTES}
    close = difflib.get_close_matches(name.lower(), list(folded), n=1)
    hint = f" Did you mean {folded[close[0]]!r}?" if close else ""
    raise ValueError(f"unknown CelebA attribute {shown_value(name)}.{hint} Valid attributes: {', '.join(ATTRIBUTES)}")


class CelebAOptions(ImageOptions):
    """Options of the ``celeba`` dataset (plus the image pipeline's: ``image_size``, ``train_augment``, ...)."""

    #: The unpacked download (attribute file, partition file, image folder: see the module docstring).
    root: str = Field(min_length=1)
    #: The attribute predicted (y).
    target: str = "Blond_Hair"
    #: The protected attribute (attr).
    attr: str = "Male"
    #: Subsample train/val/test proportionally (group-stratified, seeded) to about this many images in total.
    max_examples: int | None = Field(default=None, ge=3)

    @field_validator("target", "attr")
    @classmethod
    def _check_attribute(cls, value: str) -> str:
        return _known_attribute(value)

    @model_validator(mode="after")
    def _distinct(self) -> CelebAOptions:
        if self.target == self.attr:
            raise ValueError(f"target and attr are both {self.target!r}; choose two different attributes")
        return self


def _read_attribute_txt(path: Path, wanted: tuple[str, ...]) -> tuple[list[str], dict[str, list[str]], str, np.ndarray]:
    """The original ``list_attr_celeba.txt``: count line, names line, then ``file v1 ... v40`` per line."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{NAME}: cannot read {path}: {exc}") from None
    if len(lines) < 3:
        raise DataError(f"{NAME}: {path} has {len(lines)} line(s); expected a count line, a names line and rows")
    names = lines[1].split()
    missing = [w for w in wanted if w not in names]
    if missing:
        raise DataError(f"{NAME}: {path}: line 2 (the attribute names) lacks {missing}; it names {names}")
    positions = [names.index(w) + 1 for w in wanted]
    ids: list[str] = []
    values: dict[str, list[str]] = {w: [] for w in wanted}
    numbers: list[int] = []
    for line_no, line in enumerate(lines[2:], start=3):
        cells = line.split()
        if not cells:
            continue
        if len(cells) != len(names) + 1:
            raise DataError(
                f"{NAME}: {path}: line {line_no} has {len(cells)} values, expected {len(names) + 1} "
                "(the image file name and one value per attribute of line 2)"
            )
        ids.append(cells[0])
        for w, pos in zip(wanted, positions, strict=True):
            values[w].append(cells[pos])
        numbers.append(line_no)
    if not ids:
        raise DataError(f"{NAME}: {path} has no image rows")
    declared = lines[0].strip()
    if declared.isdigit() and int(declared) != len(ids):
        raise DataError(f"{NAME}: {path}: line 1 declares {declared} images but the file has {len(ids)} rows")
    return ids, values, "line", np.asarray(numbers)


def _read_attributes(path: Path, wanted: tuple[str, ...]) -> tuple[list[str], dict[str, list[str]], str, np.ndarray]:
    """Image ids, the ``wanted`` columns as text, the row unit (``row``/``line``) and each row's number, from the
    CSV (row 1 is the header) or the TXT attribute file."""
    if path.suffix == ".txt":
        return _read_attribute_txt(path, wanted)
    frame = read_csv_strings(NAME, path, ["image_id", *wanted])
    return frame["image_id"].tolist(), {w: frame[w].tolist() for w in wanted}, "row", np.arange(len(frame)) + 2


def _read_partition(path: Path) -> tuple[dict[str, int], int]:
    """image id → partition code (0/1/2), and the number of rows read."""
    if path.suffix == ".txt":
        ids: list[str] = []
        codes_text: list[str] = []
        numbers: list[int] = []
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DataError(f"{NAME}: cannot read {path}: {exc}") from None
        for line_no, line in enumerate(lines, start=1):
            cells = line.split()
            if not cells:
                continue
            if len(cells) != 2:
                raise DataError(
                    f"{NAME}: {path}: line {line_no} has {len(cells)} values, expected 2 (image file name, partition)"
                )
            ids.append(cells[0])
            codes_text.append(cells[1])
            numbers.append(line_no)
        if not ids:
            raise DataError(f"{NAME}: {path} has no rows")
        row_numbers, unit = np.asarray(numbers), "line"
    else:
        frame = read_csv_strings(NAME, path, ["image_id", "partition"])
        ids, codes_text = frame["image_id"].tolist(), frame["partition"].tolist()
        row_numbers, unit = np.arange(len(frame)) + 2, "row"
    codes = integer_codes(NAME, path, codes_text, "partition", PARTITION_CODES, row_numbers, unit)
    partition: dict[str, int] = {}
    for image_id, code, number in zip(ids, codes.tolist(), row_numbers.tolist(), strict=True):
        if image_id in partition and partition[image_id] != code:
            raise DataError(f"{NAME}: {path}: {unit} {number} gives {image_id} a second, different partition")
        partition[image_id] = code
    return partition, len(ids)


def _binary(path: Path, values: list[str], column: str, numbers: np.ndarray, unit: str) -> np.ndarray:
    """A column of 1/−1 values as 1/0."""
    codes = integer_codes(NAME, path, values, column, (-1, 1), numbers, unit)
    return (codes == 1).astype(np.int64)


def parse_celeba(root: str, target: str = "Blond_Hair", attr: str = "Male") -> ParsedImages:
    """The CelebA rows under ``root`` per official partition, y = ``target``, attr = ``attr``."""
    target, attr = _known_attribute(target), _known_attribute(attr)
    folder = dataset_root(NAME, root, "list_attr_celeba.csv (or .txt), list_eval_partition.csv (or .txt), images")
    attr_file = find_file(NAME, [folder, folder / "Anno"], ATTR_FILES)
    partition_file = find_file(NAME, [folder, folder / "Eval"], PARTITION_FILES)
    image_dir = find_folder(NAME, [folder / sub for sub in IMAGE_FOLDERS], "CelebA image (img_align_celeba)")

    ids, columns, unit, numbers = _read_attributes(attr_file, (target, attr))
    where = [f"{unit} {n}" for n in numbers.tolist()]
    y = _binary(attr_file, columns[target], target, numbers, unit)
    a = _binary(attr_file, columns[attr], attr, numbers, unit)
    partition, partition_rows = _read_partition(partition_file)
    lacking = [i for i, image_id in enumerate(ids) if image_id not in partition]
    if lacking:
        shown = ", ".join(f"{ids[i]} ({where[i]})" for i in lacking[:5])
        raise DataError(
            f"{NAME}: {len(lacking)} image(s) of {attr_file} have no partition in {partition_file}: {shown}"
            + (f" and {len(lacking) - 5} more" if len(lacking) > 5 else "")
        )
    seen: dict[str, str] = {}
    for image_id, at in zip(ids, where, strict=True):
        if image_id in seen:
            raise DataError(f"{NAME}: {attr_file}: {at} repeats image {image_id} (first at {seen[image_id]})")
        seen[image_id] = at
    rows = [
        ImageRecord(relative_image_path(NAME, attr_file, at, image_id), int(t), int(s), None, f"{attr_file} {at}")
        for image_id, at, t, s in zip(ids, where, y.tolist(), a.tolist(), strict=True)
    ]
    split_of = np.asarray([PARTITION_CODES[partition[i]] for i in ids])
    provenance = {
        "dataset": NAME,
        "source": "CelebA (Liu et al. 2015), list_attr_celeba + list_eval_partition",
        "files": {
            "attributes": {"path": str(attr_file), "sha256": sha256_file(attr_file), "rows": len(ids)},
            "partition": {"path": str(partition_file), "sha256": sha256_file(partition_file), "rows": partition_rows},
        },
        "image_dir": str(image_dir),
        "target": target,
        "attr": attr,
        "split": "official list_eval_partition (0 train, 1 val, 2 test)",
    }
    return ParsedImages(
        dataset=NAME,
        image_dir=image_dir,
        rows=rows_by_split(NAME, partition_file, split_of, rows),
        class_names=(f"not {target}", target),
        attr_names=(f"not {attr}", attr),
        attr_label=attr,
        provenance=provenance,
    )


@DATASETS.register(NAME, options=CelebAOptions, modality="image", offline=True)
def load_celeba(options: CelebAOptions) -> Splits:
    """CelebA (official files): y = a face attribute (Blond_Hair), attr = another (Male), official partition."""
    parsed = parse_celeba(options.root, options.target, options.attr)
    return image_dataset_splits(subsample_rows(parsed, options.max_examples, options.split_seed), options)
