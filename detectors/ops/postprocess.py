"""From dense head outputs to a fixed number of detections per image (RetinaNet paper, 4.1).

"We only decode box predictions from at most 1k top-scoring predictions per FPN level, after
thresholding detector confidence at 0.05. The top predictions from all levels are merged and
non-maximum suppression with a threshold of 0.5 is applied to yield the final detections."

One image at a time, static shapes throughout (``jax.vmap`` it over the batch); slots without a
detection are described by the ``valid`` mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from detectors.ops import box_coder
from detectors.ops import boxes as box_ops
from detectors.ops import nms as nms_ops


def _candidates(cls_logits, box_deltas, anchors, level_sizes, image_size, score_threshold,
                pre_nms_topk, box_weights):
    """Per-level top-k (anchor, class) candidates, decoded and clipped: boxes [C, 4] xyxy,
    scores [C], classes [C] int32, valid [C] bool (score > threshold, non-empty box)."""
    level_sizes = [int(n) for n in level_sizes]
    num_anchors, num_classes = cls_logits.shape
    if sum(level_sizes) != num_anchors:
        raise ValueError(
            f"level_sizes {level_sizes} sum to {sum(level_sizes)}, not N={num_anchors}."
        )
    height, width = image_size
    cls_logits = jnp.asarray(cls_logits, jnp.float32)
    box_deltas = jnp.asarray(box_deltas, jnp.float32)
    anchors = jnp.asarray(anchors, jnp.float32)

    cand_scores, cand_anchor, cand_class = [], [], []
    start = 0
    for size in level_sizes:  # static loop over pyramid levels
        flat = cls_logits[start : start + size].reshape(-1)  # [(n_l * K)], anchor-major
        k = min(int(pre_nms_topk), flat.shape[0])
        # Sigmoid is monotonic: top-k on logits picks the same candidates.
        top_logits, top_idx = jax.lax.top_k(flat, k)
        cand_scores.append(jax.nn.sigmoid(top_logits))
        cand_anchor.append(start + top_idx // num_classes)
        cand_class.append(top_idx % num_classes)
        start += size
    scores = jnp.concatenate(cand_scores)
    anchor_idx = jnp.concatenate(cand_anchor)
    classes = jnp.concatenate(cand_class).astype(jnp.int32)

    boxes = box_coder.decode_boxes(box_deltas[anchor_idx], anchors[anchor_idx], weights=box_weights)
    boxes = box_ops.clip_boxes(boxes, height, width)
    # Boxes squeezed to nothing by clipping can match nothing; don't let them take a slot.
    valid = (scores > score_threshold) & (box_ops.box_area(boxes) > 0.0)
    return boxes, scores, classes, valid


def generate_detections(
    cls_logits: jnp.ndarray,
    box_deltas: jnp.ndarray,
    anchors: jnp.ndarray,
    level_sizes: Sequence[int],
    image_size: tuple[int, int],
    score_threshold: float = 0.05,
    pre_nms_topk: int = 1000,
    nms_iou: float = 0.5,
    max_detections: int = 100,
    box_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> dict[str, jnp.ndarray]:
    """Final detections of one image.

    Args:
        cls_logits: ``[N, K]`` classification logits (any float dtype; scored in float32).
        box_deltas: ``[N, 4]`` class-agnostic regression deltas.
        anchors: ``[N, 4]`` float32 xyxy, in ``generate_anchors`` order.
        level_sizes: static number of anchors on each level (sums to N).
        image_size: ``(H, W)`` of the network input; boxes are clipped to it.
        score_threshold: candidates need sigmoid score > this.
        pre_nms_topk: at most this many (anchor, class) candidates per level.
        nms_iou: per-class NMS IoU threshold (a box is dropped when IoU > this).
        max_detections: static number of output slots D.
        box_weights: the box coder weights used in training.

    Returns:
        dict with ``boxes`` ``[D, 4]`` float32 xyxy clipped to the image, ``scores`` ``[D]``
        float32 (sigmoid), ``classes`` ``[D]`` int32, ``valid`` ``[D]`` bool. Valid slots come first,
        in descending score order; invalid slots hold zeros.
    """
    boxes, scores, classes, valid = _candidates(
        cls_logits, box_deltas, anchors, level_sizes, image_size, score_threshold, pre_nms_topk,
        box_weights,
    )
    height, width = image_size
    # Class-aware NMS in one pass: shifting each class to its own region of the plane (clipped
    # boxes lie in [0, max(H, W)]) makes boxes of different classes never overlap.
    offset = float(max(height, width)) + 1.0
    shifted = boxes + (classes.astype(jnp.float32) * offset)[:, None]
    keep, keep_valid = nms_ops.non_max_suppression_padded(
        shifted, scores, valid, nms_iou, max_detections
    )
    return {
        "boxes": jnp.where(keep_valid[:, None], boxes[keep], 0.0),
        "scores": jnp.where(keep_valid, scores[keep], 0.0),
        "classes": jnp.where(keep_valid, classes[keep], 0).astype(jnp.int32),
        "valid": keep_valid,
    }


def raw_detections(
    cls_logits: jnp.ndarray,
    box_deltas: jnp.ndarray,
    anchors: jnp.ndarray,
    level_sizes: Sequence[int],
    image_size: tuple[int, int],
    score_threshold: float = 0.05,
    pre_nms_topk: int = 1000,
    max_detections: int = 1000,
    box_weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> dict[str, jnp.ndarray]:
    """The candidates `generate_detections` hands to NMS, before NMS: the `max_detections`
    best-scoring ones, so that NMS can be redone on the host at any threshold (the RepBox paper's
    Figure 6). Arguments as `generate_detections`.

    Returns:
        dict with ``boxes`` ``[R, 4]`` float32 xyxy, ``scores`` ``[R]``, ``classes`` ``[R]`` int32,
        ``valid`` ``[R]`` bool; valid slots first in descending score order, invalid ones zero.
    """
    boxes, scores, classes, valid = _candidates(
        cls_logits, box_deltas, anchors, level_sizes, image_size, score_threshold, pre_nms_topk,
        box_weights,
    )
    k = min(int(max_detections), scores.shape[0])
    top_scores, idx = jax.lax.top_k(jnp.where(valid, scores, -1.0), k)
    keep_valid = top_scores > -1.0
    return {
        "boxes": jnp.where(keep_valid[:, None], boxes[idx], 0.0),
        "scores": jnp.where(keep_valid, scores[idx], 0.0),
        "classes": jnp.where(keep_valid, classes[idx], 0).astype(jnp.int32),
        "valid": keep_valid,
    }
