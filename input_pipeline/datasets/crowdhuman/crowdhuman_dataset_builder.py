"""TFDS builder `crowdhuman`: CrowdHuman (Shao et al. 2018) from its official files, manual download.

Source files (https://www.crowdhuman.org/download.html), read from the manual dir:
  annotation_train.odgt, annotation_val.odgt   one JSON object per line:
      {"ID": "273271,1a0d6000b9e1f5b7", "gtboxes": [{"tag": "person" | "mask",
       "fbox": [x, y, w, h], "vbox": [...], "hbox": [...],
       "extra": {"box_id": 0, "occ": 0, "ignore": 0 | 1 (optional), ...},
       "head_attr": {...}}, ...]}
  the images `<ID>.jpg`, from CrowdHuman_train01/02/03.zip and CrowdHuman_val.zip. Each zip
  holds an `Images/` folder; extracting all four into the manual dir gives the usual layout
  `Images/<ID>.jpg` (what Pedestron's and CrowdDet's converters read). Extracting each zip into
  a folder named after it (`CrowdHuman_train01/Images/...`, `CrowdHuman_val/Images/...`) or
  into `CrowdHuman_train/Images` is accepted too.

Mapping to the shared schema (`input_pipeline/datasets/schema.py`):
  - tag 'person' with extra.ignore == 0 (or absent)  -> label 1 pedestrian, ignore False
  - tag 'mask' (crowds, reflections, posters...), any other tag, or extra.ignore != 0
                                                     -> label 0 ignore region, ignore True
    (the same rule as the CrowdDet evaluator in `evaluation/crowdhuman.py`, which reads the
    original .odgt: tag 'person' -> 1, other tags -> -1, extra.ignore != 0 -> -1)
  - objects/bbox = fbox (full body; often crosses the image border: clipped, as the schema
    requires), objects/bbox_visible = vbox (= fbox when an entry has no vbox); vis_ratio =
    vbox area / fbox area of the UNCLIPPED boxes (0 for a zero-size vbox).
  - the head box `hbox` and `head_attr` are not part of the schema and are dropped.
  - person_id = -1 (CrowdHuman has no identities across images).
  - image/filename = the image's path relative to the manual dir, e.g.
    'Images/273271,1a0d6000b9e1f5b7.jpg'; its stem is the CrowdHuman `ID`
    (`crowdhuman.image_ids(builder, split)` maps image/id back to it).
  - image/id: 1..N_train in annotation_train.odgt line order, then N_train+1.. for val.
Splits: train (15000 images), val (4370). The test set has no public annotations.
"""

from __future__ import annotations

import dataclasses
import json
import os

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline.datasets import schema

