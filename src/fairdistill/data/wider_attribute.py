"""WIDER Attribute (Li et al. 2016): the event of a photo (30 classes, or 16 clusters); attribute = gender.

Source
    "Human Attribute Recognition by Deep Hierarchical Contexts" (Li, Huang, Loy & Tang, ECCV 2016),
    http://mmlab.ie.cuhk.edu.hk/projects/WIDERAttribute.html: 13,789 event photos of WIDER (Yang et al. 2016) in
    30 event classes, 57,524 annotated persons with 14 binary attributes each. Download
    ``wider_attribute_annotation.zip`` and ``wider_attribute_image.tgz`` from that page and unpack both; nothing
    is downloaded here. The KD benchmark of ../shared/seeds/002 (EfficientNet-b3 → b0) uses it with the events
    clustered into 16 classes and gender as the protected attribute.

What ``root:`` must contain
    ``wider_attribute_trainval.json`` and ``wider_attribute_test.json`` (in ``root`` or its ``Anno/``,
    ``Annotations/`` or ``wider_attribute_annotation/`` subfolder) and the ``Image/`` folder the files' entries
    name (``Image/train/0--Parade/...jpg``). Each JSON file holds ``images`` — a list of ``{"file_name",
    "scene_id", "targets": [{"attribute": [14 values in {1, −1, 0}], "bbox": [x, y, w, h]}, ...]}`` — and the maps
    ``scene_id_map`` (scene id → event name) and ``attribute_id_map`` (attribute index → name). An attribute
    value is 1 (positive), −1 (negative) or 0 (unspecified).

Label (``classes:``)
    ``30``: the event, classes in the order of the scene ids of ``scene_id_map``, named by it. ``16``: the events
    clustered as in the seed-002 benchmark (:data:`CLUSTERS`, keyed by event name, so the file's own scene ids
    are used, never assumed; names match with or without WIDER's ``<id>--`` folder prefix). The 30 scenes are
    WIDER events 0, 1, 3, 4, 6, 7, 11, 15, 17–20, 22, 25, 27, 28, 30, 31, 33, 35–37, 39, 43, 44, 50, 51, 54, 57
    and 58 (WIDER's folder names, e.g. ``31--Waiter_Waitress``); the table was checked against a public
    implementation of the seed's 30 → 16 mapping, which it reproduces event for event:

    ====  ==============================  ====================================================================
    id    cluster                         events (one line of justification each)
    ====  ==============================  ====================================================================
    0     Team_Sports                     Basketball, Football, Soccer, Hockey: ball/puck games of two teams
    1     Celebration                     Ceremony, Celebration_Or_Party, Funeral: formal or festive gatherings
                                          around an occasion (the funeral is a ceremony, as in the seed)
    2     Parade                          Parade: a marching procession, distinct from any other event
    3     Waiter_Or_Waitress              Waiter_Waitress: a single occupation, kept alone
    4     Individual_Sports               Running, Ice_Skating, Aerobics: sports done by each athlete alone
    5     Surgeons                        Surgeons: a single occupation in a distinctive setting
    6     Spa                             Spa: a distinctive indoor setting
    7     Law_Enforcement                 Riot, Soldier_Patrol: crowds facing police, armed patrols
    8     Business                        Meeting, Stock_Market, Handshaking: office and trading floors, formal
                                          (mostly business or political) greetings
    9     Dresses                         Dresses: fashion photos, kept alone
    10    Water_Activities                Row_Boat, Angler: activities on or by the water
    11    Picnic                          Picnic: outdoor leisure meals, kept alone
    12    Rescue                          Rescue: emergency scenes, kept alone
    13    Cheering                        Cheering, Sports_Fan: crowds cheering, usually at sports
    14    Performance_And_Entertainment   Dancing, Concerts: performers on stage or floor
    15    Family                          Family_Group, Couple: private groups of relatives or partners
    ====  ==============================  ====================================================================

Attribute (``gender_rule:``)
    Gender is a person attribute; the image-level attribute is derived from the persons whose ``male`` value
    (the index whose name in ``attribute_id_map`` is ``male``, looked up, not assumed to be 0) is specified:
    1 = male, −1 = female; 0 = unspecified, ignored. attr 0 = ``"female"``, 1 = ``"male"``.

    - ``majority`` (default): the gender of most specified persons. Dropped: images with no specified person
      (``no_specified_person``, also images without any person) and with as many males as females (``tie``).
    - ``any-male``: male if any specified person is male, female if all are female. Keeps the ties (as male);
      drops ``no_specified_person``.
    - ``largest-person``: the gender of the specified person with the largest bbox (w · h), the photo's main
      subject. Drops ``no_specified_person`` and ``tie`` (the largest specified boxes are equal and disagree).
    - ``keep-unknown``: ``majority``, but a tie or no specified person is kept as a third attr value
      ``"unknown"`` (attr 2; groups then have 3 attrs per class). Drops nothing.

    The number of images dropped per reason and file is logged and put into the provenance.

Splits
    test = ``wider_attribute_test.json``. ``wider_attribute_trainval.json`` is split into train and val:
    ``val_split: stratified`` (default) holds out ``val_fraction`` (default 10%) stratified by (label, attr)
    group, seeded by ``split_seed`` (:func:`~fairdistill.data.sampling.stratified_partition`); ``val_split:
    official`` uses the official train/val division, the ``train/`` or ``val/`` prefix of ``file_name``.
    ``max_examples`` then keeps a group-stratified, seeded subsample of each split.

Errors
    A missing file or folder, invalid JSON, a missing key, an attribute list of the wrong length or with a value
    outside {1, −1, 0}, a bad bbox, a scene id missing from ``scene_id_map``, an event the 16-class table does not
    know, maps that differ between the two files and a missing image are each a :class:`DataError` naming the
    file and the entry (``images[i]`` with its ``file_name``).
"""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import Field

