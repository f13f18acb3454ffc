"""Person-search evaluation: the CUHK-SYSU and PRW protocols (and their detection metric) in numpy.

This module computes the numbers that current person-search papers report (the SeqNet / COAT /
NAE family of `eval_func.py`): search mAP and top-1/5/10 on CUHK-SYSU and PRW, and detection
recall / AP. On the same inputs its numbers equal the reference code's; the few places where the
reference crashes or is ambiguous are listed below, with what we do instead. It is written over
plain arrays and small frozen dataclasses, not over dataset objects: a dataset builder turns the
.mat / .txt files into `GalleryDetections`, `CuhkQuery`, `GroundTruthImage` and `PrwQuery`.
tests/test_person_search_eval.py checks it against hand-computed cases and against an independent
literal re-implementation of the reference algorithm on random galleries.

Inputs.
  Detections (`GalleryDetections`, one per gallery image): boxes [K, 4] float32 x1, y1, x2, y2 in
  pixels, scores [K] float32, re-id features [K, D] float32 (unused by `eval_detection`).
  Ground-truth boxes are integer pixels: CUHK protocol boxes are x, y, w, h as in TestG*.mat,
  PRW / detection boxes are x1, y1, x2, y2. Non-integral ground-truth values are truncated toward
  zero, as the reference's `astype(np.int32)` does.

Shared rules (both search protocols).
  - Detections are kept when `score >= det_thresh` (default 0.5), compared in float32 as numpy
    compares a float32 array with a Python float. An image with no kept detection takes no part
    in the ranking.
  - Similarity = plain dot product of float32 features (`features.dot(query)` for each image,
    exactly the reference's call and shapes, so that on the same numpy / BLAS build the float32
    values are bit-identical). Nothing is normalised here: the model is expected to have done
    it (SeqNet-style models also scale gallery embeddings by the detection score). This is numpy
    float32 BLAS arithmetic at full float32 precision, not a reduced-precision accelerator matmul
    (no JAX default precision anywhere). One product over all images would be faster, but with
    OpenBLAS it rounds 10-25% of the similarities differently in the last bit (measured), which
    can reorder near-ties; so we keep the per-image product. On a different BLAS build the
    reference's own numbers move by the same last-bit amounts. Cost, as in the reference: one
    small product per (query, ranked image), about a minute for PRW's 2,057 queries x 6,112
    frames.
  - A gallery image that contains the query person has one ground-truth box; the match
    threshold is `min(0.5, w * h / ((w + 10) * (h + 10)))` with that box's integer w and h
    (CUHK: the protocol's w, h; PRW: x2 - x1, y2 - y1), so small people get a looser threshold.
    A detection matches when `IoU >= threshold`.
  - At most one true positive per image: among the image's detections that match, the one with
    the highest similarity. The other detections of the image, overlapping or not, are negatives;
    every detection of an image without the person is a negative.
  - count_gt (the recall denominator) counts each positive gallery image once, whether or not any
    of its detections survived the score threshold; count_tp counts the true positives. A query's
    AP is the step-wise (non-interpolated) average precision of its ranked detections, tied
    similarities grouped (`average_precision`, identical to sklearn's
    `average_precision_score`), times count_tp / count_gt; AP = 0 when count_tp = 0. This equals
    giving precision 0 to every ground truth never retrieved.
  - top-k (k = 1, 5, 10) is 1 when a true positive is among the first k ranked detections (fewer
    than k detections: all of them). mAP and top-k are means over queries.

IoU arithmetic. The reference computes the IoU of one float32 detection box and one int32
ground-truth box with numpy scalars and Python's `min` / `max`, which return one operand
unconverted. We reproduce its dtype flow to the bit (`_reference_iou`): an intersection side whose
two ends both come from the detection is a float32 subtraction, a product of two float32 sides is
rounded to float32, the detection's area is computed in float32; everything that mixes in the
integer box is float64, as is the final ratio (so in practice the IoU is a float64, but not
always of exactly-converted float32 inputs). Tie rule of `min` / `max`: the first argument wins,
which is the detection in search and the ground truth in `eval_detection`. A zero union gives NaN,
which never matches (the reference emits a RuntimeWarning there; we stay silent).

Tie order. The reference ranks with numpy's unstable `argsort(...)[::-1]`, whose order among
exactly equal values is implementation-defined. We use one documented rule instead: descending
similarity, ties broken by position in the query's gallery sequence (CUHK: protocol order, then
pool order in full-gallery mode; PRW: frame order), then by detection index within an image. AP
cannot depend on this (ties are grouped), but two things can: which of several exactly tied
matching detections in one image becomes the true positive (we take the lowest index), and
top-k when a true positive ties with a negative at the cut.

CUHK-SYSU (`eval_search_cuhk`).
  Each query comes with its protocol gallery: TestG{N}.mat for N in `CUHK_GALLERY_SIZES`; the
  list is used exactly as given (its length is the gallery size). Images of a protocol list
  without detection entries simply contribute nothing but their count_gt. `full_gallery=True` is
  the "full set" setting (gallery_size -1, which reads TestG50): after the protocol list, every
  image of the pool (the `gallery` sequence, in its order) that is neither the query image nor in
  the protocol list adds all of its kept detections as negatives, each pool image exactly once
  (the person is assumed to appear only in the listed images). This follows NAE; SeqNet / COAT's
  full-set branch is broken (it reads a `gallery_dataset.imgs` attribute that does not exist and,
  were that fixed, it would add the protocol images a second time, all negative, because it runs
  before the protocol images are marked as seen). A protocol list that names an image twice is
  ranked once (first entry) while count_gt counts every positive entry, as SeqNet / COAT do (NAE
  would rank it twice); the official lists have no duplicates. A query whose list has no positive
  entry (count_gt = 0) raises ValueError (the reference divides by zero; the official protocol
  never does this). mAP is over all queries; queries without a true positive count as 0.

PRW (`eval_search_prw`).
  The gallery of a query is every test frame except the query's own frame (the whole frame,
  other people included); same-camera frames stay in. This is what SeqNet / COAT do
  (`ignore_cam_id=True`) and what papers since 2020 report. `cross_camera=True` instead removes
  every frame of the query's camera, positives and negatives alike (NAE's default, which reports
  cross-camera results). count_gt = gallery frames annotated with the query pid. If the pid occurs
  twice in a frame, only its first box is used (the reference ravels the boxes and reads the
  first four numbers). Camera ids come from the frame names (`cam_id_from_prw_name`) unless given.
  count_gt = 0 (the person occurs in no gallery frame: with cross-camera mode when every
  occurrence is in the query's camera, or with a subset of the frames) makes the reference raise
  ZeroDivisionError. We exclude such a query from mAP and top-k, with a warning naming how many
  were excluded (the convention of re-id benchmarks for queries whose identity is missing from the
  gallery), report it in `valid` / `num_excluded` with AP NaN; `on_empty_gt="raise"` raises
  ValueError instead, and excluding every query raises. On the official split no query is
  excluded in either mode (NAE's cross-camera evaluation, which would crash otherwise, runs).
  The PRW annotation quirks are separate helpers for the dataset builder: gallery boxes are
  clipped at 0 in x, y, w, h before conversion to corners (`prw_gallery_boxes`, so a box with a
  negative x is shifted, not cut), query boxes are converted first and clipped after
  (`prw_query_box`).

Detection (`eval_detection`).
  The detection metric of the same papers, called with det_thresh 0.01 and IoU 0.5. Per image:
  kept detections have `score >= det_thresh`; the IoU matrix (ground truth x detection) is stored
  as float32 before `>= iou_thresh` (in float32); a pair is a true positive only if each side is
  the other's best by IoU (`argmax`, first index on ties) and the IoU reaches the threshold (mutual
  best, not greedy by score). recall = TP / all ground truth; AP = step-wise AP of the kept
  detections (score, is-TP) times recall. `labeled_only` keeps people whose pid is not
  `unlabeled_pid` (5555, SeqNet / COAT's code for unlabeled people) and skips images with none,
  detections included.

Deliberate differences, none of which changes a number the reference produces:
  - "has detections" is a row count. The reference tests `det != []` in several places (the
    detection metric in all three code bases, CUHK search in SeqNet e33d2b, COAT and NAE), which
    numpy >= 1.25 turns into a ValueError for every array; PRW search indexes `det[:, 4]`, which
    needs a 2-D array even when it is empty.
  - No top-10 JSON dump. The reference's dump indexes `inds[k]` for k < 10 and crashes when a
    query has fewer than 10 ranked detections (and on an empty ranking), always in PRW and NAE.
  - No CBGM (context bipartite graph matching, off by default in SeqNet / COAT, outside the
    standard protocol) and no query-box assertion that only CBGM needs.
  - An image with detections but no ground truth gives only false positives in `eval_detection`;
    the reference crashes on `argmax` of an empty column. NAE's `num_gt` leak from the previous
    image (an image given as a literal `[]`) cannot happen here.
  - Detection evaluation without any true positive returns AP 0 (recent sklearn also gives 0,
    older versions NaN; recall is 0 either way). Without any ground truth at all it raises.
  - Ground-truth areas are integers without the reference's int32 overflow (past 2**31 px**2).
  - Malformed input (shapes, non-finite values, duplicate image names, detections on images
    missing from the ground truth) raises ValueError.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = [
    "CUHK_GALLERY_SIZES",
    "TOPK",
    "UNLABELED_PID",
    "CuhkQuery",
    "GalleryDetections",
    "GroundTruthImage",
    "PrwQuery",
    "adaptive_iou_threshold",
    "average_precision",
    "cam_id_from_prw_name",
    "cuhk_protocol_name",
    "eval_detection",
    "eval_search_cuhk",
    "eval_search_prw",
    "prw_gallery_boxes",
    "prw_query_box",
]

TOPK = (1, 5, 10)
CUHK_GALLERY_SIZES = (50, 100, 500, 1000, 2000, 4000)
UNLABELED_PID = 5555  # SeqNet / COAT's pid for unlabeled people
_PAD = 10  # pixels added to w and h in the adaptive IoU threshold
_IOU_CAP = 0.5


# ----------------------------------------------------------------------------------------------
# Input records.


def _int_boxes(values: Any, what: str) -> np.ndarray:
    """[M, 4] int64 from integer-valued numbers; non-integral values are truncated toward 0."""
    arr = np.asarray(values)
    if arr.size == 0:
        return np.zeros((0, 4), dtype=np.int64)
    if arr.ndim == 1:
        arr = arr.reshape(1, -1)
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{what}: expected boxes of shape [M, 4], got {arr.shape}")
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{what}: boxes must be numbers, got dtype {arr.dtype}")
    if arr.dtype.kind == "f":
        if not np.isfinite(arr).all():
            raise ValueError(f"{what}: boxes must be finite")
        arr = np.trunc(arr)
    return arr.astype(np.int64)


def _float32(values: Any, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float32)
    if not np.isfinite(arr).all():
        raise ValueError(f"{what}: values must be finite")
    return arr


@dataclass(frozen=True, eq=False)
class GalleryDetections:
    """The detector's output on one gallery image.

    name: image file name, the key protocols and annotations use.
    boxes: [K, 4] float32 x1, y1, x2, y2 in pixels (other float dtypes are converted to float32).
    scores: [K] float32 detection confidences.
    features: [K, D] float32 re-id embeddings, or any array of K * D values whose first axis has
      length K (e.g. [K, D, 1, 1]), flattened to [K, D]; None for `eval_detection` only.
    """

    name: str
    boxes: np.ndarray
    scores: np.ndarray
    features: np.ndarray | None = None

    def __post_init__(self) -> None:
        what = f"detections of {self.name!r}"
        boxes = _float32(self.boxes, what)
        if boxes.size == 0:
            boxes = boxes.reshape(0, 4)
        if boxes.ndim != 2 or boxes.shape[1] != 4:
            raise ValueError(f"{what}: boxes must be [K, 4], got {boxes.shape}")
        k = boxes.shape[0]
        scores = _float32(self.scores, what).reshape(-1)
        if scores.shape != (k,):
            raise ValueError(f"{what}: {k} boxes but scores of shape {scores.shape}")
        feats = None
        if self.features is not None:
            f = _float32(self.features, what)
            if f.ndim < 1 or f.shape[0] != k:
                raise ValueError(f"{what}: {k} boxes but features of shape {f.shape}")
            feats = f.reshape(k, int(np.prod(f.shape[1:], dtype=np.int64)))
        object.__setattr__(self, "name", str(self.name))
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "scores", scores)
        object.__setattr__(self, "features", feats)


@dataclass(frozen=True, eq=False)
class CuhkQuery:
    """One CUHK-SYSU query with its protocol gallery (one row of `TestG{N}.mat`).

    image: name of the image the query person was cropped from.
    feature: [D] float32 embedding of the query's ground-truth box (any shape with D values).
    gallery: the protocol's gallery list in file order, pairs (image name, box): box is the query
      person's ground truth x, y, w, h in integer pixels in that image, or None (or an empty
      sequence, as the .mat file stores it) when the image does not contain the person.
    """

    image: str
    feature: np.ndarray
    gallery: tuple

    def __post_init__(self) -> None:
        what = f"CUHK query on {self.image!r}"
        entries = []
        for item in self.gallery:
            try:
                name, box = item
            except (TypeError, ValueError):
                raise ValueError(
                    f"{what}: gallery entries are (name, box) pairs, got {item!r}"
                ) from None
            if box is not None and np.size(box) == 0:
                box = None
            if box is not None:
                b = _int_boxes(box, f"{what}, gallery image {name!r}")
                if b.shape[0] != 1:
                    raise ValueError(f"{what}: one x, y, w, h box per image, got {box!r}")
                box = tuple(int(v) for v in b[0])
            entries.append((str(name), box))
        object.__setattr__(self, "image", str(self.image))
        object.__setattr__(self, "feature", _float32(self.feature, what).ravel())
        object.__setattr__(self, "gallery", tuple(entries))


@dataclass(frozen=True, eq=False)
class GroundTruthImage:
    """The annotated people of one test image (a PRW frame, or either dataset's image for
    `eval_detection`).

    name: image file name.
    boxes: [M, 4] integer x1, y1, x2, y2 in pixels (PRW's files: see `prw_gallery_boxes`).
    pids: [M] integer person ids (`UNLABELED_PID` for unlabeled people, as SeqNet / COAT).
    cam_id: camera id; None means "parse it from the name" (`cam_id_from_prw_name`), which only
      PRW's cross-camera mode needs.
    """

    name: str
    boxes: np.ndarray
    pids: np.ndarray
    cam_id: int | None = None

    def __post_init__(self) -> None:
        what = f"ground truth of {self.name!r}"
        boxes = _int_boxes(self.boxes, what)
        pids = np.asarray(self.pids).reshape(-1)
        if pids.size == 0:
            pids = np.zeros(0, dtype=np.int64)
        if pids.dtype.kind not in "biu" or pids.shape[0] != boxes.shape[0]:
            raise ValueError(
                f"{what}: expected {boxes.shape[0]} integer pids, got {pids.dtype} {pids.shape}"
            )
        object.__setattr__(self, "name", str(self.name))
        object.__setattr__(self, "boxes", boxes)
        object.__setattr__(self, "pids", pids.astype(np.int64))
        if self.cam_id is not None:
            object.__setattr__(self, "cam_id", int(self.cam_id))


@dataclass(frozen=True, eq=False)
class PrwQuery:
    """One PRW query (a line of `query_info.txt`).

    image: name of the frame the query was cropped from (e.g. "c1s3_055551.jpg").
    pid: the query person's id.
    feature: [D] float32 embedding of the query's ground-truth box (any shape with D values).
    cam_id: camera id; None means "parse it from `image`" (`cam_id_from_prw_name`).
    """

    image: str
    pid: int
    feature: np.ndarray
    cam_id: int | None = None

    def __post_init__(self) -> None:
        what = f"PRW query {self.pid!r} on {self.image!r}"
        object.__setattr__(self, "image", str(self.image))
        object.__setattr__(self, "pid", int(self.pid))
        object.__setattr__(self, "feature", _float32(self.feature, what).ravel())
        if self.cam_id is not None:
            object.__setattr__(self, "cam_id", int(self.cam_id))


# ----------------------------------------------------------------------------------------------
# Small public helpers.


def cam_id_from_prw_name(name: str) -> int:
    """PRW camera id: the digit after the first "c" that is followed by a digit ("c3s2_..." -> 3).

    Like the reference (regex `c\\d`) it reads a single digit; PRW has cameras 1 to 6.
    """
    m = re.search(r"c(\d)", name)
    if m is None:
        raise ValueError(f"no camera id ('c' followed by a digit) in PRW image name {name!r}")
    return int(m.group(1))


def prw_gallery_boxes(xywh: Any) -> np.ndarray:
    """PRW gallery annotation rows x, y, w, h -> [M, 4] int32 x1, y1, x2, y2, the reference's way.

    The four values are clipped at 0 BEFORE the conversion (a box starting at x = -5 becomes one
    starting at 0 with its full width, i.e. it is shifted, not cut), x2 = x + w and y2 = y + h are
    added in floating point, and the result is truncated to int32. Input: [M, 4] numbers (the
    annotation's columns 1:5, without the pid column).
    """
    b = np.array(xywh, dtype=np.float64)
    if b.size == 0:
        return np.zeros((0, 4), dtype=np.int32)
    b = b.reshape(-1, 4)
    b = np.clip(b, 0, None)
    b[:, 2:] += b[:, :2]
    return b.astype(np.int32)


def prw_query_box(x: float, y: float, w: float, h: float) -> np.ndarray:
    """PRW query box (x, y, w, h of `query_info.txt`) -> [4] int32 x1, y1, x2, y2.

    Unlike gallery boxes: converted first ([x, y, x + w, y + h] in floating point, truncated to
    int32, so toward zero) and clipped at 0 afterwards.
    """
    x, y, w, h = float(x), float(y), float(w), float(h)
    box = np.array([x, y, x + w, y + h]).astype(np.int32)
    return np.clip(box, 0, None)


def cuhk_protocol_name(gallery_size: int) -> tuple[str, bool]:
    """The CUHK-SYSU protocol file stem for a gallery size, and whether it is the full gallery.

    50, 100, 500, 1000, 2000, 4000 -> ("TestG{N}", False); -1 (full gallery) -> ("TestG50", True):
    the full setting reads TestG50's lists and adds the rest of the pool (`full_gallery=True`).
    """
    if gallery_size == -1:
        return "TestG50", True
    if gallery_size not in CUHK_GALLERY_SIZES:
        raise ValueError(
            f"CUHK-SYSU gallery size must be one of {CUHK_GALLERY_SIZES} or -1, got {gallery_size!r}"
        )
    return f"TestG{gallery_size}", False


def adaptive_iou_threshold(w: int, h: int) -> float:
    """Search match threshold of a ground-truth box of integer size w x h pixels.

    min(0.5, w * h / ((w + 10) * (h + 10))) in float64: 0.5 once the box is big enough
    (e.g. 20 x 40 gives 800 / 1500 = 0.533 -> 0.5), lower for small people (10 x 20 gives
    200 / 600 = 1/3).
    """
    w, h = int(w), int(h)
    return min(_IOU_CAP, float(w * h) / float((w + _PAD) * (h + _PAD)))


def average_precision(y_true: Any, y_score: Any) -> float:
    """Step-wise average precision; equals `sklearn.metrics.average_precision_score(y_true, y_score)`.

    AP = sum over the distinct scores s, from high to low, of (R(s) - R(s_prev)) * P(s), where
    P(s) and R(s) are the precision and recall of "score >= s": detections with equal scores form
    one threshold, so their order cannot matter. Recall is relative to the positives in y_true;
    no interpolation. The arithmetic follows sklearn's (same sort, cumulative sums, reversal and
    summation order), so the result normally has the same bits. Without any positive it returns
    0.0, as recent sklearn versions do (with a warning there). y_true: [N] labels, nonzero / True
    = positive; y_score: [N] scores (float32 scores are compared as float32). N must be > 0.
    """
    t = np.asarray(y_true).ravel()
    s = np.asarray(y_score).ravel()
    if t.shape != s.shape:
        raise ValueError(f"y_true and y_score differ in length: {t.shape} vs {s.shape}")
    if t.size == 0:
        raise ValueError("average precision of an empty ranking is undefined")
    order = np.argsort(s, kind="mergesort")[::-1]
    s = s[order]
    pos = (t[order] != 0).astype(np.float64)
    last = np.flatnonzero(np.diff(s))  # last index of every run of equal scores but the final one
    thresholds = np.r_[last, s.size - 1]
    tps = np.cumsum(pos)[thresholds]
    if tps[-1] == 0:
        return 0.0
    fps = 1 + thresholds - tps
    precision = tps / (tps + fps)
    recall = tps / tps[-1]
    precision = np.r_[precision[::-1], 1.0]
    recall = np.r_[recall[::-1], 0.0]
    return float(max(0.0, -np.sum(np.diff(recall) * precision[:-1])))


# ----------------------------------------------------------------------------------------------
# The reference's IoU, bit for bit.


def _reference_iou(det: np.ndarray, gt: np.ndarray, det_first: bool) -> np.ndarray:
    """[M, K] float64 IoU of float32 detections [K, 4] and integer ground truth [M, 4] (x1y1x2y2).

    Mirrors the reference's scalar code: intersection corners by Python `max` / `min` (the first
    argument wins ties: the detection if `det_first`, else the ground truth), a side is a float32
    subtraction when both its ends come from the detection, float64 otherwise; the intersection
    area is a float32 product when both sides are float32, float64 otherwise; the detection's area
    is float32; union = (det_area + gt_area) - inter and the ratio are float64.
    """
    d32 = det.astype(np.float32, copy=False)[None, :, :]  # [1, K, 4]
    d = d32.astype(np.float64)
    g = gt.astype(np.float64)[:, None, :]  # [M, 1, 4], exact for |values| < 2**53
    if det_first:
        lo_from_det = d[..., :2] >= g[..., :2]  # max(det, gt) returns det unless gt > det
        hi_from_det = d[..., 2:] <= g[..., 2:]
    else:
        lo_from_det = d[..., :2] > g[..., :2]  # max(gt, det) returns det only if det > gt
        hi_from_det = d[..., 2:] < g[..., 2:]
    lo = np.where(lo_from_det, d[..., :2], g[..., :2])
    hi = np.where(hi_from_det, d[..., 2:], g[..., 2:])
    both = lo_from_det & hi_from_det  # [M, K, 2]: this side is float32 - float32
    det_sides32 = d32[..., 2:] - d32[..., :2]  # [1, K, 2] float32 (also the det's w, h)
    side = np.where(both, det_sides32.astype(np.float64), hi - lo)
    side = np.where(side > 0, side, 0.0)  # Python max(0, side)
    f32_product = both[..., 0] & both[..., 1]
    prod32 = (side[..., 0].astype(np.float32) * side[..., 1].astype(np.float32)).astype(np.float64)
    inter = np.where(f32_product, prod32, side[..., 0] * side[..., 1])
    det_area = (det_sides32[..., 0] * det_sides32[..., 1]).astype(np.float64)  # [1, K]
    gt_area = (g[..., 2] - g[..., 0]) * (g[..., 3] - g[..., 1])  # [M, 1], exact integers
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter / ((det_area + gt_area) - inter)


# ----------------------------------------------------------------------------------------------
# Search: shared machinery.


@dataclass(frozen=True, eq=False)
class _Kept:
    boxes: np.ndarray  # [k, 4] float32, k >= 1: detections with score >= det_thresh
    features: np.ndarray  # [k, D] float32, C-contiguous (as the reference's fancy-indexed copy)


def _keep_detections(gallery: Iterable[GalleryDetections], det_thresh: float) -> dict:
    """name -> _Kept for the images with at least one detection scoring >= det_thresh."""
    thresh = np.float32(det_thresh)
    kept: dict = {}
    seen: set = set()
    for g in gallery:
        if not isinstance(g, GalleryDetections):
            raise TypeError(f"gallery entries must be GalleryDetections, got {type(g).__name__}")
        if g.name in seen:
            raise ValueError(f"gallery image {g.name!r} is given twice")
        seen.add(g.name)
        if g.features is None:
            raise ValueError(f"detections of {g.name!r} have no features; search needs them")
        keep = np.flatnonzero(g.scores >= thresh)
        if keep.size:
            kept[g.name] = _Kept(g.boxes[keep], np.ascontiguousarray(g.features[keep]))
    return kept


def _feature_dims(kept: dict) -> set:
    return {k.features.shape[1] for k in kept.values()}


def _check_dims(query_feature: np.ndarray, dims: set, what: str) -> None:
    if dims and dims != {query_feature.shape[0]}:
        raise ValueError(
            f"{what}: feature size {query_feature.shape[0]} but gallery features of size "
            f"{sorted(dims)}"
        )


def _rank_query(
    query_feature: np.ndarray, ranked: list, count_gt: int
) -> tuple[float, np.ndarray, int]:
    """AP, top-k hits [len(TOPK)] bool and count_tp of one query.

    ranked: (_Kept, target) for the gallery images taking part, in gallery order; target is None
    for an image without the query person, else (x1, y1, x2, y2 int box [1, 4], IoU threshold).
    """
    scores = []
    tp_at = []  # positions of the true positives in the concatenated ranking
    offset = 0
    for item, target in ranked:
        sim = item.features.dot(query_feature)  # float32, the reference's exact call
        if target is not None:
            box, thresh = target
            iou = _reference_iou(item.boxes, box, det_first=True)[0]
            cand = np.flatnonzero(iou >= thresh)
            if cand.size:
                # The highest similarity among the matching detections; argmax takes the lowest
                # index among exact ties (the documented tie rule).
                tp_at.append(offset + int(cand[np.argmax(sim[cand])]))
        scores.append(sim)
        offset += sim.shape[0]
    count_tp = len(tp_at)
    if count_tp > count_gt:  # cannot happen: one TP per positive image at most
        raise AssertionError("more true positives than ground truth")
    if count_tp == 0:
        return 0.0, np.zeros(len(TOPK), dtype=bool), 0
    y_score = np.concatenate(scores)
    y_true = np.zeros(y_score.shape[0], dtype=bool)
    y_true[tp_at] = True
    ap = average_precision(y_true, y_score) * (count_tp * 1.0 / count_gt)
    # Rank of a TP in the stable descending order: higher scores, then equal scores earlier in
    # the gallery sequence, come first.
    best = min(
        int(np.count_nonzero(y_score > y_score[p]))
        + int(np.count_nonzero(y_score[:p] == y_score[p]))
        for p in tp_at
    )
    hits = np.array([best < k for k in TOPK])
    return ap, hits, count_tp


def _summary(aps: np.ndarray, hits: np.ndarray, valid: np.ndarray) -> dict:
    out = {"mAP": float(np.mean(aps[valid]))}
    topk = hits[valid].mean(axis=0)
    for i, k in enumerate(TOPK):
        out[f"top{k}"] = float(topk[i])
    return out


# ----------------------------------------------------------------------------------------------
# CUHK-SYSU.


def eval_search_cuhk(
    gallery: Sequence[GalleryDetections],
    queries: Sequence[CuhkQuery],
    *,
    det_thresh: float = 0.5,
    full_gallery: bool = False,
) -> dict:
    """CUHK-SYSU search mAP and top-1/5/10 (see the module docstring for the exact protocol).

    gallery: detections on the pool images (annotation/pool.mat, 6,978 test images), in pool
      order; in `full_gallery` mode this order is also the order in which the images outside a
      query's protocol list are ranked. Pool images without detections may be left out.
    queries: the queries with the protocol lists of the chosen gallery size
      (`cuhk_protocol_name`); for `full_gallery` the TestG50 lists.
    det_thresh: detections scoring below it are dropped (`>=` keeps).
    full_gallery: rank every pool image except the query image (gallery size -1).

    Returns {"mAP", "top1", "top5", "top10": float, "per_query_ap": [Q] float64,
    "per_query_hits": [Q, 3] bool (a true positive within the top 1 / 5 / 10),
    "count_tp": [Q] int64, "count_gt": [Q] int64}.
    """
    queries = list(queries)
    if not queries:
        raise ValueError("no queries to evaluate")
    kept = _keep_detections(gallery, det_thresh)
    dims = _feature_dims(kept)
    pool = list(kept.items())  # pool order (dict insertion order), kept images only
    n = len(queries)
    aps = np.zeros(n, dtype=np.float64)
    hits = np.zeros((n, len(TOPK)), dtype=bool)
    tps = np.zeros(n, dtype=np.int64)
    gts = np.zeros(n, dtype=np.int64)
    for qi, q in enumerate(queries):
        if not isinstance(q, CuhkQuery):
            raise TypeError(f"queries must be CuhkQuery, got {type(q).__name__}")
        _check_dims(q.feature, dims, f"CUHK query {qi} ({q.image!r})")
        count_gt = 0
        ranked = []
        listed = set()
        for name, box in q.gallery:
            target = None
            if box is not None:
                count_gt += 1
                x, y, w, h = box
                target = (np.array([[x, y, x + w, y + h]]), adaptive_iou_threshold(w, h))
            if name in listed:  # a repeated entry: counted above, ranked once
                continue
            listed.add(name)
            item = kept.get(name)
            if item is not None:
                ranked.append((item, target))
        if count_gt == 0:
            raise ValueError(
                f"CUHK query {qi} ({q.image!r}): its gallery list has no image with the query "
                "person, so recall is undefined (the official protocol always has one)"
            )
        if full_gallery:
            for name, item in pool:
                if name != q.image and name not in listed:
                    ranked.append((item, None))
        aps[qi], hits[qi], tps[qi] = _rank_query(q.feature, ranked, count_gt)
        gts[qi] = count_gt
    out = _summary(aps, hits, np.ones(n, dtype=bool))
    out.update(per_query_ap=aps, per_query_hits=hits, count_tp=tps, count_gt=gts)
    return out


# ----------------------------------------------------------------------------------------------
# PRW.


def _cam(record: GroundTruthImage | PrwQuery, name: str) -> int:
    return record.cam_id if record.cam_id is not None else cam_id_from_prw_name(name)


def eval_search_prw(
    frames: Sequence[GroundTruthImage],
    gallery: Sequence[GalleryDetections],
    queries: Sequence[PrwQuery],
    *,
    det_thresh: float = 0.5,
    cross_camera: bool = False,
    on_empty_gt: str = "exclude",
) -> dict:
    """PRW search mAP and top-1/5/10 (see the module docstring for the exact protocol).

    frames: the annotated test frames (frame_test.mat), in file order; each query's gallery is
      drawn from them.
    gallery: detections per frame, matched by name; frames without an entry have no detections.
    queries: the queries (query_info.txt).
    det_thresh: detections scoring below it are dropped (`>=` keeps).
    cross_camera: False (default, SeqNet / COAT): the gallery is every frame but the query's own;
      True (NAE): also drop every frame of the query's camera.
    on_empty_gt: what to do with a query whose person occurs in no gallery frame (count_gt = 0):
      "exclude" (default) leaves it out of mAP / top-k with a warning, "raise" raises ValueError.

    Returns {"mAP", "top1", "top5", "top10": float over the valid queries, "per_query_ap": [Q]
    float64 (NaN for excluded queries), "per_query_hits": [Q, 3] bool, "count_tp": [Q] int64,
    "count_gt": [Q] int64, "valid": [Q] bool, "num_excluded": int}.
    """
    if on_empty_gt not in ("exclude", "raise"):
        raise ValueError(f"on_empty_gt must be 'exclude' or 'raise', got {on_empty_gt!r}")
    frames = list(frames)
    queries = list(queries)
    if not queries:
        raise ValueError("no queries to evaluate")
    names = [f.name for f in frames]
    if len(set(names)) != len(names):
        raise ValueError("PRW frames: some frame name is given twice")
    kept = _keep_detections(gallery, det_thresh)
    unknown = sorted(set(kept) - set(names))
    if unknown:
        raise ValueError(f"detections on {len(unknown)} images that are not frames: {unknown[:5]}")
    dims = _feature_dims(kept)
    cams = [_cam(f, f.name) for f in frames] if cross_camera else [None] * len(frames)
    # Per frame: pid -> its first box there, with the adaptive threshold of that box.
    targets = []
    for f in frames:
        first: dict = {}
        for row, pid in enumerate(f.pids.tolist()):
            if pid not in first:
                x1, y1, x2, y2 = (int(v) for v in f.boxes[row])
                first[pid] = (f.boxes[row : row + 1], adaptive_iou_threshold(x2 - x1, y2 - y1))
        targets.append(first)
    table = [(name, cam, target, kept.get(name)) for name, cam, target in zip(names, cams, targets)]

    n = len(queries)
    aps = np.full(n, np.nan, dtype=np.float64)
    hits = np.zeros((n, len(TOPK)), dtype=bool)
    tps = np.zeros(n, dtype=np.int64)
    gts = np.zeros(n, dtype=np.int64)
    valid = np.zeros(n, dtype=bool)
    for qi, q in enumerate(queries):
        if not isinstance(q, PrwQuery):
            raise TypeError(f"queries must be PrwQuery, got {type(q).__name__}")
        _check_dims(q.feature, dims, f"PRW query {qi} ({q.image!r})")
        qcam = _cam(q, q.image) if cross_camera else None
        count_gt = 0
        ranked = []
        for name, cam, target_of, item in table:
            if name == q.image or (cross_camera and cam == qcam):
                continue
            target = target_of.get(q.pid)
            if target is not None:
                count_gt += 1
            if item is not None:
                ranked.append((item, target))
        gts[qi] = count_gt
        if count_gt == 0:
            if on_empty_gt == "raise":
                raise ValueError(
                    f"PRW query {qi} (pid {q.pid} on {q.image!r}) occurs in no gallery frame, "
                    "so its recall is undefined"
                )
            continue
        valid[qi] = True
        aps[qi], hits[qi], tps[qi] = _rank_query(q.feature, ranked, count_gt)
    num_excluded = int(n - valid.sum())
    if num_excluded == n:
        raise ValueError("no PRW query has its person in its gallery; nothing to evaluate")
    if num_excluded:
        warnings.warn(
            f"{num_excluded} of {n} PRW queries have no occurrence of their person in their "
            "gallery and are left out of mAP and top-k (the reference would divide by zero)",
            stacklevel=2,
        )
    out = _summary(aps, hits, valid)
    out.update(
        per_query_ap=aps,
        per_query_hits=hits,
        count_tp=tps,
        count_gt=gts,
        valid=valid,
        num_excluded=num_excluded,
    )
    return out


# ----------------------------------------------------------------------------------------------
# Detection.


def eval_detection(
    images: Sequence[GroundTruthImage],
    detections: Sequence[GalleryDetections],
    *,
    det_thresh: float = 0.01,
    iou_thresh: float = 0.5,
    labeled_only: bool = False,
    unlabeled_pid: int = UNLABELED_PID,
) -> dict:
    """Detection recall and AP on the search gallery, as the person-search papers compute them.

    images: ground truth of the gallery images; detections: matched by name (images without an
    entry have no detections). det_thresh: 0.01 is what the reference's callers pass.
    labeled_only: count only people whose pid != unlabeled_pid; images without one are skipped.

    Returns {"recall": TP / ground truth, "ap": step-wise AP x recall, "count_tp": int,
    "count_gt": int, "num_detections": int (kept and evaluated)}.
    """
    images = list(images)
    names = [im.name for im in images]
    if len(set(names)) != len(names):
        raise ValueError("ground truth: some image name is given twice")
    by_name: dict = {}
    for d in detections:
        if d.name in by_name:
            raise ValueError(f"detections of {d.name!r} are given twice")
        by_name[d.name] = d
    unknown = sorted(set(by_name) - set(names))
    if unknown:
        raise ValueError(
            f"detections on {len(unknown)} images without ground truth entries: {unknown[:5]}"
        )
    dthresh = np.float32(det_thresh)
    ithresh = np.float32(iou_thresh)
    y_true = []
    y_score = []
    count_gt = 0
    count_tp = 0
    for im in images:
        gt = im.boxes
        if labeled_only:
            gt = gt[im.pids != unlabeled_pid]
            if gt.shape[0] == 0:
                continue
        num_gt = gt.shape[0]
        count_gt += num_gt
        d = by_name.get(im.name)
        if d is None:
            continue
        keep = np.flatnonzero(d.scores >= dthresh)
        if keep.size == 0:
            continue
        scores = d.scores[keep]
        if num_gt == 0:
            y_true.append(np.zeros(keep.size, dtype=bool))
            y_score.append(scores)
            continue
        iou = _reference_iou(d.boxes[keep], gt, det_first=False).astype(np.float32)  # [M, K]
        tf = iou >= ithresh
        cols = np.arange(keep.size)
        best_gt = np.zeros_like(tf)
        best_gt[np.argmax(iou, axis=0), cols] = True
        best_det = np.zeros_like(tf)
        best_det[np.arange(num_gt), np.argmax(iou, axis=1)] = True
        tf &= best_gt & best_det
        y_true.append(tf.any(axis=0))
        y_score.append(scores)
        count_tp += int(tf.sum())
    if count_gt == 0:
        raise ValueError("no ground-truth box to evaluate detection against")
    recall = count_tp * 1.0 / count_gt
    num_det = int(sum(s.size for s in y_score))
    ap = 0.0
    if count_tp:
        ap = average_precision(np.concatenate(y_true), np.concatenate(y_score)) * recall
    return {
        "recall": recall,
        "ap": ap,
        "count_tp": count_tp,
        "count_gt": count_gt,
        "num_detections": num_det,
    }


# ----------------------------------------------------------------------------------------------
# Command line: results and protocol files.


def load_results_npz(path: str) -> tuple[list[GalleryDetections], np.ndarray]:
    """Gallery detections and query features from an .npz of a model's outputs.

    Keys: `gallery_names` [G] str, `det_counts` [G] int (detections per gallery image, in
    order), `boxes` [N, 4] float32 x1 y1 x2 y2 pixels, `scores` [N], `features` [N, D],
    `query_features` [Q, D] (in protocol query order). N = sum(det_counts).
    """
    with np.load(path, allow_pickle=False) as z:
        missing = {"gallery_names", "det_counts", "boxes", "scores", "features",
                   "query_features"} - set(z.files)
        if missing:
            raise ValueError(f"results file {path!r} lacks keys {sorted(missing)}")
        names = [str(n) for n in z["gallery_names"]]
        counts = np.asarray(z["det_counts"], np.int64)
        boxes, scores, feats = z["boxes"], z["scores"], z["features"]
        queries = np.asarray(z["query_features"], np.float32)
    if counts.shape != (len(names),) or int(counts.sum()) != len(scores):
        raise ValueError(f"results file {path!r}: det_counts must have one entry per gallery "
                         f"name and sum to the {len(scores)} detections")
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    gallery = [GalleryDetections(n, boxes[s:s + c], scores[s:s + c], feats[s:s + c])
               for n, s, c in zip(names, starts.tolist(), counts.tolist())]
    return gallery, queries


def _protocol(path: str) -> dict:
    import json

    with open(path) as f:
        p = json.load(f)
    if not isinstance(p, dict) or p.get("dataset") not in ("cuhk_sysu", "prw"):
        raise ValueError(f"protocol file {path!r}: expected an object with \"dataset\": "
                         "\"cuhk_sysu\" or \"prw\" (see `python -m evaluation.person_search -h`)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import json
    import sys

    p = argparse.ArgumentParser(
        prog="python -m evaluation.person_search",
        description="Person-search mAP and top-1/5/10 under the CUHK-SYSU or PRW protocol "
        "(SeqNet / COAT / NAE evaluation semantics).",
        epilog="Protocol JSON: CUHK-SYSU {\"dataset\": \"cuhk_sysu\", \"queries\": [{\"image\", "
        "\"gallery\": [[name, [x, y, w, h] or null], ...]}]}; PRW {\"dataset\": \"prw\", "
        "\"frames\": [{\"name\", \"boxes\": [[x1, y1, x2, y2], ...], \"pids\": [...]}], "
        "\"queries\": [{\"image\", \"pid\"}]}. Results .npz: see load_results_npz.",
    )
    p.add_argument("--results", required=True, help=".npz of gallery detections + features")
    p.add_argument("--protocol", required=True, help="protocol JSON (see below)")
    p.add_argument("--det_thresh", type=float, default=0.5, help="keep score >= this (0.5)")
    p.add_argument("--full_gallery", action="store_true", help="CUHK-SYSU: every pool image")
    p.add_argument("--cross_camera", action="store_true", help="PRW: drop same-camera frames")
    args = p.parse_args(argv)
    try:
        gallery, qfeats = load_results_npz(args.results)
        proto = _protocol(args.protocol)
        qs = proto["queries"]
        if len(qs) != len(qfeats):
            raise ValueError(f"{len(qs)} queries in the protocol but {len(qfeats)} query features")
        if proto["dataset"] == "cuhk_sysu":
            queries = [CuhkQuery(q["image"], f, tuple((g[0], g[1]) for g in q["gallery"]))
                       for q, f in zip(qs, qfeats)]
            r = eval_search_cuhk(gallery, queries, det_thresh=args.det_thresh,
                                 full_gallery=args.full_gallery)
        else:
            frames = [GroundTruthImage(fr["name"], fr["boxes"], fr["pids"], fr.get("cam_id"))
                      for fr in proto["frames"]]
            queries = [PrwQuery(q["image"], q["pid"], f, q.get("cam_id"))
                       for q, f in zip(qs, qfeats)]
            r = eval_search_prw(frames, gallery, queries, det_thresh=args.det_thresh,
                                cross_camera=args.cross_camera)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({k: float(r[k]) for k in ("mAP", "top1", "top5", "top10")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
