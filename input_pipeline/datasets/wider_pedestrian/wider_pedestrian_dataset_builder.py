"""TFDS builder `wider_pedestrian`: the WIDER Pedestrian detection track, manual download.

!!! FORMAT CAVEAT: the layout below is the one of the WIDER Face & Pedestrian Challenge 2018
!!! pedestrian track (CodaLab competition 19118), established from public third-party code
!!! that reads the released files (the organisers' page could not be consulted). The 2019
!!! WIDER Face & Person Challenge pedestrian track is assumed to ship the same formats; this
!!! has NOT been verified against the 2019 release. A line that does not fit raises a
!!! ValueError naming the file and line, so a different format cannot be read silently.

Source files, read from the manual dir (or its `Annotations/` / `annotations/` folder):
  train_annotations.txt, val_annotations.txt
      one line per image: the image file name, then 5 numbers per box `class x y w h`
      (class 1 pedestrian, 2 cyclist; [x, y, w, h] pixels, (x, y) the top-left corner);
      an image without boxes is a line with its name only, e.g.
        img18169.jpg 1 1110 275 187 299 1 1047 312 123 252 2 1023 85 36 56
        img15001.jpg
  pedestrian_ignore_part_train.txt, pedestrian_ignore_part_val.txt   (optional)
      one line per image: the image file name, then 4 numbers per ignore region `x y w h`.
      The official evaluator drops detections and ground truth lying more than half inside an
      ignore region. Without these files the dataset simply has no ignore regions.
  the images: `<split>/<name>` (the release's train/ and val/ folders), or `<split>/images/`,
  `<split>/Images/`, `Images/`, `images/`, or the manual dir itself.
Sources of these facts (public code, not the organisers): komejisatori/PINGAN-Pedestrian-
Detection-2018: tools/annotation_tools/wider_annotation2submission.py (line format with
examples), tools/annotation_tools/coco_parser.py (class 1 pedestrian, 2 cyclist),
tools/analysis_tools/wider_evaluate/WIDER_Pedestrian_evaluation.py (the CodaLab scoring script:
val_annotations.txt and pedestrian_ignore_part_val.txt parsed as above), DATASET.md (train
11500 / val 5000 / test 3500 images in data/train, data/val, data/test_new).

Mapping to the shared schema (`input_pipeline/datasets/schema.py`):
  class 1 (pedestrian)    -> label 1 pedestrian, ignore False
  class 2 (cyclist)       -> label 2 rider, ignore True. NOTE: the official WIDER evaluator
                             counts cyclists as ground truth too (it never reads the class), so
                             numbers from our evaluators differ from the CodaLab score.
  ignore-file regions     -> label 0 ignore region, ignore True (after the image's boxes)
  bbox_visible = bbox, vis_ratio 1 (no visible boxes); person_id -1 (no identities).
  image/filename = the image's path relative to the manual dir, e.g. 'val/img00001.jpg'.
  image/id: 1..N_train in train_annotations.txt order, then the val images. An image listed on
  several lines gets all their boxes (first position kept).
Splits: train, val (the test annotations are not public).
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline.datasets import schema

SPLITS = ("train", "val")
ANNOTATION_FILES = {"train": "train_annotations.txt", "val": "val_annotations.txt"}
IGNORE_FILES = {"train": "pedestrian_ignore_part_train.txt",
                "val": "pedestrian_ignore_part_val.txt"}
ANNOTATION_DIRS = ("", "Annotations", "annotations")
IMAGE_DIRS = {split: (split, f"{split}/images", f"{split}/Images", "Images", "images", "")
              for split in SPLITS}
CLASS_MAP = {1: (schema.PEDESTRIAN, False), 2: (schema.RIDER, True)}

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download the WIDER Pedestrian detection track data (WIDER Face & Person Challenge; links on the
track's CodaLab page): the train and val images and train_annotations.txt, val_annotations.txt
(and, if available, pedestrian_ignore_part_train.txt / pedestrian_ignore_part_val.txt). Put the
text files in the manual dir (or its Annotations/ folder) and the images in `<manual_dir>/train/`
and `<manual_dir>/val/` (or all in `<manual_dir>/Images/`).
"""


