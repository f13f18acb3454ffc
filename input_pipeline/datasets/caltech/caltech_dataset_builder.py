"""TFDS builder `caltech`: Caltech-USA pedestrians with the refined annotations, manual download.

Ground truth: the refined ("new") annotations of Zhang et al., "How far are we from solving
pedestrian detection?" (CVPR 2016), one text file per frame in Piotr Dollar's bbGt format
(toolbox detector/bbGt.m, bbSave / bbLoad):

    % bbGt version=3
    <lbl> <l> <t> <w> <h> <occ> <lv> <tv> <wv> <hv> <ign> <ang>

one object per line: label string, full box [l t w h] (pixels, integers as bbSave writes them),
occlusion flag, visible box [l t w h] (may be [0 0 0 0]), ignore flag, angle. Versions 0/1 have
only the first 10 columns (no ign, ang), version 2 has 11 (no ang); a file without the header
line is version 0, as in bbLoad. Blank lines, CRLF line ends and trailing spaces are accepted.

Source files, read from the manual dir (the refined release plus frames extracted from the
Caltech .seq videos, e.g. with the Caltech toolbox's dbExtract or the usual converters):
  train (config `train10x`): anno_train10x_alignedby_RotatedFilters/setXX_VYYY_IZZZZZ.txt,
      every 3rd frame of set00-set05 (frame indices 2, 5, 8, ...): 42,782 frames, the "10x"
      training set released with the refined annotations (folder name as distributed and as
      read by CSP and its ports).
  test (both configs): anno_test_1xnew/setXX_VYYY_IZZZZZ.jpg.txt (or `.txt`), every 30th frame
      of set06-set10 (frame indices 29, 59, ...): 4,024 frames, the standard test set.
  The frames used are exactly those that have an annotation file. An annotation folder is
  looked up as `<manual_dir>/<name>`, `<manual_dir>/annotations/<name>` or
  `<manual_dir>/{train,test}/<name>`; frames `setXX_VYYY_IZZZZZ.jpg` (or .png) in
  `<manual_dir>/images`, `<manual_dir>/frame`, `<manual_dir>/{train,test}/images`,
  `<manual_dir>/{train,test}/IMG` or `<manual_dir>/{train,test}/frame` (the layouts used by the
  Caltech toolbox's dbExtract, CSP and its ports).

Configs:
  train10x  splits train (10x refined, set00-05) and test (set06-10); for training + evaluation.
  test      split test only (set06-10): evaluation without preparing the 42,782 training frames.

Labels (bbGt `lbl` -> schema label, ignore):
  'person'                      -> 1 pedestrian, ignore = the file's ign flag
  'people'                      -> 5 group, ignore
  'person?', 'person-fa',
  'ignore'                      -> 0 ignore region, ignore
  any other label               -> ValueError naming the file and line
The schema's (label, ignore) cannot tell 'person?' (evaluated like a person by the refined
benchmark's dbEval), 'ignore' (an ignore region) and 'person-fa' (not loaded at all) apart, and
loses the file's ign flag of non-person objects, so the builder adds two features:
  objects/source_label   the bbGt label string (Text)
  objects/source_ignore  the bbGt ign column (bool; False for versions 0/1)
which `export_caltech_gt` writes as `label` / `ignore` for `evaluation.caltech`.

Boxes and visibility (bbLoad's rule, which `evaluation.caltech` expects in `vis_ratio`):
  bbox = [l t w h] (clipped to the image as the schema requires; height = unclipped h);
  occ == 0 or visible box all zero -> bbox_visible = bbox, vis_ratio 1;
  occ != 0 and visible box == full box -> bbox_visible = bbox, vis_ratio 0 ("may be barely
  visible");
  otherwise bbox_visible = visible box, vis_ratio = (wv*hv) / (w*h) (clamped to [0, 1]).
Other features: person_id -1; image/filename = the frame's path relative to the manual dir;
image/original_size = (480, 640) for the Caltech frames; JPEG frames are stored as they are
(PNG frames are re-encoded as JPEG); image/id 1-based over train then test, in frame-name order.
The angle column is read and checked but not used (bbLoad uses it only for rotated boxes; the
Caltech annotations have angle 0).
"""

from __future__ import annotations

import dataclasses
import io
import math
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline.datasets import schema

