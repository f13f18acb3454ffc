"""Caltech-USA pedestrian evaluation (log-average miss rate MR^-2 / MR^-4 at IoU 0.5 and 0.75).

This reproduces, in numpy, the Caltech benchmark evaluation as it is run on the refined ("new")
test annotations of Zhang et al., "How far are we from solving pedestrian detection?" (CVPR
2016), which the Repulsion Loss paper reports at IoU 0.5 and 0.75. tests/test_caltech_eval.py
checks it against an independent loop-by-loop re-implementation of the MATLAB code.

Usage:
  python -m evaluation.caltech --gt caltech_test_gt.json --dets dets.json
      [--setups Reasonable,All] [--iou 0.5,0.75] [--protocol new|original] [--mr-floor 0]
      [--out mr.json]
prints one JSON object {"<setup>@<iou>": {"MR-2": fraction, "MR-4": fraction}} (null where the
setup has no non-ignored ground truth).

Python API: `evaluate_caltech(gt, dets, ...)` (that same dict), `caltech_curve(gt, dets, ...)`
(the full miss-rate-vs-FPPI curve of one setup and IoU, for plots), `log_average_miss_rate`.

Inputs. Ground truth: the COCO-like JSON of our CityPersons evaluator (see evaluation/io.py):
{"images": [{"id", "width"?, "height"?}], "categories": [{"id": 1}], "annotations": [{"id",
"image_id", "category_id", "bbox": [x, y, w, h], "height", "vis_ratio", "ignore"?, "label"?}]}.
`label` is the Caltech object label ('person', 'people', 'person?', 'ignore', ...); a missing
label means 'person'. Detections: JSON list of {"image_id", "category_id", "bbox": [x, y, w, h],
"score"}. Only category 1 is evaluated (other categories are dropped on both sides).

Sources read (public code; file paths inside the repositories):
  [T] pdollar/toolbox detector/bbGt.m (bbLoad, evalRes, compRoc, compOas) and detector/bbApply.m
      (resize, squarify); detector/acfTest.m for the 1e-10 floor variant.
  [N] liuwei16/CSP eval_caltech/dbEval.m (+ its copy of bbGt.m, identical in the functions used
      here): the dbEval of the new-annotation release (annVer='new', `anno_test_1xnew` text
      files read with bbGt('bbLoad')).
  [O] GBJim/caltech_tool_kit dbEval.m: the original Caltech Pedestrian code 3.2.1 dbEval
      (old .vbb annotations, filterGtFun).
  MR^-4 sampling 10.^(-4:.25:0) (17 points): the commented fppiRn line of [N] builds the
      samples as 10.^(fppiRn(1):.25:fppiRn(2)), and other public Caltech/KAIST scripts define
      samplesMR4 / ref_mr4 = 10.^(-4:.25:0) next to 10.^(-2:.25:0).

Protocol as established (setup = height range hr, visibility range vr from the `exps` table of
[N]/[O]: Reasonable hr=[50 inf] vr=[.65 inf]; All [20 inf] [.2 inf]; Occ=heavy [50 inf]
[.2 .65]; every setup uses the expansion filter 1.25; the 'Overlap=75' row is Reasonable at
overlap .75):
  1. Ground truth, new annotations [N]+[T bbLoad]: keep objects whose label is in
     lbls={'person','person?','people','ignore'} (others are dropped, not even used as ignore
     regions); ilbls={'ignore'} only. ign=1 if the file flag is set, OR the label is in ilbls, OR
     x1=bb(1) or x2=bb(1)+bb(3) is outside xRng=[5 635], OR y1 or y2=bb(2)+bb(4) is outside
     yRng=[5 475] (bnds=[5 5 635 475] for 640x480 frames), OR h=bb(4) is outside hRng, OR the
     visible fraction is outside vRng. Every range test is inclusive: ign when v<rng(1) or
     v>rng(2). So with the new annotations 'people' and 'person?' boxes are evaluated like
     'person' (only 'ignore' regions are ignore by label).
     The original code [O] instead keeps the same four labels but un-ignores only label 'person'
     (so 'person?', 'people', 'ignore' are all ignore regions), with height half-open
     (h>=hr(1) & h<hr(2)) - selectable here as protocol "original".
  2. Non-ignored ground truth boxes only are then reshaped to aspect 0.41 by
     bbApply('resize',bb,1,0,.41) (the same operation as bbLoad's squarify {3,.41}): the
     height and the centre are kept and, in this floating-point order, d = h*0.41 - w,
     x = x - d/2, w = w + d. Ignored boxes keep their annotated shape.
  3. Detections: [O] resizes every detection the same way (bbApply('resize',bb,1,0,.41); its
     `resize` column additionally scales the height by 100/128 for a few old algorithms, which
     is not reproduced); [N] has that line commented out, so with the new annotations
     detections are matched as given. Then (both) only detections with h >= hr(1)*(1/1.25) and h < hr(2)*1.25 are kept
     (hr.*[1/filter filter], half-open); there is no per-image cap on the number of detections.
  4. evalRes (per image, mul=0): detections sorted by descending score (MATLAB's stable sort:
     ties keep input order), ground truth stably sorted non-ignored first. oa = compOas(dt, gt,
     ign): iw = min(x2) - max(x1), ih likewise, 0 if either is <= 0; t = iw*ih; oa = t/area(dt)
     (IoA) for ignored gt, t/((area(dt)+area(gt))-t) (IoU) otherwise. For each detection, best
     starts at thr and a ground truth is accepted when oa >= best (inclusive comparison: IoU
     exactly 0.5 matches at threshold 0.5); already matched non-ignored gt are skipped; among
     unmatched non-ignored gt the LAST one reaching the maximal overlap wins; only if none
     matches, the FIRST ignored gt with IoA >= thr absorbs the detection (match -1). Non-ignored
     gt match at most once; ignored gt absorb any number of detections.
  5. compRoc (roc=1): absorbed detections (-1) and ignored gt are discarded; detections of all
     images are concatenated in image order and sorted by descending score (stable); tp =
     cumsum(match==1), fp = cumsum(match~=1); fppi = fp/nImg with nImg the number of images
     (frames with no annotation count); recall = tp/np with np the number of non-ignored gt.
     Reference sampling: xs1=[-inf; fppi], ys1=[0; recall]; at each reference point r the
     recall is ys1 at the LAST index with xs1 <= r (inclusive), so a reference below the first
     counted detection's fppi reads recall 0 (the -inf sentinel). No counted detection at all:
     every sample is 0 (ref*0), i.e. MR 1.
  6. MR = exp(mean(log(1 - recall_at_refs))) over ref = 10.^(-2:.25:0) (9 points) for MR^-2 and
     10.^(-4:.25:0) (17 points) for MR^-4. dbEval applies no floor, so a recall of 1 at any
     reference gives log(0) = -inf and MR 0 exactly (the default here); the toolbox's acfTest
     uses exp(mean(log(max(1e-10, 1-recall)))) instead (`mr_floor=1e-10`).

Deliberate differences from the MATLAB code:
  - Visibility is the annotation's `vis_ratio`, not recomputed from occ/bbv as bbLoad does
    (v=1 when not occluded or bbv is all zero, v=0 when bbv==bb, else the area ratio); the
    dataset builder must write that value. Heights are taken from bbox[3] like bbLoad's bb(4);
    the annotation's `height` field is not used. The setups whose visibility range is [inf inf]
    in the exps table (Scale=*, Occ=none, Ar=*) rely on the .vbb loader's vf=inf convention for
    unoccluded boxes and mark every box ignored under bbLoad, so they are not offered; neither
    is Occ=partial, whose meaning also changes under bbLoad.
  - Protocol "original" keeps bbLoad's bounds test (each corner inside the range), which equals
    [O]'s (x1>=5 & x2<=635 & y1>=5 & y2<=475) for boxes of non-negative size, and reads
    `vis_ratio` where [O] uses vf=inf for boxes without a visible-part box; for the setups
    offered here (upper visibility bound inf, or below 1) both give the same flags.
  - A setup without any non-ignored ground truth gives None (null) instead of NaN (compRoc
    divides 0/0) or 1 (no detection at all).
  - Malformed input raises one ValueError naming the record and the fix (via evaluation/io.py):
    detections on image ids absent from the ground truth, duplicate image ids, annotations on
    unknown images, non-string labels.
  - Images are matched by id from JSON rather than by file order; the image order used for
    score ties across images is the order of `images` in the ground-truth file.
  - Reference points are computed as 10.0 ** (k * 0.25) and the mean of the logs is summed left
    to right; values can differ from MATLAB's in the last bit of the libm functions.
"""