ANNOTATION_FILES = {"train": "annotation_train.odgt", "val": "annotation_val.odgt"}
# Folders (relative to the manual dir) searched for `<ID>.jpg`, per split, in this order.
IMAGE_DIRS = {
    "train": ("Images", "CrowdHuman_train01/Images", "CrowdHuman_train02/Images",
              "CrowdHuman_train03/Images", "CrowdHuman_train/Images"),
    "val": ("Images", "CrowdHuman_val/Images"),
}
SPLITS = ("train", "val")

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download CrowdHuman from https://www.crowdhuman.org/download.html (registration required):
annotation_train.odgt, annotation_val.odgt, CrowdHuman_train01.zip, CrowdHuman_train02.zip,
CrowdHuman_train03.zip and CrowdHuman_val.zip. Put the two .odgt files in the manual dir and
extract the four zips there, so that the images are `<manual_dir>/Images/<ID>.jpg` (or
`<manual_dir>/CrowdHuman_train01/Images/<ID>.jpg` etc. when each zip went to its own folder).
"""


def _malformed(message: str) -> ValueError:
    """The one exception type of a malformed annotation (bad types included)."""
    return ValueError(message)


def _gt_entry_fields(entry, path: str, line: int, j: int) -> tuple[list, list, bool]:
    """(fbox, vbox, ignore) of gtboxes[j]; raises ValueError naming file, line and entry."""
    where = f"{path!r}, line {line}: gtboxes[{j}]"
    if not isinstance(entry, dict):
        raise _malformed(f"{where} is a {type(entry).__name__}, not a JSON object")
    for key in ("tag", "fbox"):
        if key not in entry:
            raise ValueError(f"{where}: missing key {key!r}")
    boxes = []
    for key in ("fbox", "vbox"):
        b = entry.get(key, entry["fbox"])
        if (not isinstance(b, list) or len(b) != 4
                or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                           and np.isfinite(v) for v in b)):
            raise ValueError(f"{where}: {key!r} {b!r} is not 4 finite numbers [x, y, w, h]")
        boxes.append([float(v) for v in b])
    extra = entry.get("extra", {})
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise _malformed(f"{where}: 'extra' must be a JSON object")
    flag = extra.get("ignore", 0)
    if not isinstance(flag, (int, float)) or isinstance(flag, bool):
        raise _malformed(f"{where}: extra.ignore {flag!r} is not a number")
    ignore = entry["tag"] != "person" or flag != 0
    return boxes[0], boxes[1], ignore


def read_odgt(path: str) -> list[dict]:
    """Parses a CrowdHuman .odgt into [{"ID", "line", "fbox" [N,4], "vbox" [N,4], "ignore" [N]}].

    Blank lines (e.g. a trailing newline) are skipped. Raises ValueError naming the file and the
    line for bad JSON, a missing key, a malformed box or a repeated ID.
    """
    records, seen = [], {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(
                    f"CrowdHuman annotation {path!r}, line {line_no}: not valid JSON ({e.msg} at "
                    f"column {e.colno}); expected one object per line"
                ) from None
            if not isinstance(rec, dict) or "ID" not in rec or "gtboxes" not in rec:
                raise ValueError(
                    f"CrowdHuman annotation {path!r}, line {line_no}: expected a JSON object "
                    'with keys "ID" and "gtboxes"'
                )
            image_id, entries = rec["ID"], rec["gtboxes"]
            if not isinstance(image_id, str) or not image_id or "/" in image_id:
                raise ValueError(
                    f"CrowdHuman annotation {path!r}, line {line_no}: 'ID' {image_id!r} is not "
                    "an image name"
                )
            if not isinstance(entries, list):
                raise _malformed(
                    f"CrowdHuman annotation {path!r}, line {line_no}: 'gtboxes' must be a list"
                )
            if image_id in seen:
                raise ValueError(
                    f"CrowdHuman annotation {path!r}, line {line_no}: ID {image_id!r} repeats "
                    f"line {seen[image_id]}"
                )
            seen[image_id] = line_no
            fields = [_gt_entry_fields(e, path, line_no, j) for j, e in enumerate(entries)]
            records.append({
                "ID": image_id,
                "line": line_no,
                "fbox": np.array([f[0] for f in fields], np.float64).reshape(-1, 4),
                "vbox": np.array([f[1] for f in fields], np.float64).reshape(-1, 4),
                "ignore": np.array([f[2] for f in fields], bool),
            })
    return records


def index_images(manual_dir: str, split: str) -> dict[str, str]:
    """'<ID>.jpg' -> its path relative to `manual_dir`, over the split's image folders (the
    first folder in IMAGE_DIRS order wins)."""
    index: dict[str, str] = {}
    for rel in IMAGE_DIRS[split]:
        folder = os.path.join(manual_dir, rel)
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            index.setdefault(name, f"{rel}/{name}")
    return index


def check_manual_dir(manual_dir: str) -> None:
    """Raises `schema.ManualDirError` unless the manual dir and both .odgt files exist."""
    manual_dir = os.fspath(manual_dir)
    if not os.path.isdir(manual_dir):
        raise schema.ManualDirError(
            f"CrowdHuman manual dir {manual_dir!r} does not exist. "
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
        )
    for split in SPLITS:
        schema.require_file(os.path.join(manual_dir, ANNOTATION_FILES[split]),
                            f"CrowdHuman {split} annotations (folder searched: {manual_dir!r})",
                            MANUAL_DOWNLOAD_INSTRUCTIONS)


def load_split_records(manual_dir: str) -> dict[str, list[dict]]:
    """Parses both .odgt files and finds every image: {split: records with "path" added}.

    Raises ManualDirError naming the first missing image and the folders searched, before any
    example is written.
    """
    check_manual_dir(manual_dir)
    out = {}
    for split in SPLITS:
        records = read_odgt(os.path.join(manual_dir, ANNOTATION_FILES[split]))
        index = index_images(manual_dir, split)
        missing = [r["ID"] for r in records if f"{r['ID']}.jpg" not in index]
        if missing:
            searched = ", ".join(repr(os.path.join(manual_dir, d)) for d in IMAGE_DIRS[split])
            raise schema.ManualDirError(
                f"CrowdHuman {split} image {missing[0] + '.jpg'!r} (and {len(missing) - 1} more "
                f"of {len(records)}) not found; folders searched: {searched}. "
                f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
            )
        for r in records:
            r["path"] = index[f"{r['ID']}.jpg"]
        out[split] = records
    return out


def image_size(path: str) -> tuple[int, int]:
    """(height, width) from the image header."""
    from PIL import Image

    with Image.open(path) as im:
        return int(im.height), int(im.width)


def example(manual_dir: str, record: dict, image_id: int) -> dict:
    """The feature dict of one .odgt record."""
    path = os.path.join(manual_dir, record["path"])
    height, width = image_size(path)
    ignore = record["ignore"]
    labels = np.where(ignore, schema.IGNORE_REGION, schema.PEDESTRIAN)
    return {
        "image": path,
        "image/id": image_id,
        "image/filename": record["path"],
        "image/original_size": np.array([height, width], np.int64),
        "objects": schema.objects_from_xywh(
            record["fbox"], labels, ignore, image_id, height, width,
            visible_boxes=record["vbox"]),
    }


@dataclasses.dataclass(eq=False)
class CrowdHumanConfig(tfds.core.BuilderConfig):
    """CrowdHuman has one variant; the config exists for naming (`crowdhuman/default`)."""


class Builder(tfds.core.GeneratorBasedBuilder):
    """CrowdHuman full/visible person boxes with 'mask' and extra.ignore as ignore regions."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {  # noqa: RUF012 (TFDS reads these class attributes)
        "1.0.0": "Initial release: train/val from the official .odgt files and image zips.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = [  # noqa: RUF012
        CrowdHumanConfig(name="default", description="CrowdHuman train (15000) / val (4370)."),
    ]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=schema.features(),
            supervised_keys=None,
            homepage="https://www.crowdhuman.org/",
        )

    def _split_generators(self, dl_manager):
        try:
            manual_dir = os.fspath(dl_manager.manual_dir)
        except AssertionError as e:  # TFDS asserts the folder exists
            raise schema.ManualDirError(str(e)) from None
        records = load_split_records(manual_dir)
        first = {"train": 1, "val": 1 + len(records["train"])}
        return {split: self._generate_examples(manual_dir, records[split], first[split])
                for split in SPLITS}

    def _generate_examples(self, manual_dir: str, records: list, first_image_id: int):
        for i, record in enumerate(records):
            yield record["ID"], example(manual_dir, record, first_image_id + i)
