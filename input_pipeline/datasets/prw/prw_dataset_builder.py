"""TFDS builder `prw`: PRW, Person Re-identification in the Wild (Zheng et al.), manual download.

Source files (PRW-v16.04.20), read from the manual dir with `scipy.io.loadmat` defaults, as the
SeqNet / COAT / NAE loaders read them:
  frames/c1s1_000151.jpg ...      the 11,816 video frames (cameras c1-c6, 1920x1080 / 720x576)
  annotations/<frame>.jpg.mat     one per frame: an M x 5 double matrix [pid, x, y, w, h], under
                                  the variable `box_new`, or else `anno_file`, or else
                                  `anno_previous` (the file names the variable; that is the
                                  order looked in). pid is 1 .. 932, or -2 for a person whose
                                  identity is unknown. Boxes may start at negative coordinates.
  frame_train.mat `img_index_train`, frame_test.mat `img_index_test`: cell columns of the frame
                                  names without extension (5,704 train / 6,112 test frames)
  query_info.txt                  one query per line, 'pid x y w h frame' with the frame name
                                  without extension, space separated, CRLF line ends (2,057)
  ID_train.mat / ID_test.mat      the train / test identities (not needed here: pids are used
                                  as they are; `read_ids` reads them)

Splits: `train` = frame_train.mat's frames, `test` = frame_test.mat's (the search gallery), each
in file order.

Mapping to the shared schema (`input_pipeline/datasets/schema.py`):
  - objects = every annotation row, label 1 pedestrian (all PRW boxes are pedestrians), ignore
    False, bbox_visible = bbox, vis_ratio 1; person_id = pid, with -2 -> -1 (unknown).
  - Stored boxes are the raw [x, y, w, h] rows, clipped to the image by the schema (a box from
    x = -5 with w = 40 covers 0 .. 35), height = the raw h.
    The search evaluation uses other boxes, the reference's: `load_prw_gallery` converts with
    `person_search.prw_gallery_boxes`, which clips x, y, w, h at 0 BEFORE the conversion (the same
    box becomes 0 .. 40, i.e. shifted, not cut) and truncates to integers, and labels unknown
    people `person_search.UNLABELED_PID` (5555), as SeqNet / COAT do. Train on the dataset;
    evaluate with `load_prw_gallery` / `load_prw_queries`.
  - image/id: 1-based, train frames then test frames in file order; image/filename =
    'frames/<name>.jpg'.
"""

from __future__ import annotations

import dataclasses
import os
import typing

import numpy as np
import tensorflow_datasets as tfds

from evaluation import person_search
from input_pipeline.datasets import schema

FRAME_DIR = "frames"
ANNOTATION_DIR = "annotations"
SPLIT_FILES = {"train": ("frame_train.mat", "img_index_train"),
               "test": ("frame_test.mat", "img_index_test")}
QUERY_FILE = "query_info.txt"
ID_FILES = {"train": ("ID_train.mat", ("ID_train",)), "test": ("ID_test.mat", ("ID_test2",
                                                                                 "ID_test"))}
