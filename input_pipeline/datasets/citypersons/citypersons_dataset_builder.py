"""TFDS builder `citypersons`: CityPersons (Zhang et al. 2017) from its official files, manual download.

CityPersons annotates people in the Cityscapes images. Source files, read from the manual dir:

  leftImg8bit/{train,val}/<city>/<city>_<seq>_<frame>_leftImg8bit.png
      the Cityscapes images (2048 x 1024 PNG), from leftImg8bit_trainvaltest.zip.
  config `json` (default): gtBboxCityPersons/{train,val}/<city>/<city>_<seq>_<frame>_gtBboxCityPersons.json
      from gtBboxCityPersons_trainval.zip (cityscapes-dataset.com): one JSON object per image,
      {"imgHeight": 1024, "imgWidth": 2048, "objects": [{"label": ..., "bbox": [x, y, w, h],
      "bboxVis": [x, y, w, h], "instanceId": ...}, ...]} (the fields cityscapesScripts'
      `helpers/annotation.py` CsBbox reads; labels from `helpers/labels_cityPersons.py`).
  config `mat`: anno_train.mat / anno_val.mat (Shanshan Zhang's original release; in the manual
      dir or its `annotations/` folder): a MATLAB cell array `anno_train_aligned` /
      `anno_val_aligned`, one struct per image with fields `cityname`, `im_name` (the image
      file name, e.g. 'aachen_000000_000019_leftImg8bit.png') and `bbs`, an [N, 10] matrix with
      rows [class_label, x1, y1, w, h, instance_id, x1_vis, y1_vis, w_vis, h_vis].

Labels (json name / mat class_label -> schema label, `ignore` flag):
  'ignore'         0  fake humans (posters, reflections)   -> 0 ignore region, ignore
  'pedestrian'     1                                         -> 1 pedestrian, NOT ignored
  'rider'          2                                         -> 2 rider, ignore
  'sitting person' 3                                         -> 3 sitting, ignore
  'person (other)' 4  unusual postures                       -> 4 other, ignore
  'person group'   5                                         -> 5 group, ignore
Only pedestrians are positives, as in the benchmark (the official val_gt.json marks every other
class ignore). No box is dropped or flagged for its size at build time: the evaluation setups
(Reasonable: height >= 50 and visibility >= 0.65, ...) apply their own height/visibility ranges
to `height` and `vis_ratio` per setup.

Mapping to the shared schema (`input_pipeline/datasets/schema.py`):
  - objects/bbox = bbox (full body; aligned to aspect 0.41 for pedestrians and riders, = the
    visible box for the other classes), clipped to the image as the schema requires;
    objects/bbox_visible = bboxVis; objects/height = unclipped full-box height; objects/vis_ratio
    = bboxVis area / bbox area of the unclipped boxes (0 for an empty visible box).
  - person_id = -1 (no identities). The JSON `instanceId` / mat `instance_id` is not kept.
  - image: re-encoded as JPEG (quality `jpeg_quality`) at the original size;
    image/original_size = (height, width) of the PNG; image/filename = its path relative to the
    manual dir, e.g. 'leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png'.
  - image/id: 1-based over train then val. With `json` each split is in path order (city, then
    file name: the image order of the official val_gt.json); with `mat` in the .mat file order.
Splits: train (2975 images), val (500). The Cityscapes test images have no public CityPersons
annotations. `export_val_gt` writes the val ground truth as the official evaluation JSON.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
import os

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline.datasets import schema

SPLITS = ("train", "val")
IMAGE_DIR = "leftImg8bit"
JSON_DIR = "gtBboxCityPersons"
IMAGE_SUFFIX = "_leftImg8bit.png"
JSON_SUFFIX = "_gtBboxCityPersons.json"
MAT_FILES = {"train": "anno_train.mat", "val": "anno_val.mat"}
MAT_KEYS = {"train": "anno_train_aligned", "val": "anno_val_aligned"}
# Folders (relative to the manual dir) searched for the .mat files, in this order.
MAT_DIRS = (".", "annotations")

# Official label names (json) and class_label ids (mat) -> schema label; both use the same ids.
LABEL_IDS = {
    "ignore": schema.IGNORE_REGION,
    "pedestrian": schema.PEDESTRIAN,
    "rider": schema.RIDER,
    "sitting person": schema.SITTING,
    "person (other)": schema.OTHER,
    "person group": schema.GROUP,
}

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download from https://www.cityscapes-dataset.com/downloads/ (registration required)
leftImg8bit_trainvaltest.zip and, for the default config `json`, gtBboxCityPersons_trainval.zip;
extract both into the manual dir, giving `<manual_dir>/leftImg8bit/{train,val}/<city>/*.png`
and `<manual_dir>/gtBboxCityPersons/{train,val}/<city>/*_gtBboxCityPersons.json`.
For config `mat`, put anno_train.mat and anno_val.mat (the original CityPersons annotations of
https://github.com/cvgroup-njust/CityPersons, folder annotations/) in the manual dir or in
`<manual_dir>/annotations/`, next to the extracted leftImg8bit folder.
"""


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _box(value, where: str, key: str) -> list[float]:
    if not isinstance(value, list) or len(value) != 4 or not all(_is_number(v) for v in value):
        raise ValueError(f"{where}: {key!r} {value!r} is not 4 finite numbers [x, y, w, h]")
    return [float(v) for v in value]


