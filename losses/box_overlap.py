"""Box overlaps for the crowd losses: IoU, IoG (intersection over ground truth) and IoA.

Box format everywhere: ``[x1, y1, x2, y2]`` (xyxy) float32 in absolute pixels, continuous
coordinates (no +1 pixel convention). Every ratio whose denominator has zero area is 0, never NaN,
in values and in gradients.

IoU and IoA are the very functions the matcher uses (re-exported from ``detectors.ops.boxes``), so
each overlap has one implementation in the codebase. IoG is written once, elementwise, and lifted
to all pairs with two nested ``jax.vmap`` (XLA turns that into the same broadcast computation a
hand-written version gives). IoG is the repulsion loss's measure (Wang et al., "Repulsion Loss:
Detecting Pedestrians in a Crowd", section 4): ``IoG(B, G) = area(B n G) / area(G)``; unlike IoU it
cannot be lowered by growing ``B``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from detectors.ops.boxes import box_area, iou, pairwise_ioa, pairwise_iou, safe_divide

__all__ = ["intersection", "iog", "iou", "pairwise_ioa", "pairwise_iog", "pairwise_iou"]


def intersection(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Elementwise intersection area of ``[..., 4]`` and ``[..., 4]`` xyxy boxes -> ``[...]``."""
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    wh = jnp.maximum(jnp.minimum(a[..., 2:], b[..., 2:]) - jnp.maximum(a[..., :2], b[..., :2]), 0.0)
    return wh[..., 0] * wh[..., 1]


def iog(boxes: jnp.ndarray, gt: jnp.ndarray) -> jnp.ndarray:
    """Elementwise intersection over the SECOND argument's area (RepLoss's IoG).

    Args:
        boxes: ``[..., 4]`` float32 xyxy (predicted boxes).
        gt: ``[..., 4]`` float32 xyxy (ground truth), broadcastable against ``boxes``.

    Returns:
        ``[...]`` float32 in [0, 1]; 0 where ``gt`` has zero area.
    """
    return safe_divide(intersection(boxes, gt), box_area(jnp.asarray(gt, jnp.float32)))


def pairwise_iog(boxes: jnp.ndarray, gt: jnp.ndarray) -> jnp.ndarray:
    """IoG of every (box, ground truth) pair.

    Args:
        boxes: ``[N, 4]`` float32 xyxy.
        gt: ``[M, 4]`` float32 xyxy; its area is the denominator.

    Returns:
        ``[N, M]`` float32 in [0, 1]; 0 in the columns of zero-area ground truth.
    """
    over_gt = jax.vmap(iog, in_axes=(None, 0))  # one box against every gt: [M]
    return jax.vmap(over_gt, in_axes=(0, None))(
        jnp.asarray(boxes, jnp.float32), jnp.asarray(gt, jnp.float32)
    )