def _malformed(message: str) -> ValueError:
    """The one exception type of a malformed annotation file."""
    return ValueError(message)


def _numbers(tokens: list[str], path: str, line_no: int) -> list[float]:
    try:
        values = [float(t) for t in tokens]
    except ValueError:
        values = None
    if values is None or not np.all(np.isfinite(values)):
        raise _malformed(f"WIDER Pedestrian file {path!r}, line {line_no}: non-numeric value in "
                         f"{' '.join(tokens)!r}")
    return values


def read_annotations(path: str) -> dict[str, list]:
    """'<split>_annotations.txt' -> {image name: [[class, x, y, w, h], ...]} in file order.

    Blank lines are skipped. ValueError naming the file and line when the numbers after the
    name are not groups of 5, a class is not 1 or 2, or a box has a negative size.
    """
    out: dict[str, list] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            name, values = tokens[0], _numbers(tokens[1:], path, line_no)
            if len(values) % 5:
                raise _malformed(
                    f"WIDER Pedestrian annotation {path!r}, line {line_no}: {len(values)} numbers "
                    f"after {name!r}; expected groups of 5 'class x y w h'")
            boxes = [values[i:i + 5] for i in range(0, len(values), 5)]
            for b in boxes:
                if b[0] not in CLASS_MAP:
                    raise _malformed(
                        f"WIDER Pedestrian annotation {path!r}, line {line_no}: class {b[0]:g} "
                        f"of image {name!r} is not 1 (pedestrian) or 2 (cyclist)")
                if b[3] < 0 or b[4] < 0:
                    raise _malformed(
                        f"WIDER Pedestrian annotation {path!r}, line {line_no}: negative box "
                        f"size in {name!r}")
            out.setdefault(name, []).extend(boxes)
    return out


def read_ignore_regions(path: str) -> dict[str, list]:
    """'pedestrian_ignore_part_<split>.txt' -> {image name: [[x, y, w, h], ...]}."""
    out: dict[str, list] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            tokens = line.split()
            if not tokens:
                continue
            name, values = tokens[0], _numbers(tokens[1:], path, line_no)
            if len(values) % 4:
                raise _malformed(
                    f"WIDER Pedestrian ignore file {path!r}, line {line_no}: {len(values)} "
                    f"numbers after {name!r}; expected groups of 4 'x y w h'")
            out.setdefault(name, []).extend(values[i:i + 4] for i in range(0, len(values), 4))
    return out


def find_text_file(manual_dir: str, name: str) -> str | None:
    """The path of `name` in the manual dir or its annotation folders, or None."""
    for rel in ANNOTATION_DIRS:
        path = os.path.join(manual_dir, rel, name)
        if os.path.isfile(path):
            return path
    return None