def read_json_annotation(path: str) -> dict:
    """Parses one gtBboxCityPersons JSON file.

    Returns {"height", "width", "labels" [N] int64, "bbox" [N, 4], "bbox_visible" [N, 4]}
    (pixel [x, y, w, h]). Raises ValueError naming the file and the key for any malformed entry.
    """
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"CityPersons annotation {path!r}: not valid JSON ({e.msg} at line {e.lineno}, "
            f"column {e.colno})"
        ) from None
    if not isinstance(doc, dict):
        raise ValueError(f"CityPersons annotation {path!r}: expected a JSON object")  # noqa: TRY004
    for key in ("imgHeight", "imgWidth", "objects"):
        if key not in doc:
            raise ValueError(f"CityPersons annotation {path!r}: missing key {key!r}")
    size = []
    for key in ("imgHeight", "imgWidth"):
        v = doc[key]
        if not _is_number(v) or v <= 0 or v != int(v):
            raise ValueError(
                f"CityPersons annotation {path!r}: key {key!r} {v!r} is not a positive integer")
        size.append(int(v))
    if not isinstance(doc["objects"], list):
        raise ValueError(  # noqa: TRY004 (one ValueError for every malformed file)
            f"CityPersons annotation {path!r}: key 'objects' must be a list")
    labels, boxes, vis = [], [], []
    for j, obj in enumerate(doc["objects"]):
        where = f"CityPersons annotation {path!r}: objects[{j}]"
        if not isinstance(obj, dict):
            raise ValueError(f"{where} is a {type(obj).__name__}, not a JSON object")  # noqa: TRY004
        for key in ("label", "bbox", "bboxVis"):
            if key not in obj:
                raise ValueError(f"{where}: missing key {key!r}")
        if obj["label"] not in LABEL_IDS:
            raise ValueError(
                f"{where}: key 'label' {obj['label']!r} is not a CityPersons label "
                f"({', '.join(repr(k) for k in LABEL_IDS)})"
            )
        labels.append(LABEL_IDS[obj["label"]])
        boxes.append(_box(obj["bbox"], where, "bbox"))
        vis.append(_box(obj["bboxVis"], where, "bboxVis"))
    return {
        "height": size[0],
        "width": size[1],
        "labels": np.asarray(labels, np.int64),
        "bbox": np.asarray(boxes, np.float64).reshape(-1, 4),
        "bbox_visible": np.asarray(vis, np.float64).reshape(-1, 4),
    }


def _mat_text(value, where: str, key: str) -> str:
    """A MATLAB char array as loaded by scipy (nested 1-element arrays around a str)."""
    v = value
    while isinstance(v, np.ndarray) and v.size == 1:
        v = v.reshape(-1)[0]
    if isinstance(v, np.ndarray) and v.dtype.kind == "U":
        v = "".join(v.reshape(-1).tolist())
    if not isinstance(v, str) or not v:
        raise ValueError(f"{where}: field {key!r} is not a non-empty string")
    return str(v)


