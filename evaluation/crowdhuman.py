"""CrowdHuman evaluation (AP, MR^-2, JI), numerically equal to the CrowdDet evaluator.

The de-facto CrowdHuman numbers come from the evaluator published with CrowdDet
(`lib/evaluate/APMRToolkits` for AP and MR^-2, `lib/evaluate/compute_JI.py` for JI), of which
mmdetection's `CrowdHumanMetric` is a port. This module reproduces CrowdDet's body mode (full-body
`fbox`, Caltech matching at IoU 0.5, reference "CALTECH_-2"), quirks included: AP and MR agree
with it to 1e-9 and JI to 1e-12 (in practice to the last bits). It is only much faster: the
overlaps are computed once, vectorised, only for boxes that can intersect, and shared by the
three metrics; the greedy matching visits only (detection, ground truth) pairs above the
threshold; the JI matching is solved per connected component of the IoU graph, vectorised for
small components, and once per distinct set of kept detections rather than per threshold.
tests/test_crowdhuman.py checks it against an independent literal re-implementation of the
CrowdDet algorithm (with networkx's blossom matching for JI) and hand-computed cases.

Usage:
  python -m evaluation.crowdhuman --gt annotation_val.odgt --dets dump.odgt [--out metrics.json]
prints one JSON object {"AP": ..., "MR": ..., "JI": ...} (fractions, full-body boxes).

Inputs (both JSON lines, one object per line; blank lines are skipped):
  ground truth  the CrowdHuman .odgt: {"ID", "gtboxes": [{"tag": "person" | "mask", "fbox":
                [x, y, w, h], "vbox", "hbox", "extra": {"ignore": 0 | 1, ...}, "head_attr"}]},
                optionally "width" and "height". Only `tag`, `fbox` and `extra.ignore` are read:
                `hbox` is not required (CrowdDet reads it unconditionally and crashes without it),
                `vbox` and `head_attr` are never used in body mode.
  detections    the dump CrowdHuman detectors write: {"ID", "width", "height", "dtboxes":
                [{"box": [x, y, w, h], "score", "tag"}]}. A `gtboxes` field in the dump lines is
                ignored: ground truth always comes from --gt. (CrowdDet's JI reads the ground
                truth from the dump, where it was written as `fbox` rounded to 0.1 px; for
                CrowdHuman's integer boxes that is exactly the .odgt's `fbox`.)
Boxes are [x, y, w, h] pixels; corners are x2 = x + w, y2 = y + h (no -1).

What CrowdDet does, reproduced here (G = number of scored ground truths, N_img = images):
  1. Images and order: the ground-truth file defines the images and their order. A repeated ID
     keeps the position of its first line and the content of its last (a Python dict). Detection
     lines may come in any order; a repeated detection ID keeps the boxes of its LAST line.
  2. Tags: "person" -> 1, "background" -> 0, anything else ("mask") -> -1; `extra.ignore != 0`
     forces -1. AP/MR match only tag > 0 and treat tag <= 0 as ignore regions, but G counts every
     entry whose tag is not -1 (a "background" entry is therefore a positive that can never be
     matched). JI takes tag != -1 as valid ground truth and tag == -1 as ignore regions.
     CrowdHuman has no "background" tags, so both rules reduce to person vs. ignored.
  3. Image size: for AP/MR, each of `width` and `height` comes from the ground-truth line when
     it has it (CrowdHuman's .odgt does not), otherwise from the first detection line of the
     image; JI, which reads only the dump, uses the size in the detection line. (They differ
     only when a ground-truth line carries a size that disagrees with the dump.)
  4. Clipping, of the detections AND the ground truth, after the xywh -> corner conversion:
     x1 <- min(max(x1, 0), W - 1), y1 <- min(max(y1, 0), H - 1), x2 <- max(min(x2, W), 0),
     y2 <- max(min(y2, H), 0). Note the asymmetric W - 1 / W: a box wholly left of or above the
     image collapses to zero area, but one wholly right of or below it becomes a 1-px strip
     along the border (x1 = W - 1, x2 = W); an inverted box (negative w or h) stays inverted.
  5. Overlaps in float64: inter = max(0, iw) * max(0, ih) with iw = min(x2) - max(x1),
     IoU = inter / (area_dt + area_gt - inter + 1e-6), IoA = inter / (area_dt + 1e-6) with the
     DETECTION's area (the ground truth's own area when JI asks whether a valid ground truth lies
     in an ignore region). Areas are (x2 - x1) * (y2 - y1), unclamped (JI's IoA clamps them at
     0, which changes nothing: a pair with inter > 0 has positive areas). Every comparison with
     the 0.5 threshold is strict (> 0.5).
  6. AP/MR matching per image (Caltech): detections in descending score order, stably sorted
     (equal scores keep their order in the line); ground truth stably sorted by tag, descending.
     A detection takes the still-unmatched tag-1 ground truth of largest IoU > 0.5 (ties: the
     first in file order) and becomes a true positive; failing that, if any ignore region
     (tag <= 0) covers it with IoA > 0.5 it is DROPPED (neither TP nor FP; ignore regions absorb
     any number of detections); otherwise it is a false positive. There is no score threshold
     and the detection `tag` is never read.
  7. Accumulation: the per-image TP/FP lists are concatenated in ground-truth file order and
     stably sorted by descending score (ties: image order, then in-image order). After EACH
     item: recall = tp / G, precision = tp / (tp + fp), fppi = fp / N_img, where N_img counts
     every image of the ground-truth file. No grouping of equal scores.
  8. AP = sum over consecutive points of (r_k - r_{k-1}) * (p_{k-1} + p_k) / 2: trapezoids with
     no precision envelope and no initial (0, 1) point, so the area before the first item's
     recall is lost; fewer than two items give 0.
  9. MR^-2 at the hard-coded points 0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162,
     0.5623, 1.000 (not logspace): for each, the miss rate 1 - recall at the FIRST item whose
     fppi >= the point, or at the last item when none reaches it (not Dollar's "largest fppi
     <= point"); MR = exp(mean(log(miss rates))) with no clamp, so a zero miss rate gives MR 0.
 10. JI, for each score threshold 0.1 * i, i = 0..9 (the float products, e.g. 0.30000000000000004):
     per image keep the detections with score > threshold (strict); k = size of a MAXIMUM-WEIGHT
     matching (summed IoU, not the number of pairs) between them and the valid ground truth on
     the edges IoU > 0.5; unmatched kept detections with IoA > 0.5 against some ignore region
     are discounted from n, unmatched valid ground truths lying (IoA over their own area) > 0.5
     in an ignore region are discounted from m; ratio = k / (m + n - k + 1e-6). The mean divides
     the sum of ratios over all images by the number of images with m != 0 or n != 0 (images
     with neither add 0 and are not counted). JI is the maximum of the 10 means (Python `max`,
     so a NaN mean - no image counted at that threshold - wins only when it comes first).

Deliberate differences (CrowdDet crashes or is ill-defined there; no number it produces
changes, except for the tie rule of the last item):
  - An image whose `gtboxes` is empty (CrowdDet's AP/MR: ValueError) counts as an image with no
    ground truth: it adds to N_img, its detections are all false positives; in JI m = 0.
  - An image of the ground truth without a detection line (CrowdDet's AP/MR: AttributeError;
    its JI never sees it) counts as an image with zero detections, all its ground truth missed,
    in AP/MR and JI alike. Its ground truth is clipped only if the ground-truth line gives
    width and height. A warning gives the number of such images and the first few IDs.
  - A detection ID that is not in the ground truth (CrowdDet: KeyError) raises a ValueError
    naming the ID and both files: most likely the files do not belong together.
  - Repeated IDs warn. The rule of point 1 is CrowdDet's AP/MR rule; CrowdDet's JI, which walks
    the dump's lines, would count every line of a repeated detection ID.
  - An image with a detection line but no width or height (CrowdDet: AssertionError) raises a
    ValueError. Width and height must be whole numbers (dumps write `int`s): with a fractional
    size CrowdDet's clipping would depend on whether numpy stored the boxes as integers.
  - Malformed input (bad JSON, a missing key, a box that is not 4 finite numbers, a non-finite
    score) raises one ValueError naming the file, the line number and the key.
  - JI: the images are those of the ground-truth file (CrowdDet: the dump's lines, the same set
    when the files match), the sum of ratios runs in image order (CrowdDet's order depends on
    which of its 10 worker processes reports first, so its last bits vary from run to run), and
    the ground truth is the .odgt's, unrounded (see Inputs).
  - JI matching: CrowdDet runs van Rantwijk's blossom algorithm (maxcardinality=False) per
    image. Here the graph of edges (IoU > 0.5) is split into connected components: one with a
    single detection or ground truth takes its heaviest edge, one of at most 5 x 5 takes the
    heaviest of all permutations of its zero-padded matrix, and larger ones go to scipy's
    linear_sum_assignment(maximize=True) with non-edges at 0, keeping the pairs of positive
    weight. All return a maximum-weight matching; they can differ from the blossom only when
    several matchings have EXACTLY the same total weight (up to the last bit of the float sums;
    e.g. two detections with bitwise equal IoU to one ground truth): then k, and which
    detections or ground truths stay unmatched (hence the ignore discounts in m and n), may
    differ. Identical duplicate detections are such a tie but harmless: swapping them changes
    nothing.
  - Degenerate sets return what CrowdDet's arithmetic gives, with a warning instead of numpy's
    RuntimeWarnings: G = 0 gives AP = NaN (0 with fewer than two items) and MR = NaN; no TP/FP
    item at all gives MR = NaN (the mean of nothing). The CLI prints NaN as JSON null. An empty
    ground-truth file raises a ValueError.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import numbers
import os
import sys
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from evaluation.io import atomic_write_json, read_text

__all__ = [
    "FPPI_REFS",
    "IOU_THRESHOLD",
    "JI_SCORE_THRESHOLDS",
    "METRICS",
    "average_precision",
    "box_overlaps",
    "clip_boxes",
    "evaluate",
    "evaluate_files",
    "jaccard_index",
    "load_odgt",
    "log_average_miss_rate",
    "main",
    "max_weight_matching",
]

METRICS = ("AP", "MR", "JI")
IOU_THRESHOLD = 0.5
EPS = 1e-6  # added to every overlap denominator
PERSON_CLASSES = ("background", "person")  # tag -> index; anything else is -1 (ignored)
# CrowdDet's hard-coded FPPI points (rounded by hand; not np.logspace).
FPPI_REFS = {
    "CALTECH_-2": (0.0100, 0.0178, 0.03160, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.000),
    "CALTECH_-4": (0.0001, 0.0003, 0.00100, 0.0032, 0.0100, 0.0316, 0.1000, 0.3162, 1.000),
}
# The float products 0.1 * i exactly as CrowdDet forms them (0.30000000000000004, ...).
JI_SCORE_THRESHOLDS = tuple(1e-1 * i for i in range(10))
_PAIR_CHUNK = 1 << 21  # bound on the candidate box pairs materialised at once (memory)
_SHOWN_IDS = 5  # IDs quoted in a warning

GT_HINT = (
    'each ground-truth line must be {"ID": <id>, "gtboxes": [{"tag": "person" | "mask", '
    '"fbox": [x, y, w, h], "extra": {"ignore": 0 | 1}}, ...]}'
)
DT_HINT = (
    'each detection line must be {"ID": <id>, "width": <int>, "height": <int>, "dtboxes": '
    '[{"box": [x, y, w, h], "score": <number>}, ...]}'
)


# ----------------------------------------------------------------------------------------------
# Reading JSON lines.


def _invalid(message: str) -> ValueError:
    """The one exception type of bad input (types included): a ValueError with the message."""
    return ValueError(message)


class _Source:
    """Where records come from, for error messages: a file with line numbers, or a list."""

    def __init__(self, what: str, path: str | None = None, lines: Sequence[int] | None = None):
        self.what = what
        self.path = path
        self.lines = lines

    def at(self, i: int) -> str:
        if self.path is None:
            return f"{self.what} record {i}"
        line = self.lines[i] if self.lines is not None else i + 1
        return f"{self.what} file {self.path!r}, line {line}"

    def name(self) -> str:
        return f"{self.what} file {self.path!r}" if self.path is not None else self.what


def _read_json_lines(path: str | os.PathLike, what: str) -> tuple[list, list[int]]:
    """Parses a JSON-lines file; returns (records, 1-based line numbers). Blank lines skipped."""
    path = os.fspath(path)
    text = read_text(path, what, "one JSON object per line")
    records, line_numbers = [], []
    loads = json.loads
    for n, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rec = loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"{what} file {path!r}, line {n}: not valid JSON ({e.msg} at column {e.colno}); "
                "the file must hold one JSON object per line (.odgt)"
            ) from None
        records.append(rec)
        line_numbers.append(n)
    return records, line_numbers


def load_odgt(path: str | os.PathLike) -> list[dict]:
    """Reads a JSON-lines (.odgt) file: ground truth or a detection dump.

    Returns the parsed records (one dict per non-blank line, file order); the fields are checked
    by `evaluate`. Raises ValueError naming the file and the line on unreadable input.
    """
    records, _ = _read_json_lines(path, "JSON-lines")
    return records


# ----------------------------------------------------------------------------------------------
# Validation helpers.


def _is_number(x: Any) -> bool:
    t = type(x)
    if t is float:
        return math.isfinite(x)
    if t is int:
        return True
    if t is bool or not isinstance(x, numbers.Real):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:
        return False


def _is_box(b: Any) -> bool:
    return isinstance(b, (list, tuple)) and len(b) == 4 and all(map(_is_number, b))


def _check_record(rec: Any, i: int, src: _Source, list_key: str, hint: str) -> None:
    where = src.at(i)
    if not isinstance(rec, dict):
        raise _invalid(f"{where}: a {type(rec).__name__}, not a JSON object; {hint}")
    for key in ("ID", list_key):
        if key not in rec:
            raise _invalid(f"{where}: missing key {key!r}; {hint}")
    if not isinstance(rec["ID"], (str, int, float)) or isinstance(rec["ID"], bool):
        raise _invalid(f"{where}: 'ID' {rec['ID']!r} is not a string or a number; {hint}")
    if not isinstance(rec[list_key], list):
        raise _invalid(f"{where}: {list_key!r} must be a list; {hint}")


def _check_boxes(rec: dict, i: int, src: _Source, list_key: str, keys: Sequence[str]) -> None:
    """Raises the ValueError naming the first bad entry of rec[list_key] (always raises if bad)."""
    hint = GT_HINT if list_key == "gtboxes" else DT_HINT
    for j, b in enumerate(rec[list_key]):
        where = f"{src.at(i)}: {list_key}[{j}]"
        if not isinstance(b, dict):
            raise _invalid(f"{where} is a {type(b).__name__}, not an object; {hint}")
        for key in keys:
            if key not in b:
                raise _invalid(f"{where}: missing key {key!r}; {hint}")
        box_key = keys[-1] if list_key == "gtboxes" else keys[0]
        if not _is_box(b[box_key]):
            raise _invalid(f"{where}: {box_key!r} {b[box_key]!r} is not 4 finite numbers")
        if list_key == "dtboxes" and not _is_number(b["score"]):
            raise _invalid(f"{where}: 'score' {b['score']!r} is not a finite number")
        extra = b.get("extra") if list_key == "gtboxes" else None
        if extra is not None and not isinstance(extra, dict):
            raise _invalid(f"{where}: 'extra' must be an object like {{\"ignore\": 0}}")


def _numeric_array(rows: list, shape: tuple[int, ...]) -> np.ndarray | None:
    """float64 array of `rows` if it has `shape` and only finite numbers, else None."""
    if not rows:
        return np.zeros(shape, dtype=np.float64)
    try:
        a = np.array(rows)
    except (TypeError, ValueError, OverflowError):
        return None
    if a.shape != shape or a.dtype.kind not in "iuf":
        return None
    a = a.astype(np.float64, copy=False)
    return a if bool(np.isfinite(a).all()) else None


def _image_size(value: Any, key: str, image_id: Any, where: str) -> float:
    if not _is_number(value) or float(value) != math.floor(float(value)):
        raise ValueError(
            f"{where}: {key!r} of image {image_id!r} is {value!r}; it must be a whole number "
            "of pixels"
        )
    return float(value)


def _shown(ids: Sequence) -> str:
    more = f" and {len(ids) - _SHOWN_IDS} more" if len(ids) > _SHOWN_IDS else ""
    return ", ".join(map(repr, ids[:_SHOWN_IDS])) + more


# ----------------------------------------------------------------------------------------------
# Loading the records into flat arrays.


def _gt_tag(b: dict) -> int:
    """CrowdDet's body tag: person 1, background 0, anything else -1; extra.ignore != 0 -> -1."""
    tag = b["tag"]
    t = PERSON_CLASSES.index(tag) if isinstance(tag, str) and tag in PERSON_CLASSES else -1
    extra = b.get("extra")
    if extra is not None and extra.get("ignore", 0) != 0:
        t = -1
    return t