ANNOTATION_DIRS = {
    "train10x": "anno_train10x_alignedby_RotatedFilters",
    "test": "anno_test_1xnew",
}
# Which sets belong to which split (Caltech-USA: set00-05 train, set06-10 test).
SPLIT_SETS = {"train": tuple(range(6)), "test": tuple(range(6, 11))}
# Expected frame counts of the full release (documentation; not enforced).
EXPECTED_FRAMES = {"train10x": 42782, "test": 4024}
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

# bbGt label -> (schema label, always ignore).
LABELS = {
    "person": (schema.PEDESTRIAN, False),
    "people": (schema.GROUP, True),
    "person?": (schema.IGNORE_REGION, True),
    "person-fa": (schema.IGNORE_REGION, True),
    "ignore": (schema.IGNORE_REGION, True),
}
# Number of columns per bbGt version (bbLoad's ms=[10 10 11 12]).
_COLUMNS = {0: 10, 1: 10, 2: 11, 3: 12}
_HEADER = re.compile(r"^%\s*bbGt\s+version\s*=\s*(\S+)\s*$")
_FRAME = re.compile(r"^(set(\d\d)_V(\d\d\d)_I(\d\d\d\d\d))(?:\.(?:jpg|png|jpeg))?\.txt$")

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Caltech-USA: download the videos set00.tar ... set10.tar of the Caltech Pedestrian Detection
Benchmark (http://www.vision.caltech.edu/Image_Datasets/CaltechPedestrians/) and
extract the frames as setXX_VYYY_IZZZZZ.jpg (0-based frame index; e.g. with the toolbox's
dbExtract) into `<manual_dir>/images/` (or `{train,test}/images/`). Download the refined
annotations of Zhang et al. 2016 ("How far are we from solving pedestrian detection?", MPI
Informatics page of the paper): the folders anno_train10x_alignedby_RotatedFilters/ (config
train10x) and anno_test_1xnew/ go into `<manual_dir>/` (or `<manual_dir>/annotations/`).
Only the annotated frames are needed: every 3rd frame of set00-05, every 30th of set06-10.
"""


def _split_folders(split: str) -> tuple[str, ...]:
    return ("images", "frame", f"{split}/images", f"{split}/IMG", f"{split}/frame")


def _annotation_candidates(name: str, split: str) -> tuple[str, ...]:
    return (name, f"annotations/{name}", f"{split}/{name}")


def parse_bbgt(path: str) -> list[dict]:
    """Reads one bbGt text file: [{"label", "bbox" [4], "occ", "bbox_visible" [4], "ign",
    "ang", "line"}]. Raises ValueError naming the file and line of a malformed line."""
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"Caltech annotation {path!r}: not a text file ({e})") from None
    lines = text.splitlines()
    version, start = 0, 0
    if lines and lines[0].lstrip().startswith("%"):
        m = _HEADER.match(lines[0].strip())
        if not m or m.group(1) not in ("0", "1", "2", "3"):
            raise ValueError(
                f"Caltech annotation {path!r}, line 1: header {lines[0].strip()!r} is not "
                "'% bbGt version=N' with N in 0..3"
            )
        version, start = int(m.group(1)), 1
    ncol = _COLUMNS[version]
    objects = []
    for line_no, line in enumerate(lines[start:], start=start + 1):
        tokens = line.split()
        if not tokens:
            continue
        if len(tokens) != ncol:
            raise ValueError(
                f"Caltech annotation {path!r}, line {line_no}: {len(tokens)} fields, expected "
                f"{ncol} for bbGt version {version} (lbl x y w h occ xv yv wv hv"
                f"{' ign' if ncol >= 11 else ''}{' ang' if ncol >= 12 else ''})"
            )
        label = tokens[0]
        if label not in LABELS:
            raise ValueError(
                f"Caltech annotation {path!r}, line {line_no}: label {label!r} is not one of "
                f"{', '.join(repr(k) for k in LABELS)}"
            )
        try:
            values = [float(t) for t in tokens[1:]]
        except ValueError:
            raise ValueError(
                f"Caltech annotation {path!r}, line {line_no}: non-numeric field in {line!r}"
            ) from None
        if not all(math.isfinite(v) for v in values):
            raise ValueError(f"Caltech annotation {path!r}, line {line_no}: non-finite value")
        objects.append({
            "label": label,
            "bbox": values[0:4],
            "occ": values[4],
            "bbox_visible": values[5:9],
            "ign": values[9] if ncol >= 11 else 0.0,
            "ang": values[10] if ncol >= 12 else 0.0,
            "line": line_no,
        })
    return objects


def visibility(bbox, occ, bbox_visible) -> tuple[list[float], float]:
    """(visible box, vis_ratio) by bbLoad's rule (module docstring)."""
    bb = [float(v) for v in bbox]
    bbv = [float(v) for v in bbox_visible]
    if occ == 0 or all(v == 0 for v in bbv):
        return bb, 1.0
    if bbv == bb:
        return bb, 0.0
    full = bb[2] * bb[3]
    if full <= 0:
        return bbv, 0.0
    return bbv, float(min(max(bbv[2] * bbv[3] / full, 0.0), 1.0))


def find_annotation_dir(manual_dir: str, name: str, split: str) -> str:
    """The folder holding the `name` annotations; ManualDirError naming the folders searched."""
    for rel in _annotation_candidates(name, split):
        path = os.path.join(manual_dir, rel)
        if os.path.isdir(path):
            return path
    searched = ", ".join(repr(os.path.join(manual_dir, r))
                         for r in _annotation_candidates(name, split))
    raise schema.ManualDirError(
        f"Caltech {split} annotations: expected the folder {name!r}, found none of {searched}. "
        f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
    )


def config_splits(config_name: str) -> dict[str, str]:
    """{split: annotation folder name} of a config."""
    if config_name == "train10x":
        return {"train": ANNOTATION_DIRS["train10x"], "test": ANNOTATION_DIRS["test"]}
    return {"test": ANNOTATION_DIRS["test"]}


def check_manual_dir(manual_dir: str, config_name: str) -> None:
    """Raises `schema.ManualDirError` unless the manual dir and the config's annotation folders
    exist (cheap: nothing is parsed)."""
    manual_dir = os.fspath(manual_dir)
    if not os.path.isdir(manual_dir):
        raise schema.ManualDirError(
            f"Caltech manual dir {manual_dir!r} does not exist. "
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
        )
    for split, name in config_splits(config_name).items():
        find_annotation_dir(manual_dir, name, split)


def index_frames(manual_dir: str, split: str) -> dict[str, str]:
    """'setXX_VYYY_IZZZZZ' -> frame path relative to the manual dir (first folder wins)."""
    index: dict[str, str] = {}
    for rel in _split_folders(split):
        folder = os.path.join(manual_dir, rel)
        if not os.path.isdir(folder):
            continue
        for name in os.listdir(folder):
            stem, ext = os.path.splitext(name)
            if ext.lower() in IMAGE_EXTENSIONS:
                index.setdefault(stem, f"{rel}/{name}")
    return index


def list_annotation_files(folder: str, split: str) -> list[tuple[str, str]]:
    """[(frame stem, file path)] of an annotation folder, sorted by frame; files that are not
    named like a frame are skipped. ValueError for a frame of the other split or a frame
    annotated twice."""
    out: dict[str, str] = {}
    for name in sorted(os.listdir(folder)):
        m = _FRAME.match(name)
        if not m:
            continue
        stem, set_id = m.group(1), int(m.group(2))
        path = os.path.join(folder, name)
        if set_id not in SPLIT_SETS[split]:
            raise ValueError(
                f"Caltech annotation {path!r}: set{set_id:02d} is not a {split} set "
                f"(set{SPLIT_SETS[split][0]:02d}-set{SPLIT_SETS[split][-1]:02d})"
            )
        if stem in out:
            raise ValueError(
                f"Caltech annotation {path!r}: frame {stem} is also annotated by {out[stem]!r}")
        out[stem] = path
    return sorted(out.items())


def load_split_records(manual_dir: str, config_name: str) -> dict[str, list[dict]]:
    """Parses every annotation file of the config and finds every frame.

    Returns {split: [{"stem", "annotation", "path", "objects"}]}. Raises ManualDirError (missing
    folder or frame, naming it and the folders searched) or ValueError (malformed file) before
    any example is written.
    """
    check_manual_dir(manual_dir, config_name)
    out = {}
    for split, name in config_splits(config_name).items():
        folder = find_annotation_dir(manual_dir, name, split)
        files = list_annotation_files(folder, split)
        if not files:
            raise schema.ManualDirError(
                f"Caltech {split} annotations: no 'setXX_VYYY_IZZZZZ.txt' file in {folder!r}. "
                f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
            )
        index = index_frames(manual_dir, split)
        missing = [stem for stem, _ in files if stem not in index]
        if missing:
            searched = ", ".join(repr(os.path.join(manual_dir, d)) for d in _split_folders(split))
            raise schema.ManualDirError(
                f"Caltech {split} frame {missing[0] + '.jpg'!r} (and {len(missing) - 1} more of "
                f"{len(files)}) not found; folders searched: {searched}. "
                f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
            )
        out[split] = [
            {"stem": stem, "annotation": path, "path": index[stem], "objects": parse_bbgt(path)}
            for stem, path in files
        ]
    return out


def _image(path: str) -> tuple[object, int, int]:
    """(what the Image feature stores, height, width): RGB JPEG files as they are, anything
    else re-encoded as JPEG."""
    from PIL import Image

    with Image.open(path) as im:
        if im.format == "JPEG" and im.mode == "RGB":
            return path, im.height, im.width
        rgb = im.convert("RGB")
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=95)
        return buf.getvalue(), rgb.height, rgb.width