from fairdistill.data.core import DATASETS, Splits
from fairdistill.data.images import ImageOptions, ImageRecord
from fairdistill.data.sampling import stratified_partition
from fairdistill.data.source_files import sha256_file
from fairdistill.data.table_files import split_generators
from fairdistill.data.vision_files import (
    ParsedImages,
    dataset_root,
    find_file,
    find_folder,
    image_dataset_splits,
    read_json,
    relative_image_path,
    subsample_rows,
)
from fairdistill.errors import DataError, shown_value

log = logging.getLogger(__name__)

NAME = "wider-attribute"
TRAINVAL_FILE = "wider_attribute_trainval.json"
TEST_FILE = "wider_attribute_test.json"
ANNOTATION_FOLDERS: tuple[str, ...] = ("", "Anno", "Annotations", "wider_attribute_annotation")
GenderRule = Literal["majority", "any-male", "largest-person", "keep-unknown"]
GENDER_RULES: tuple[str, ...] = ("majority", "any-male", "largest-person", "keep-unknown")
ATTR_NAMES: tuple[str, str] = ("female", "male")
UNKNOWN = "unknown"
NO_PERSON, TIE = "no_specified_person", "tie"

#: The 16 event clusters (the seed-002 benchmark's), in class-id order.
CLUSTER_NAMES: tuple[str, ...] = (
    "Team_Sports",
    "Celebration",
    "Parade",
    "Waiter_Or_Waitress",
    "Individual_Sports",
    "Surgeons",
    "Spa",
    "Law_Enforcement",
    "Business",
    "Dresses",
    "Water_Activities",
    "Picnic",
    "Rescue",
    "Cheering",
    "Performance_And_Entertainment",
    "Family",
)
#: Each of the 30 WIDER Attribute events → its cluster (justified in the module docstring).
CLUSTERS: dict[str, str] = {
    "Parade": "Parade",
    "Handshaking": "Business",
    "Riot": "Law_Enforcement",
    "Dancing": "Performance_And_Entertainment",
    "Funeral": "Celebration",
    "Cheering": "Cheering",
    "Meeting": "Business",
    "Stock_Market": "Business",
    "Ceremony": "Celebration",
    "Concerts": "Performance_And_Entertainment",
    "Couple": "Family",
    "Family_Group": "Family",
    "Picnic": "Picnic",
    "Soldier_Patrol": "Law_Enforcement",
    "Spa": "Spa",
    "Sports_Fan": "Cheering",
    "Surgeons": "Surgeons",
    "Waiter_Waitress": "Waiter_Or_Waitress",
    "Running": "Individual_Sports",
    "Basketball": "Team_Sports",
    "Football": "Team_Sports",
    "Soccer": "Team_Sports",
    "Ice_Skating": "Individual_Sports",
    "Row_Boat": "Water_Activities",
    "Aerobics": "Individual_Sports",
    "Celebration_Or_Party": "Celebration",
    "Dresses": "Dresses",
    "Rescue": "Rescue",
    "Angler": "Water_Activities",
    "Hockey": "Team_Sports",
}


