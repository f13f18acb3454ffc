"""Box regression losses: smooth L1 on coder deltas, IoU and GIoU losses on xyxy boxes.

All elementwise (no reduction: masking by positives and normalising is the caller's job), float32,
and free of NaN in values and gradients for degenerate (zero-area) boxes.
"""

from __future__ import annotations

import jax.numpy as jnp

from detectors.ops import boxes as box_ops


def smooth_l1(pred: jnp.ndarray, target: jnp.ndarray, beta: float = 1.0 / 9) -> jnp.ndarray:
    """Elementwise smooth L1 (Huber / beta): 0.5 d^2 / beta if |d| < beta else |d| - 0.5 beta.

    Args:
        pred, target: ``[...]`` (e.g. ``[N, 4]`` deltas), broadcastable.
        beta: transition point; ``beta == 0`` gives plain L1. Default 1/9 (detectron2 RetinaNet).

    Returns:
        ``[...]`` float32.
    """
    diff = jnp.abs(jnp.asarray(pred, jnp.float32) - jnp.asarray(target, jnp.float32))
    if beta < 1e-5:
        return diff
    return jnp.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta)


def iou_loss(pred: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
    """``1 - IoU`` of ``[..., 4]`` float32 xyxy boxes -> ``[...]`` float32 in [0, 1]."""
    return 1.0 - box_ops.iou(pred, target)


def giou_loss(pred: jnp.ndarray, target: jnp.ndarray) -> jnp.ndarray:
    """``1 - GIoU`` (Rezatofighi et al., 2019) of ``[..., 4]`` xyxy boxes -> ``[...]`` in [0, 2].

    GIoU = IoU - (C - U) / C with C the area of the smallest enclosing box and U the union. When
    C is 0 (both boxes the same point) the penalty term is 0, so the loss is 1.
    """
    pred = jnp.asarray(pred, jnp.float32)
    target = jnp.asarray(target, jnp.float32)
    lt = jnp.maximum(pred[..., :2], target[..., :2])
    rb = jnp.minimum(pred[..., 2:], target[..., 2:])
    wh = jnp.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_ops.box_area(pred) + box_ops.box_area(target) - inter
    enclose_lt = jnp.minimum(pred[..., :2], target[..., :2])
    enclose_rb = jnp.maximum(pred[..., 2:], target[..., 2:])
    enclose_wh = jnp.maximum(enclose_rb - enclose_lt, 0.0)
    enclose = enclose_wh[..., 0] * enclose_wh[..., 1]
    iou = box_ops.safe_divide(inter, union)
    giou = iou - box_ops.safe_divide(enclose - union, enclose)
    return 1.0 - giou