from __future__ import annotations

import argparse
import collections
import json
import math
import sys
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from evaluation import miss_rate
from evaluation.io import (
    atomic_write_json,
    check_detection_images,
    check_detections,
    check_ground_truth,
    load_json,
)

__all__ = [
    "CALTECH_BOUNDS",
    "MR2_REFERENCE",
    "MR4_REFERENCE",
    "NEW_ANNOTATIONS",
    "ORIGINAL_ANNOTATIONS",
    "PROTOCOLS",
    "SETUPS",
    "CaltechCurve",
    "CaltechProtocol",
    "caltech_curve",
    "evaluate_caltech",
    "log_average_miss_rate",
    "main",
]

PERSON_CATEGORY_ID = 1

# name -> ((height_lo, height_hi), (visibility_lo, visibility_hi)), from dbEval's `exps` table.
SETUPS: collections.OrderedDict[str, tuple[tuple[float, float], tuple[float, float]]] = (
    collections.OrderedDict(
        [
            ("Reasonable", ((50.0, math.inf), (0.65, math.inf))),
            ("All", ((20.0, math.inf), (0.2, math.inf))),
            ("Occ=heavy", ((50.0, math.inf), (0.2, 0.65))),
        ]
    )
)

# 10.^(-2:.25:0) and 10.^(-4:.25:0); the exponents k*0.25 are exact in binary.
MR2_REFERENCE = 10.0 ** (np.arange(-8, 1, dtype=np.float64) * 0.25)
MR4_REFERENCE = 10.0 ** (np.arange(-16, 1, dtype=np.float64) * 0.25)
_REFERENCES = (("MR-2", MR2_REFERENCE), ("MR-4", MR4_REFERENCE))

