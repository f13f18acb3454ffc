"""TFDS builder `mot17det`: the MOT17Det training sequences (MOTChallenge), manual download.

Source files (https://motchallenge.net/data/MOT17Det/, MOT17Det.zip), read from the manual dir:
  train/MOT17-XX/seqinfo.ini    [Sequence] name, imDir (img1), frameRate, seqLength, imWidth,
                                imHeight, imExt (.jpg)
  train/MOT17-XX/img1/000001.jpg ...  one image per frame, 1-based, 6 digits
  train/MOT17-XX/gt/gt.txt      one CSV row per box: frame, id, bb_left, bb_top, bb_width,
                                bb_height, conf, class, visibility
      conf: 1 = considered, 0 = not considered (ignored) by the benchmark
      class: 1 pedestrian, 2 person on vehicle, 3 car, 4 bicycle, 5 motorbike, 6 non motorized
             vehicle, 7 static person, 8 distractor, 9 occluder, 10 occluder on the ground,
             11 occluder full, 12 reflection
      visibility: fraction of the object visible (occlusion and image border), in [0, 1]
  Train sequences: MOT17-02, -04, -05, -09, -10, -11, -13. The test ground truth is not public,
  so test/ is never read. `train/` may also sit in a `MOT17Det/` or `MOT17/` folder of the
  manual dir. The MOT17 tracking release (MOT17-XX-DPM / -FRCNN / -SDP folders: the same images
  and ground truth three times) is accepted too: one folder per sequence is used.

Mapping to the shared schema (`input_pipeline/datasets/schema.py`):
  class 1, conf != 0   -> label 1 pedestrian, ignore False (the positives)
  class 1, conf == 0   -> label 1 pedestrian, ignore True
  class 2              -> label 2 rider ('person on vehicle'), ignore True
  class 7, 8           -> label 4 other person (static person, distractor), ignore True
  class 12             -> label 0 ignore region (reflection), ignore True
  classes 3-6, 9-11 (vehicles, occluders) are dropped.
  - objects/bbox = the full box (MOT extends boxes of truncated people beyond the image border:
    clipped, as the schema requires).
  - MOT gives no visible box, only a visibility ratio: bbox_visible = the full box and
    vis_ratio = the visibility column (clipped to [0, 1]).
  - person_id = sequence number * 100000 + track id for classes 1, 2, 7, 8 (unique across
    sequences: MOT17-02's track 1 is 200001, MOT17-13's is 1300001); -1 for reflections.
  - image/filename = e.g. 'train/MOT17-02/img1/000001.jpg' (relative to the manual dir).
  - image/id: consecutive from 1 over the sequences in name order, frames in order (both splits).
Splits: `train` = the training sequences not in `val_sequences`; `val` = those in it (absent when
`val_sequences` is empty). Configs: 'default' holds out MOT17-13 (750 frames, 25 fps, a moving
camera) as val; 'all_train' uses all seven sequences for train. Consecutive frames are nearly
identical: `frame_stride` k keeps frames 1, 1 + k, 1 + 2k, ... (1 = every frame).
"""

from __future__ import annotations

import configparser
import dataclasses
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline.datasets import schema

TRAIN_SEQUENCES = ("MOT17-02", "MOT17-04", "MOT17-05", "MOT17-09", "MOT17-10", "MOT17-11",
                   "MOT17-13")
ROOTS = ("", "MOT17Det", "MOT17")  # folders of the manual dir that may hold `train/`
_SEQ_DIR = re.compile(r"^MOT17-(\d\d)(?:-(DPM|FRCNN|SDP))?$")
PERSON_ID_STRIDE = 100000  # person_id = sequence number * PERSON_ID_STRIDE + track id

