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


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.crowd_subsets",
        description="MR^-2 on the Repulsion Loss paper's reasonable-occ and reasonable-crowd "
        "subsets, from CityPersons-format ground truth and detections.",
    )
    parser.add_argument("--gt", required=True, help="ground-truth JSON (CityPersons eval format)")
    parser.add_argument("--dets", required=True, help="detections JSON list")
    args = parser.parse_args(argv)
    try:
        gt = miss_rate.load_gt(args.gt)
        dets = miss_rate.load_dets(args.dets)
        result = evaluate_crowd_subsets(gt, dets)
    except (OSError, ValueError, KeyError, TypeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