class WiderAttributeOptions(ImageOptions):
    """Options of the ``wider-attribute`` dataset (plus the image pipeline's: ``image_size``, ...)."""

    #: The unpacked download: the two annotation JSON files and the ``Image/`` folder.
    root: str = Field(min_length=1)
    #: 30 events, or the 16 clusters of the module docstring.
    classes: Literal[30, 16] = 30
    #: How the image-level gender is derived from the persons' ``male`` values (module docstring).
    gender_rule: GenderRule = "majority"
    #: ``stratified``: hold out ``val_fraction`` of trainval; ``official``: the train/ and val/ file prefixes.
    val_split: Literal["stratified", "official"] = "stratified"
    #: Fraction of trainval held out as val with ``val_split: stratified``.
    val_fraction: float = Field(default=0.1, gt=0.0, lt=1.0)
    #: Subsample train/val/test proportionally (group-stratified, seeded) to about this many images in total.
    max_examples: int | None = Field(default=None, ge=3)


def event_key(name: str) -> str:
    """An event name compared loosely: a ``12--`` folder prefix dropped, lower case, letters and digits only."""
    return re.sub(r"[^a-z0-9]", "", re.sub(r"^\d+--", "", name.strip()).lower())


_CLUSTER_OF_KEY: dict[str, str] = {event_key(event): cluster for event, cluster in CLUSTERS.items()}


def image_gender(persons: Sequence[tuple[int, float]], rule: GenderRule) -> int | str:
    """The image-level attr (0 female, 1 male, 2 unknown) from its persons' (``male`` value, bbox area), or the
    reason it is dropped (``no_specified_person``, ``tie``); the rules are those of the module docstring."""
    specified = [(value, area) for value, area in persons if value != 0]
    males = sum(1 for value, _ in specified if value == 1)
    females = len(specified) - males
    if rule == "any-male":
        return NO_PERSON if not specified else int(males > 0)
    if rule == "largest-person":
        if not specified:
            return NO_PERSON
        largest = max(area for _, area in specified)
        values = {value for value, area in specified if area == largest}
        return TIE if len(values) > 1 else int(values.pop() == 1)
    if males != females:
        return int(males > females)
    if rule == "keep-unknown":
        return 2
    return NO_PERSON if not specified else TIE


def _where(i: int, entry: object) -> str:
    name = entry.get("file_name") if isinstance(entry, Mapping) else None
    return f"images[{i}]" + (f" (file_name {shown_value(name)})" if isinstance(name, str) else "")


def _id_map(path: Path, data: Mapping[str, Any], key: str) -> dict[int, str]:
    raw = data.get(key)
    if not isinstance(raw, Mapping) or not raw:
        raise DataError(f"{NAME}: {path}: {key!r} is missing or not a non-empty object (id → name)")
    out: dict[int, str] = {}
    for k, v in raw.items():
        if not (isinstance(k, str) and k.strip().lstrip("-").isdigit()) or not isinstance(v, str):
            raise DataError(f"{NAME}: {path}: {key} entry {shown_value(k)}: {shown_value(v)} is not id → name")
        out[int(k)] = v
    return dict(sorted(out.items()))


def _male_index(path: Path, attribute_map: dict[int, str]) -> int:
    found = [i for i, name in attribute_map.items() if name.strip().lower() == "male"]
    if len(found) != 1:
        raise DataError(
            f"{NAME}: {path}: attribute_id_map has {len(found)} attribute(s) named 'male' (expected one): "
            f"{attribute_map}"
        )
    if sorted(attribute_map) != list(range(len(attribute_map))):
        raise DataError(f"{NAME}: {path}: attribute_id_map ids must be 0..{len(attribute_map) - 1}")
    return found[0]