def example(manual_dir: str, record: dict, image_id: int) -> dict:
    """The feature dict of one annotated frame."""
    image, height, width = _image(os.path.join(manual_dir, record["path"]))
    objs = record["objects"]
    labels, ignore, vis_boxes, vis_ratio = [], [], [], []
    for o in objs:
        label, always = LABELS[o["label"]]
        labels.append(label)
        ignore.append(always or o["ign"] != 0)
        box, ratio = visibility(o["bbox"], o["occ"], o["bbox_visible"])
        vis_boxes.append(box)
        vis_ratio.append(ratio)
    objects = schema.objects_from_xywh(
        np.array([o["bbox"] for o in objs], np.float64).reshape(-1, 4), labels, ignore,
        image_id, height, width, visible_boxes=np.array(vis_boxes, np.float64).reshape(-1, 4))
    objects["vis_ratio"] = np.asarray(vis_ratio, np.float32).reshape(-1)
    objects["source_label"] = [o["label"] for o in objs]
    objects["source_ignore"] = np.array([o["ign"] != 0 for o in objs], bool).reshape(-1)
    return {
        "image": image,
        "image/id": image_id,
        "image/filename": record["path"],
        "image/original_size": np.array([height, width], np.int64),
        "objects": objects,
    }


def features() -> tfds.features.FeaturesDict:
    """The shared schema plus objects/source_label (Text) and objects/source_ignore (bool)."""
    base = schema.features()
    objects = dict(base["objects"].feature.items())
    objects["source_label"] = tfds.features.Text()
    objects["source_ignore"] = np.bool_
    top = dict(base.items())
    top["objects"] = tfds.features.Sequence(objects)
    return tfds.features.FeaturesDict(top)