# Bound on the (detection, ground truth) pairs whose overlap is computed at once (memory).
_PAIR_CHUNK = 1 << 21


# dbEval's bnds = [5 5 635 475] for the 640x480 Caltech frames: (x_lo, y_lo, x_hi, y_hi).
CALTECH_BOUNDS = (5.0, 5.0, 635.0, 475.0)


@dataclass(frozen=True)
class CaltechProtocol:
    """How ground truth and detections are loaded (see the module docstring, items 1-3).

    Attributes:
      keep_labels: annotation labels loaded at all (bbLoad's lbls and ilbls together); other
        labels are dropped.
      ignore_labels: labels always marked ignore.
      resize_detections: reshape detections to `aspect_ratio` like the ground truth.
      height_half_open: ground-truth height test h_lo <= h < h_hi (original .vbb loader)
        instead of h_lo <= h <= h_hi (bbLoad).
      aspect_ratio: width / height of the reshaped boxes.
      bounds: (x_lo, y_lo, x_hi, y_hi) the box corners must lie in, or None for no test.
      expand: the detection height filter's expansion factor.
    """

    keep_labels: tuple[str, ...]
    ignore_labels: tuple[str, ...]
    resize_detections: bool
    height_half_open: bool
    aspect_ratio: float = 0.41
    bounds: tuple[float, float, float, float] | None = CALTECH_BOUNDS
    expand: float = 1.25


_CALTECH_LABELS = ("person", "person?", "people", "ignore")
NEW_ANNOTATIONS = CaltechProtocol(
    keep_labels=_CALTECH_LABELS,
    ignore_labels=("ignore",),
    resize_detections=False,
    height_half_open=False,
)
ORIGINAL_ANNOTATIONS = CaltechProtocol(
    keep_labels=_CALTECH_LABELS,
    ignore_labels=("person?", "people", "ignore"),
    resize_detections=True,
    height_half_open=True,
)
PROTOCOLS = {"new": NEW_ANNOTATIONS, "original": ORIGINAL_ANNOTATIONS}


