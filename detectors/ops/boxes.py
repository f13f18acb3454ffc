"""Box format conversions and overlap measures.

Inside the code every box is ``[x1, y1, x2, y2]`` (xyxy) in absolute pixels of the network input,
float32, continuous coordinates (a box from 0 to 10 is 10 pixels wide, no +1). The converters here
are the only places where another format is spoken; their names say both formats.

Overlaps of boxes with zero (or negative) area are 0, never NaN, in values and in gradients: every
division goes through ``safe_divide``, which also keeps the unused branch of ``jnp.where`` finite
(a NaN in the untaken branch would still poison the gradient).
"""

from __future__ import annotations

import jax.numpy as jnp

# Denominators (areas, in px^2) at or below this count as zero. Far below any real box, and large
# enough that num / den^2 in the gradient of a division cannot overflow float32.
_AREA_EPS = 1e-12


def safe_divide(num: jnp.ndarray, den: jnp.ndarray) -> jnp.ndarray:
    """``num / den`` where ``den`` > 1e-12, else 0 (elementwise); finite gradient everywhere."""
    ok = den > _AREA_EPS
    return jnp.where(ok, num / jnp.where(ok, den, 1.0), 0.0)


def boxes_xywh_to_xyxy(boxes: jnp.ndarray) -> jnp.ndarray:
    """``[..., 4]`` xywh (top-left corner, width, height) -> ``[..., 4]`` xyxy, same dtype."""
    boxes = jnp.asarray(boxes)
    x, y, w, h = jnp.split(boxes, 4, axis=-1)
    return jnp.concatenate([x, y, x + w, y + h], axis=-1)


def boxes_xyxy_to_xywh(boxes: jnp.ndarray) -> jnp.ndarray:
    """``[..., 4]`` xyxy -> ``[..., 4]`` xywh (top-left corner, width, height), same dtype."""
    boxes = jnp.asarray(boxes)
    x1, y1, x2, y2 = jnp.split(boxes, 4, axis=-1)
    return jnp.concatenate([x1, y1, x2 - x1, y2 - y1], axis=-1)


def boxes_yxyx_to_xyxy(boxes: jnp.ndarray) -> jnp.ndarray:
    """``[..., 4]`` ``[y1, x1, y2, x2]`` -> ``[..., 4]`` xyxy, same dtype and units.

    Only reorders the coordinates: TFDS' normalised boxes must still be multiplied by
    ``(W, H, W, H)`` to become pixels.
    """
    boxes = jnp.asarray(boxes)
    return boxes[..., jnp.array([1, 0, 3, 2])]


def box_area(boxes: jnp.ndarray) -> jnp.ndarray:
    """``[..., 4]`` xyxy -> ``[...]`` area; inverted boxes (x2 < x1 or y2 < y1) have area 0."""
    boxes = jnp.asarray(boxes)
    w = jnp.maximum(boxes[..., 2] - boxes[..., 0], 0.0)
    h = jnp.maximum(boxes[..., 3] - boxes[..., 1], 0.0)
    return w * h


def clip_boxes(boxes: jnp.ndarray, height, width) -> jnp.ndarray:
    """Clips ``[..., 4]`` xyxy boxes to the image ``[0, width] x [0, height]``.

    ``height`` / ``width`` are scalars (Python or traced); the result may have zero area.
    """
    boxes = jnp.asarray(boxes)
    x = jnp.clip(boxes[..., 0::2], 0.0, width)
    y = jnp.clip(boxes[..., 1::2], 0.0, height)
    return jnp.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], axis=-1)


def _pairwise_intersection(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """``[N, 4]``, ``[M, 4]`` xyxy -> ``[N, M]`` intersection areas."""
    lt = jnp.maximum(a[:, None, :2], b[None, :, :2])
    rb = jnp.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = jnp.maximum(rb - lt, 0.0)
    return wh[..., 0] * wh[..., 1]


def pairwise_iou(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Intersection over union of every pair.

    Args:
        a: ``[N, 4]`` float32 xyxy.
        b: ``[M, 4]`` float32 xyxy.

    Returns:
        ``[N, M]`` float32 in [0, 1]; 0 where the union has zero area.
    """
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    inter = _pairwise_intersection(a, b)
    union = box_area(a)[:, None] + box_area(b)[None, :] - inter
    return safe_divide(inter, union)


def pairwise_ioa(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Intersection over the area of the FIRST argument, for every pair.

    Used to find anchors / detections lying inside ignore regions: ``pairwise_ioa(anchors,
    ignore_boxes)`` is the fraction of each anchor covered by each ignore box.

    Args:
        a: ``[N, 4]`` float32 xyxy (anchors or detections; their area is the denominator).
        b: ``[M, 4]`` float32 xyxy (e.g. ignore regions).

    Returns:
        ``[N, M]`` float32 in [0, 1]; 0 where ``a`` has zero area.
    """
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    inter = _pairwise_intersection(a, b)
    return safe_divide(inter, box_area(a)[:, None])


def iou(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """Elementwise IoU of ``[..., 4]`` and ``[..., 4]`` xyxy (broadcasting) -> ``[...]`` float32."""
    a = jnp.asarray(a, jnp.float32)
    b = jnp.asarray(b, jnp.float32)
    lt = jnp.maximum(a[..., :2], b[..., :2])
    rb = jnp.minimum(a[..., 2:], b[..., 2:])
    wh = jnp.maximum(rb - lt, 0.0)
    inter = wh[..., 0] * wh[..., 1]
    union = box_area(a) + box_area(b) - inter
    return safe_divide(inter, union)
