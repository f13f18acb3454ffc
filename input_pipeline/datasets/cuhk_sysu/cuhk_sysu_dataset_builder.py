"""TFDS builder `cuhk_sysu`: the CUHK-SYSU person-search dataset (Xiao et al.), manual download.

Source files, read from the manual dir (MATLAB v5 .mat files, read with `scipy.io.loadmat` and
its defaults, as the SeqNet / COAT / NAE loaders read them):
  Image/SSM/s1.jpg ...                  the 18,184 scene images (varying sizes)
  annotation/Images.mat   `Img`         1 x N struct array, one per image, fields
                                        imname (char), nAppear (double), box: 1 x K struct
                                        array with fields idlocate (1 x 4 double x, y, w, h)
                                        and ishard. Every annotated person of the image.
  annotation/pool.mat     `pool`        cell column of the 6,978 test image names
  annotation/test/train_test/Train.mat  `Train`: cell column, one 1 x 1 struct per training
                                        identity (5,532), fields idname ('p1234'), nAppear,
                                        scene: 1 x K struct array (imname, idlocate, ishard)
  annotation/test/train_test/TestG{50,100,500,1000,2000,4000}.mat  `TestG50` ...: 1 x Q
                                        struct array (2,900 queries), fields Query: 1 x 1 struct
                                        (imname, idlocate, ishard, idname) and Gallery: 1 x G
                                        struct array (imname, idlocate, ishard); idlocate is an
                                        empty 0 x 0 matrix where the image lacks the person.
  annotation/Person.mat is not read (none of the reference loaders reads it either).
  The names are read by field name; `Img`'s box field is also accepted under the name
  `idlocate`, and plain 1 x 4 matrices instead of {idlocate, ishard} structs.

Splits (as in SeqNet / COAT / NAE): `test` = the pool images, in pool.mat order; `train` =
every other image of Images.mat, in Images.mat order.

Mapping to the shared schema (`input_pipeline/datasets/schema.py`):
  - objects = every box of the image in Images.mat with w > 0 and h > 0 (the reference loaders
    drop the few degenerate boxes the same way), all label 1 pedestrian, ignore False,
    bbox_visible = bbox, vis_ratio 1; boxes are clipped to the image by the schema.
  - person_id, following the reference loaders (a box gets an identity when a Train.mat /
    TestG50.mat box of that image equals it exactly, in integer pixels):
      train split: the 0-based row of the identity in Train.mat (0 .. 5531);
      test split:  len(Train.mat) + the 0-based row of the query in TestG50.mat (5532 ..
                   8431), from the query box and the non-empty gallery boxes of that row (all
                   TestG*.mat files share the queries; the reference loaders stop at the first
                   empty gallery box, we skip empties: the same on lists whose positives come
                   first);
      -1 for every other person (unlabeled, or an identity of the other split).
    So ids are unique over the builder and never shared between the splits. An identity box
    that equals no box of its image is skipped with a logged warning (NAE warns, SeqNet / COAT
    skip silently); the count is `Annotations.unmatched`.
  - image/id = 1 + the image's row in Images.mat (unique over both splits);
    image/filename = 'Image/SSM/<imname>'.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import typing

import numpy as np
import tensorflow_datasets as tfds

from evaluation import person_search
from input_pipeline.datasets import schema

_LOG = logging.getLogger(__name__)
IMAGE_DIR = os.path.join("Image", "SSM")
IMAGES_MAT = os.path.join("annotation", "Images.mat")
POOL_MAT = os.path.join("annotation", "pool.mat")
PROTOCOL_DIR = os.path.join("annotation", "test", "train_test")
TRAIN_MAT = os.path.join(PROTOCOL_DIR, "Train.mat")
LABEL_PROTOCOL = "TestG50"  # the protocol file whose queries label the test split
REQUIRED_FILES = (IMAGES_MAT, POOL_MAT, TRAIN_MAT, os.path.join(PROTOCOL_DIR, "TestG50.mat"))

MANUAL_DOWNLOAD_INSTRUCTIONS = """
Request CUHK-SYSU from its authors (http://www.ee.cuhk.edu.hk/~xgwang/PS/dataset.html; mirrors
are linked from the SeqNet / COAT READMEs) and extract it into the manual dir, so that it holds
`Image/SSM/s1.jpg ...`, `annotation/Images.mat`, `annotation/pool.mat` and
`annotation/test/train_test/{Train,TestG50,TestG100,...}.mat` (one extra top-level folder, as
the archive's `cuhk_sysu/`, is also accepted).
"""


class CuhkProtocolQuery(typing.NamedTuple):
    """One query of a TestG{N}.mat file: `evaluation.person_search.CuhkQuery` minus the feature.

    image: the query image's name; box: the query person's (x, y, w, h) there in integer
    pixels; gallery: ((name, (x, y, w, h) or None), ...) in file order.
    """

    image: str
    box: tuple
    gallery: tuple


# ----------------------------------------------------------------------------------------------
# .mat reading.


def _malformed(path: str, key: str, detail: str) -> ValueError:
    return ValueError(f"CUHK-SYSU annotation {path!r}, {key}: {detail}")


def _loadmat(path: str, key: str):
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        content = loadmat(path)
    except (MatReadError, ValueError, TypeError, EOFError, OSError, NotImplementedError) as e:
        raise _malformed(path, "file", f"not a readable MATLAB file ({type(e).__name__}: {e})"
                         ) from None
    if key not in content:
        found = sorted(k for k in content if not k.startswith("__"))
        raise _malformed(path, repr(key), f"variable not found (variables: {found})")
    return content[key]


def _records(value, path: str, key: str) -> list:
    """The struct elements (np.void) of a struct array, or of a cell array of structs."""
    arr = np.asarray(value)
    if arr.dtype.names:
        return list(arr.ravel(order="F"))
    if arr.dtype == object:
        out = []
        for item in arr.ravel(order="F"):
            out.extend(_records(item, path, key))
        return out
    raise _malformed(path, key, f"expected a struct array, got {arr.dtype} {arr.shape}")


def _field(record, name: str, path: str, key: str, alternatives: tuple = ()):
    names = record.dtype.names or ()
    for n in (name, *alternatives):
        if n in names:
            return record[n]
    raise _malformed(path, key, f"struct has no field {name!r} (fields: {list(names)})")


def _string(value, path: str, key: str) -> str:
    """A MATLAB char array (possibly wrapped in 1 x 1 cells) as str."""
    v = value
    while isinstance(v, np.ndarray):
        if v.size != 1:
            raise _malformed(path, key, f"expected one string, got an array of shape {v.shape}")
        v = v.ravel()[0]
    if not isinstance(v, str) or not v:
        raise _malformed(path, key, f"expected a non-empty string, got {v!r}")
    return v


def _box(value, path: str, key: str) -> tuple | None:
    """A 1 x 4 x, y, w, h matrix (or a {idlocate, ishard} struct) -> int tuple; empty -> None."""
    arr = np.asarray(value)
    if arr.dtype.names:
        if arr.size != 1:
            raise _malformed(path, key, f"expected one box struct, got shape {arr.shape}")
        return _box(_field(arr.ravel()[0], "idlocate", path, key), path, key)
    if arr.dtype == object:
        if arr.size == 0:
            return None
        if arr.size != 1:
            raise _malformed(path, key, f"expected one box, got a cell of shape {arr.shape}")
        return _box(arr.ravel()[0], path, key)
    if arr.size == 0:
        return None
    if arr.size != 4 or arr.dtype.kind not in "biuf" or not np.all(np.isfinite(arr)):
        raise _malformed(path, key, f"expected a 1 x 4 numeric box x, y, w, h, got {arr!r}")
    # Integer pixels, truncated as the reference's astype(np.int32).
    return tuple(int(v) for v in np.trunc(arr.astype(np.float64).ravel()))


def find_root(manual_dir: str) -> str:
    """The dataset root: the manual dir itself or one folder in it holding annotation/Images.mat.

    Raises ManualDirError naming the expected file and the folders searched.
    """
    manual_dir = os.fspath(manual_dir)
    if not os.path.isdir(manual_dir):
        raise schema.ManualDirError(
            f"CUHK-SYSU manual dir {manual_dir!r} does not exist. "
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
    candidates = [manual_dir] + [os.path.join(manual_dir, d) for d in sorted(os.listdir(manual_dir))
                                 if os.path.isdir(os.path.join(manual_dir, d))]
    for root in candidates:
        if os.path.exists(os.path.join(root, IMAGES_MAT)):
            return root
    raise schema.ManualDirError(
        f"CUHK-SYSU: expected {IMAGES_MAT!r} in the manual dir {manual_dir!r} or one of its "
        f"sub-folders; not found. {MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")


def _require(root: str, rel: str) -> str:
    path = os.path.join(root, rel)
    schema.require_file(path, f"CUHK-SYSU file {rel!r} (folder searched: {root!r})",
                        MANUAL_DOWNLOAD_INSTRUCTIONS)
    return path


def read_images(root: str) -> list[tuple[str, np.ndarray]]:
    """Images.mat -> [(imname, [K, 4] int64 x, y, w, h of all annotated boxes)], file order."""
    path = os.path.join(root, IMAGES_MAT)
    out, seen = [], set()
    for i, rec in enumerate(_records(_loadmat(path, "Img"), path, "Img")):
        where = f"Img({i + 1})"
        name = _string(_field(rec, "imname", path, where), path, f"{where}.imname")
        if name in seen:
            raise _malformed(path, f"{where}.imname", f"image {name!r} is listed twice")
        seen.add(name)
        raw = np.asarray(_field(rec, "box", path, where, ("idlocate",)))
        items = (_records(raw, path, f"{where}.box") if raw.dtype.names or raw.dtype == object
                 else list(raw.reshape(-1, 4)) if raw.size else [])
        boxes = [_box(b, path, f"{where}.box({k + 1})") for k, b in enumerate(items)]
        if any(b is None for b in boxes):
            raise _malformed(path, f"{where}.box", "an empty idlocate")
        out.append((name, np.array(boxes, np.int64).reshape(-1, 4)))
    return out


def pool_names(manual_dir: str) -> list[str]:
    """The test images (annotation/pool.mat), in file order."""
    root = find_root(manual_dir)
    return _read_pool(root)


def _read_pool(root: str) -> list[str]:
    path = _require(root, POOL_MAT)
    pool = np.asarray(_loadmat(path, "pool"))
    items = pool.ravel(order="F") if pool.dtype == object else [pool]
    names = [_string(v, path, f"pool({k + 1})") for k, v in enumerate(items)]
    if len(set(names)) != len(names):
        raise _malformed(path, "pool", "some image name is listed twice")
    return names


def read_train_identities(root: str) -> list[list[tuple[str, tuple]]]:
    """Train.mat -> per identity (row order), its (imname, box) scenes."""
    path = _require(root, TRAIN_MAT)
    ids = []
    for i, rec in enumerate(_records(_loadmat(path, "Train"), path, "Train")):
        where = f"Train{{{i + 1}}}"
        scenes = _records(_field(rec, "scene", path, where), path, f"{where}.scene")
        ids.append([(_string(_field(s, "imname", path, f"{where}.scene"), path,
                             f"{where}.scene({k + 1}).imname"),
                     _box(_field(s, "idlocate", path, f"{where}.scene"), path,
                          f"{where}.scene({k + 1}).idlocate"))
                    for k, s in enumerate(scenes)])
    return ids


def read_protocol(root: str, stem: str) -> list[CuhkProtocolQuery]:
    """annotation/test/train_test/<stem>.mat (variable <stem>) -> the queries, file order."""
    path = _require(root, os.path.join(PROTOCOL_DIR, stem + ".mat"))
    queries = []
    for i, rec in enumerate(_records(_loadmat(path, stem), path, stem)):
        where = f"{stem}({i + 1})"
        q = _records(_field(rec, "Query", path, where), path, f"{where}.Query")
        if len(q) != 1:
            raise _malformed(path, f"{where}.Query", f"expected one query struct, got {len(q)}")
        image = _string(_field(q[0], "imname", path, f"{where}.Query"), path,
                        f"{where}.Query.imname")
        box = _box(_field(q[0], "idlocate", path, f"{where}.Query"), path,
                   f"{where}.Query.idlocate")
        if box is None:
            raise _malformed(path, f"{where}.Query.idlocate", "the query box is empty")
        gallery = []
        for k, g in enumerate(_records(_field(rec, "Gallery", path, where), path,
                                       f"{where}.Gallery")):
            gw = f"{where}.Gallery({k + 1})"
            gallery.append((_string(_field(g, "imname", path, gw), path, f"{gw}.imname"),
                            _box(_field(g, "idlocate", path, gw), path, f"{gw}.idlocate")))
        queries.append(CuhkProtocolQuery(image, box, tuple(gallery)))
    return queries


def load_cuhk_protocol(manual_dir: str, gallery_size: int) -> list[CuhkProtocolQuery]:
    """The queries of the protocol for `gallery_size` (50 ... 4000, or -1 = TestG50's lists for
    the full-gallery setting; see `person_search.cuhk_protocol_name`), in file order.

    Each becomes `person_search.CuhkQuery(q.image, feature, q.gallery)`.
    """
    stem, _ = person_search.cuhk_protocol_name(gallery_size)
    return read_protocol(find_root(manual_dir), stem)


# ----------------------------------------------------------------------------------------------
# Annotations of the splits.


@dataclasses.dataclass(frozen=True)
class Annotations:
    """Everything the builder writes, before any image is read."""

    root: str
    images: list  # [(name, [K, 4] int64 xywh boxes with w, h > 0, [K] int64 person ids)]
    splits: dict  # split -> [row indices into `images`]
    num_train_ids: int
    unmatched: int = 0  # identity boxes that equal no box of their image (left unlabeled)


def _assign(boxes: np.ndarray, pids: np.ndarray, box: tuple, pid: int) -> bool:
    """Gives `pid` to the first box equal to `box` (the reference's exact-match rule)."""
    hit = np.flatnonzero(np.all(boxes == np.asarray(box, np.int64), axis=1))
    if hit.size:
        pids[hit[0]] = pid
        return True
    return False


def check_manual_dir(manual_dir: str) -> str:
    """The dataset root, after checking that the annotation files the builder reads and the
    image folder are there (nothing is parsed); ManualDirError names the first missing one."""
    root = find_root(manual_dir)
    for rel in REQUIRED_FILES:
        _require(root, rel)
    image_dir = os.path.join(root, IMAGE_DIR)
    if not os.path.isdir(image_dir):
        raise schema.ManualDirError(
            f"CUHK-SYSU: image folder {image_dir!r} does not exist. "
            f"{MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
    return root


def read_annotations(manual_dir: str) -> Annotations:
    """Checks the manual dir (`check_manual_dir`, then every image of Images.mat; ManualDirError
    naming a missing file) and reads every annotation.

    Raises ValueError naming the file and key for a malformed .mat file, or an image named by
    pool / Train / TestG50 that Images.mat lacks.
    """
    root = check_manual_dir(manual_dir)
    image_dir = os.path.join(root, IMAGE_DIR)
    raw = read_images(root)
    pool = _read_pool(root)
    index = {name: i for i, (name, _) in enumerate(raw)}
    missing = [n for n in pool if n not in index]
    if missing:
        raise _malformed(os.path.join(root, POOL_MAT), "pool",
                         f"{len(missing)} test images are not in Images.mat, e.g. {missing[0]!r}")
    present = set(os.listdir(image_dir))
    absent = [name for name, _ in raw if name not in present]
    if absent:
        raise schema.ManualDirError(
            f"CUHK-SYSU: {len(absent)} image(s) of Images.mat missing from {image_dir!r}, "
            f"e.g. {absent[0]!r}. {MANUAL_DOWNLOAD_INSTRUCTIONS.strip()}")
    images = []
    for name, boxes in raw:
        keep = (boxes[:, 2] > 0) & (boxes[:, 3] > 0)
        images.append((name, boxes[keep], np.full(int(keep.sum()), -1, np.int64)))
    in_pool = set(pool)
    unmatched = []

    def label(path: str, key: str, name: str, box: tuple, pid: int, test: bool) -> None:
        i = index.get(name)
        if i is None:
            raise _malformed(path, key, f"image {name!r} is not in Images.mat")
        if (name in in_pool) != test:
            return  # an identity's appearance in the other split stays unlabeled there
        _, boxes, pids = images[i]
        if not _assign(boxes, pids, box, pid):
            unmatched.append(f"{os.path.basename(path)} {key}: box {list(box)} on {name!r}")

    train_path = os.path.join(root, TRAIN_MAT)
    train_ids = read_train_identities(root)
    for pid, scenes in enumerate(train_ids):
        for k, (name, box) in enumerate(scenes):
            if box is not None:
                label(train_path, f"Train{{{pid + 1}}}.scene({k + 1})", name, box, pid, False)
    test_path = os.path.join(root, PROTOCOL_DIR, LABEL_PROTOCOL + ".mat")
    for q, query in enumerate(read_protocol(root, LABEL_PROTOCOL)):
        pid = len(train_ids) + q
        label(test_path, f"{LABEL_PROTOCOL}({q + 1}).Query", query.image, query.box, pid, True)
        for k, (name, box) in enumerate(query.gallery):
            if box is not None:  # empty = the person is not in that image
                label(test_path, f"{LABEL_PROTOCOL}({q + 1}).Gallery({k + 1})", name, box, pid,
                      True)
    if unmatched:
        _LOG.warning("CUHK-SYSU: %d identity boxes equal no box of their image in Images.mat "
                        "and stay unlabeled, e.g. %s", len(unmatched), unmatched[0])
    splits = {"train": [i for i, (n, _, _) in enumerate(images) if n not in in_pool],
              "test": [index[n] for n in pool]}
    return Annotations(root, images, splits, len(train_ids), len(unmatched))


def image_size(path: str) -> tuple[int, int]:
    """(height, width) from the image header."""
    from PIL import Image

    with Image.open(path) as im:
        return int(im.height), int(im.width)


class Builder(tfds.core.GeneratorBasedBuilder):
    """CUHK-SYSU scenes: every annotated pedestrian, identities of the train / test protocol."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {  # noqa: RUF012 (TFDS reads these class attributes)
        "1.0.0": "Initial release: Images.mat boxes, Train.mat / TestG50.mat identities, "
        "pool.mat test split.",
    }
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL_DOWNLOAD_INSTRUCTIONS

    def _info(self) -> tfds.core.DatasetInfo:
        return self.dataset_info_from_configs(
            description=__doc__,
            features=schema.features(),
            supervised_keys=None,
            homepage="http://www.ee.cuhk.edu.hk/~xgwang/PS/dataset.html",
        )

    def _split_generators(self, dl_manager):
        try:
            manual_dir = os.fspath(dl_manager.manual_dir)
        except AssertionError as e:  # TFDS asserts the folder exists
            raise schema.ManualDirError(str(e)) from None
        ann = read_annotations(manual_dir)
        return {split: self._generate_examples(ann, rows) for split, rows in ann.splits.items()}

    def _generate_examples(self, ann: Annotations, rows: list):
        for i in rows:
            name, boxes, pids = ann.images[i]
            image_id = i + 1
            path = os.path.join(ann.root, IMAGE_DIR, name)
            height, width = image_size(path)
            n = boxes.shape[0]
            yield name, {
                "image": path,
                "image/id": image_id,
                "image/filename": f"Image/SSM/{name}",
                "image/original_size": np.array([height, width], np.int64),
                "objects": schema.objects_from_xywh(
                    boxes, [schema.PEDESTRIAN] * n, [False] * n, image_id, height, width,
                    person_ids=pids),
            }
