"""JSON and file I/O shared by the evaluators: loading, validation with clear errors, atomic writing.

Validation covers the two formats every evaluator reads (boxes are the dataset's `[x, y, w, h]`
pixels):
  ground truth  {"images": [{"id"}], "categories": [{"id"}], "annotations": [{"id", "image_id",
                "category_id", "bbox", "height", "vis_ratio", "ignore" (optional)}]}; `bbox`,
                `height` and `vis_ratio` are required (finite) for person (category 1) annotations;
  detections    [{"image_id", "category_id", "bbox", "score"}] with finite numbers.
Each failure is one ValueError naming the source (file), the record index and the fix.

Everything an evaluator writes (results JSON, plots, PNG grids) goes through `atomic_write_bytes`:
the bytes land in a temporary file in the destination directory, are flushed and fsynced, and only
then `os.replace`d onto the final name, so a crash or a full disk never leaves a half-written
result behind and never destroys the previous version of the file.
"""

from __future__ import annotations

import json
import math
import numbers
import os
import tempfile
from typing import Any

__all__ = [
    "atomic_write_bytes",
    "atomic_write_json",
    "check_detection_images",
    "check_detections",
    "check_ground_truth",
    "is_finite_number",
    "is_id",
    "load_detections",
    "load_ground_truth",
    "load_json",
]

PERSON_CATEGORY_ID = 1


def atomic_write_bytes(data: bytes, path: str | os.PathLike) -> None:
    """Writes `data` to `path` atomically (temporary file in the same directory + os.replace).

    Raises:
      ValueError: the destination directory does not exist.
      OSError: writing failed; the destination is left as it was and no temporary file remains.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(directory):
        raise ValueError(
            f"cannot write {path!r}: directory {directory!r} does not exist; create it first"
        )
    fd, tmp_path = tempfile.mkstemp(
        prefix="." + os.path.basename(path) + ".", suffix=".tmp", dir=directory
    )
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates owner-only files; results are meant to be read by others too.
        os.chmod(tmp_path, 0o644)
        os.replace(tmp_path, path)
    except BaseException:
        try:
            os.unlink(tmp_path)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(obj: Any, path: str | os.PathLike, indent: int | None = 2) -> None:
    """Serialises `obj` as JSON and writes it atomically to `path`.

    The object is serialised fully before anything touches the disk, so an unserialisable object
    (or NaN, which is not JSON) raises without creating or truncating the file.
    """
    text = json.dumps(obj, indent=indent, allow_nan=False, sort_keys=False)
    atomic_write_bytes((text + "\n").encode("utf-8"), path)


def read_text(path: str | os.PathLike, what: str, kind: str) -> str:
    """UTF-8 text of `path` (a BOM is dropped); every failure is one ValueError naming `what`,
    the file and the fix. `kind` says what the file must be, e.g. "a JSON file"."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise ValueError(f"{what} file not found: {path!r}; check the path")
    if os.path.isdir(path):
        raise ValueError(f"{what} path {path!r} is a directory; pass the file inside it")
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise ValueError(f"cannot read {what} file {path!r}: {e.strerror or e}") from None
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise ValueError(
            f"{what} file {path!r} is not UTF-8 text (byte {e.start}); it must be {kind}"
        ) from None


def load_json(path: str | os.PathLike, what: str) -> Any:
    """Loads a JSON file; every failure is one ValueError naming `what`, the file and the fix.

    Args:
      path: file to read.
      what: what the file is supposed to hold, e.g. "ground truth" or "detections"; used in
        the error message.
    """
    text = read_text(path, what, "a JSON file")
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise ValueError(
            f"{what} file {path!r} is not valid JSON: {e.msg} at line {e.lineno} column "
            f"{e.colno}; regenerate or fix the file"
        ) from None


def is_finite_number(x: Any) -> bool:
    """True for a finite real number (Python or numpy); bools are rejected (not coordinates)."""
    t = type(x)
    if t is float:
        return math.isfinite(x)
    if t is int:
        return True
    if t is bool or t.__name__ == "bool_" or not isinstance(x, numbers.Real):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:  # an int too large for a float64
        return False


def is_id(x: Any) -> bool:
    """True for a usable COCO id: a string or a finite number (not a bool)."""
    t = type(x)
    return t is int or t is str or is_finite_number(x)


def _is_box(bb: Any) -> bool:
    return isinstance(bb, (list, tuple)) and len(bb) == 4 and all(map(is_finite_number, bb))


DETECTION_HINT = (
    'each detection must be {"image_id": <id>, "category_id": 1, "bbox": [x, y, w, h], '
    '"score": <number>} with finite numbers'
)