@dataclass(frozen=True)
class CaltechCurve:
    """The miss-rate-vs-FPPI curve of one setup at one IoU threshold.

    Attributes:
      fppi: [N] float64 false positives per image after each counted detection (score order).
      miss_rate: [N] float64 1 - recall after each counted detection.
      scores: [N] float64 the detections' scores, non-increasing.
      num_images: the FPPI denominator.
      num_positives: non-ignored ground-truth boxes (the recall denominator).
      mr: {"MR-2": ..., "MR-4": ...}, None without non-ignored ground truth.
    """

    fppi: np.ndarray
    miss_rate: np.ndarray
    scores: np.ndarray
    num_images: int
    num_positives: int
    mr: dict


# ----------------------------------------------------------------------------------------------
# Input preparation.


@dataclass
class _GroundTruth:
    num_images: int
    image_index: dict  # image id -> position in `images`
    img: np.ndarray  # [G] int64 image position, ascending; file order within an image
    boxes: np.ndarray  # [G, 4] float64 xywh as annotated
    vis: np.ndarray  # [G] float64
    always_ignored: np.ndarray  # [G] bool: file flag or ignore label


@dataclass
class _Detections:
    img: np.ndarray  # [D] int64 image position, ascending; by descending score within an image
    boxes: np.ndarray  # [D, 4] float64 xywh (reshaped when the protocol says so)
    score: np.ndarray  # [D] float64


def _resize_to_aspect(boxes: np.ndarray, ar: float) -> np.ndarray:
    """bbApply('resize', bb, 1, 0, ar) in its floating-point order: keeps y, h and the centre."""
    out = boxes.copy()
    d = boxes[:, 3] * ar - boxes[:, 2]
    out[:, 0] = boxes[:, 0] - d / 2
    out[:, 2] = boxes[:, 2] + d
    return out


def _resolve_protocol(protocol: str | CaltechProtocol) -> CaltechProtocol:
    if isinstance(protocol, CaltechProtocol):
        return protocol
    if protocol in PROTOCOLS:
        return PROTOCOLS[protocol]
    raise ValueError(f"unknown protocol {protocol!r}; use one of: {', '.join(PROTOCOLS)}")


def _prepare_gt(gt: Any, protocol: CaltechProtocol, source: str) -> _GroundTruth:
    check_ground_truth(gt, source)
    images = gt["images"]
    image_index: dict = {}
    for i, im in enumerate(images):
        if im["id"] in image_index:
            raise ValueError(
                f"{source}: images[{i}] repeats image id {im['id']!r}; every image must be "
                "listed once (the FPPI denominator is the number of images)"
            )
        image_index[im["id"]] = i
    if protocol.bounds == CALTECH_BOUNDS:
        odd = [
            im["id"] for im in images if im.get("width", 640) != 640 or im.get("height", 480) != 480
        ]
        if odd:
            warnings.warn(
                f"{source}: {len(odd)} image(s) are not 640x480 (e.g. id {odd[0]!r}) but the "
                "Caltech bounds [5 5 635 475] are applied; pass a protocol with other bounds",
                stacklevel=4,
            )
    keep = set(protocol.keep_labels) | set(protocol.ignore_labels)
    ignore_labels = set(protocol.ignore_labels)
    rows = []
    for i, a in enumerate(gt.get("annotations", [])):
        if a["category_id"] != PERSON_CATEGORY_ID:
            continue
        if a["image_id"] not in image_index:
            raise ValueError(
                f"{source}: annotations[{i}] is on image id {a['image_id']!r}, which is not in "
                "'images'; list the image or drop the annotation"
            )
        label = a.get("label", "person")
        label_is_text = isinstance(label, str)
        if not label_is_text:
            raise ValueError(
                f"{source}: annotations[{i}]: label {label!r} must be a string such as 'person'"
            )
        if label not in keep:
            continue
        rows.append(
            (
                image_index[a["image_id"]],
                a["bbox"],
                a["vis_ratio"],
                bool(a.get("ignore", 0)) or label in ignore_labels,
            )
        )
    n = len(rows)
    img = np.array([r[0] for r in rows], dtype=np.int64).reshape(n)
    boxes = np.array([[float(v) for v in r[1]] for r in rows], dtype=np.float64).reshape(n, 4)
    vis = np.array([float(r[2]) for r in rows], dtype=np.float64).reshape(n)
    ign = np.array([r[3] for r in rows], dtype=bool).reshape(n)
    order = np.argsort(img, kind="stable")
    return _GroundTruth(
        num_images=len(images),
        image_index=image_index,
        img=img[order],
        boxes=boxes[order],
        vis=vis[order],
        always_ignored=ign[order],
    )