@dataclass
class _Scene:
    """Every box of the evaluation, flat, images in ground-truth file order (0..N_img-1).

    Detections are ordered by image, then by descending score (stable: ties keep line order);
    ground truth by image, then file order. Boxes are clipped corners [x1, y1, x2, y2] float64.
    """

    ids: list  # [N_img] image IDs
    dt_img: np.ndarray  # [D] int64, ascending
    dt_boxes: np.ndarray  # [D, 4]
    dt_score: np.ndarray  # [D] float64
    gt_img: np.ndarray  # [G] int64, ascending
    gt_boxes: np.ndarray  # [G, 4]
    gt_tag: np.ndarray  # [G] int64: 1, 0 or -1
    # JI's clipping (the dump line's own size); the same arrays when the sizes agree.
    ji_dt_boxes: np.ndarray  # [D, 4]
    ji_gt_boxes: np.ndarray  # [G, 4]

    @property
    def num_images(self) -> int:
        return len(self.ids)


def _unique_records(records: list, src: _Source, list_key: str, hint: str) -> tuple[dict, list]:
    """ID -> index of its LAST line (dict position: its first line); also the repeated IDs."""
    last: dict = {}
    repeated = []
    for i, rec in enumerate(records):
        _check_record(rec, i, src, list_key, hint)
        key = rec["ID"]
        if key in last:
            repeated.append(key)
        last[key] = i
    return last, repeated