def check_manual_dir(manual_dir: str) -> dict[str, str]:
    """{split: annotation path}; ManualDirError naming the missing dir or annotation file."""
    manual_dir = os.fspath(manual_dir)
    if not os.path.isdir(manual_dir):
        raise schema.ManualDirError(
            f"WIDER Pedestrian manual dir {manual_dir!r} does not exist. "
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
    paths = {}
    for split in SPLITS:
        path = find_text_file(manual_dir, ANNOTATION_FILES[split])
        if path is None:
            searched = ", ".join(repr(os.path.join(manual_dir, d)) for d in ANNOTATION_DIRS)
            raise schema.ManualDirError(
                f"WIDER Pedestrian {split} annotations: expected {ANNOTATION_FILES[split]!r} in "
                f"one of {searched}; not found. {MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
        paths[split] = path
    return paths


def index_images(manual_dir: str, split: str) -> dict[str, str]:
    """image name -> its path relative to the manual dir (first folder of IMAGE_DIRS wins)."""
    index: dict[str, str] = {}
    for rel in IMAGE_DIRS[split]:
        folder = os.path.join(manual_dir, rel)
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            if name not in index and os.path.isfile(os.path.join(folder, name)):
                index[name] = f"{rel}/{name}" if rel else name
    return index


def load_splits(manual_dir: str) -> dict[str, list[tuple[str, str, list, list]]]:
    """{split: [(name, relative image path, boxes, ignore regions)]}, every image found.

    Raises ManualDirError naming the first missing image and the folders searched.
    """
    paths = check_manual_dir(manual_dir)
    out = {}
    for split in SPLITS:
        boxes = read_annotations(paths[split])
        ignore_path = find_text_file(manual_dir, IGNORE_FILES[split])
        regions = read_ignore_regions(ignore_path) if ignore_path else {}
        index = index_images(manual_dir, split)
        missing = [n for n in boxes if n not in index]
        if missing:
            searched = ", ".join(repr(os.path.join(manual_dir, d)) for d in IMAGE_DIRS[split])
            raise schema.ManualDirError(
                f"WIDER Pedestrian {split} image {missing[0]!r} (and {len(missing) - 1} more of "
                f"{len(boxes)}) not found; folders searched: {searched}. "
                f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
        out[split] = [(n, index[n], b, regions.get(n, [])) for n, b in boxes.items()]
    return out


def image_size(path: str) -> tuple[int, int]:
    """(height, width) from the image header."""
    from PIL import Image

    with Image.open(path) as im:
        return int(im.height), int(im.width)


def example(manual_dir: str, item: tuple, image_id: int) -> dict:
    _, rel, boxes, regions = item
    path = os.path.join(manual_dir, rel)
    height, width = image_size(path)
    classes = [int(b[0]) for b in boxes]
    xywh = [b[1:] for b in boxes] + list(regions)
    labels = [CLASS_MAP[c][0] for c in classes] + [schema.IGNORE_REGION] * len(regions)
    ignore = [CLASS_MAP[c][1] for c in classes] + [True] * len(regions)
    return {
        "image": path,
        "image/id": image_id,
        "image/filename": rel,
        "image/original_size": np.array([height, width], np.int64),
        "objects": schema.objects_from_xywh(np.array(xywh, np.float64).reshape(-1, 4), labels,
                                            ignore, image_id, height, width),
    }


@dataclasses.dataclass(eq=False)
class WiderPedestrianConfig(tfds.core.BuilderConfig):
    """One variant; the config exists for naming (`wider_pedestrian/default`)."""


class Builder(tfds.core.GeneratorBasedBuilder):
    """WIDER Pedestrian: pedestrians positive, cyclists and ignore-file regions ignored."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {  # noqa: RUF012 (TFDS reads these class attributes)
        "1.0.0": "Initial release: train/val from the challenge's annotation text files "
        "(2018 track format, assumed for 2019), optional ignore-part files.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = [  # noqa: RUF012
        WiderPedestrianConfig(name="default", description="WIDER Pedestrian train / val."),
    ]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=schema.features(),
            supervised_keys=None,
            homepage="https://wider-challenge.org/",
        )

    def _split_generators(self, dl_manager):
        try:
            manual_dir = os.fspath(dl_manager.manual_dir)
        except AssertionError as e:  # TFDS asserts the folder exists
            raise schema.ManualDirError(str(e)) from None
        items = load_splits(manual_dir)
        first = {"train": 1, "val": 1 + len(items["train"])}
        return {split: self._generate_examples(manual_dir, items[split], first[split])
                for split in SPLITS}

    def _generate_examples(self, manual_dir: str, items: list, first_image_id: int):
        for i, item in enumerate(items):
            yield item[1], example(manual_dir, item, first_image_id + i)