def _persons(path: Path, i: int, entry: Mapping[str, Any], width: int, male: int) -> list[tuple[int, float]]:
    """Each person's (``male`` value, bbox area) of entry ``i``, every value checked."""
    targets = entry.get("targets")
    if not isinstance(targets, list):
        raise DataError(f"{NAME}: {path}: {_where(i, entry)} has no 'targets' list")
    persons = []
    for j, target in enumerate(targets):
        at = f"{NAME}: {path}: {_where(i, entry)} targets[{j}]"
        values = target.get("attribute") if isinstance(target, Mapping) else None
        if not isinstance(values, list) or len(values) != width:
            raise DataError(f"{at}: 'attribute' must be a list of {width} values (one per attribute_id_map entry)")
        bad = [v for v in values if isinstance(v, bool) or v not in (1, -1, 0)]
        if bad:
            raise DataError(f"{at}: attribute values must be 1, -1 or 0 (unspecified); got {shown_value(bad[0])}")
        bbox = target.get("bbox")
        if (
            not isinstance(bbox, list)
            or len(bbox) != 4
            or not all(isinstance(b, (int, float)) and not isinstance(b, bool) and math.isfinite(b) for b in bbox)
            or bbox[2] < 0
            or bbox[3] < 0
        ):
            raise DataError(f"{at}: 'bbox' must be [x, y, width, height] (finite, width and height >= 0)")
        persons.append((int(values[male]), float(bbox[2]) * float(bbox[3])))
    return persons


class _File:
    """One annotation file parsed: kept rows, trainval prefixes, dropped counts."""

    def __init__(self, path: Path, rule: GenderRule, classes: int, scene_map: dict[int, str]) -> None:
        data = read_json(NAME, path)
        if not isinstance(data, Mapping) or not isinstance(data.get("images"), list):
            raise DataError(f"{NAME}: {path}: expected an object with an 'images' list")
        if not data["images"]:
            raise DataError(f"{NAME}: {path}: 'images' is empty")
        self.path = path
        self.scene_map = _id_map(path, data, "scene_id_map")
        self.attribute_map = _id_map(path, data, "attribute_id_map")
        if scene_map and scene_map != self.scene_map:
            raise DataError(f"{NAME}: {path}: scene_id_map differs from that of the trainval file")
        male = _male_index(path, self.attribute_map)
        label_of = _label_table(path, self.scene_map, classes)
        self.rows: list[ImageRecord] = []
        self.prefixes: list[str] = []
        self.dropped: Counter[str] = Counter()
        for i, entry in enumerate(data["images"]):
            if not isinstance(entry, Mapping):
                raise DataError(f"{NAME}: {path}: images[{i}] is not an object")
            name, scene = entry.get("file_name"), entry.get("scene_id")
            if not isinstance(name, str):
                raise DataError(f"{NAME}: {path}: images[{i}] has no 'file_name' text")
            if isinstance(scene, bool) or not isinstance(scene, int) or scene not in label_of:
                raise DataError(
                    f"{NAME}: {path}: {_where(i, entry)} has scene_id {shown_value(scene)}, not an id of "
                    f"scene_id_map ({', '.join(map(str, self.scene_map))})"
                )
            gender = image_gender(_persons(path, i, entry, len(self.attribute_map), male), rule)
            if isinstance(gender, str):
                self.dropped[gender] += 1
                continue
            rel = relative_image_path(NAME, path, _where(i, entry), name)
            self.rows.append(ImageRecord(rel, label_of[scene], gender, None, f"{path} images[{i}]"))
            self.prefixes.append(rel.split("/", 1)[0])
        self.read = len(data["images"])


def _label_table(path: Path, scene_map: dict[int, str], classes: int) -> dict[int, int]:
    """scene id → class index (30: position among the scene ids; 16: the cluster of the event name)."""
    if classes != 16:
        return {scene: k for k, scene in enumerate(scene_map)}
    unknown = [name for name in scene_map.values() if event_key(name) not in _CLUSTER_OF_KEY]
    if unknown:
        raise DataError(
            f"{NAME}: {path}: classes: 16 clusters the 30 WIDER Attribute events, but scene_id_map names "
            f"{unknown}, not among them ({', '.join(CLUSTERS)})"
        )
    return {scene: CLUSTER_NAMES.index(_CLUSTER_OF_KEY[event_key(name)]) for scene, name in scene_map.items()}