# MOT class -> (schema label, always ignored); classes not listed are dropped.
PEDESTRIAN_CLASS = 1
CLASS_MAP = {
    1: (schema.PEDESTRIAN, False),
    2: (schema.RIDER, True),
    7: (schema.OTHER, True),
    8: (schema.OTHER, True),
    12: (schema.IGNORE_REGION, True),
}
IDENTITY_CLASSES = (1, 2, 7, 8)

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download MOT17Det.zip from https://motchallenge.net/data/MOT17Det/ and extract it into the manual
dir, so that the sequences are `<manual_dir>/train/MOT17-02/{seqinfo.ini, gt/gt.txt,
img1/000001.jpg, ...}` (also accepted: `<manual_dir>/MOT17Det/train/...`, and the MOT17
tracking release's `train/MOT17-02-FRCNN/...` folders).
"""


def _malformed(message: str) -> ValueError:
    """The one exception type of a malformed annotation file."""
    return ValueError(message)


@dataclasses.dataclass(frozen=True)
class Sequence:
    """One training sequence: `name` 'MOT17-02', `folder` relative to the manual dir."""

    name: str
    number: int
    folder: str
    length: int
    image_dir: str
    image_ext: str


def find_train_dir(manual_dir: str) -> str:
    """The `train` folder relative to the manual dir; ManualDirError if there is none."""
    if not os.path.isdir(manual_dir):
        raise schema.ManualDirError(
            f"MOT17Det manual dir {manual_dir!r} does not exist. "
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
    for root in ROOTS:
        rel = os.path.join(root, "train") if root else "train"
        if os.path.isdir(os.path.join(manual_dir, rel)):
            return rel
    searched = ", ".join(repr(os.path.join(manual_dir, r, "train")) for r in ROOTS)
    raise schema.ManualDirError(
        f"MOT17Det: no train folder found; searched {searched}. "
        f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")


def read_seqinfo(path: str) -> dict:
    """The [Sequence] section of a seqinfo.ini; ValueError naming the file when malformed."""
    parser = configparser.ConfigParser()
    try:
        parser.read(path, encoding="utf-8")
        section = parser["Sequence"]
        info = {
            "name": section["name"],
            "imDir": section.get("imDir", "img1"),
            "seqLength": int(section["seqLength"]),
            "imExt": section.get("imExt", ".jpg"),
        }
    except (configparser.Error, KeyError, ValueError) as e:
        raise _malformed(
            f"MOT17Det sequence info {path!r}: expected a [Sequence] section with name, "
            f"seqLength (an integer), imDir and imExt ({type(e).__name__}: {e})") from None
    if info["seqLength"] < 1:
        raise _malformed(f"MOT17Det sequence info {path!r}: seqLength {info['seqLength']} < 1")
    return info


def find_sequences(manual_dir: str) -> list[Sequence]:
    """The training sequences found (one per MOT17 number), checked file by file.

    Raises ManualDirError naming the first missing seqinfo.ini, gt/gt.txt or frame image and
    the folder it was expected in.
    """
    train = find_train_dir(manual_dir)
    folders: dict[int, str] = {}
    for name in sorted(os.listdir(os.path.join(manual_dir, train))):
        m = _SEQ_DIR.match(name)
        if m and os.path.isdir(os.path.join(manual_dir, train, name)):
            number = int(m.group(1))
            # Prefer the plain MOT17Det folder; else the first detector variant in name order.
            if number not in folders or m.group(2) is None:
                folders[number] = name
    if not folders:
        raise schema.ManualDirError(
            f"MOT17Det: no MOT17-XX sequence folder in {os.path.join(manual_dir, train)!r}. "
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
    sequences = []
    for number in sorted(folders):
        folder = os.path.join(train, folders[number])
        for rel in ("seqinfo.ini", os.path.join("gt", "gt.txt")):
            schema.require_file(
                os.path.join(manual_dir, folder, rel),
                f"MOT17Det sequence MOT17-{number:02d} (folder searched: "
                f"{os.path.join(manual_dir, folder)!r})", MANUAL_DOWNLOAD_INSTRUCTIONS)
        info = read_seqinfo(os.path.join(manual_dir, folder, "seqinfo.ini"))
        seq = Sequence(name=f"MOT17-{number:02d}", number=number, folder=folder,
                       length=info["seqLength"], image_dir=info["imDir"], image_ext=info["imExt"])
        image_dir = os.path.join(manual_dir, folder, seq.image_dir)
        present = set(os.listdir(image_dir)) if os.path.isdir(image_dir) else set()
        for frame in range(1, seq.length + 1):
            if frame_file(seq, frame) not in present:
                raise schema.ManualDirError(
                    f"MOT17Det sequence {seq.name}: frame image {frame_file(seq, frame)!r} "
                    f"(seqLength {seq.length}) not found in {image_dir!r}. "
                    f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
        sequences.append(seq)
    return sequences


def frame_file(seq: Sequence, frame: int) -> str:
    return f"{frame:06d}{seq.image_ext}"


def read_gt(path: str, seq: Sequence) -> dict[int, np.ndarray]:
    """gt.txt -> {frame: [K, 9] float64 rows}, rows in file order; blank lines skipped.

    Raises ValueError naming the file and line for a row that is not 9 numbers, a frame outside
    1..seqLength, or a box with a negative width or height.
    """
    rows: dict[int, list] = {}
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            fields = [v.strip() for v in line.strip().split(",")]
            try:
                values = [float(v) for v in fields]
            except ValueError:
                values = None
            if values is None or len(values) != 9 or not np.all(np.isfinite(values)):
                raise _malformed(
                    f"MOT17Det ground truth {path!r}, line {line_no}: expected 9 numbers "
                    "'frame, id, bb_left, bb_top, bb_width, bb_height, conf, class, visibility', "
                    f"got {line.strip()!r}")
            frame = values[0]
            if frame != int(frame) or not 1 <= frame <= seq.length:
                raise _malformed(
                    f"MOT17Det ground truth {path!r}, line {line_no}: frame {fields[0]!r} is not "
                    f"a frame of {seq.name} (1..{seq.length})")
            if values[4] < 0 or values[5] < 0:
                raise _malformed(
                    f"MOT17Det ground truth {path!r}, line {line_no}: negative box size")
            if values[1] != int(values[1]) or not 0 <= values[1] < PERSON_ID_STRIDE:
                raise _malformed(
                    f"MOT17Det ground truth {path!r}, line {line_no}: track id {fields[1]!r} is "
                    f"not an integer in [0, {PERSON_ID_STRIDE})")
            rows.setdefault(int(frame), []).append(values)
    return {frame: np.array(r, np.float64) for frame, r in rows.items()}


def objects_of_frame(rows: np.ndarray | None, seq: Sequence, image_id: int, height: int,
                     width: int) -> dict:
    """The `objects` dict of one frame from its gt rows (see the module doc for the mapping)."""
    rows = np.zeros((0, 9)) if rows is None else rows
    keep = [int(c) in CLASS_MAP for c in rows[:, 7]]
    rows = rows[np.asarray(keep, bool).reshape(-1)]
    classes = rows[:, 7].astype(int)
    labels = [CLASS_MAP[c][0] for c in classes]
    ignore = [CLASS_MAP[c][1] or (c == PEDESTRIAN_CLASS and conf == 0)
              for c, conf in zip(classes, rows[:, 6])]
    person_ids = [seq.number * PERSON_ID_STRIDE + int(t) if c in IDENTITY_CLASSES else -1
                  for c, t in zip(classes, rows[:, 1])]
    objects = schema.objects_from_xywh(rows[:, 2:6], labels, ignore, image_id, height, width,
                                       person_ids=person_ids)
    objects["vis_ratio"] = np.clip(rows[:, 8], 0.0, 1.0).astype(np.float32)
    return objects


def image_size(path: str) -> tuple[int, int]:
    """(height, width) from the image header."""
    from PIL import Image

    with Image.open(path) as im:
        return int(im.height), int(im.width)


@dataclasses.dataclass(eq=False)
class Mot17DetConfig(tfds.core.BuilderConfig):
    """Which training sequences form the val split, and the frame subsampling.

    Attributes:
      val_sequences: names ('MOT17-13') held out as the `val` split; () gives no val split.
      frame_stride: keep every k-th frame of each sequence, from frame 1.
    """

    val_sequences: tuple[str, ...] = ("MOT17-13",)
    frame_stride: int = 1


class Builder(tfds.core.GeneratorBasedBuilder):
    """MOT17Det training frames: pedestrians with track identities, other persons ignored."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {  # noqa: RUF012 (TFDS reads these class attributes)
        "1.0.0": "Initial release: MOT17Det train sequences, gt.txt classes mapped to the "
        "shared schema, track ids unique across sequences.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = [  # noqa: RUF012
        Mot17DetConfig(name="default", description="train: MOT17-02/04/05/09/10/11; "
                       "val: MOT17-13; every frame.", val_sequences=("MOT17-13",)),
        Mot17DetConfig(name="all_train", description="train: all 7 training sequences; no "
                       "val split; every frame.", val_sequences=()),
    ]
    DEFAULT_CONFIG_NAME = "default"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=schema.features(),
            supervised_keys=None,
            homepage="https://motchallenge.net/data/MOT17Det/",
        )

    def _split_generators(self, dl_manager):
        cfg = self.builder_config
        if cfg.frame_stride < 1:
            raise ValueError(f"mot17det: frame_stride must be >= 1, got {cfg.frame_stride}")
        try:
            manual_dir = os.fspath(dl_manager.manual_dir)
        except AssertionError as e:  # TFDS asserts the folder exists
            raise schema.ManualDirError(str(e)) from None
        sequences = find_sequences(manual_dir)
        names = [s.name for s in sequences]
        for name in cfg.val_sequences:
            if name not in names:
                raise schema.ManualDirError(
                    f"MOT17Det: val sequence {name!r} of config {cfg.name!r} not found under "
                    f"{os.path.join(manual_dir, find_train_dir(manual_dir))!r} (found: {names}). "
                    f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
        gts = {s.name: read_gt(os.path.join(manual_dir, s.folder, "gt", "gt.txt"), s)
               for s in sequences}
        # Image ids over all sequences in name order, so they are unique over both splits.
        first_id, next_id = {}, 1
        for s in sequences:
            first_id[s.name] = next_id
            next_id += len(range(1, s.length + 1, cfg.frame_stride))
        splits = {"train": [s for s in sequences if s.name not in cfg.val_sequences]}
        if cfg.val_sequences:
            splits["val"] = [s for s in sequences if s.name in cfg.val_sequences]
        return {split: self._generate_examples(manual_dir, seqs, gts, first_id)
                for split, seqs in splits.items()}

    def _generate_examples(self, manual_dir: str, sequences: list, gts: dict, first_id: dict):
        stride = self.builder_config.frame_stride
        for seq in sequences:
            for k, frame in enumerate(range(1, seq.length + 1, stride)):
                image_id = first_id[seq.name] + k
                rel = os.path.join(seq.folder, seq.image_dir, frame_file(seq, frame))
                path = os.path.join(manual_dir, rel)
                height, width = image_size(path)
                yield f"{seq.name}/{frame:06d}", {
                    "image": path,
                    "image/id": image_id,
                    "image/filename": rel.replace(os.sep, "/"),
                    "image/original_size": np.array([height, width], np.int64),
                    "objects": objects_of_frame(gts[seq.name].get(frame), seq, image_id,
                                                height, width),
                }