BOX_KEYS = ("box_new", "anno_file", "anno_previous")  # annotation variable, in lookup order
UNKNOWN_PID = -2  # PRW's code for a person whose identity is unknown
ROOT_MARKER = "frame_test.mat"

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Download PRW-v16.04.20 (http://zheng-lab.cecs.anu.edu.au/Project/project_prw.html, or the
mirrors linked from the SeqNet / COAT READMEs) and extract it into the manual dir, so that it holds
`frames/c1s1_000151.jpg ...`, `annotations/c1s1_000151.jpg.mat ...`, `frame_train.mat`,
`frame_test.mat` and `query_info.txt` (one extra top-level folder, as the archive's
`PRW-v16.04.20/`, is also accepted).
"""


class PrwQueryRecord(typing.NamedTuple):
    """One line of query_info.txt, in the form `person_search.PrwQuery` takes (minus the feature).

    pid: the query's identity; image: its frame's file name ('c1s3_016471.jpg'); box: [4] int32
    x1, y1, x2, y2 (`person_search.prw_query_box`); cam_id: the camera (1 .. 6).
    """

    pid: int
    image: str
    box: np.ndarray
    cam_id: int


def _malformed(path: str, key: str, detail: str) -> ValueError:
    return ValueError(f"PRW annotation {path!r}, {key}: {detail}")


def _loadmat(path: str) -> dict:
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        return loadmat(path)
    except (MatReadError, ValueError, TypeError, EOFError, OSError, NotImplementedError) as e:
        raise _malformed(path, "file", f"not a readable MATLAB file ({type(e).__name__}: {e})"
                         ) from None


def _variables(content: dict) -> list[str]:
    return sorted(k for k in content if not k.startswith("__"))


def find_root(manual_dir: str) -> str:
    """The dataset root: the manual dir itself or one folder in it holding frame_test.mat.

    Raises ManualDirError naming the expected file and the folder searched.
    """
    manual_dir = os.fspath(manual_dir)
    if not os.path.isdir(manual_dir):
        raise schema.ManualDirError(
            f"PRW manual dir {manual_dir!r} does not exist. {MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
    candidates = [manual_dir] + [os.path.join(manual_dir, d) for d in sorted(os.listdir(manual_dir))
                                 if os.path.isdir(os.path.join(manual_dir, d))]
    for root in candidates:
        if os.path.exists(os.path.join(root, ROOT_MARKER)):
            return root
    raise schema.ManualDirError(
        f"PRW: expected {ROOT_MARKER!r} in the manual dir {manual_dir!r} or one of its "
        f"sub-folders; not found. {MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")


def _require(root: str, rel: str) -> str:
    path = os.path.join(root, rel)
    schema.require_file(path, f"PRW file {rel!r} (folder searched: {root!r})",
                        MANUAL_DOWNLOAD_INSTRUCTIONS)
    return path


def read_frame_names(root: str, split: str) -> list[str]:
    """frame_train.mat / frame_test.mat -> frame file names ('c1s1_000151.jpg'), file order."""
    filename, key = SPLIT_FILES[split]
    path = _require(root, filename)
    content = _loadmat(path)
    if key not in content:
        raise _malformed(path, repr(key), f"variable not found (variables: "
                         f"{_variables(content)})")
    names = []
    for k, item in enumerate(np.asarray(content[key]).ravel(order="F")):
        v = item
        while isinstance(v, np.ndarray) and v.size == 1:
            v = v.ravel()[0]
        if not isinstance(v, str) or not v:
            raise _malformed(path, f"{key}{{{k + 1}}}", f"expected a frame name, got {item!r}")
        names.append(v + ".jpg")
    if len(set(names)) != len(names):
        raise _malformed(path, key, "some frame is listed twice")
    return names


def read_ids(manual_dir: str, split: str) -> np.ndarray:
    """ID_train.mat / ID_test.mat -> the split's identities, int64 (variable ID_train, or
    ID_test2 / ID_test)."""
    filename, keys = ID_FILES[split]
    path = _require(find_root(manual_dir), filename)
    content = _loadmat(path)
    for key in keys:
        if key in content:
            return np.asarray(content[key]).astype(np.int64).ravel()
    raise _malformed(path, repr(keys[0]), f"variable not found (variables: {_variables(content)})")


def read_annotation(path: str) -> np.ndarray:
    """One annotations/<frame>.jpg.mat -> [M, 5] float64 rows [pid, x, y, w, h]."""
    content = _loadmat(path)
    key = next((k for k in BOX_KEYS if k in content), None)
    if key is None:
        raise _malformed(path, " / ".join(BOX_KEYS),
                         f"none of these variables found (variables: {_variables(content)})")
    arr = np.asarray(content[key])
    if arr.size == 0:
        return np.zeros((0, 5))
    if arr.ndim != 2 or arr.shape[1] != 5 or arr.dtype.kind not in "biuf":
        raise _malformed(path, repr(key), f"expected an M x 5 numeric matrix [pid, x, y, w, h], "
                         f"got {arr.dtype} {arr.shape}")
    rows = arr.astype(np.float64)
    if not np.all(np.isfinite(rows)) or np.any(rows[:, 0] != np.round(rows[:, 0])):
        raise _malformed(path, repr(key), "pids must be integers and all values finite")
    return rows


def read_queries(root: str) -> list[PrwQueryRecord]:
    path = _require(root, QUERY_FILE)
    out = []
    with open(path, "rb") as f:
        for line_no, raw in enumerate(f, start=1):
            line = raw.decode("utf-8").strip()
            if not line:
                continue
            fields = line.split()
            try:
                if len(fields) != 6:
                    raise ValueError
                pid = int(fields[0])
                x, y, w, h = (float(v) for v in fields[1:5])
                cam = person_search.cam_id_from_prw_name(fields[5])
            except ValueError:
                raise ValueError(
                    f"PRW query file {path!r}, line {line_no}: expected 'pid x y w h frame' "
                    f"(frame without extension), got {line!r}") from None
            out.append(PrwQueryRecord(pid, fields[5] + ".jpg",
                                      person_search.prw_query_box(x, y, w, h), cam))
    return out


def load_prw_queries(manual_dir: str) -> list[PrwQueryRecord]:
    """query_info.txt -> the queries in file order (box: `person_search.prw_query_box`).

    Each becomes `person_search.PrwQuery(q.image, q.pid, feature, q.cam_id)`.
    """
    return read_queries(find_root(manual_dir))


def load_prw_gallery(manual_dir: str) -> list[person_search.GroundTruthImage]:
    """The test frames (frame_test.mat order) as the search evaluation's ground truth: boxes
    by `person_search.prw_gallery_boxes`, pid -2 -> `person_search.UNLABELED_PID`."""
    root = find_root(manual_dir)
    frames = []
    for name in read_frame_names(root, "test"):
        path = _require(root, os.path.join(ANNOTATION_DIR, name + ".mat"))
        rows = read_annotation(path)
        pids = rows[:, 0].astype(np.int64)
        pids[pids == UNKNOWN_PID] = person_search.UNLABELED_PID
        frames.append(person_search.GroundTruthImage(
            name, person_search.prw_gallery_boxes(rows[:, 1:]), pids,
            person_search.cam_id_from_prw_name(name)))
    return frames


@dataclasses.dataclass(frozen=True)
class Annotations:
    """Everything the builder writes, before any image is read."""

    root: str
    splits: dict  # split -> [(frame name, [M, 5] rows)]


def check_manual_dir(manual_dir: str) -> tuple[str, dict]:
    """The dataset root and the frame names per split, after checking that every file the
    builder reads is there (no annotation is parsed); ManualDirError names the first missing one.
    """
    root = find_root(manual_dir)
    for filename, _ in SPLIT_FILES.values():
        _require(root, filename)
    _require(root, QUERY_FILE)
    names = {split: read_frame_names(root, split) for split in SPLIT_FILES}
    for folder, suffix in ((FRAME_DIR, ""), (ANNOTATION_DIR, ".mat")):
        directory = os.path.join(root, folder)
        present = set(os.listdir(directory)) if os.path.isdir(directory) else set()
        for split, frames in names.items():
            absent = [n + suffix for n in frames if n + suffix not in present]
            if absent:
                raise schema.ManualDirError(
                    f"PRW: {len(absent)} file(s) of the {split} frames missing from "
                    f"{directory!r}, e.g. {absent[0]!r}. {MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
    return root, names


def read_annotations(manual_dir: str) -> Annotations:
    """Checks the manual dir (`check_manual_dir`) and reads every annotation.

    Raises ValueError naming the file and variable (or line) of a malformed .mat / query file.
    """
    root, names = check_manual_dir(manual_dir)
    read_queries(root)  # a malformed query file fails here, before anything is written
    splits = {split: [(n, read_annotation(os.path.join(root, ANNOTATION_DIR, n + ".mat")))
                      for n in frames] for split, frames in names.items()}
    return Annotations(root, splits)


def image_size(path: str) -> tuple[int, int]:
    """(height, width) from the image header."""
    from PIL import Image

    with Image.open(path) as im:
        return int(im.height), int(im.width)


class Builder(tfds.core.GeneratorBasedBuilder):
    """PRW frames: every annotated pedestrian with its identity (-1 where unknown)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {  # noqa: RUF012 (TFDS reads these class attributes)
        "1.0.0": "Initial release: frame_train / frame_test splits, raw annotation boxes, "
        "pid -2 -> -1.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=schema.features(),
            supervised_keys=None,
            homepage="http://zheng-lab.cecs.anu.edu.au/Project/project_prw.html",
        )

    def _split_generators(self, dl_manager):
        try:
            manual_dir = os.fspath(dl_manager.manual_dir)
        except AssertionError as e:  # TFDS asserts the folder exists
            raise schema.ManualDirError(str(e)) from None
        ann = read_annotations(manual_dir)
        first_id = {"train": 1, "test": 1 + len(ann.splits["train"])}
        return {split: self._generate_examples(ann.root, frames, first_id[split])
                for split, frames in ann.splits.items()}

    def _generate_examples(self, root: str, frames: list, first_id: int):
        for k, (name, rows) in enumerate(frames):
            image_id = first_id + k
            path = os.path.join(root, FRAME_DIR, name)
            height, width = image_size(path)
            pids = rows[:, 0].astype(np.int64)
            pids[pids == UNKNOWN_PID] = -1
            n = rows.shape[0]
            yield name, {
                "image": path,
                "image/id": image_id,
                "image/filename": f"{FRAME_DIR}/{name}",
                "image/original_size": np.array([height, width], np.int64),
                "objects": schema.objects_from_xywh(
                    rows[:, 1:], [schema.PEDESTRIAN] * n, [False] * n, image_id, height, width,
                    person_ids=pids),
            }
