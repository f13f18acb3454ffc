"""PASCAL VOC 2007-style AP at IoU 0.5 ... 0.9: the columns of the Harmonic Loss paper's Table 1.

    python -m evaluation.voc_ap --gt GT.json --dets DETS.json [--out ap.json]
prints {"AP": .., "AP50": .., "AP60": .., "AP70": .., "AP80": .., "AP90": ..} (fractions).

The paper scores VOC 2007 test with "a stricter COCO-style AP (averaged AP at IoUs from 0.5 to
0.9)". Its Table 1 rows fit the COCO grid 0.50:0.05:0.95 for the AP column (e.g. Faster R-CNN
R50: 51.7 against a mean of 55.4 over its five printed columns alone, which only the near-zero
AP at 0.95 can pull down that far), so "AP" here is the mean over the ten thresholds
0.50, 0.55, ..., 0.95, and APxx the single-threshold values the table prints.

Per threshold, the VOC devkit's rules (as in its `VOCevalDet` and the widely used Python port):
  - detections of category 1, all images together, in descending score order (ties keep input
    order: a stable sort);
  - each detection takes the ground truth of its image with the largest IoU (first on ties);
    above the threshold (strict `>`): an unclaimed non-difficult one makes it a true positive, an
    already claimed one a false positive (duplicate), a difficult one leaves it uncounted; at or
    below the threshold it is a false positive;
  - "difficult" is our `ignore` flag (ignore regions and groups): matched by IoU like any box;
  - recall = TP / (non-difficult ground truth), precision = TP / (TP + FP);
  - AP (`use_07_metric=True`, the VOC 2007 test rule): the mean over recall levels 0, 0.1, ...,
    1.0 of the largest precision at recall >= that level (0 where none); `use_07_metric=False`
    gives the VOC 2010+ area under the precision envelope.
Deliberate difference: boxes are continuous pixels, so IoU has no +1 on widths (the devkit adds
1 for its integer pixel indices; `plus_one=True` restores that).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import numpy as np

from evaluation import overlaps
from evaluation.io import (
    atomic_write_json,
    check_detection_images,
    check_detections,
    check_ground_truth,
    load_detections,
    load_ground_truth,
)

PERSON_CATEGORY_ID = 1
TABLE_THRESHOLDS = (0.5, 0.6, 0.7, 0.8, 0.9)  # Harmonic Loss Table 1 columns
MEAN_THRESHOLDS = tuple(np.round(np.arange(0.5, 0.951, 0.05), 2).tolist())  # its "AP" column


def voc_ap_from_pr(recall: np.ndarray, precision: np.ndarray, use_07_metric: bool = True) -> float:
    """AP from a precision/recall curve ([N] each, in ranking order)."""
    if use_07_metric:
        total = 0.0
        for t in np.arange(0.0, 1.1, 0.1):
            p = precision[recall >= t]
            total += (float(p.max()) if p.size else 0.0) / 11.0
        return total
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    i = np.flatnonzero(r[1:] != r[:-1])
    return float(np.sum((r[i + 1] - r[i]) * p[i + 1]))


def _overlaps(gt: dict, dets: list[dict], plus_one: bool):
    """Per detection in score order: best IoU with a ground truth of its image, that ground
    truth's row (-1 if none); plus the [G] difficult flags and the non-difficult count."""
    rows = [a for a in gt.get("annotations", []) if a["category_id"] == PERSON_CATEGORY_ID]
    gt_boxes = np.array([a["bbox"] for a in rows], np.float64).reshape(-1, 4)
    difficult = np.array([bool(a.get("ignore", 0)) for a in rows], bool)
    persons = [d for d in dets if d["category_id"] == PERSON_CATEGORY_ID]
    scores = np.array([float(d["score"]) for d in persons], np.float64)
    order = np.argsort(-scores, kind="stable")
    best_iou, best_gt = overlaps.best_ious(
        [persons[i]["image_id"] for i in order],
        np.array([persons[i]["bbox"] for i in order], np.float64).reshape(-1, 4),
        [a["image_id"] for a in rows], gt_boxes, plus_one,
    )
    return scores[order], best_iou, best_gt, difficult, int(np.count_nonzero(~difficult))


def voc_ap(gt: dict, dets: list[dict], iou_thresholds: Sequence[float] = TABLE_THRESHOLDS,
           use_07_metric: bool = True, plus_one: bool = False) -> dict[str, float]:
    """{f"AP{round(100 t)}": AP at IoU t} plus "AP" (mean over 0.50:0.05:0.95); -1.0 without any
    non-difficult ground truth.

    Args:
      gt: CityPersons-format ground truth (see evaluation.miss_rate); `ignore` = difficult.
      dets: list of {image_id, category_id, bbox [x, y, w, h], score}.
    """
    check_ground_truth(gt, "ground truth")
    check_detections(dets, "detections")
    check_detection_images((d["image_id"] for d in dets), {im["id"] for im in gt["images"]},
                           "detections")
    _, best_iou, best_gt, difficult, num_pos = _overlaps(gt, dets, plus_one)
    thresholds = sorted({float(t) for t in iou_thresholds} | set(MEAN_THRESHOLDS))
    if num_pos == 0:
        per = dict.fromkeys(thresholds, -1.0)
    else:
        per = {}
        for t in thresholds:
            # A detection above the threshold claims its best ground truth (never a second
            # best): the first claimant of a non-difficult one is a TP, later ones duplicates.
            hit = (best_gt >= 0) & (best_iou > t)
            on_difficult = hit & difficult[np.maximum(best_gt, 0)]
            claim = np.flatnonzero(hit & ~on_difficult)
            _, first = np.unique(best_gt[claim], return_index=True)
            tp = np.zeros(best_iou.size, bool)
            tp[claim[first]] = True
            fp = ~tp & ~on_difficult
            ctp, cfp = np.cumsum(tp), np.cumsum(fp)
            counted = tp | fp
            recall = (ctp / num_pos)[counted]
            precision = (ctp / np.maximum(ctp + cfp, np.finfo(np.float64).eps))[counted]
            per[t] = voc_ap_from_pr(recall, precision, use_07_metric)
    out = {"AP": float(np.mean([per[t] for t in MEAN_THRESHOLDS])) if num_pos else -1.0}
    for t in iou_thresholds:
        out[f"AP{round(100 * float(t))}"] = per[float(t)]
    return out


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m evaluation.voc_ap",
        description="VOC 2007-style AP of the person class at IoU 0.5, 0.6, 0.7, 0.8, 0.9 and "
        "their COCO-grid mean (the Harmonic Loss paper's Table 1 columns).",
    )
    p.add_argument("--gt", required=True, help="ground truth, CityPersons evaluation JSON")
    p.add_argument("--dets", required=True, help="detections JSON list")
    p.add_argument("--voc2010", action="store_true",
                   help="area under the precision envelope instead of the 11-point 2007 rule")
    p.add_argument("--out", help="also write the JSON here")
    args = p.parse_args(argv)
    try:
        result = voc_ap(load_ground_truth(args.gt), load_detections(args.dets),
                        use_07_metric=not args.voc2010)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if args.out:
        atomic_write_json(result, args.out)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
