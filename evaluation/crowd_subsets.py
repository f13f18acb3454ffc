"""The Repulsion Loss paper's crowd subsets of the reasonable pedestrians (its section 3.1).

  reasonable-occ:   reasonable (height >= 50, visibility >= 0.65) with occlusion >= 10 %, i.e.
                    visibility in [0.65, 0.9] -- the same ranges as CityPersons' `Partial`.
  reasonable-crowd: reasonable-occ pedestrians whose full box has IoU >= 0.1 with another
                    annotated pedestrian of the same image.

Both are scored with the official CityPersons machinery (`evaluation.miss_rate`): pedestrians
outside a subset become ignore regions, exactly as the official code treats pedestrians outside a
setup's height / visibility range (matched by IoA, so detections on them are neither true nor
false positives). "Annotated pedestrian" means an annotation with `ignore == 0`: ignore regions
and person groups are not people one can be confused with, so they do not make a crowd.

    python -m evaluation.crowd_subsets --gt GT.json --dets DETS.json
prints one JSON object {"Reasonable_occ": MR, "Reasonable_crowd": MR} (fractions).

    python -m evaluation.crowd_subsets --gt GT.json --rep_iog
prints how much RepGT (Repulsion Loss eq. 4) already penalises the ground-truth boxes themselves:
the IoG of each annotated pedestrian's box with its repulsion ground truth (the other annotated
pedestrian of largest IoU, eq. 3), over the pedestrians that overlap another.
"""

from __future__ import annotations

import argparse
import collections
import copy
import json
import sys
from collections.abc import Sequence

import numpy as np

from evaluation import miss_rate

CROWD_IOU = 0.1  # RepLoss section 3.1
_HUGE = 1e10
REASONABLE_OCC = ((50.0, _HUGE), (0.65, 0.9))


def _pairwise_iou_xywh(boxes: np.ndarray) -> np.ndarray:
    """`[N, 4]` float64 [x, y, w, h] -> `[N, N]` IoU (0 where the union is empty)."""
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    iw = np.clip(np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]), 0, None)
    ih = np.clip(np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]), 0, None)
    inter = iw * ih
    area = np.clip(boxes[:, 2], 0, None) * np.clip(boxes[:, 3], 0, None)
    union = area[:, None] + area[None] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def crowd_annotation_ids(gt: dict, iou_threshold: float = CROWD_IOU) -> set:
    """Ids of the annotated pedestrians (ignore == 0) whose box has IoU >= `iou_threshold` with
    another annotated pedestrian of the same image."""
    by_image = collections.defaultdict(list)
    for a in gt.get("annotations", []):
        if not a.get("ignore", 0):
            by_image[a["image_id"]].append(a)
    crowd = set()
    for anns in by_image.values():
        if len(anns) < 2:
            continue
        overlaps = _pairwise_iou_xywh(np.array([a["bbox"] for a in anns], np.float64))
        np.fill_diagonal(overlaps, 0.0)
        for a, row in zip(anns, overlaps):
            if np.any(row >= iou_threshold):
                crowd.add(a["id"])
    return crowd


def restrict_ground_truth(gt: dict, keep_ids: set) -> dict:
    """A copy of `gt` in which every annotation whose id is not in `keep_ids` is an ignore region."""
    out = copy.copy(gt)
    out["annotations"] = [
        a if a["id"] in keep_ids else {**a, "ignore": 1} for a in gt.get("annotations", [])
    ]
    return out


def evaluate_crowd_subsets(gt: dict, dets: list[dict]) -> dict[str, float]:
    """MR^-2 on reasonable-occ and reasonable-crowd; -1.0 for a subset with no pedestrian."""
    occ = miss_rate.evaluate_miss_rate(gt, dets, {"Reasonable_occ": REASONABLE_OCC})
    crowd_gt = restrict_ground_truth(gt, crowd_annotation_ids(gt))
    crowd = miss_rate.evaluate_miss_rate(crowd_gt, dets, {"Reasonable_crowd": REASONABLE_OCC})
    return {**occ, **crowd}


def ground_truth_rep_iog(gt: dict) -> np.ndarray:
    """IoG(G, G_Rep) for every annotated pedestrian G overlapping another (IoU > 0), `[K]` float64.

    G_Rep is the other annotated pedestrian (ignore == 0) of the same image with the largest IoU
    with G (ties: first in file order); IoG divides by G_Rep's area.
    """
    by_image = collections.defaultdict(list)
    for a in gt.get("annotations", []):
        if not a.get("ignore", 0):
            by_image[a["image_id"]].append(a["bbox"])
    out = []
    for boxes in by_image.values():
        if len(boxes) < 2:
            continue
        b = np.array(boxes, np.float64)
        iou = _pairwise_iou_xywh(b)
        np.fill_diagonal(iou, 0.0)
        x1, y1, x2, y2 = b[:, 0], b[:, 1], b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
        for i in np.flatnonzero(iou.max(axis=1) > 0):
            j = int(np.argmax(iou[i]))
            iw = max(min(x2[i], x2[j]) - max(x1[i], x1[j]), 0.0)
            ih = max(min(y2[i], y2[j]) - max(y1[i], y1[j]), 0.0)
            out.append(iw * ih / (b[j, 2] * b[j, 3]))
    return np.asarray(out, np.float64)


def rep_iog_summary(gt: dict) -> dict:
    """Count, median / 75th / 90th percentile of `ground_truth_rep_iog`, the fraction above 0.5,
    and the mean RepGT term -ln(1 - IoG) (sigma = 1, capped at 1 - 1e-6) at the ground truth."""
    v = ground_truth_rep_iog(gt)
    if v.size == 0:
        return {"count": 0}
    p50, p75, p90 = np.percentile(v, [50, 75, 90])
    return {
        "count": int(v.size), "median": float(p50), "p75": float(p75), "p90": float(p90),
        "fraction_above_0.5": float(np.mean(v > 0.5)),
        "mean_rep_gt_at_ground_truth": float(np.mean(-np.log1p(-np.minimum(v, 1 - 1e-6)))),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.crowd_subsets",
        description="MR^-2 on the Repulsion Loss paper's reasonable-occ and reasonable-crowd "
        "subsets, from CityPersons-format ground truth and detections.",
    )
    parser.add_argument("--gt", required=True, help="ground-truth JSON (CityPersons eval format)")
    parser.add_argument("--dets", help="detections JSON list (for the subset miss rates)")
    parser.add_argument("--rep_iog", action="store_true",
                        help="instead: statistics of IoG(ground truth, its repulsion ground truth)")
    args = parser.parse_args(argv)
    if not args.rep_iog and not args.dets:
        parser.error("--dets is required unless --rep_iog is given")
    try:
        gt = miss_rate.load_gt(args.gt)
        if args.rep_iog:
            result = rep_iog_summary(gt)
        else:
            result = evaluate_crowd_subsets(gt, miss_rate.load_dets(args.dets))
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