def _load_gt(records: list, src: _Source) -> tuple[list, list, np.ndarray, np.ndarray, np.ndarray]:
    """-> (ids, gt line per image, gt_img [G], xywh boxes [G, 4], tags [G])."""
    if not isinstance(records, list):
        raise _invalid(f"{src.name()}: expected a list of records, got {type(records).__name__}")
    last, repeated = _unique_records(records, src, "gtboxes", GT_HINT)
    if not last:
        raise ValueError(f"{src.name()} holds no image; {GT_HINT}")
    if repeated:
        warnings.warn(
            f"{src.name()}: {len(repeated)} repeated image ID(s) ({_shown(repeated)}); as in "
            "CrowdDet, each keeps the position of its first line and the boxes of its last",
            stacklevel=3,
        )
    ids = list(last)
    lines = list(last.values())
    entries = [b for i in lines for b in records[i]["gtboxes"]]
    counts = [len(records[i]["gtboxes"]) for i in lines]
    try:
        boxes = _numeric_array([b["fbox"] for b in entries], (len(entries), 4))
        tags = [_gt_tag(b) for b in entries]
    except (KeyError, TypeError, AttributeError):
        boxes = None
    if boxes is None:  # find and name the bad entry, else convert number by number
        for i in lines:
            _check_boxes(records[i], i, src, "gtboxes", ("tag", "fbox"))
        boxes = np.array([[float(v) for v in b["fbox"]] for b in entries], dtype=np.float64)
        tags = [_gt_tag(b) for b in entries]
    gt_img = np.repeat(np.arange(len(ids), dtype=np.int64), counts)
    return ids, lines, gt_img, boxes.reshape(-1, 4), np.array(tags, dtype=np.int64)


def _corners(xywh: np.ndarray) -> np.ndarray:
    out = xywh.copy()
    out[:, 2:4] += out[:, 0:2]
    return out


def clip_boxes(boxes: np.ndarray, width: Any, height: Any) -> np.ndarray:
    """CrowdDet's clipping of corner boxes (asymmetric: W - 1 for x1, W for x2).

    Args:
      boxes: [N, 4] float [x1, y1, x2, y2].
      width, height: scalars or [N] arrays (the image size of each box).
    Returns:
      A clipped [N, 4] float64 copy: x1 in [0, W-1], y1 in [0, H-1], x2 in [0, W], y2 in [0, H]
      (each bound applied in CrowdDet's order: min(max(x1, 0), W - 1), max(min(x2, W), 0)).
    """
    b = np.array(boxes, dtype=np.float64).reshape(-1, 4)
    w = np.asarray(width, dtype=np.float64)
    h = np.asarray(height, dtype=np.float64)
    b[:, 0] = np.minimum(np.maximum(b[:, 0], 0), w - 1)
    b[:, 1] = np.minimum(np.maximum(b[:, 1], 0), h - 1)
    b[:, 2] = np.maximum(np.minimum(b[:, 2], w), 0)
    b[:, 3] = np.maximum(np.minimum(b[:, 3], h), 0)
    return b


def _clip_where(boxes: np.ndarray, img: np.ndarray, size: np.ndarray) -> np.ndarray:
    """Clips the boxes of images whose size is known (size [N_img, 2] (W, H), NaN = unknown)."""
    w, h = size[img, 0], size[img, 1]
    known = ~np.isnan(w)
    out = boxes.copy()
    out[known] = clip_boxes(boxes[known], w[known], h[known])
    return out