def read_mat_annotations(path: str, split: str) -> list[dict]:
    """Parses anno_<split>.mat into [{"city", "name", "labels", "bbox", "bbox_visible"}].

    Raises ValueError naming the file, the image index (1-based, as in MATLAB) and the field.
    """
    from scipy import io as sio

    key = MAT_KEYS[split]
    try:
        mat = sio.loadmat(path, mat_dtype=True)
    except (sio.matlab.MatReadError, ValueError, TypeError, OSError, IndexError, EOFError,
            NotImplementedError) as e:  # NotImplementedError: MATLAB v7.3 (HDF5) files
        raise ValueError(
            f"CityPersons annotation {path!r}: not a readable .mat file ({e})") from None
    if key not in mat:
        found = sorted(k for k in mat if not k.startswith("__"))
        raise ValueError(f"CityPersons annotation {path!r}: no variable {key!r} (found {found})")
    cells = np.asarray(mat[key]).reshape(-1)
    records = []
    for i, cell in enumerate(cells, start=1):
        where = f"CityPersons annotation {path!r}: {key}{{{i}}}"
        s = cell
        while isinstance(s, np.ndarray) and s.dtype.names is None and s.size == 1:
            s = s.reshape(-1)[0]  # cell wrapper
        if isinstance(s, np.ndarray) and s.dtype.names is not None and s.size == 1:
            s = s.reshape(-1)[0]
        if not isinstance(s, np.void) or s.dtype.names is None:
            raise ValueError(f"{where} is not a struct with fields cityname, im_name, bbs")
        for field in ("cityname", "im_name", "bbs"):
            if field not in s.dtype.names:
                raise ValueError(f"{where}: missing field {field!r}")
        city = _mat_text(s["cityname"], where, "cityname")
        name = _mat_text(s["im_name"], where, "im_name")
        bbs = np.asarray(s["bbs"])
        if bbs.dtype == object or bbs.dtype.kind not in "biuf":
            raise ValueError(f"{where}: field 'bbs' is not a numeric matrix")
        if bbs.size == 0:
            bbs = np.zeros((0, 10))
        if bbs.ndim != 2 or bbs.shape[1] != 10:
            raise ValueError(
                f"{where}: field 'bbs' has shape {bbs.shape}, expected [N, 10] rows [class_label, "
                "x1, y1, w, h, instance_id, x1_vis, y1_vis, w_vis, h_vis]"
            )
        bbs = bbs.astype(np.float64)
        if not np.all(np.isfinite(bbs)):
            raise ValueError(f"{where}: field 'bbs' has non-finite values")
        cls = bbs[:, 0]
        bad = ~np.isin(cls, np.arange(6))
        if bad.any():
            r = int(np.argmax(bad))
            raise ValueError(
                f"{where}: bbs row {r + 1}: class_label {cls[r]:g} is not one of 0..5")
        records.append({
            "city": city,
            "name": name,
            "labels": cls.astype(np.int64),
            "bbox": bbs[:, 1:5],
            "bbox_visible": bbs[:, 6:10],
        })
    return records


def find_mat_file(manual_dir: str, split: str) -> str:
    """The path of anno_<split>.mat (first of MAT_DIRS); ManualDirError naming the folders."""
    name = MAT_FILES[split]
    for rel in MAT_DIRS:
        path = os.path.normpath(os.path.join(manual_dir, rel, name))
        if os.path.isfile(path):
            return path
    searched = ", ".join(repr(os.path.normpath(os.path.join(manual_dir, d))) for d in MAT_DIRS)
    raise schema.ManualDirError(
        f"CityPersons {split} annotations: expected {name!r}, which is in none of the folders "
        f"searched ({searched}). {MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
    )


def check_manual_dir(manual_dir: str, annotation_format: str) -> None:
    """Raises `schema.ManualDirError` unless the manual dir has the folders / files of the config
    (cheap: no annotation is parsed)."""
    manual_dir = os.fspath(manual_dir)
    if not os.path.isdir(manual_dir):
        raise schema.ManualDirError(
            f"CityPersons manual dir {manual_dir!r} does not exist. "
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
        )
    for split in SPLITS:
        if annotation_format == "json":
            schema.require_file(
                os.path.join(manual_dir, JSON_DIR, split),
                f"CityPersons {split} annotation folder (folder searched: {manual_dir!r})",
                MANUAL_DOWNLOAD_INSTRUCTIONS)
        else:
            find_mat_file(manual_dir, split)
        schema.require_file(
            os.path.join(manual_dir, IMAGE_DIR, split),
            f"CityPersons {split} image folder (folder searched: {manual_dir!r})",
            MANUAL_DOWNLOAD_INSTRUCTIONS)


def _json_records(manual_dir: str, split: str) -> list[dict]:
    root = os.path.join(manual_dir, JSON_DIR, split)
    records = []
    for city in sorted(os.listdir(root)):
        folder = os.path.join(root, city)
        if not os.path.isdir(folder):
            continue
        for name in sorted(os.listdir(folder)):
            if not name.endswith(JSON_SUFFIX):
                continue
            path = os.path.join(folder, name)
            rec = read_json_annotation(path)
            rec["annotation"] = path
            rec["path"] = f"{IMAGE_DIR}/{split}/{city}/{name[: -len(JSON_SUFFIX)]}{IMAGE_SUFFIX}"
            records.append(rec)
    if not records:
        raise schema.ManualDirError(
            f"CityPersons {split} annotations: no '*{JSON_SUFFIX}' file in {root!r}/<city>/. "
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
        )
    return records