def check_detections(dets: Any, source: str = "detections") -> None:
    """Raises one ValueError naming `source` and the first bad record; returns None if valid."""
    if not isinstance(dets, list):
        raise ValueError(
            f"{source} must hold a JSON list of detections, not a {type(dets).__name__}"
        )
    for i, d in enumerate(dets):
        where = f"{source}: detection record {i}"
        if not isinstance(d, dict):
            raise ValueError(f"{where} is a {type(d).__name__}, not an object; {DETECTION_HINT}")
        for key in ("image_id", "category_id", "bbox", "score"):
            if key not in d:
                raise ValueError(f"{where} has no {key!r}; {DETECTION_HINT}")
        for key in ("image_id", "category_id"):
            if not is_id(d[key]):
                raise ValueError(f"{where}: {key} {d[key]!r} is not a number or string")
        if not _is_box(d["bbox"]):
            raise ValueError(f"{where}: bbox {d['bbox']!r} is not 4 finite numbers [x, y, w, h]")
        if not is_finite_number(d["score"]):
            raise ValueError(f"{where}: score {d['score']!r} is not a finite number")


def check_detection_images(image_ids: Any, gt_image_ids: Any, source: str = "detections") -> None:
    """Raises a ValueError naming the detection image ids that the ground truth lacks."""
    unknown = set(image_ids).difference(gt_image_ids)
    if unknown:
        shown = sorted(unknown, key=repr)
        more = f" and {len(shown) - 10} more" if len(shown) > 10 else ""
        raise ValueError(
            f"{source}: detections on image ids that are not in the ground truth: "
            f"{', '.join(map(repr, shown[:10]))}{more}; evaluate against the matching ground "
            "truth or drop those detections"
        )


def check_ground_truth(gt: Any, source: str = "ground truth") -> None:
    """Raises one ValueError naming `source` and the first bad record; returns None if valid."""
    if not isinstance(gt, dict):
        raise ValueError(f"{source} must be a JSON object, not a {type(gt).__name__}")
    images = gt.get("images")
    if not isinstance(images, list):
        raise ValueError(f'{source} needs an "images" list of {{"id": ...}} objects')
    for i, im in enumerate(images):
        if not isinstance(im, dict) or "id" not in im or not is_id(im["id"]):
            raise ValueError(f'{source}: images[{i}] must be an object with an "id"')
    kinds = {type(im["id"]) is str for im in images}
    if len(kinds) > 1:
        raise ValueError(f"{source}: image ids mix numbers and strings; use one type for all")
    categories = gt.get("categories")
    if not isinstance(categories, list):
        raise ValueError(
            f'{source} needs a "categories" list of {{"id": ...}} objects, with {{"id": 1}} for '
            "pedestrians"
        )
    for i, c in enumerate(categories):
        if not isinstance(c, dict) or "id" not in c or not is_id(c["id"]):
            raise ValueError(f'{source}: categories[{i}] must be an object with an "id"')
    anns = gt.get("annotations", [])
    if not isinstance(anns, list):
        raise ValueError(f'{source}: "annotations" must be a list')
    for i, a in enumerate(anns):
        where = f"{source}: annotations[{i}]"
        if not isinstance(a, dict):
            raise ValueError(f"{where} is a {type(a).__name__}, not an object")
        for key in ("id", "image_id", "category_id"):
            if key not in a or not is_id(a[key]):
                raise ValueError(f"{where} needs {key!r} (a number or string)")
        if a["category_id"] != PERSON_CATEGORY_ID:
            continue
        if not _is_box(a.get("bbox")):
            raise ValueError(
                f"{where}: bbox {a.get('bbox')!r} is not 4 finite numbers [x, y, w, h]"
            )
        for key in ("height", "vis_ratio"):
            if not is_finite_number(a.get(key)):
                raise ValueError(
                    f"{where}: {key!r} must be a finite number (CityPersons annotations carry "
                    "the full-body height and the visible ratio)"
                )
        ig = a.get("ignore", 0)
        if not (isinstance(ig, bool) or is_finite_number(ig)):
            raise ValueError(f"{where}: 'ignore' {ig!r} must be 0/1 (or a bool)")


def load_ground_truth(path: str | os.PathLike) -> dict:
    """Loads and validates a ground-truth JSON file; errors name the file and the record."""
    gt = load_json(path, "ground truth")
    check_ground_truth(gt, source=f"ground truth file {os.fspath(path)!r}")
    return gt


def load_detections(path: str | os.PathLike) -> list:
    """Loads and validates a detections JSON file; errors name the file and the record."""
    dets = load_json(path, "detections")
    check_detections(dets, source=f"detections file {os.fspath(path)!r}")
    return dets