def _prepare_dets(
    dets: Any, gt: _GroundTruth, protocol: CaltechProtocol, source: str
) -> _Detections:
    check_detections(dets, source)
    check_detection_images([d["image_id"] for d in dets], gt.image_index, source)
    persons = [d for d in dets if d["category_id"] == PERSON_CATEGORY_ID]
    n = len(persons)
    img = np.array([gt.image_index[d["image_id"]] for d in persons], dtype=np.int64).reshape(n)
    boxes = np.array([[float(v) for v in d["bbox"]] for d in persons], dtype=np.float64).reshape(
        n, 4
    )
    score = np.array([float(d["score"]) for d in persons], dtype=np.float64).reshape(n)
    if protocol.resize_detections:
        boxes = _resize_to_aspect(boxes, protocol.aspect_ratio)
    # Per image, MATLAB's sort(score, 'descend') is stable: ties keep the input order.
    order = np.argsort(-score, kind="stable")
    order = order[np.argsort(img[order], kind="stable")]
    return _Detections(img=img[order], boxes=boxes[order], score=score[order])


def _gt_ignored(gt: _GroundTruth, protocol: CaltechProtocol, setup: tuple) -> np.ndarray:
    """bbLoad's ignore flags for one setup (module docstring, item 1)."""
    (h_lo, h_hi), (v_lo, v_hi) = setup
    x, y, w, h = gt.boxes.T
    ign = gt.always_ignored.copy()
    if protocol.bounds is not None:
        bx_lo, by_lo, bx_hi, by_hi = protocol.bounds
        x2 = x + w
        y2 = y + h
        ign |= (x < bx_lo) | (x > bx_hi) | (x2 < bx_lo) | (x2 > bx_hi)
        ign |= (y < by_lo) | (y > by_hi) | (y2 < by_lo) | (y2 > by_hi)
    if protocol.height_half_open:
        ign |= (h < h_lo) | (h >= h_hi)
    else:
        ign |= (h < h_lo) | (h > h_hi)
    ign |= (gt.vis < v_lo) | (gt.vis > v_hi)
    return ign


# ----------------------------------------------------------------------------------------------
# Matching and the ROC.


def _overlaps(dbox: np.ndarray, gbox: np.ndarray, gign: np.ndarray) -> np.ndarray:
    """compOas for paired rows: IoA for ignored gt, IoU otherwise, MATLAB's operation order."""
    dx1, dy1, dw, dh = dbox.T
    gx1, gy1, gw, gh = gbox.T
    iw = np.minimum(dx1 + dw, gx1 + gw) - np.maximum(dx1, gx1)
    ih = np.minimum(dy1 + dh, gy1 + gh) - np.maximum(dy1, gy1)
    pos = (iw > 0) & (ih > 0)
    t = iw * ih
    da = dw * dh
    u = np.where(gign, da, (da + gw * gh) - t)
    oa = np.zeros(t.shape, dtype=np.float64)
    np.divide(t, u, out=oa, where=pos)
    return oa