def _prepare(gt_records: list, dt_records: list, gt_src: _Source, dt_src: _Source) -> _Scene:
    ids, gt_lines, gt_img, gt_xywh, gt_tag = _load_gt(gt_records, gt_src)
    index = {key: k for k, key in enumerate(ids)}
    if not isinstance(dt_records, list):
        raise _invalid(
            f"{dt_src.name()}: expected a list of records, got {type(dt_records).__name__}"
        )
    dt_last, repeated = _unique_records(dt_records, dt_src, "dtboxes", DT_HINT)
    unknown = [key for key in dt_last if key not in index]
    if unknown:
        i = dt_last[unknown[0]]
        raise ValueError(
            f"{dt_src.at(i)}: image ID {unknown[0]!r} is not in the {gt_src.name()} "
            f"({len(unknown)} unknown ID(s): {_shown(unknown)}); the detections and the ground "
            "truth do not belong together"
        )
    if repeated:
        warnings.warn(
            f"{dt_src.name()}: {len(repeated)} repeated image ID(s) ({_shown(repeated)}); as in "
            "CrowdDet's AP/MR, only the last line of each counts (CrowdDet's JI would count all)",
            stacklevel=3,
        )
    size, size_ji = _image_sizes(ids, gt_records, gt_lines, dt_records, dt_last, gt_src, dt_src)
    missing = [key for key in ids if key not in dt_last]
    if missing:
        warnings.warn(
            f"{dt_src.name()}: {len(missing)} image(s) of the ground truth have no detection "
            f"line ({_shown(missing)}); they count as images without detections",
            stacklevel=3,
        )

    dt_lines = [dt_last.get(key) for key in ids]
    present = [(k, i) for k, i in enumerate(dt_lines) if i is not None]
    counts = [len(dt_records[i]["dtboxes"]) for _, i in present]
    entries = [b for _, i in present for b in dt_records[i]["dtboxes"]]
    try:
        boxes = _numeric_array([b["box"] for b in entries], (len(entries), 4))
        scores = _numeric_array([b["score"] for b in entries], (len(entries),))
    except (KeyError, TypeError):
        boxes = scores = None
    if boxes is None or scores is None:  # find and name the bad entry, else convert slowly
        for _, i in present:
            _check_boxes(dt_records[i], i, dt_src, "dtboxes", ("box", "score"))
        boxes = np.array([[float(v) for v in b["box"]] for b in entries], dtype=np.float64)
        scores = np.array([float(b["score"]) for b in entries], dtype=np.float64)
    dt_img = np.repeat(np.array([k for k, _ in present], dtype=np.int64), counts)
    boxes = boxes.reshape(-1, 4)
    # Per image: stable sort by descending score (ties keep their order in the line).
    order = np.argsort(-scores, kind="stable")
    order = order[np.argsort(dt_img[order], kind="stable")]
    dt_img, boxes, scores = dt_img[order], boxes[order], scores[order]
    dt_corners, gt_corners = _corners(boxes), _corners(gt_xywh)
    dt_boxes = _clip_where(dt_corners, dt_img, size)
    gt_boxes = _clip_where(gt_corners, gt_img, size)
    if np.array_equal(size, size_ji, equal_nan=True):
        ji_dt_boxes, ji_gt_boxes = dt_boxes, gt_boxes
    else:
        ji_dt_boxes = _clip_where(dt_corners, dt_img, size_ji)
        ji_gt_boxes = _clip_where(gt_corners, gt_img, size_ji)
    return _Scene(
        ids=ids,
        dt_img=dt_img,
        dt_boxes=dt_boxes,
        dt_score=scores,
        gt_img=gt_img,
        gt_boxes=gt_boxes,
        gt_tag=gt_tag,
        ji_dt_boxes=ji_dt_boxes,
        ji_gt_boxes=ji_gt_boxes,
    )


def _image_sizes(
    ids: list,
    gt_records: list,
    gt_lines: list,
    dt_records: list,
    dt_last: dict,
    gt_src: _Source,
    dt_src: _Source,
) -> tuple[np.ndarray, np.ndarray]:
    """[N_img, 2] (width, height) for clipping, for AP/MR and for JI; NaN: not clipped.

    AP/MR (CrowdDet's Database keeps the first value it sees): each of width and height comes
    from the ground-truth line when it has it, else from the FIRST detection line of the image
    that has it. JI (CrowdDet's compute_JI reads only the dump): the size in the detection line
    whose boxes are used (the last), else the AP/MR size.
    """
    first: dict = {}
    for i, rec in enumerate(dt_records):
        for key in ("width", "height"):
            if key in rec:
                first.setdefault((rec["ID"], key), i)
    size = np.full((len(ids), 2), np.nan)
    for k, (key, gi) in enumerate(zip(ids, gt_lines)):
        g = gt_records[gi]
        has_dt = key in dt_last
        for c, name in enumerate(("width", "height")):
            if name in g:
                size[k, c] = _image_size(g[name], name, key, gt_src.at(gi))
            elif has_dt and (key, name) in first:
                i = first[key, name]
                size[k, c] = _image_size(dt_records[i][name], name, key, dt_src.at(i))
            elif has_dt:
                raise _invalid(
                    f"{dt_src.at(dt_last[key])}: image {key!r} has no {name!r} in its "
                    f"detection line nor in the ground truth; {DT_HINT}"
                )
        if np.isnan(size[k]).any():
            size[k] = np.nan  # no detection line and an incomplete size: not clipped
    size_ji = size.copy()
    for k, key in enumerate(ids):
        i = dt_last.get(key)
        if i is None:
            continue
        for c, name in enumerate(("width", "height")):
            if name in dt_records[i]:
                size_ji[k, c] = _image_size(dt_records[i][name], name, key, dt_src.at(i))
    return size, size_ji


# ----------------------------------------------------------------------------------------------
# Overlaps.


