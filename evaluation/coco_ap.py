"""COCO-style average precision of the person class, via pycocotools, on CityPersons-format data.

    python -m evaluation.coco_ap --gt val_gt.json --dets dets.json [--out ap.json]

prints one JSON object {"AP", "AP50", "AP75", "APs", "APm", "APl"} (fractions).

This module owns the glue between our ground-truth / detection JSON (the format of
`evaluation.miss_rate`) and pycocotools' COCOeval (iouType "bbox", category 1 only):
  - a pycocotools-ready COPY of the ground truth is built (the caller's dicts are never
    mutated): annotations flagged `ignore` become `iscrowd: 1` (COCO then matches detections to
    them by intersection over the detection's area and neither rewards nor penalises them),
    `area` defaults to w * h, and annotation ids are renumbered 1..N because COCO's index keeps only
    the last annotation of a repeated id;
  - CityPersons' height / visibility setups are NOT applied: every non-ignored person counts;
  - AP is the COCO mean over IoU 0.50:0.95, all areas, at most `max_dets` (100) detections per
    image; AP50 / AP75 at IoU 0.5 / 0.75; APs / APm / APl over IoU 0.50:0.95 for COCO's area
    ranges (< 32^2, 32^2-96^2, > 96^2 pixels of the annotation's `area`, default w * h) --
    -1.0 where no ground truth of that size exists, as pycocotools reports it;
  - pycocotools' printing is silenced;
  - empty detections give 0.0 (pycocotools itself crashes on an empty result list) and a ground
    truth without any non-ignored person gives -1.0 (pycocotools' "undefined" convention).
Input validation (and its error messages) is `evaluation.io`'s, shared with the miss rate.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from collections.abc import Sequence

import numpy as np

from evaluation.io import (
    atomic_write_json,
    check_detection_images,
    check_detections,
    check_ground_truth,
    load_json,
)

__all__ = ["coco_ap", "main", "to_pycocotools_gt"]

PERSON_CATEGORY_ID = 1
KEYS = ("AP", "AP50", "AP75", "APs", "APm", "APl")


def to_pycocotools_gt(gt: dict) -> dict:
    """A pycocotools-ready copy of a CityPersons-format ground truth (person annotations only).

    Returns a new dict; `gt` is not modified.
    """
    anns = []
    for a in gt.get("annotations", []):
        if a["category_id"] != PERSON_CATEGORY_ID:
            continue
        x, y, w, h = (float(v) for v in a["bbox"])
        anns.append(
            {
                "id": len(anns) + 1,
                "image_id": a["image_id"],
                "category_id": PERSON_CATEGORY_ID,
                "bbox": [x, y, w, h],
                "area": float(a["area"]) if "area" in a else w * h,
                "iscrowd": 1 if a.get("ignore", 0) else 0,
            }
        )
    return {
        "images": [{"id": im["id"]} for im in gt["images"]],
        "categories": [{"id": PERSON_CATEGORY_ID, "name": "person"}],
        "annotations": anns,
    }


def _validate(gt: dict, dets: list, gt_source: str, dets_source: str) -> None:
    check_ground_truth(gt, gt_source)
    check_detections(dets, dets_source)
    check_detection_images(
        (d["image_id"] for d in dets), {im["id"] for im in gt["images"]}, dets_source
    )


def coco_ap(gt: dict, dets: list[dict], max_dets: int = 100) -> dict[str, float]:
    """COCO bbox AP, AP50 and AP75 (fractions) of category 1.

    Args:
      gt: CityPersons-format ground truth (see evaluation.miss_rate).
      dets: list of {image_id, category_id, bbox [x, y, w, h], score}; other categories are
        dropped.
      max_dets: detections per image considered (COCO's default 100).

    Raises:
      ValueError: malformed input or detections on images absent from the ground truth.
    """
    _validate(gt, dets, "ground truth", "detections")
    coco_gt_dict = to_pycocotools_gt(gt)
    num_pos = sum(1 for a in coco_gt_dict["annotations"] if not a["iscrowd"])
    if num_pos == 0:
        return dict.fromkeys(KEYS, -1.0)
    results = [
        {
            "image_id": d["image_id"],
            "category_id": PERSON_CATEGORY_ID,
            "bbox": [float(v) for v in d["bbox"]],
            "score": float(d["score"]),
        }
        for d in dets
        if d["category_id"] == PERSON_CATEGORY_ID
    ]
    if not results:
        return dict.fromkeys(KEYS, 0.0)

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO()
        coco_gt.dataset = coco_gt_dict
        coco_gt.createIndex()
        coco_dt = coco_gt.loadRes(results)
        ev = COCOeval(coco_gt, coco_dt, iouType="bbox")
        ev.params.catIds = [PERSON_CATEGORY_ID]
        ev.params.maxDets = [1, 10, int(max_dets)]
        ev.evaluate()
        ev.accumulate()
        # precision: [T, R, K, A, M]; areas all / small / medium / large, the largest maxDets last.
        precision = ev.eval["precision"][:, :, 0, :, -1]

    def mean_ap(rows: np.ndarray) -> float:
        valid = rows[rows > -1]
        return float(np.mean(valid)) if valid.size else -1.0

    iou_thrs = ev.params.iouThrs
    return {
        "AP": mean_ap(precision[..., 0]),
        "AP50": mean_ap(precision[np.isclose(iou_thrs, 0.5), :, 0]),
        "AP75": mean_ap(precision[np.isclose(iou_thrs, 0.75), :, 0]),
        "APs": mean_ap(precision[..., 1]),
        "APm": mean_ap(precision[..., 2]),
        "APl": mean_ap(precision[..., 3]),
    }


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; returns the exit code (2 on bad input, with one line on stderr)."""
    parser = argparse.ArgumentParser(
        prog="python -m evaluation.coco_ap",
        description="COCO bbox AP / AP50 / AP75 of the person class (pycocotools) on "
        "CityPersons-format JSON; ignored ground truth is treated as crowd. Prints one JSON object.",
    )
    parser.add_argument("--gt", required=True, help="ground-truth JSON (COCO-like, CityPersons)")
    parser.add_argument("--dets", required=True, help="detections JSON list")
    parser.add_argument("--max-dets", type=int, default=100, help="detections per image (100)")
    parser.add_argument("--out", default=None, help="also write the JSON here, atomically")
    args = parser.parse_args(argv)
    try:
        gt = load_json(args.gt, "ground truth")
        dets = load_json(args.dets, "detections")
        _validate(gt, dets, f"ground truth file {args.gt!r}", f"detections file {args.dets!r}")
        result = coco_ap(gt, dets, max_dets=args.max_dets)
        if args.out:
            atomic_write_json(result, args.out)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
