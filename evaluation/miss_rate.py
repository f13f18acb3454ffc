"""CityPersons log-average miss rate (MR^-2), numerically identical to the official script.

This module owns the pedestrian miss-rate metric. Its numbers equal, to the last bit on
ordinary inputs (and always within 1e-9), those of the official CityPersons evaluation
(`eval_MR_multisetup.py` + the forked `coco.py` `loadRes`, as run by `eval_demo.py`), quirks
included; it is only faster: the overlaps of each image are computed once, vectorised, for all
setups, and the greedy matcher visits only (detection, ground truth) pairs whose overlap reaches
the IoU threshold. tests/test_miss_rate.py checks it against an independent literal
re-implementation of the official algorithm on random crowded scenes and hand-computed cases.

Usage:
  python -m evaluation.miss_rate --gt val_gt.json --dets dets.json [--setups Reasonable,All]
      [--out mr.json]
prints one JSON object {setup name: MR^-2 as a fraction}.

Inputs. Ground truth: COCO-like JSON {"images": [{"id", ...}], "categories": [{"id", ...}],
"annotations": [{"id", "image_id", "category_id", "bbox": [x, y, w, h], "height", "vis_ratio",
"ignore"}]}. Detections: JSON list of {"image_id", "category_id", "bbox": [x, y, w, h], "score"}.
Boxes are the dataset's `[x, y, w, h]` in pixels; they are converted to corners only inside the
overlap computation, exactly as the official code does.

Setups (`SETUPS`, name -> ((height_lo, height_hi), (visibility_lo, visibility_hi)), inclusive):
  Reasonable [50, 1e10] x [0.65, 1e10], Reasonable_small [50, 75] x [0.65, 1e10],
  Reasonable_occ=heavy [50, 1e10] x [0.2, 0.65], All [20, 1e10] x [0.2, 1e10] (the official four)
  and Bare [50, 1e10] x [0.9, 1e10], Partial [50, 1e10] x [0.65, 0.9], Heavy [50, 1e10] x
  [0, 0.65] (ours; the bounds are inclusive, so visibility 0.9 counts in Bare and Partial and 0.65
  in Partial and Heavy, as in forks of the official script that define them).

Quirks of the official evaluation, all reproduced:
  1. Ground-truth ignore flag per setup: the file's `ignore` (missing key -> 0), overridden to 1
     when `height < h_lo or height > h_hi or vis_ratio < v_lo or vis_ratio > v_hi` (both ends
     inclusive). It reads the annotation's `height` and `vis_ratio` fields, never the box. A
     non-integral file flag is used twice differently: truthiness decides "ignored", `int()`
     decides IoA-vs-IoU, so `ignore: 0.5` is ignored yet overlapped with IoU.
  2. Only category 1 is evaluated; ground truth and detections of other ids are dropped. The
     category must be listed in the ground truth's `categories`: if it is not, the official code
     evaluates nothing and every setup is -1 (we also warn). (Without a `categories` key at all
     the official loadRes crashes; we raise a ValueError.)
     Ground-truth annotations whose image_id is not in `images` are silently dropped.
  3. Duplicate ground-truth annotation ids: COCO's index keeps the LAST annotation of each id and
     every occurrence of the id is replaced by that annotation (so it may appear twice, on its
     own image, while the earlier ones vanish). Reproduced, with a warning.
  4. Detection ids are 1-based positions in the file (over all categories); a detection's height
     is bbox[3] (a `height` field in the file is overwritten).
  5. Per image: ground truth stably sorted non-ignored first; detections stably sorted by
     descending score (ties keep file order) and cut to the first 1000 BEFORE the height filter
     `h_lo / 1.25 <= bbox[3] < h_hi * 1.25` (note the half-open interval).
  6. Overlap in float64 with the official operation order: x2 = x + w, y2 = y + h,
     iw = min(x2) - max(x1) (0 if <= 0), likewise ih, inter = iw * ih, IoU = inter /
     ((det_area + gt_area) - inter) for non-ignored ground truth, IoA = inter / det_area for
     ignored ground truth. Integer boxes are exact integer arithmetic there; float64 gives the same
     bits as long as the products stay below 2**53.
  7. Greedy matching at IoU 0.5 (threshold min(0.5, 1 - 1e-10)), detections in score order. Among
     still-unmatched non-ignored ground truths with IoU >= 0.5, the LAST one (in file order) with
     the maximal IoU wins; otherwise the first ignored ground truth with IoA >= 0.5 absorbs the
     detection, which is then dropped from the TP/FP lists. Ignored ground truth absorbs any
     number of detections; non-ignored ground truth is matched at most once.
  8. A detection is a true positive iff the recorded matched ground-truth `id` is non-zero: a
     non-ignored ground truth whose annotation id is 0 is consumed by its detection, which counts
     as a FALSE positive (we warn when such ids exist).
  9. Images with neither ground truth nor detections are skipped, but the FPPI denominator is the
     number of unique image ids in the ground truth file (images without any person included).
 10. Accumulation: per-image results in ascending image-id order, then one stable sort by
     descending score, so score ties across images keep image order, then in-image order.
     tp / fp are cumulative sums over the non-ignored detections; fppi = fp / num_images;
     recall = tp / (number of non-ignored ground truths). No non-ignored ground truth in the
     whole set -> the setup's result is -1. (The official "recall envelope" pass is a no-op:
     recall is already monotone.)
 11. Reference FPPI points are the hard-coded rounded values 0.0100, 0.0178, 0.0316, 0.0562,
     0.1000, 0.1778, 0.3162, 0.5623, 1.0000 (not logspace(-2, 0, 9)).
 12. At each point the recall taken is recall[searchsorted(fppi, point, 'right') - 1] with Python
     negative indexing: when even the first counted detection is a false positive and
     1 / num_images > point, the index is -1 and the FINAL recall is taken. With no counted
     detection at all every recall is 0 (the official code swallows the IndexError).
 13. MR^-2 = exp(mean(log(1 - recall))) over the nine points: a recall of 1 at any point gives
     log(0) = -inf and an MR of exactly 0.
Deliberate differences, none of which changes a number the official code produces:
  - An empty detection list gives MR 1.0 for every setup with ground truth (-1 without); the
    official loadRes crashes on `anns[0]`.
  - Detections on image ids absent from the ground truth (of any category, as loadRes checks)
    raise a ValueError naming the ids instead of an AssertionError.
  - Malformed input (missing keys, non-finite numbers, bboxes that are not 4 numbers) raises one
    ValueError naming the file, the record index and the fix; the official code would crash or
    compute with NaN.
  - Setups are evaluated independently (fresh ignore flags each time), as the current official
    code does by deep-copying the ground truth in `_prepare`; an older revision mutated the
    shared ground truth and leaked ignore flags from one setup into the next.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluation.io import (
    atomic_write_json,
    check_detection_images,
    check_detections,
    check_ground_truth,
    load_detections,
    load_ground_truth,
    load_json,
)

__all__ = [
    "FPPI_POINTS",
    "SETUPS",
    "evaluate_miss_rate",
    "load_dets",
    "load_gt",
    "main",
    "miss_rate_curves",
]

_HUGE = 1e5**2  # the official "no upper bound" (1e10)

# name -> ((height_lo, height_hi), (visibility_lo, visibility_hi)); all bounds inclusive.
SETUPS: collections.OrderedDict[str, tuple[tuple[float, float], tuple[float, float]]] = (
    collections.OrderedDict(
        [
            ("Reasonable", ((50.0, _HUGE), (0.65, _HUGE))),
            ("Reasonable_small", ((50.0, 75.0), (0.65, _HUGE))),
            ("Reasonable_occ=heavy", ((50.0, _HUGE), (0.2, 0.65))),
            ("All", ((20.0, _HUGE), (0.2, _HUGE))),
            ("Bare", ((50.0, _HUGE), (0.9, _HUGE))),
            ("Partial", ((50.0, _HUGE), (0.65, 0.9))),
            ("Heavy", ((50.0, _HUGE), (0.0, 0.65))),
        ]
    )
)

# Official `fppiThrs`: rounded by hand, deliberately not np.logspace(-2, 0, 9).
FPPI_POINTS = np.array(
    [0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.0000], dtype=np.float64
)
PERSON_CATEGORY_ID = 1
IOU_THRESHOLD = min(0.5, 1 - 1e-10)
MAX_DETS = 1000
EXP_FILTER = 1.25
# Bound on the (detection, ground truth) pairs whose overlap is computed at once (memory).
_PAIR_CHUNK = 1 << 21


# ----------------------------------------------------------------------------------------------
# Loading and layout (validation lives in evaluation.io).


def load_gt(path: str) -> dict:
    """Loads and validates a ground-truth JSON file (see the module docstring for the format)."""
    return load_ground_truth(path)


def load_dets(path: str) -> list[dict]:
    """Loads and validates a detections JSON file (a list of {image_id, category_id, bbox, score})."""
    return load_detections(path)


@dataclass
class _GroundTruth:
    image_ids: list  # ascending unique ids of `images`
    image_index: dict  # image id -> position in image_ids
    person_listed: bool  # category 1 listed in `categories`
    img: np.ndarray  # [G] int64 image position, ascending (evaluation order)
    boxes: np.ndarray  # [G, 4] float64 xywh
    height: np.ndarray  # [G] float64 annotation `height`
    vis: np.ndarray  # [G] float64 annotation `vis_ratio`
    file_ignored: np.ndarray  # [G] bool, truthiness of the file flag
    file_crowd: np.ndarray  # [G] bool, int(file flag) != 0 (decides IoA vs IoU)
    id_nonzero: np.ndarray  # [G] bool, annotation id != 0 (the TP test)
    ann_ids: list  # [G] annotation ids


def _prepare_gt(gt: Any, source: str) -> _GroundTruth:
    """Validates the ground truth and lays out the person annotations the official code uses."""
    check_ground_truth(gt, source)
    image_ids = sorted({im["id"] for im in gt["images"]})  # np.unique order, as the official
    image_index = {img_id: k for k, img_id in enumerate(image_ids)}
    cat_ids = {c["id"] for c in gt["categories"]}
    person_listed = PERSON_CATEGORY_ID in cat_ids
    anns = gt.get("annotations", [])
    by_id: dict = {}
    per_image: dict = collections.defaultdict(list)
    for a in anns:
        by_id[a["id"]] = a  # COCO's index: the last annotation with an id wins
        per_image[a["image_id"]].append(a)

    if len(by_id) != len(anns):
        warnings.warn(
            f"{source}: annotation ids are not unique; like the official COCO index, every "
            "occurrence of a repeated id is replaced by the last annotation with that id",
            stacklevel=4,
        )
    if not person_listed:
        warnings.warn(
            f"{source}: category {PERSON_CATEGORY_ID} is not listed in 'categories'; the "
            "official evaluation then evaluates nothing and every miss rate is -1",
            stacklevel=4,
        )

    # The official _prepare lists annotation ids image by image (ascending image id, file order
    # within an image, categories listed in the file), resolves each id through the index, then
    # groups the resolved annotations by their own (image_id, category_id).
    grouped: dict = collections.defaultdict(list)
    if person_listed:
        for img_id in image_ids:
            for a in per_image.get(img_id, ()):
                if a["category_id"] in cat_ids:
                    r = by_id[a["id"]]
                    if r["category_id"] == PERSON_CATEGORY_ID and r["image_id"] in image_index:
                        grouped[image_index[r["image_id"]]].append(r)
    ordered = [(k, a) for k in sorted(grouped) for a in grouped[k]]
    n = len(ordered)
    img = np.fromiter((k for k, _ in ordered), dtype=np.int64, count=n)
    boxes = np.array([a["bbox"] for _, a in ordered], dtype=np.float64).reshape(n, 4)
    height = np.array([a["height"] for _, a in ordered], dtype=np.float64)
    vis = np.array([a["vis_ratio"] for _, a in ordered], dtype=np.float64)
    flags = [a.get("ignore", 0) for _, a in ordered]
    file_ignored = np.array([bool(f) for f in flags], dtype=bool)
    file_crowd = np.array([int(f) != 0 for f in flags], dtype=bool)
    id_nonzero = np.array([a["id"] != 0 for _, a in ordered], dtype=bool)
    if n and not id_nonzero.all():
        warnings.warn(
            f"{source}: some person annotations have id 0; as in the official evaluation, a "
            "detection matched to one of them counts as a false positive",
            stacklevel=4,
        )
    return _GroundTruth(
        image_ids=image_ids,
        image_index=image_index,
        person_listed=person_listed,
        img=img,
        boxes=boxes,
        height=height,
        vis=vis,
        file_ignored=file_ignored,
        file_crowd=file_crowd,
        id_nonzero=id_nonzero,
        ann_ids=[a["id"] for _, a in ordered],
    )


@dataclass
class _Detections:
    img: np.ndarray  # [D] int64 image position, ascending; within an image by score rank
    score: np.ndarray  # [D] float64
    height: np.ndarray  # [D] float64, bbox[3]
    boxes: np.ndarray  # [D, 4] float64 xywh
    src: np.ndarray  # [D] int64 position of each detection in the input list


def _prepare_dets(dets: Any, gt: _GroundTruth, source: str) -> _Detections:
    """Validates detections, keeps category 1, sorts per image and applies maxDets."""
    if not isinstance(dets, list):
        check_detections(dets, source)  # raises: not a list
    n = len(dets)
    # Fast path: pull the columns with comprehensions and check them as arrays; on any sign of
    # trouble fall back to the record-by-record check, which names the offending record.
    try:
        image_ids = [d["image_id"] for d in dets]
        cats = [d["category_id"] for d in dets]
        boxes = np.array([d["bbox"] for d in dets])
        scores = np.array([d["score"] for d in dets])
        ok = (
            boxes.shape == (n, 4)
            and scores.shape == (n,)
            and boxes.dtype.kind in "iuf"
            and scores.dtype.kind in "iuf"
            and bool(np.isfinite(boxes).all())
            and bool(np.isfinite(scores).all())
            and {type(x) for x in image_ids}.union(map(type, cats)) <= {int, float, str}
        )
    except (KeyError, TypeError, ValueError, OverflowError):
        ok = False
    if not ok:
        check_detections(dets, source)
        # Valid record by record (e.g. numpy scalars inside): build the arrays the slow way.
        image_ids = [d["image_id"] for d in dets]
        cats = [d["category_id"] for d in dets]
        boxes = np.array([[float(v) for v in d["bbox"]] for d in dets], dtype=np.float64)
        scores = np.array([float(d["score"]) for d in dets], dtype=np.float64)
    boxes = boxes.astype(np.float64, copy=False).reshape(n, 4)
    scores = scores.astype(np.float64, copy=False)
    # loadRes asserts that every detection (any category) is on a ground-truth image.
    check_detection_images(image_ids, gt.image_index, source)

    if not gt.person_listed:
        keep = np.zeros(n, dtype=bool)
    else:
        keep = np.array([c == PERSON_CATEGORY_ID for c in cats], dtype=bool).reshape(n)
    idx = np.flatnonzero(keep)
    index = gt.image_index
    img = np.array(
        list(map(index.__getitem__, map(image_ids.__getitem__, idx.tolist()))), dtype=np.int64
    ).reshape(idx.size)
    # Per image: stable sort by descending score (ties keep file order), first MAX_DETS.
    order = np.argsort(-scores[idx], kind="stable")
    order = order[np.argsort(img[order], kind="stable")]
    img = img[order]
    idx = idx[order]
    if img.size:
        starts = np.searchsorted(img, img, side="left")
        rank = np.arange(img.size) - starts
        top = rank < MAX_DETS
        img, idx = img[top], idx[top]
    return _Detections(
        img=img, score=scores[idx], height=boxes[idx, 3].copy(), boxes=boxes[idx], src=idx
    )


# ----------------------------------------------------------------------------------------------
# Overlaps: every (detection, ground truth) pair of an image, computed once for all setups.


@dataclass
class _Pairs:
    det: np.ndarray  # [P] int64, ascending; ties by gt index ascending
    gt: np.ndarray  # [P] int64
    iou: np.ndarray  # [P] float64
    ioa: np.ndarray  # [P] float64 (intersection over the detection's area)


def _candidate_pairs(dets: _Detections, gt: _GroundTruth, num_images: int) -> _Pairs:
    """Pairs on the same image whose IoU or IoA reaches the threshold, with both overlaps."""
    gt_count = np.bincount(gt.img, minlength=num_images)
    gt_start = np.concatenate([[0], np.cumsum(gt_count)[:-1]]) if num_images else gt_count
    counts = gt_count[dets.img] if dets.img.size else np.zeros(0, np.int64)
    # Corners and areas exactly as the official `iou`: x2 = x + w, area = w * h.
    dx1, dy1, dw, dh = dets.boxes.T
    dx2, dy2, darea = dx1 + dw, dy1 + dh, dw * dh
    gx1, gy1, gw, gh = gt.boxes.T
    gx2, gy2, garea = gx1 + gw, gy1 + gh, gw * gh

    # Chunks of whole detections holding about _PAIR_CHUNK pairs each.
    cum = np.cumsum(counts)
    total_pairs = int(cum[-1]) if cum.size else 0
    cuts = np.searchsorted(cum, np.arange(_PAIR_CHUNK, total_pairs, _PAIR_CHUNK))
    bounds = np.unique(np.concatenate([[0], cuts, [counts.size]]))
    out = []
    for a, b in zip(bounds[:-1].tolist(), bounds[1:].tolist()):
        if b <= a:
            continue
        c = counts[a:b]
        total = int(c.sum())
        if total == 0:
            continue
        pd = np.repeat(np.arange(a, b), c)
        first = np.cumsum(c) - c
        pg = np.repeat(gt_start[dets.img[a:b]], c) + (np.arange(total) - np.repeat(first, c))
        # Horizontal overlap first: in a wide street scene most pairs fail it already.
        iw = np.minimum(dx2[pd], gx2[pg]) - np.maximum(dx1[pd], gx1[pg])
        hit = iw > 0
        pd, pg, iw = pd[hit], pg[hit], iw[hit]
        ih = np.minimum(dy2[pd], gy2[pg]) - np.maximum(dy1[pd], gy1[pg])
        hit = ih > 0
        pd, pg, iw, ih = pd[hit], pg[hit], iw[hit], ih[hit]
        inter = iw * ih
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            iou = inter / ((darea[pd] + garea[pg]) - inter)
            ioa = inter / darea[pd]
        # Keep the pairs that can matter under some setup (either overlap can be chosen).
        live = (iou >= IOU_THRESHOLD) | (ioa >= IOU_THRESHOLD)
        out.append((pd[live], pg[live], iou[live], ioa[live]))
    if not out:
        e = np.zeros(0, np.int64)
        return _Pairs(e, e.copy(), np.zeros(0), np.zeros(0))
    return _Pairs(*(np.concatenate(parts) for parts in zip(*out)))


# ----------------------------------------------------------------------------------------------
# Per-setup evaluation.


def _greedy_match(pd: list, pg: list, pv: list, num_gt: int) -> tuple[list, list]:
    """The official greedy matcher restricted to non-ignored candidate pairs.

    Pairs are sorted by detection (score order) then ground truth (file order), and all have
    IoU >= threshold. For each detection the LAST still-unmatched ground truth with the maximal IoU
    wins (the official test is `iou < best -> skip`, so ties move to later ground truth).
    Returns the matched (detection, ground truth) index lists.
    """
    matched = bytearray(num_gt)
    out_d: list = []
    out_g: list = []
    cur = -1
    best_g = -1
    best_v = IOU_THRESHOLD
    for d, g, v in zip(pd, pg, pv):
        if d != cur:
            if best_g >= 0:
                matched[best_g] = 1
                out_d.append(cur)
                out_g.append(best_g)
            cur, best_g, best_v = d, -1, IOU_THRESHOLD
        if not matched[g] and v >= best_v:
            best_v, best_g = v, g
    if best_g >= 0:
        out_d.append(cur)
        out_g.append(best_g)
    return out_d, out_g


@dataclass
class _SetupResult:
    fppi: np.ndarray  # [N] float64 over counted detections in score order
    recall: np.ndarray  # [N] float64
    num_pos: int  # non-ignored ground truth (the recall denominator)
    mr: float
    counted: np.ndarray  # [N] int64 detection rows (of _Detections) in evaluation order
    match: np.ndarray  # [N] int64 matched ground-truth row, -1 for a false positive
    is_tp: np.ndarray  # [N] bool
    ignored: np.ndarray  # [G] bool, ground truth ignored in this setup


def _log_average_miss_rate(fppi: np.ndarray, recall: np.ndarray) -> float:
    if recall.size == 0:
        q = np.zeros(FPPI_POINTS.size)  # official: IndexError swallowed, recalls stay 0
    else:
        idx = np.searchsorted(fppi, FPPI_POINTS, side="right") - 1
        q = recall[idx]  # idx == -1 takes the final recall, as Python list indexing does
    mrs = 1 - q
    with np.errstate(divide="ignore"):
        return float(np.exp(np.mean(np.log(mrs))))


def _evaluate_setup(
    gt: _GroundTruth,
    dets: _Detections,
    pairs: _Pairs,
    num_images: int,
    ranges: tuple[tuple[float, float], tuple[float, float]],
) -> _SetupResult:
    (h_lo, h_hi), (v_lo, v_hi) = ranges
    out_of_range = (gt.height < h_lo) | (gt.height > h_hi) | (gt.vis < v_lo) | (gt.vis > v_hi)
    ignored = gt.file_ignored | out_of_range
    crowd = gt.file_crowd | out_of_range
    num_pos = int(np.count_nonzero(~ignored))
    empty = np.zeros(0)
    if num_pos == 0:
        e = np.zeros(0, np.int64)
        return _SetupResult(empty, empty, 0, -1.0, e, e.copy(), np.zeros(0, bool), ignored)

    kept = (dets.height >= h_lo / EXP_FILTER) & (dets.height < h_hi * EXP_FILTER)
    overlap = np.where(crowd[pairs.gt], pairs.ioa, pairs.iou)
    cand = kept[pairs.det] & (overlap >= IOU_THRESHOLD)
    cand_ignored = ignored[pairs.gt]
    reg = cand & ~cand_ignored
    md, mg = _greedy_match(
        pairs.det[reg].tolist(), pairs.gt[reg].tolist(), overlap[reg].tolist(), gt.img.size
    )
    n_det = dets.img.size
    match = np.full(n_det, -1, dtype=np.int64)
    match[np.asarray(md, dtype=np.int64)] = np.asarray(mg, dtype=np.int64)
    on_ignore = np.zeros(n_det, dtype=bool)
    on_ignore[pairs.det[cand & cand_ignored]] = True
    matched = match >= 0
    dropped = ~matched & on_ignore  # absorbed by an ignore region: neither TP nor FP
    is_tp = matched & gt.id_nonzero[np.maximum(match, 0)]

    counted = np.flatnonzero(kept & ~dropped)  # ascending image, then in-image score rank
    counted = counted[np.argsort(-dets.score[counted], kind="stable")]
    tp_flags = is_tp[counted]
    tp = np.cumsum(tp_flags).astype(np.float64)
    fp = np.cumsum(~tp_flags).astype(np.float64)
    fppi = fp / num_images
    recall = tp / num_pos
    return _SetupResult(
        fppi, recall, num_pos, _log_average_miss_rate(fppi, recall),
        counted, np.where(tp_flags, match[counted], -1), tp_flags, ignored,
    )


def resolve_setups(setups: Any, table: Mapping | None = None) -> collections.OrderedDict:
    """Setup selection -> {name: ((height_lo, height_hi), (vis_lo, vis_hi))}.

    `setups`: None (all of `table`), a name or names from `table`, or a mapping of custom
    ranges. `table` defaults to `SETUPS`; other evaluators (Caltech) pass their own."""
    table = SETUPS if table is None else table
    if setups is None:
        return collections.OrderedDict(table)
    if isinstance(setups, str):
        setups = [setups]
    if isinstance(setups, Mapping):
        out = collections.OrderedDict()
        for name, ranges in setups.items():
            try:
                (h_lo, h_hi), (v_lo, v_hi) = ranges
                out[str(name)] = ((float(h_lo), float(h_hi)), (float(v_lo), float(v_hi)))
            except (TypeError, ValueError):
                raise ValueError(
                    f"setup {name!r}: expected ((height_lo, height_hi), (vis_lo, vis_hi)), "
                    f"got {ranges!r}"
                ) from None
        return out
    out = collections.OrderedDict()
    for name in setups:
        if name not in table:
            raise ValueError(f"unknown setup {name!r}; choose from {', '.join(table)}")
        out[name] = table[name]
    if not out:
        raise ValueError(f"no setup selected; choose from {', '.join(table)}")
    return out


def _run(
    gt_dict: Any,
    dets_list: Any,
    setups: Any,
    gt_source: str = "ground truth",
    dets_source: str = "detections",
) -> dict[str, _SetupResult]:
    chosen = resolve_setups(setups)
    gt = _prepare_gt(gt_dict, source=gt_source)
    dets = _prepare_dets(dets_list, gt, source=dets_source)
    num_images = len(gt.image_ids)
    pairs = _candidate_pairs(dets, gt, num_images)
    return {
        name: _evaluate_setup(gt, dets, pairs, num_images, ranges)
        for name, ranges in chosen.items()
    }


def evaluate_miss_rate(
    gt: dict, dets: list[dict], setups: Sequence[str] | Mapping | str | None = None
) -> dict[str, float]:
    """MR^-2 per setup, as a fraction, equal to the official CityPersons evaluation.

    Args:
      gt: ground-truth dict (COCO-like; see the module docstring).
      dets: list of {image_id, category_id, bbox [x, y, w, h], score}.
      setups: None for all of `SETUPS`, a name or list of names from `SETUPS`, or a mapping
        name -> ((height_lo, height_hi), (vis_lo, vis_hi)) for custom ranges.

    Returns:
      {setup name: MR^-2}, in the order of `setups`; -1.0 for a setup without non-ignored ground
      truth (the official convention).

    Raises:
      ValueError: malformed input, unknown setup name, or detections on unknown images.
    """
    return {name: r.mr for name, r in _run(gt, dets, setups).items()}


def miss_rate_curves(
    gt: dict, dets: list[dict], setups: Sequence[str] | Mapping | str | None = None
) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Full miss-rate-vs-FPPI curves, one point per counted detection in score order.

    Returns:
      {setup name: (fppi [N] float64, miss_rate [N] float64)}, miss_rate = 1 - recall. Empty
      arrays for a setup without non-ignored ground truth or without counted detections.
    """
    return {name: (r.fppi, 1.0 - r.recall) for name, r in _run(gt, dets, setups).items()}