@dataclasses.dataclass(eq=False)
class CaltechConfig(tfds.core.BuilderConfig):
    """A Caltech variant: `train10x` (train + test splits) or `test` (test split only)."""


class Builder(tfds.core.GeneratorBasedBuilder):
    """Caltech-USA frames with the refined bbGt annotations of Zhang et al. 2016."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {  # noqa: RUF012 (TFDS reads these class attributes)
        "1.0.0": "Initial release: refined 10x train / 1x test annotations (bbGt text files).",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = [  # noqa: RUF012
        CaltechConfig(
            name="train10x",
            description="train: 42,782 frames (every 3rd of set00-05, "
            "anno_train10x_alignedby_RotatedFilters); test: 4,024 frames (every 30th of "
            "set06-10, anno_test_1xnew)."),
        CaltechConfig(
            name="test",
            description="test only: 4,024 frames (every 30th of set06-10, anno_test_1xnew)."),
    ]
    DEFAULT_CONFIG_NAME = "train10x"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=features(),
            supervised_keys=None,
            homepage="http://www.vision.caltech.edu/Image_Datasets/CaltechPedestrians/",
        )

    def _split_generators(self, dl_manager):
        try:
            manual_dir = os.fspath(dl_manager.manual_dir)
        except AssertionError as e:  # TFDS asserts the folder exists
            raise schema.ManualDirError(str(e)) from None
        records = load_split_records(manual_dir, self.builder_config.name)
        out, first = {}, 1
        for split in ("train", "test"):
            if split in records:
                out[split] = self._generate_examples(manual_dir, records[split], first)
                first += len(records[split])
        return out

    def _generate_examples(self, manual_dir: str, records: list, first_image_id: int):
        for i, record in enumerate(records):
            yield record["stem"], example(manual_dir, record, first_image_id + i)