def _mat_records(manual_dir: str, split: str) -> list[dict]:
    path = find_mat_file(manual_dir, split)
    records = read_mat_annotations(path, split)
    seen = {}
    for i, rec in enumerate(records, start=1):
        rec["annotation"] = path
        rec["path"] = f"{IMAGE_DIR}/{split}/{rec['city']}/{rec['name']}"
        if rec["path"] in seen:
            raise ValueError(
                f"CityPersons annotation {path!r}: {MAT_KEYS[split]}{{{i}}} repeats image "
                f"{rec['name']!r} of entry {seen[rec['path']]}"
            )
        seen[rec["path"]] = i
    return records


def load_split_records(manual_dir: str, annotation_format: str) -> dict[str, list[dict]]:
    """Parses the annotations of both splits and checks every image exists.

    Returns {split: [{"path" (image, relative to the manual dir), "annotation", "labels",
    "bbox", "bbox_visible", ...}]}. Raises ManualDirError (missing file, naming it and the
    folder searched) or ValueError (malformed annotation) before any example is written.
    """
    check_manual_dir(manual_dir, annotation_format)
    out = {}
    for split in SPLITS:
        if annotation_format == "json":
            records = _json_records(manual_dir, split)
        else:
            records = _mat_records(manual_dir, split)
        missing = [r["path"] for r in records
                   if not os.path.isfile(os.path.join(manual_dir, r["path"]))]
        if missing:
            raise schema.ManualDirError(
                f"CityPersons {split} image {missing[0]!r} (and {len(missing) - 1} more of "
                f"{len(records)}) not found in the manual dir {manual_dir!r}. "
                f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}"
            )
        out[split] = records
    return out


def encode_jpeg(path: str, quality: int) -> tuple[bytes, int, int]:
    """(JPEG bytes, height, width) of the image file at `path`, converted to RGB."""
    from PIL import Image

    with Image.open(path) as im:
        rgb = im.convert("RGB")
        buf = io.BytesIO()
        rgb.save(buf, format="JPEG", quality=quality)
        return buf.getvalue(), rgb.height, rgb.width


def example(manual_dir: str, record: dict, image_id: int, jpeg_quality: int = 95) -> dict:
    """The feature dict of one annotated image."""
    image, height, width = encode_jpeg(os.path.join(manual_dir, record["path"]), jpeg_quality)
    if "height" in record and (record["height"], record["width"]) != (height, width):
        raise ValueError(
            f"CityPersons annotation {record['annotation']!r}: imgHeight x imgWidth "
            f"{record['height']} x {record['width']} differs from the image {record['path']!r} "
            f"({height} x {width})"
        )
    labels = record["labels"]
    return {
        "image": image,
        "image/id": image_id,
        "image/filename": record["path"],
        "image/original_size": np.array([height, width], np.int64),
        "objects": schema.objects_from_xywh(
            record["bbox"], labels, labels != schema.PEDESTRIAN, image_id, height, width,
            visible_boxes=record["bbox_visible"]),
    }


@dataclasses.dataclass(eq=False)
class CityPersonsConfig(tfds.core.BuilderConfig):
    """Which annotation files are read.

    Attributes:
      annotation_format: 'json' (gtBboxCityPersons, Cityscapes' release) or 'mat'
        (anno_train.mat / anno_val.mat, the original CityPersons release).
      jpeg_quality: quality of the re-encoded JPEG images.
    """

    annotation_format: str = "json"
    jpeg_quality: int = 95


class Builder(tfds.core.GeneratorBasedBuilder):
    """CityPersons full/visible boxes; pedestrians positive, every other class ignored."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {  # noqa: RUF012 (TFDS reads these class attributes)
        "1.0.0": "Initial release: train/val from gtBboxCityPersons JSON or anno_*.mat.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS
    BUILDER_CONFIGS = [  # noqa: RUF012
        CityPersonsConfig(
            name="json", annotation_format="json",
            description="Annotations from gtBboxCityPersons/*.json (Cityscapes download)."),
        CityPersonsConfig(
            name="mat", annotation_format="mat",
            description="Annotations from anno_train.mat / anno_val.mat (original release)."),
    ]
    DEFAULT_CONFIG_NAME = "json"

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=schema.features(),
            supervised_keys=None,
            homepage="https://github.com/cvgroup-njust/CityPersons",
        )

    def _split_generators(self, dl_manager):
        try:
            manual_dir = os.fspath(dl_manager.manual_dir)
        except AssertionError as e:  # TFDS asserts the folder exists
            raise schema.ManualDirError(str(e)) from None
        records = load_split_records(manual_dir, self.builder_config.annotation_format)
        first = {"train": 1, "val": 1 + len(records["train"])}
        return {split: self._generate_examples(manual_dir, records[split], first[split])
                for split in SPLITS}

    def _generate_examples(self, manual_dir: str, records: list, first_image_id: int):
        quality = self.builder_config.jpeg_quality
        for i, record in enumerate(records):
            yield record["path"], example(manual_dir, record, first_image_id + i, quality)