@dataclass(frozen=True)
class SetupMatch:
    """The official matching of one setup, for error analysis and plots.

    Detections are those the official code counts (category 1, first 1000 per image, inside the
    setup's expanded height range, not absorbed by an ignore region), in its evaluation order
    (descending score; ties by image, then in-image rank). Ground truth is every person
    annotation the official code loads, in its order.

    Attributes:
      scores: [N] float64 detection scores, non-increasing.
      is_tp: [N] bool.
      det_index: [N] int64 position of each detection in the input list.
      image_ids: [N] image id of each detection.
      det_boxes: [N, 4] float64 xywh.
      gt_index: [N] int64 row of the matched ground truth (-1 for a false positive).
      gt_ann_ids: [G] annotation ids; gt_image_ids: [G] image ids; gt_boxes: [G, 4] float64 xywh.
      gt_ignored: [G] bool, ignored in this setup (file flag or out of its ranges).
      num_images: FPPI denominator (unique image ids of the ground truth).
      mr: the setup's MR^-2 (-1 without non-ignored ground truth).
    """

    scores: np.ndarray
    is_tp: np.ndarray
    det_index: np.ndarray
    image_ids: list
    det_boxes: np.ndarray
    gt_index: np.ndarray
    gt_ann_ids: list
    gt_image_ids: list
    gt_boxes: np.ndarray
    gt_ignored: np.ndarray
    num_images: int
    mr: float

    def gt_matched_score(self) -> np.ndarray:
        """[G] float64: score of the detection matched to each ground truth, -inf if none. The
        greedy matcher visits detections in score order, so the ground truth found at score
        threshold t are exactly those with a matched score >= t."""
        out = np.full(len(self.gt_ann_ids), -np.inf)
        tp = self.is_tp
        out[self.gt_index[tp]] = self.scores[tp]
        return out


