"""Waterbirds (Sagawa et al. 2020): is the bird a landbird or a waterbird? attribute = the background (land/water).

Source
    The dataset of "Distributionally Robust Neural Networks" (Sagawa, Koh, Hashimoto & Liang, ICLR 2020): CUB-200
    birds (Wah et al. 2011) pasted onto Places backgrounds (Zhou et al. 2017), with waterbirds mostly on water and
    landbirds mostly on land in train (95%). Either download works, unpacked as it comes:

    - group_DRO: ``waterbird_complete95_forest2water2.tar.gz`` from https://github.com/kohpangwei/group_DRO
      (https://nlp.stanford.edu/data/dro/waterbird_complete95_forest2water2.tar.gz);
    - WILDS: ``waterbirds_v1.0`` (https://wilds.stanford.edu, ``wilds`` package or its download link).

    Nothing is downloaded here.

What ``root:`` must contain
    ``metadata.csv`` and the image folders it names (``001.Black_footed_Albatross/...jpg``), both directly in
    ``root`` or in a ``waterbird_complete95_forest2water2/`` or ``waterbirds_v1.0/`` subfolder of it. Columns
    used: ``img_filename`` (the image path relative to the folder of ``metadata.csv``), ``y`` (0 landbird,
    1 waterbird), ``place`` (0 land, 1 water) and ``split`` (0 train, 1 val, 2 test); other columns (``img_id``,
    ``place_filename``) are ignored.

Label, attribute and groups
    y = bird type, class names ``"landbird"``, ``"waterbird"``; attr = background place, attr names ``"land"``,
    ``"water"``. Groups are (y, attr): group = y * 2 + attr, the four standard Waterbirds groups
    ``"landbird|land"``, ``"landbird|water"``, ``"waterbird|land"``, ``"waterbird|water"`` (the minority groups
    are landbird|water and waterbird|land).

Splits
    The ``split`` column as it is: 4,795 train / 1,199 val / 5,794 test images in the official file.
    ``max_examples`` keeps a group-stratified, seeded subsample of each split, proportional to the split sizes.

Errors
    A missing ``metadata.csv`` (every place looked at listed), a missing column, a value of ``y`` / ``place`` /
    ``split`` outside its codes, an image path that is absolute or leaves the folder, and an image the metadata
    names but the folder lacks are each a :class:`DataError` naming the file and the rows (row 1 is the header).
"""

from __future__ import annotations

import numpy as np
from pydantic import Field

from fairdistill.data.core import DATASETS, Splits
from fairdistill.data.images import ImageOptions, ImageRecord
from fairdistill.data.source_files import sha256_file
from fairdistill.data.vision_files import (
    ParsedImages,
    dataset_root,
    find_file,
    image_dataset_splits,
    integer_codes,
    read_csv_strings,
    relative_image_path,
    rows_by_split,
    subsample_rows,
)

NAME = "waterbirds"
METADATA = "metadata.csv"
SUBFOLDERS: tuple[str, ...] = ("", "waterbird_complete95_forest2water2", "waterbirds_v1.0")
CLASS_NAMES: tuple[str, str] = ("landbird", "waterbird")
ATTR_NAMES: tuple[str, str] = ("land", "water")
SPLIT_CODES: dict[int, str] = {0: "train", 1: "val", 2: "test"}


class WaterbirdsOptions(ImageOptions):
    """Options of the ``waterbirds`` dataset (plus the image pipeline's: ``image_size``, ``train_augment``, ...)."""

    #: The unpacked download: a folder with ``metadata.csv`` and the images (or one of the official subfolders).
    root: str = Field(min_length=1)
    #: Subsample train/val/test proportionally (group-stratified, seeded) to about this many images in total.
    max_examples: int | None = Field(default=None, ge=3)


def parse_waterbirds(root: str) -> ParsedImages:
    """The rows of ``metadata.csv`` under ``root``, per official split (the images are checked by the pipeline)."""
    folder = dataset_root(NAME, root, f"{METADATA} and the bird image folders")
    metadata = find_file(NAME, [folder / sub if sub else folder for sub in SUBFOLDERS], [METADATA])
    frame = read_csv_strings(NAME, metadata, ["img_filename", "y", "place", "split"])
    numbers = np.arange(len(frame)) + 2  # row 1 is the header
    y = integer_codes(NAME, metadata, frame["y"].tolist(), "y", (0, 1), numbers)
    place = integer_codes(NAME, metadata, frame["place"].tolist(), "place", (0, 1), numbers)
    split = integer_codes(NAME, metadata, frame["split"].tolist(), "split", SPLIT_CODES, numbers)
    rows = [
        ImageRecord(relative_image_path(NAME, metadata, f"row {n}", name), int(a), int(b), None, f"{metadata} row {n}")
        for n, name, a, b in zip(numbers.tolist(), frame["img_filename"], y.tolist(), place.tolist(), strict=True)
    ]
    image_dir = metadata.parent
    split_of = np.asarray([SPLIT_CODES[int(s)] for s in split.tolist()])
    provenance = {
        "dataset": NAME,
        "source": "Waterbirds (Sagawa et al. 2020), group_DRO / WILDS metadata.csv",
        "file": {"path": str(metadata), "sha256": sha256_file(metadata), "rows": len(frame)},
        "image_dir": str(image_dir),
        "split": "metadata.csv split column (0 train, 1 val, 2 test)",
    }
    return ParsedImages(
        dataset=NAME,
        image_dir=image_dir,
        rows=rows_by_split(NAME, metadata, split_of, rows),
        class_names=CLASS_NAMES,
        attr_names=ATTR_NAMES,
        attr_label="background",
        provenance=provenance,
    )


@DATASETS.register(NAME, options=WaterbirdsOptions, modality="image", offline=True)
def load_waterbirds(options: WaterbirdsOptions) -> Splits:
    """Waterbirds (group_DRO / WILDS files): landbird or waterbird; attribute = land or water background."""
    parsed = subsample_rows(parse_waterbirds(options.root), options.max_examples, options.split_seed)
    return image_dataset_splits(parsed, options)
