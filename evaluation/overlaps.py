"""Host-side IoU helpers shared by the analysis modules (float64, [x, y, w, h] boxes, no +1).

Vectorised per image: every caller needs, for each detection, overlaps with the ground truth of
its own image only, and a Python loop per detection is what made the first version of the
analysis slow (~10 s per metric on 20k detections).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import numpy as np


def iou_matrix_xywh(a: np.ndarray, b: np.ndarray, plus_one: bool = False) -> np.ndarray:
    """[N, 4] xywh and [M, 4] xywh -> [N, M] float64 IoU, 0 where the union is empty.

    `plus_one` adds 1 to widths and heights (the VOC devkit's integer-pixel convention)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    e = 1.0 if plus_one else 0.0
    iw = (np.minimum(a[:, None, 0] + a[:, None, 2], b[None, :, 0] + b[None, :, 2])
          - np.maximum(a[:, None, 0], b[None, :, 0]) + e)
    ih = (np.minimum(a[:, None, 1] + a[:, None, 3], b[None, :, 1] + b[None, :, 3])
          - np.maximum(a[:, None, 1], b[None, :, 1]) + e)
    inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
    area_a = (a[:, 2] + e) * (a[:, 3] + e)
    area_b = (b[:, 2] + e) * (b[:, 3] + e)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def group_by_image(image_ids: Sequence) -> dict:
    """{image id: [K] int64 positions in `image_ids`}, positions ascending."""
    ids = list(image_ids)
    if not ids:
        return {}
    try:  # integer ids (the usual case) sort fast; anything else goes through str
        keys = np.asarray(ids, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        keys = np.asarray([f"{type(i).__name__}:{i}" for i in ids])
    _, inverse = np.unique(keys, return_inverse=True)
    order = np.argsort(inverse, kind="stable")
    bounds = np.flatnonzero(np.diff(inverse[order])) + 1
    groups = np.split(order, bounds)
    return {ids[g[0]]: g for g in groups}


def per_image_ious(det_image_ids: Sequence, det_boxes: np.ndarray, gt_image_ids: Sequence,
                   gt_boxes: np.ndarray, plus_one: bool = False
                   ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Yields (det positions [n], gt positions [m], IoU [n, m]) per image holding both."""
    gt_groups = group_by_image(gt_image_ids)
    det_boxes = np.asarray(det_boxes, np.float64).reshape(-1, 4)
    gt_boxes = np.asarray(gt_boxes, np.float64).reshape(-1, 4)
    for image_id, d in group_by_image(det_image_ids).items():
        g = gt_groups.get(image_id)
        if g is None:
            continue
        yield d, g, iou_matrix_xywh(det_boxes[d], gt_boxes[g], plus_one)


def best_ious(det_image_ids: Sequence, det_boxes: np.ndarray, gt_image_ids: Sequence,
              gt_boxes: np.ndarray, plus_one: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """([N] best IoU of each detection with a ground truth of its image (0 if none), [N] that
    ground truth's position (-1 if none; the first on ties))."""
    n = len(det_image_ids)
    best = np.zeros(n)
    arg = np.full(n, -1, np.int64)
    for d, g, iou in per_image_ious(det_image_ids, det_boxes, gt_image_ids, gt_boxes, plus_one):
        j = np.argmax(iou, axis=1)
        best[d] = iou[np.arange(d.size), j]
        arg[d] = g[j]
    return best, arg


def count_above(det_image_ids: Sequence, det_boxes: np.ndarray, gt_image_ids: Sequence,
                gt_boxes: np.ndarray, threshold: float) -> np.ndarray:
    """[N] number of ground truths of each detection's image with IoU >= `threshold`."""
    out = np.zeros(len(det_image_ids), np.int64)
    for d, _, iou in per_image_ious(det_image_ids, det_boxes, gt_image_ids, gt_boxes):
        out[d] = np.count_nonzero(iou >= threshold, axis=1)
    return out