def setup_matches(
    gt: dict, dets: list[dict], setups: Sequence[str] | Mapping | str | None = None
) -> dict[str, SetupMatch]:
    """Per setup, which detection matched which ground truth under the official rules."""
    gt_l = _prepare_gt(gt, source="ground truth")
    dets_l = _prepare_dets(dets, gt_l, source="detections")
    num_images = len(gt_l.image_ids)
    pairs = _candidate_pairs(dets_l, gt_l, num_images)
    out = {}
    for name, ranges in resolve_setups(setups).items():
        r = _evaluate_setup(gt_l, dets_l, pairs, num_images, ranges)
        rows = r.counted
        out[name] = SetupMatch(
            scores=dets_l.score[rows],
            is_tp=r.is_tp,
            det_index=dets_l.src[rows],
            image_ids=[gt_l.image_ids[k] for k in dets_l.img[rows].tolist()],
            det_boxes=dets_l.boxes[rows],
            gt_index=r.match,
            gt_ann_ids=list(gt_l.ann_ids),
            gt_image_ids=[gt_l.image_ids[k] for k in gt_l.img.tolist()],
            gt_boxes=gt_l.boxes,
            gt_ignored=r.ignored,
            num_images=num_images,
            mr=r.mr,
        )
    return out


# ----------------------------------------------------------------------------------------------
# Command line.


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on bad input, with one line on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.miss_rate",
        description="CityPersons log-average miss rate MR^-2 (identical to the official "
        "eval_MR_multisetup.py). Prints one JSON object {setup: MR as a fraction}; -1 marks a "
        "setup without non-ignored ground truth.",
    )
    parser.add_argument("--gt", required=True, help="ground-truth JSON (COCO-like, CityPersons)")
    parser.add_argument("--dets", required=True, help="detections JSON list")
    parser.add_argument(
        "--setups",
        default=None,
        help=f"comma-separated subset of: {', '.join(SETUPS)} (default: all)",
    )
    parser.add_argument("--out", default=None, help="also write the JSON here, atomically")
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            setups = None
            if args.setups is not None:
                setups = [s.strip() for s in args.setups.split(",") if s.strip()]
            resolve_setups(setups)  # reject a bad name before reading large files
            gt = load_json(args.gt, "ground truth")
            dets = load_json(args.dets, "detections")
            results = _run(
                gt,
                dets,
                setups,
                gt_source=f"ground truth file {args.gt!r}",
                dets_source=f"detections file {args.dets!r}",
            )
            mr = {name: r.mr for name, r in results.items()}
            if args.out:
                atomic_write_json(mr, args.out)
        except ValueError as e:
            _print_warnings(caught)
            print(f"error: {e}", file=sys.stderr)
            return 2
    _print_warnings(caught)
    print(json.dumps(mr))
    return 0


def _print_warnings(caught: list) -> None:
    seen = set()
    for w in caught:
        msg = str(w.message)
        if msg not in seen:
            seen.add(msg)
            print(f"warning: {msg}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