def _candidate_pairs(
    d: _Detections,
    dkeep: np.ndarray,
    gimg: np.ndarray,
    gbox: np.ndarray,
    gign: np.ndarray,
    num_images: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (detection, gt) pairs of the same image with a positive overlap.

    Returns det index, gt index (into the setup-sorted gt arrays) and overlap, ordered by
    detection, then by gt position (non-ignored before ignored within an image).
    """
    det_idx = np.flatnonzero(dkeep)
    g_start = np.searchsorted(gimg, np.arange(num_images), side="left")
    g_count = np.searchsorted(gimg, np.arange(num_images), side="right") - g_start
    cnt = g_count[d.img[det_idx]]
    has = cnt > 0
    det_idx, cnt = det_idx[has], cnt[has]
    out_d, out_g, out_o = [], [], []
    ends = np.cumsum(cnt)
    lo = 0
    while lo < det_idx.size:
        base = ends[lo - 1] if lo else 0
        hi = int(np.searchsorted(ends, base + _PAIR_CHUNK, side="right"))
        hi = max(hi, lo + 1)
        di, ci = det_idx[lo:hi], cnt[lo:hi]
        total = int(ci.sum())
        first = np.cumsum(ci) - ci
        pd = np.repeat(di, ci)
        pg = np.repeat(g_start[d.img[di]] - first, ci) + np.arange(total)
        oa = _overlaps(d.boxes[pd], gbox[pg], gign[pg])
        nz = oa > 0
        out_d.append(pd[nz])
        out_g.append(pg[nz])
        out_o.append(oa[nz])
        lo = hi
    if not out_d:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64)
    return np.concatenate(out_d), np.concatenate(out_g), np.concatenate(out_o)


def _greedy_match(
    pd: np.ndarray,
    pg: np.ndarray,
    po: np.ndarray,
    gign: np.ndarray,
    thr: float,
    num_dets: int,
) -> np.ndarray:
    """evalRes's matching over the candidate pairs; returns the match flag (1/0/-1) per det."""
    sel = po >= thr
    pd_l, pg_l, po_l = pd[sel].tolist(), pg[sel].tolist(), po[sel].tolist()
    ig_l = gign[pg[sel]].tolist()
    match = np.zeros(num_dets, dtype=np.int8)
    matched: set = set()
    n = len(pd_l)
    i = 0
    while i < n:
        det = pd_l[i]
        best_g, best_oa, absorb = -1, thr, False
        while i < n and pd_l[i] == det:
            g = pg_l[i]
            if not ig_l[i]:
                if g not in matched and po_l[i] >= best_oa:
                    best_g, best_oa = g, po_l[i]
            elif best_g < 0:
                absorb = True  # the first ignored gt with oa >= thr; the loop then breaks
            i += 1
        if best_g >= 0:
            matched.add(best_g)
            match[det] = 1
        elif absorb:
            match[det] = -1
    return match


def _roc(
    d: _Detections, dkeep: np.ndarray, match: np.ndarray, num_images: int, num_pos: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """compRoc: (fppi, recall, scores) in descending score order over the counted detections."""
    counted = dkeep & (match != -1)
    score = d.score[counted]
    tp_flag = match[counted] == 1
    order = np.argsort(-score, kind="stable")  # concatenated in image order, then stable sort
    tp_flag = tp_flag[order]
    tp = np.cumsum(tp_flag, dtype=np.float64)
    fp = np.cumsum(~tp_flag, dtype=np.float64)
    return fp / num_images, tp / num_pos, score[order]


def _sample_recall(fppi: np.ndarray, recall: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Recall at each reference: the last point with fppi <= ref, 0 before the first point."""
    if fppi.size == 0:
        return np.zeros(ref.shape, dtype=np.float64)
    ys1 = np.concatenate([[0.0], recall])
    return ys1[np.searchsorted(fppi, ref, side="right")]


def log_average_miss_rate(
    fppi: np.ndarray, recall: np.ndarray, ref: np.ndarray = MR2_REFERENCE, mr_floor: float = 0.0
) -> float:
    """exp(mean(log(max(mr_floor, 1 - recall sampled at `ref`)))) as dbEval / acfTest compute it.

    `fppi` and `recall` are compRoc's curve (fppi non-decreasing). mr_floor=0 is dbEval (a
    recall of 1 at any reference gives 0.0); mr_floor=1e-10 is acfTest.
    """
    miss = 1.0 - _sample_recall(
        np.asarray(fppi, np.float64), np.asarray(recall, np.float64), np.asarray(ref, np.float64)
    )
    if mr_floor > 0:
        miss = np.maximum(mr_floor, miss)
    with np.errstate(divide="ignore"):
        logs = np.log(miss).tolist()
    total = 0.0
    for v in logs:  # MATLAB's mean: a left-to-right sum divided by the count
        total += v
    return math.exp(total / len(logs))


# ----------------------------------------------------------------------------------------------
# Public entry points.


def _resolve_setups(setups: Any) -> collections.OrderedDict:
    return miss_rate.resolve_setups(setups, SETUPS)


def _resolve_ious(iou_thresholds: Any) -> list[float]:
    if isinstance(iou_thresholds, (int, float)):
        iou_thresholds = [iou_thresholds]
    out = []
    for t in iou_thresholds:
        t = float(t)
        if not 0.0 < t <= 1.0:
            raise ValueError(f"IoU threshold {t!r} must be in (0, 1]")
        out.append(t)
    if not out:
        raise ValueError("no IoU threshold given; the Caltech tables use 0.5 and 0.75")
    return out


def _evaluate(
    gt: Any,
    dets: Any,
    setups: Any,
    iou_thresholds: Any,
    protocol: Any,
    gt_source: str = "ground truth",
    dets_source: str = "detections",
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray, int, int]]:
    """{"<setup>@<iou>": (fppi, recall, scores, num_images, num_positives)}."""
    setups = _resolve_setups(setups)
    ious = _resolve_ious(iou_thresholds)
    protocol = _resolve_protocol(protocol)
    g = _prepare_gt(gt, protocol, gt_source)
    d = _prepare_dets(dets, g, protocol, dets_source)
    results = {}
    dh = d.boxes[:, 3]
    for name, spec in setups.items():
        (h_lo, h_hi), _ = spec
        ign = _gt_ignored(g, protocol, spec)
        # Setup-specific gt layout: within each image non-ignored first (stable).
        order = np.lexsort((ign, g.img))
        gimg, gign = g.img[order], ign[order]
        gbox = g.boxes[order]
        keep_box = ~gign
        gbox[keep_box] = _resize_to_aspect(gbox[keep_box], protocol.aspect_ratio)
        num_pos = int(keep_box.sum())
        dkeep = (dh >= h_lo * (1 / protocol.expand)) & (dh < h_hi * protocol.expand)
        pd, pg, po = _candidate_pairs(d, dkeep, gimg, gbox, gign, g.num_images)
        for thr in ious:
            key = f"{name}@{thr:g}"
            if num_pos == 0:
                empty = np.zeros(0, np.float64)
                results[key] = (empty, empty, empty, g.num_images, 0)
                continue
            match = _greedy_match(pd, pg, po, gign, thr, d.score.size)
            fppi, recall, scores = _roc(d, dkeep, match, g.num_images, num_pos)
            results[key] = (fppi, recall, scores, g.num_images, num_pos)
    return results


def _mrs(fppi: np.ndarray, recall: np.ndarray, num_pos: int, mr_floor: float) -> dict:
    if num_pos == 0:
        return {name: None for name, _ in _REFERENCES}
    return {name: log_average_miss_rate(fppi, recall, ref, mr_floor) for name, ref in _REFERENCES}


def evaluate_caltech(
    gt: dict,
    dets: list[dict],
    setups: Sequence[str] | Mapping | str | None = ("Reasonable",),
    iou_thresholds: Sequence[float] | float = (0.5, 0.75),
    protocol: str | CaltechProtocol = "new",
    mr_floor: float = 0.0,
) -> dict[str, dict[str, float | None]]:
    """Log-average miss rates of the Caltech protocol.

    Args:
      gt: ground-truth dict (module docstring); dets: detection list.
      setups: names from SETUPS (None: all of them), or {name: ((h_lo, h_hi), (v_lo, v_hi))}.
      iou_thresholds: overlap thresholds in (0, 1].
      protocol: "new" (refined annotations, default), "original", or a CaltechProtocol.
      mr_floor: 0 reproduces dbEval; 1e-10 reproduces the toolbox's acfTest.

    Returns:
      {"<setup>@<iou>": {"MR-2": fraction, "MR-4": fraction}}, e.g. "Reasonable@0.75"; the
      values are None for a setup without non-ignored ground truth.

    Raises:
      ValueError: malformed input, unknown setup or protocol, threshold outside (0, 1].
    """
    res = _evaluate(gt, dets, setups, iou_thresholds, protocol)
    return {key: _mrs(fppi, rec, npos, mr_floor) for key, (fppi, rec, _, _, npos) in res.items()}


def caltech_curve(
    gt: dict,
    dets: list[dict],
    setup: str | Mapping = "Reasonable",
    iou_threshold: float = 0.5,
    protocol: str | CaltechProtocol = "new",
    mr_floor: float = 0.0,
) -> CaltechCurve:
    """The full miss rate vs FPPI curve (one point per counted detection) of one setup.

    `setup` is a name from SETUPS or a one-entry {name: ((h_lo, h_hi), (v_lo, v_hi))}.
    """
    setups = _resolve_setups(setup)
    if len(setups) != 1:
        raise ValueError("caltech_curve takes exactly one setup")
    res = _evaluate(gt, dets, setups, [iou_threshold], protocol)
    fppi, recall, scores, num_images, num_pos = next(iter(res.values()))
    return CaltechCurve(
        fppi=fppi,
        miss_rate=1.0 - recall,
        scores=scores,
        num_images=num_images,
        num_positives=num_pos,
        mr=_mrs(fppi, recall, num_pos, mr_floor),
    )


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on bad input, with one line on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.caltech",
        description="Caltech-USA log-average miss rates MR^-2 (FPPI 1e-2..1) and MR^-4 (FPPI "
        "1e-4..1), reproducing dbEval/bbGt of the Caltech benchmark code (new annotations by "
        'default). Prints one JSON object {"<setup>@<iou>": {"MR-2": x, "MR-4": y}} with '
        "fractions; null marks a setup without non-ignored ground truth.",
    )
    parser.add_argument("--gt", required=True, help="ground-truth JSON (COCO-like, with labels)")
    parser.add_argument("--dets", required=True, help="detections JSON list")
    parser.add_argument(
        "--setups",
        default="Reasonable",
        help=f"comma-separated subset of: {', '.join(SETUPS)}, or 'all' (default: Reasonable)",
    )
    parser.add_argument(
        "--iou", default="0.5,0.75", help="comma-separated IoU thresholds (default: 0.5,0.75)"
    )
    parser.add_argument(
        "--protocol",
        default="new",
        choices=sorted(PROTOCOLS),
        help="'new': refined annotations (only label 'ignore' is ignored, detections as given); "
        "'original': 'person?'/'people' ignored too, detections reshaped to aspect 0.41",
    )
    parser.add_argument(
        "--mr-floor",
        type=float,
        default=0.0,
        help="floor on the sampled miss rates before the log (0: dbEval; 1e-10: acfTest)",
    )
    parser.add_argument("--out", default=None, help="also write the JSON here, atomically")
    args = parser.parse_args(argv)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            if args.setups.strip().lower() == "all":
                setups = None
            else:
                setups = [s.strip() for s in args.setups.split(",") if s.strip()]
            _resolve_setups(setups)  # reject bad options before reading large files
            try:
                ious = [float(s) for s in args.iou.split(",") if s.strip()]
            except ValueError:
                raise ValueError(
                    f"--iou {args.iou!r}: give comma-separated numbers such as 0.5,0.75"
                ) from None
            _resolve_ious(ious)
            gt = load_json(args.gt, "ground truth")
            dets = load_json(args.dets, "detections")
            res = _evaluate(
                gt,
                dets,
                setups,
                ious,
                args.protocol,
                gt_source=f"ground truth file {args.gt!r}",
                dets_source=f"detections file {args.dets!r}",
            )
            out = {
                key: _mrs(fppi, rec, npos, args.mr_floor)
                for key, (fppi, rec, _, _, npos) in res.items()
            }
            if args.out:
                atomic_write_json(out, args.out)
        except ValueError as e:
            _print_warnings(caught)
            print(f"error: {e}", file=sys.stderr)
            return 2
    _print_warnings(caught)
    print(json.dumps(out))
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