def parse_wider_attribute(
    root: str,
    *,
    classes: int = 30,
    gender_rule: GenderRule = "majority",
    val_split: str = "stratified",
    val_fraction: float = 0.1,
    split_seed: int = 0,
) -> ParsedImages:
    """The WIDER Attribute rows under ``root``: train/val from trainval, test from the test file."""
    folder = dataset_root(NAME, root, f"{TRAINVAL_FILE}, {TEST_FILE} and Image/")
    folders = [folder / sub if sub else folder for sub in ANNOTATION_FOLDERS]
    trainval_path, test_path = find_file(NAME, folders, [TRAINVAL_FILE]), find_file(NAME, folders, [TEST_FILE])
    image_dir = find_folder(NAME, [folder / "Image"], "WIDER Attribute Image/")
    trainval = _File(trainval_path, gender_rule, classes, {})
    test = _File(test_path, gender_rule, classes, trainval.scene_map)

    class_names = CLUSTER_NAMES if classes == 16 else tuple(trainval.scene_map.values())
    attr_names = (*ATTR_NAMES, UNKNOWN) if gender_rule == "keep-unknown" else ATTR_NAMES
    if val_split == "official":
        bad = [k for k, p in enumerate(trainval.prefixes) if p not in ("train", "val")]
        if bad:
            raise DataError(
                f"{NAME}: {trainval_path}: val_split: official needs file names starting with train/ or val/; "
                f"{trainval.rows[bad[0]].source} is {trainval.rows[bad[0]].path!r}"
            )
        train_idx = [k for k, p in enumerate(trainval.prefixes) if p == "train"]
        val_idx = [k for k, p in enumerate(trainval.prefixes) if p == "val"]
        split_rule = "train/val = the train/ and val/ file_name prefixes of trainval; test = the test file"
    else:
        groups = np.asarray([r.y * len(attr_names) + r.attr for r in trainval.rows], dtype=np.int64)
        _, split_rng = split_generators(split_seed)
        kept, held = stratified_partition(groups, (1 - val_fraction, val_fraction), split_rng)
        train_idx, val_idx = kept.tolist(), held.tolist()
        split_rule = (
            f"{val_fraction:g} of trainval held out as val, stratified by (label, attr) group, seeded by "
            "split_seed; test = the test file"
        )
    rows = {
        "train": [trainval.rows[k] for k in train_idx],
        "val": [trainval.rows[k] for k in val_idx],
        "test": test.rows,
    }
    for split, items in rows.items():
        if not items:
            raise DataError(f"{NAME}: the {split} split would be empty (after the gender rule {gender_rule!r})")
    dropped = {reason: trainval.dropped[reason] + test.dropped[reason] for reason in (NO_PERSON, TIE)}
    provenance = {
        "dataset": NAME,
        "source": "WIDER Attribute (Li et al. 2016), official annotation JSON files",
        "files": {
            f.path.name: {"path": str(f.path), "sha256": sha256_file(f.path), "images": f.read, "kept": len(f.rows)}
            for f in (trainval, test)
        },
        "image_dir": str(image_dir),
        "classes": classes,
        "gender_rule": gender_rule,
        "male_attribute_index": _male_index(trainval_path, trainval.attribute_map),
        "split": split_rule,
        "dropped": dropped,
        "dropped_per_file": {f.path.name: {r: f.dropped[r] for r in (NO_PERSON, TIE)} for f in (trainval, test)},
    }
    return ParsedImages(
        dataset=NAME,
        image_dir=image_dir,
        rows=rows,
        class_names=class_names,
        attr_names=attr_names,
        attr_label="gender",
        provenance=provenance,
    )


@DATASETS.register(NAME, options=WiderAttributeOptions, modality="image", offline=True)
def load_wider_attribute(options: WiderAttributeOptions) -> Splits:
    """WIDER Attribute (official JSON files): the event (30 or 16 clusters); attribute = image-level gender."""
    parsed = parse_wider_attribute(
        options.root,
        classes=options.classes,
        gender_rule=options.gender_rule,
        val_split=options.val_split,
        val_fraction=options.val_fraction,
        split_seed=options.split_seed,
    )
    return image_dataset_splits(subsample_rows(parsed, options.max_examples, options.split_seed), options)
