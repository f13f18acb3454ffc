"""IoU matching of anchors to ground truth, with positive / negative / ignored states.

RetinaNet paper, section 4 "Anchors": an anchor is positive when its IoU with a ground-truth box is
>= 0.5, negative when its best IoU is < 0.4, and ignored in between. On top of that:

- low-quality matches (detectron2's ``allow_low_quality_matches``): for each valid ground truth,
  every anchor whose IoU with it equals that ground truth's best IoU over all anchors (ties
  included, only when that best IoU is > 0) becomes positive and is assigned to that ground truth,
  so that no pedestrian is left without an anchor;
- ignore regions (CityPersons' crowd / "ignore" boxes): an anchor that is not positive and lies
  mostly inside a valid ignore region (intersection over the ANCHOR's area >= ``ignore_ioa``) is
  ignored rather than trained as background.

Everything is computed on device with static shapes; padded rows are described by ``gt_valid`` /
``ignore_valid`` and never match, whatever their coordinates.
"""

from __future__ import annotations

import jax.numpy as jnp

from detectors.ops import boxes as box_ops

POSITIVE = 1
NEGATIVE = 0
IGNORED = -1


def assign_targets(
    anchors: jnp.ndarray,
    gt_boxes: jnp.ndarray,
    gt_valid: jnp.ndarray,
    ignore_boxes: jnp.ndarray,
    ignore_valid: jnp.ndarray,
    positive_iou: float = 0.5,
    negative_iou: float = 0.4,
    allow_low_quality: bool = True,
    ignore_ioa: float = 0.5,
) -> dict[str, jnp.ndarray]:
    """Assigns every anchor of one image to a ground truth, background, or "ignore".

    Args:
        anchors: ``[N, 4]`` float32 xyxy.
        gt_boxes: ``[M, 4]`` float32 xyxy (padded to a fixed M).
        gt_valid: ``[M]`` bool; False rows are padding and never match.
        ignore_boxes: ``[K, 4]`` float32 xyxy ignore regions (padded to a fixed K).
        ignore_valid: ``[K]`` bool; False rows are padding.
        positive_iou: IoU at or above which an anchor is positive (paper: 0.5).
        negative_iou: best IoU below which an anchor is negative (paper: 0.4); in between: ignored.
        allow_low_quality: force each valid ground truth's best anchor(s) to be positive.
        ignore_ioa: non-positive anchors covered at least this much (intersection / anchor area) by
            a valid ignore box are ignored.

    Returns:
        dict with
          ``labels`` ``[N]`` int32: 1 positive, 0 negative, -1 ignored;
          ``matched_gt_idx`` ``[N]`` int32: index into ``gt_boxes`` of the assigned ground truth
            (the best-IoU valid one, or the one a low-quality match forced); -1 where no valid
            ground truth overlaps the anchor;
          ``max_iou`` ``[N]`` float32: best IoU with any valid ground truth (0 if none).
    """
    static = all(isinstance(t, (int, float)) for t in (negative_iou, positive_iou))
    if static and negative_iou > positive_iou:
        raise ValueError(f"negative_iou ({negative_iou}) must be <= positive_iou ({positive_iou}).")
    anchors = jnp.asarray(anchors, jnp.float32)
    num_anchors = anchors.shape[0]
    gt_valid = jnp.asarray(gt_valid, bool)
    ignore_valid = jnp.asarray(ignore_valid, bool)

    if gt_boxes.shape[0] > 0:
        # -1 on padded columns: below every real IoU (>= 0), so padding never wins an argmax or a max.
        iou = jnp.where(gt_valid[None, :], box_ops.pairwise_iou(anchors, gt_boxes), -1.0)  # [N, M]
        best_gt = jnp.argmax(iou, axis=1).astype(jnp.int32)  # first index among ties
        best_iou = jnp.max(iou, axis=1)
        max_iou = jnp.maximum(best_iou, 0.0)
        matched_gt_idx = jnp.where(best_iou > 0.0, best_gt, -1)
        positive = max_iou >= positive_iou

        if allow_low_quality:
            # Padded columns hold -1, so `> 0` also keeps padded gts from forcing anything.
            gt_best_iou = jnp.max(iou, axis=0)  # [M]
            forced = (iou == gt_best_iou[None, :]) & (gt_best_iou[None, :] > 0.0)
            is_forced = jnp.any(forced, axis=1)
            # An anchor that is the best one of several ground truths goes to the one it overlaps
            # most (lowest index on ties).
            forced_gt = jnp.argmax(jnp.where(forced, iou, -2.0), axis=1).astype(jnp.int32)
            matched_gt_idx = jnp.where(is_forced, forced_gt, matched_gt_idx)
            positive = positive | is_forced
    else:
        max_iou = jnp.zeros((num_anchors,), jnp.float32)
        matched_gt_idx = jnp.full((num_anchors,), -1, jnp.int32)
        positive = jnp.zeros((num_anchors,), bool)

    labels = jnp.where(
        positive,
        POSITIVE,
        jnp.where(max_iou < negative_iou, NEGATIVE, IGNORED),
    ).astype(jnp.int32)

    if ignore_boxes.shape[0] > 0:
        ioa = jnp.where(ignore_valid[None, :], box_ops.pairwise_ioa(anchors, ignore_boxes), -1.0)
        in_ignore = jnp.max(ioa, axis=1) >= ignore_ioa
        labels = jnp.where(in_ignore & ~positive, IGNORED, labels)

    return {
        "labels": labels,
        "matched_gt_idx": matched_gt_idx.astype(jnp.int32),
        "max_iou": max_iou.astype(jnp.float32),
    }