def box_overlaps(dt: np.ndarray, gt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """CrowdDet's IoU and IoA matrices of corner boxes, float64.

    Args:
      dt: [N, 4] [x1, y1, x2, y2]; gt: [K, 4] same format.
    Returns:
      (iou [N, K], ioa [N, K]): inter / (area_dt + area_gt - inter + 1e-6) and
      inter / (area_dt + 1e-6), with inter = max(0, iw) * max(0, ih) and unclamped areas.
    """
    d = np.asarray(dt, dtype=np.float64).reshape(-1, 1, 4)
    g = np.asarray(gt, dtype=np.float64).reshape(1, -1, 4)
    iw = np.minimum(d[..., 2], g[..., 2]) - np.maximum(d[..., 0], g[..., 0])
    ih = np.minimum(d[..., 3], g[..., 3]) - np.maximum(d[..., 1], g[..., 1])
    inter = np.maximum(0, iw) * np.maximum(0, ih)
    d_area = (d[..., 2] - d[..., 0]) * (d[..., 3] - d[..., 1])
    g_area = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        iou = inter / (d_area + g_area - inter + EPS)
        ioa = inter / (d_area + EPS)
    return iou, ioa


@dataclass
class _Pairs:
    a: np.ndarray  # [P] int64 index into the first box set; ascending, then b ascending
    b: np.ndarray  # [P] int64 index into the second box set
    iou: np.ndarray  # [P] float64
    ioa: np.ndarray  # [P] float64, over the first box's area


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def _x_windows(
    a_img: np.ndarray, a_boxes: np.ndarray, b_img: np.ndarray, b_boxes: np.ndarray, n_img: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Candidate second boxes of every first box: those that may overlap it horizontally.

    The second boxes are sorted by image, then x1. A box b overlaps a horizontally only if
    b.x1 < a.x2 and b.x2 > a.x1, and b.x2 <= b.x1 + (widest second box of the image), so the
    candidates of a are the contiguous run with x1 in (a.x1 - widest, a.x2) (the lower bound
    is widened by a relative 1e-12 against rounding: the run may only be too long).
    Returns (order, first, count): b sorted = order; a's run is order[first : first + count].
    """
    order = np.lexsort((b_boxes[:, 0], b_img))
    bx1 = b_boxes[order, 0]
    widest = np.full(n_img, -np.inf)
    np.maximum.at(widest, b_img, b_boxes[:, 2] - b_boxes[:, 0])
    b_count = np.bincount(b_img, minlength=n_img)
    b_end = np.cumsum(b_count)
    a_count = np.bincount(a_img, minlength=n_img)
    a_end = np.cumsum(a_count)
    first = np.zeros(a_img.size, np.int64)
    last = np.zeros(a_img.size, np.int64)
    for i in np.flatnonzero((a_count > 0) & (b_count > 0)).tolist():
        a0, a1 = a_end[i] - a_count[i], a_end[i]
        b0 = b_end[i] - b_count[i]
        seg = bx1[b0 : b_end[i]]
        x1, x2 = a_boxes[a0:a1, 0], a_boxes[a0:a1, 2]
        low = (x1 - widest[i]) - (np.abs(x1) + abs(widest[i])) * 1e-12
        first[a0:a1] = b0 + np.searchsorted(seg, low, side="left")
        last[a0:a1] = b0 + np.searchsorted(seg, x2, side="left")
    return order, first, np.maximum(last - first, 0)


def _intersecting_pairs(
    a_img: np.ndarray, a_boxes: np.ndarray, b_img: np.ndarray, b_boxes: np.ndarray, n_img: int
) -> _Pairs:
    """Pairs of boxes of the same image with a positive intersection, with IoU and IoA.

    Only these pairs can pass a > 0.5 test: every other pair has inter = 0, hence IoU and IoA
    0 (or NaN, for a degenerate denominator), which never exceed the threshold. A positive
    intersection implies positive areas, so clamped and unclamped areas agree. `a_img` must be
    ascending. The pairs come sorted by a; within one a, in no particular order.
    """
    order, first, counts = _x_windows(a_img, a_boxes, b_img, b_boxes, n_img)
    cum = np.cumsum(counts)
    total = int(cum[-1]) if cum.size else 0
    cuts = np.searchsorted(cum, np.arange(_PAIR_CHUNK, total, _PAIR_CHUNK))
    bounds = np.unique(np.concatenate([[0], cuts, [counts.size]]))
    ax1, ay1, ax2, ay2 = a_boxes.T
    bx1, by1, bx2, by2 = b_boxes.T
    a_area, b_area = _area(a_boxes), _area(b_boxes)
    parts = []
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        c = counts[lo:hi]
        n = int(c.sum())
        if n == 0:
            continue
        ia = np.repeat(np.arange(lo, hi), c)
        jb = order[np.repeat(first[lo:hi] - (np.cumsum(c) - c), c) + np.arange(n)]
        iw = np.minimum(ax2[ia], bx2[jb]) - np.maximum(ax1[ia], bx1[jb])
        hit = iw > 0
        ia, jb, iw = ia[hit], jb[hit], iw[hit]
        ih = np.minimum(ay2[ia], by2[jb]) - np.maximum(ay1[ia], by1[jb])
        hit = ih > 0
        ia, jb, iw, ih = ia[hit], jb[hit], iw[hit], ih[hit]
        inter = iw * ih
        aa = a_area[ia]
        iou = inter / (aa + b_area[jb] - inter + EPS)
        ioa = inter / (aa + EPS)
        parts.append((ia, jb, iou, ioa))
    if not parts:
        e = np.zeros(0, np.int64)
        return _Pairs(e, e.copy(), np.zeros(0), np.zeros(0))
    return _Pairs(*(np.concatenate(p) for p in zip(*parts)))


def _select(pairs: _Pairs, mask: np.ndarray) -> _Pairs:
    """The pairs where `mask` holds, sorted by (a, b)."""
    a, b = pairs.a[mask], pairs.b[mask]
    order = np.lexsort((b, a))
    return _Pairs(a[order], b[order], pairs.iou[mask][order], pairs.ioa[mask][order])


# ----------------------------------------------------------------------------------------------
# AP and MR^-2.


def _greedy_caltech(det: list, gt: list, iou: list, num_gt: int) -> list:
    """Caltech matching on candidate pairs (IoU > 0.5, tag-1 ground truth).

    Pairs come sorted by detection (evaluation order within each image) then ground truth (file
    order). Each detection takes the still-unmatched ground truth of largest IoU; on equal IoU the
    first (strict >). Returns the matched detections.
    """
    taken = bytearray(num_gt)
    matched = []
    cur, best_g, best_v = -1, -1, IOU_THRESHOLD
    for d, g, v in zip(det, gt, iou):
        if d != cur:
            if best_g >= 0:
                taken[best_g] = 1
                matched.append(cur)
            cur, best_g, best_v = d, -1, IOU_THRESHOLD
        if v > best_v and not taken[g]:
            best_v, best_g = v, g
    if best_g >= 0:
        matched.append(cur)
    return matched


def _caltech_is_tp(scene: _Scene, pairs: _Pairs) -> np.ndarray:
    """[L] bool, TP flag of every counted (TP or FP) detection, in CrowdDet's global order."""
    tag = scene.gt_tag[pairs.b]
    cand = _select(pairs, (tag > 0) & (pairs.iou > IOU_THRESHOLD))
    n_det = scene.dt_img.size
    tp = np.zeros(n_det, dtype=bool)
    matched = _greedy_caltech(
        cand.a.tolist(), cand.b.tolist(), cand.iou.tolist(), scene.gt_tag.size
    )
    tp[np.asarray(matched, dtype=np.int64)] = True
    absorbed = np.zeros(n_det, dtype=bool)
    absorbed[pairs.a[(tag <= 0) & (pairs.ioa > IOU_THRESHOLD)]] = True
    counted = np.flatnonzero(tp | ~absorbed)  # absorbed by an ignore region: dropped
    counted = counted[np.argsort(-scene.dt_score[counted], kind="stable")]
    return tp[counted]


def _curve(is_tp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    is_tp = np.asarray(is_tp, dtype=bool).reshape(-1)
    tp = np.cumsum(is_tp, dtype=np.float64)
    fp = np.cumsum(~is_tp, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        recall = tp / (tp + (num_gt - tp))  # CrowdDet: tp / (tp + fn)
    return tp, fp, recall


def average_precision(is_tp: np.ndarray, num_gt: int) -> float:
    """CrowdDet's AP: trapezoids between consecutive (recall, precision) points.

    Args:
      is_tp: [L] bool, one flag per counted detection (TP or FP; ignored ones are not listed),
        in evaluation order (descending score, CrowdDet's tie order).
      num_gt: G, the number of ground truths with tag != -1.
    Returns:
      sum_k (r_k - r_{k-1}) * (p_{k-1} + p_k) / 2 (no initial point, no envelope), summed in
      order like CrowdDet; 0.0 when L < 2; NaN when G = 0 (CrowdDet's 0/0).
    """
    tp, fp, recall = _curve(is_tp, num_gt)
    if tp.size < 2:
        return 0.0
    precision = tp / (tp + fp)
    with np.errstate(invalid="ignore"):
        terms = (recall[1:] - recall[:-1]) * ((precision[:-1] + precision[1:]) / 2)
    return float(np.cumsum(terms)[-1])  # a running sum, in CrowdDet's order


def log_average_miss_rate(
    is_tp: np.ndarray, num_gt: int, num_images: int, ref: str = "CALTECH_-2"
) -> float:
    """CrowdDet's MR^-2 (or MR^-4 with ref="CALTECH_-4").

    Args:
      is_tp: [L] bool in evaluation order, as for `average_precision`.
      num_gt: G (tag != -1). num_images: N_img, every image of the ground truth (> 0).
      ref: a key of FPPI_REFS.
    Returns:
      exp(mean(log(miss))) over the reference points, where each point takes the miss rate
      1 - recall at the first item with fppi >= point (the last item if none); 0.0 when a miss
      rate is 0; NaN when L = 0 (no point is scored) or G = 0.
    """
    if ref not in FPPI_REFS:
        raise ValueError(f"unknown reference {ref!r}; choose from {', '.join(FPPI_REFS)}")
    if num_images <= 0:
        raise ValueError("num_images must be positive")
    _, fp, recall = _curve(is_tp, num_gt)
    miss = 1.0 - recall
    fppi = fp / num_images
    idx = np.searchsorted(fppi, np.array(FPPI_REFS[ref]), side="left")
    idx = np.minimum(idx, fppi.size - 1)
    score = miss[idx[idx >= 0]]
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # mean of nothing
        return float(np.exp(np.log(score).mean()))


# ----------------------------------------------------------------------------------------------
# JI.


def max_weight_matching(
    iou: np.ndarray, threshold: float = IOU_THRESHOLD
) -> tuple[np.ndarray, np.ndarray]:
    """Maximum-weight bipartite matching on the edges iou > threshold, weighted by the IoU.

    Args:
      iou: [N, K] float (detections x ground truths). NaN entries are no edges.
    Returns:
      (rows, cols): int64 arrays of the matched pairs, rows ascending. The matching maximises
      the summed IoU (not the number of pairs), like CrowdDet's blossom with
      maxcardinality=False; among matchings of exactly equal weight the choice may differ.
    """
    iou = np.asarray(iou, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        w = np.where(iou > threshold, iou, 0.0)
    rows = np.flatnonzero(w.any(axis=1))
    cols = np.flatnonzero(w.any(axis=0))
    if rows.size == 0:
        e = np.zeros(0, np.int64)
        return e, e.copy()
    sub = w[np.ix_(rows, cols)]
    r, c = linear_sum_assignment(sub, maximize=True)
    keep = sub[r, c] > 0
    return rows[r[keep]], cols[c[keep]]


def jaccard_index(k: np.ndarray, m: np.ndarray, n: np.ndarray) -> tuple[float, np.ndarray]:
    """CrowdDet's JI from per-threshold, per-image counts.

    Args:
      k: [T, N_img] matched pairs; m: [T, N_img] valid ground truths minus those discounted by
        ignore regions; n: [T, N_img] kept detections minus those discounted. Integers.
    Returns:
      (JI, means [T]): means[t] = sum_i k / (m + n - k + 1e-6) divided by the number of images
      with m != 0 or n != 0 (NaN if none); JI = Python max(means) (CrowdDet's NaN handling).
    """
    k, m, n = (np.asarray(x, dtype=np.int64) for x in (k, m, n))
    ratio = k / (m + n - k + EPS)
    img_num = np.count_nonzero((n != 0) | (m != 0), axis=-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        means = np.array([np.sum(ratio[t]) / img_num[t] for t in range(ratio.shape[0])])
    return (float(max(means.tolist())) if means.size else math.nan), means


@dataclass
class _JiCounts:
    k: np.ndarray  # [T, N_img] matched pairs
    a: np.ndarray  # [T, N_img] matched detections lying in an ignore region
    b: np.ndarray  # [T, N_img] matched valid ground truths lying in an ignore region


_Matched = tuple[np.ndarray, np.ndarray, np.ndarray]  # (threshold index, det, gt) per pair
_SMALL = 5  # components up to 5 x 5 are solved by enumerating all permutations


def _concat(parts: list[_Matched]) -> _Matched:
    if not parts:
        e = np.zeros(0, np.int64)
        return e, e.copy(), e.copy()
    return tuple(np.concatenate(x).astype(np.int64, copy=False) for x in zip(*parts))


def _star_matches(
    comp: np.ndarray, d: np.ndarray, g: np.ndarray, w: np.ndarray, kept: np.ndarray
) -> _Matched:
    """Components with one detection or one ground truth: the heaviest kept edge of each."""
    order = np.lexsort((-w, comp))  # per component, heaviest edge first (ties: edge order)
    comp, d, g = comp[order], d[order], g[order]
    parts = []
    for t in range(kept.shape[0]):
        idx = np.flatnonzero(kept[t, d])
        first = idx[_starts(comp[idx])]
        parts.append((np.full(first.size, t), d[first], g[first]))
    return _concat(parts)


def _starts(sorted_key: np.ndarray) -> np.ndarray:
    """Mask of the first entry of each run of equal values."""
    start = np.ones(sorted_key.size, dtype=bool)
    start[1:] = sorted_key[1:] != sorted_key[:-1]
    return start


def _local_index(group: np.ndarray, key: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dense per-group numbering of keys. `group` and `key` are [E] with `group` ascending.

    Returns (local [E]: rank of each entry's key among its group's distinct keys, ascending;
    keys [K]: the distinct (group, key) keys, group by group in ascending key order;
    count [n_groups]: distinct keys per group).
    """
    order = np.lexsort((key, group))
    g, k = group[order], key[order]
    gid = np.cumsum(_starts(g)) - 1  # dense group number of each (sorted) entry
    new = _starts(g)
    new[1:] |= k[1:] != k[:-1]
    node = np.cumsum(new) - 1  # index into the distinct (group, key) list
    count = np.bincount(gid[new])
    local = np.empty(key.size, np.int64)
    local[order] = node - (np.cumsum(count) - count)[gid]
    return local, k[new], count


@dataclass
class _Layout:
    """Components as small dense matrices: rows are detections (ascending index, i.e. by
    descending score), columns ground truths; everything concatenated component by component."""

    comp: np.ndarray  # [E] dense component number of each edge, ascending
    row: np.ndarray  # [E] local row of each edge
    col: np.ndarray  # [E] local column
    w: np.ndarray  # [E] weight (IoU)
    row_det: np.ndarray  # [R] detection of each row
    col_gt: np.ndarray  # [Q] ground truth of each column
    n_rows: np.ndarray  # [C]
    n_cols: np.ndarray  # [C]
    kept_rows: np.ndarray  # [C, T] rows kept at each threshold (always a prefix)

    @property
    def row0(self) -> np.ndarray:
        return np.cumsum(self.n_rows) - self.n_rows

    @property
    def col0(self) -> np.ndarray:
        return np.cumsum(self.n_cols) - self.n_cols


def _layout(comp: np.ndarray, d: np.ndarray, g: np.ndarray, w: np.ndarray, kept) -> _Layout:
    order = np.argsort(comp, kind="stable")
    comp, d, g, w = comp[order], d[order], g[order], w[order]
    comp = np.cumsum(_starts(comp)) - 1
    row, row_det, n_rows = _local_index(comp, d)
    col, col_gt, n_cols = _local_index(comp, g)
    row_comp = np.repeat(np.arange(n_rows.size), n_rows)
    kept_rows = np.stack(
        [np.bincount(row_comp, weights=kt[row_det], minlength=n_rows.size) for kt in kept], 1
    ).astype(np.int64)
    return _Layout(comp, row, col, w, row_det, col_gt, n_rows, n_cols, kept_rows)


def _members(n: np.ndarray, start: np.ndarray, comps: np.ndarray, size: int) -> np.ndarray:
    """[len(comps), size] global row (or column) numbers of the components, -1 as padding."""
    out = np.full((comps.size, size), -1, np.int64)
    local = np.arange(size)[None, :]
    inside = local < n[comps][:, None]
    out[inside] = (start[comps][:, None] + local)[inside]
    return out


def _small_matches(lay: _Layout, comps: np.ndarray, size: int) -> _Matched:
    """Maximum-weight matchings of components of at most size x size, all at once.

    Zero-padded to size x size, a matching is the positive part of a permutation, so the
    heaviest of the size! permutations gives a maximum-weight matching (the first one on ties).
    """
    pos = np.full(lay.n_rows.size, -1, np.int64)
    pos[comps] = np.arange(comps.size)
    e = np.flatnonzero(pos[lay.comp] >= 0)
    weights = np.zeros((comps.size, size, size))
    weights[pos[lay.comp[e]], lay.row[e], lay.col[e]] = lay.w[e]
    rows = _members(lay.n_rows, lay.row0, comps, size)
    cols = _members(lay.n_cols, lay.col0, comps, size)
    perms = np.array(list(itertools.permutations(range(size))))  # [P, size]
    local = np.arange(size)
    parts = []
    for t in range(lay.kept_rows.shape[1]):
        wt = weights * (local[None, :] < lay.kept_rows[comps, t][:, None])[:, :, None]
        best = perms[wt[:, local[None, :], perms].sum(axis=2).argmax(axis=1)]  # [n, size]
        value = np.take_along_axis(wt, best[:, :, None], axis=2)[:, :, 0]
        ci, ri = np.nonzero(value > 0)
        parts.append(
            (np.full(ci.size, t), lay.row_det[rows[ci, ri]], lay.col_gt[cols[ci, best[ci, ri]]])
        )
    return _concat(parts)


def _large_matches(lay: _Layout, comps: np.ndarray) -> _Matched:
    """linear_sum_assignment per component and distinct set of kept rows (each threshold keeps
    a prefix of the rows; equal prefixes are solved once)."""
    edge_start = np.searchsorted(lay.comp, comps, side="left").tolist()
    edge_end = np.searchsorted(lay.comp, comps, side="right").tolist()
    row0, col0 = lay.row0, lay.col0
    ts: list = []
    ds: list = []
    gs: list = []
    for c, lo, hi in zip(comps.tolist(), edge_start, edge_end):
        weights = np.zeros((int(lay.n_rows[c]), int(lay.n_cols[c])))
        weights[lay.row[lo:hi], lay.col[lo:hi]] = lay.w[lo:hi]
        solved: dict = {}
        for t, p in enumerate(lay.kept_rows[c].tolist()):
            if p == 0:
                continue
            if p not in solved:
                sub = weights[:p]
                r, k = linear_sum_assignment(sub, maximize=True)
                keep = sub[r, k] > 0
                solved[p] = (
                    lay.row_det[row0[c] + r[keep]].tolist(),
                    lay.col_gt[col0[c] + k[keep]].tolist(),
                )
            dets, gts = solved[p]
            ts.extend([t] * len(dets))
            ds.extend(dets)
            gs.extend(gts)
    return _concat([(np.array(ts, np.int64), np.array(ds, np.int64), np.array(gs, np.int64))])


def _general_matches(
    comp: np.ndarray, d: np.ndarray, g: np.ndarray, w: np.ndarray, kept: np.ndarray
) -> _Matched:
    """Components with at least two detections and two ground truths."""
    if comp.size == 0:
        return _concat([])
    lay = _layout(comp, d, g, w, kept)
    size = np.maximum(lay.n_rows, lay.n_cols)
    parts = [_small_matches(lay, np.flatnonzero(size == k), k) for k in range(2, _SMALL + 1)]
    parts.append(_large_matches(lay, np.flatnonzero(size > _SMALL)))
    return _concat(parts)


def _ji_matching(
    scene: _Scene, edges: _Pairs, dt_in_ign: np.ndarray, gt_in_ign: np.ndarray, kept: np.ndarray
) -> _JiCounts:
    """k, and the ignore flags of the matched boxes, per threshold and image.

    The matching splits into the connected components of the graph of edges (IoU > 0.5); a
    component with a single detection or ground truth takes its heaviest kept edge, the others
    are solved exactly (`_small_matches`, `_large_matches`).
    """
    n_t, n_img = kept.shape[0], scene.num_images
    counts = _JiCounts(*(np.zeros((n_t, n_img), np.int64) for _ in range(3)))
    if edges.a.size == 0:
        return counts
    n_det = scene.dt_img.size
    n_nodes = n_det + scene.gt_img.size
    graph = coo_matrix(
        (np.ones(edges.a.size), (edges.a, n_det + edges.b)), shape=(n_nodes, n_nodes)
    )
    _, label = connected_components(graph, directed=False)
    comp = label[edges.a]
    n_dets = np.bincount(label[np.unique(edges.a)], minlength=label.max() + 1)
    n_gts = np.bincount(label[n_det + np.unique(edges.b)], minlength=label.max() + 1)
    star = (n_dets[comp] == 1) | (n_gts[comp] == 1)
    t, d, g = _concat(
        [
            _star_matches(comp[star], edges.a[star], edges.b[star], edges.iou[star], kept),
            _general_matches(comp[~star], edges.a[~star], edges.b[~star], edges.iou[~star], kept),
        ]
    )
    cell = t * n_img + scene.dt_img[d]  # (threshold, image) of each matched pair
    size = n_t * n_img
    counts.k[:] = np.bincount(cell, minlength=size).reshape(n_t, n_img)
    counts.a[:] = np.bincount(cell, weights=dt_in_ign[d], minlength=size).reshape(n_t, n_img)
    counts.b[:] = np.bincount(cell, weights=gt_in_ign[g], minlength=size).reshape(n_t, n_img)
    return counts


def _ji(scene: _Scene, pairs: _Pairs) -> float:
    """JI; `pairs` are the (detection, ground truth) pairs of JI's clipped boxes."""
    n_img = scene.num_images
    tag = scene.gt_tag
    pair_tag = tag[pairs.b]
    # Edges of the matching: valid ground truth (tag != -1), IoU > 0.5 (strict).
    edges = _select(pairs, (pair_tag != -1) & (pairs.iou > IOU_THRESHOLD))
    dt_in_ign = np.zeros(scene.dt_img.size, dtype=np.int64)
    dt_in_ign[pairs.a[(pair_tag == -1) & (pairs.ioa > IOU_THRESHOLD)]] = 1
    # Valid ground truth lying in an ignore region (IoA over the valid box's own area).
    valid = np.flatnonzero(tag != -1)
    ign = np.flatnonzero(tag == -1)
    boxes = scene.ji_gt_boxes
    gg = _intersecting_pairs(
        scene.gt_img[valid], boxes[valid], scene.gt_img[ign], boxes[ign], n_img
    )
    gt_in_ign = np.zeros(tag.size, dtype=np.int64)
    gt_in_ign[valid[gg.a[gg.ioa > IOU_THRESHOLD]]] = 1

    thresholds = np.array(JI_SCORE_THRESHOLDS)
    kept = scene.dt_score[None, :] > thresholds[:, None]  # [T, D]
    counts = _ji_matching(scene, edges, dt_in_ign, gt_in_ign, kept)
    kept_n = np.stack([np.bincount(scene.dt_img[kt], minlength=n_img) for kt in kept])
    kept_ign = np.stack(
        [np.bincount(scene.dt_img[kt], weights=dt_in_ign[kt], minlength=n_img) for kt in kept]
    ).astype(np.int64)
    valid_n = np.bincount(scene.gt_img[valid], minlength=n_img)
    valid_ign = np.bincount(scene.gt_img, weights=gt_in_ign, minlength=n_img).astype(np.int64)
    n = kept_n - (kept_ign - counts.a)  # unmatched kept detections in ignore regions drop out
    m = valid_n[None, :] - (valid_ign[None, :] - counts.b)
    ji, means = jaccard_index(counts.k, m, n)
    if np.isnan(means).any():
        warnings.warn(
            "JI: at some score threshold no image has ground truth or detections (0/0 = NaN; "
            "CrowdDet's max() keeps a NaN only when it comes first)",
            stacklevel=3,
        )
    return ji


# ----------------------------------------------------------------------------------------------
# Driver.


def _evaluate(scene: _Scene, metrics: Sequence[str]) -> dict[str, float]:
    pairs = _intersecting_pairs(
        scene.dt_img, scene.dt_boxes, scene.gt_img, scene.gt_boxes, scene.num_images
    )
    out: dict[str, float] = {}
    if "AP" in metrics or "MR" in metrics:
        is_tp = _caltech_is_tp(scene, pairs)
        num_gt = int(np.count_nonzero(scene.gt_tag != -1))
        if num_gt == 0:
            warnings.warn(
                "no ground truth outside ignore regions: recall is 0/0, AP and MR are NaN "
                "(as CrowdDet's arithmetic gives)",
                stacklevel=3,
            )
        elif is_tp.size == 0:
            warnings.warn(
                "no detection counted (all absent or in ignore regions): MR is NaN, AP 0",
                stacklevel=3,
            )
        if "AP" in metrics:
            out["AP"] = average_precision(is_tp, num_gt)
        if "MR" in metrics:
            out["MR"] = log_average_miss_rate(is_tp, num_gt, scene.num_images)
    if "JI" in metrics:
        if scene.ji_dt_boxes is not scene.dt_boxes:  # a ground-truth line gave another size
            pairs = _intersecting_pairs(
                scene.dt_img, scene.ji_dt_boxes, scene.gt_img, scene.ji_gt_boxes, scene.num_images
            )
        out["JI"] = _ji(scene, pairs)
    return {key: out[key] for key in METRICS if key in out}


def _check_metrics(metrics: Iterable[str]) -> tuple[str, ...]:
    chosen = tuple(metrics)
    bad = [x for x in chosen if x not in METRICS]
    if bad or not chosen:
        raise ValueError(f"unknown metric(s) {bad!r}; choose from {', '.join(METRICS)}")
    return chosen


def evaluate(
    gt_records: list[dict],
    dt_records: list[dict],
    metrics: Sequence[str] = METRICS,
    *,
    gt_source: str = "ground truth",
    dt_source: str = "detections",
) -> dict[str, float]:
    """AP, MR^-2 and JI (fractions) equal to CrowdDet's evaluator in body mode.

    Args:
      gt_records: parsed ground-truth lines (.odgt): {"ID", "gtboxes": [{"tag", "fbox" [x, y, w,
        h], "extra": {"ignore"}}]}, optionally "width"/"height".
      dt_records: parsed detection-dump lines: {"ID", "width", "height", "dtboxes": [{"box"
        [x, y, w, h], "score"}]}; any "gtboxes" there is ignored.
      metrics: a subset of ("AP", "MR", "JI").
      gt_source, dt_source: names used in error messages.
    Returns:
      {"AP": float, "MR": float, "JI": float} (the requested keys, in that order).
    Raises:
      ValueError: malformed records, an unknown detection ID, a missing image size.
    """
    chosen = _check_metrics(metrics)
    scene = _prepare(gt_records, dt_records, _Source(gt_source), _Source(dt_source))
    return _evaluate(scene, chosen)


def evaluate_files(
    gt_path: str | os.PathLike, dt_path: str | os.PathLike, metrics: Sequence[str] = METRICS
) -> dict[str, float]:
    """`evaluate` on two JSON-lines files; errors name the file and the line."""
    chosen = _check_metrics(metrics)
    gt_records, gt_lines = _read_json_lines(gt_path, "ground-truth")
    dt_records, dt_lines = _read_json_lines(dt_path, "detections")
    gt_src = _Source("ground-truth", os.fspath(gt_path), gt_lines)
    dt_src = _Source("detections", os.fspath(dt_path), dt_lines)
    return _evaluate(_prepare(gt_records, dt_records, gt_src, dt_src), chosen)


# ----------------------------------------------------------------------------------------------
# Command line.


def _print_warnings(caught: list) -> None:
    seen = set()
    for w in caught:
        msg = str(w.message)
        if msg not in seen:
            seen.add(msg)
            print(f"warning: {msg}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on bad input, with one line on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.crowdhuman",
        description="CrowdHuman AP, MR^-2 and JI of full-body boxes, equal to the CrowdDet "
        'evaluator. Prints one JSON object {"AP", "MR", "JI"} (fractions; null for NaN).',
    )
    parser.add_argument("--gt", required=True, help="ground truth, e.g. annotation_val.odgt")
    parser.add_argument("--dets", required=True, help="detection dump (JSON lines with dtboxes)")
    parser.add_argument("--out", default=None, help="also write the JSON here, atomically")
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = evaluate_files(args.gt, args.dets)
            printable = {k: (None if math.isnan(v) else v) for k, v in result.items()}
            if any(v is None for v in printable.values()):
                warnings.warn("NaN metrics are written as null", stacklevel=1)
            if args.out:
                atomic_write_json(printable, args.out)
        except ValueError as e:
            _print_warnings(caught)
            print(f"error: {e}", file=sys.stderr)
            return 2
    _print_warnings(caught)
    print(json.dumps(printable))
    return 0


if __name__ == "__main__":
    sys.exit(main())
