"""Box regression targets: the R-CNN centre/size parameterisation.

For an anchor with centre ``(xa, ya)`` and size ``(wa, ha)`` and a box ``(x, y, w, h)``:

    dx = wx * (x - xa) / wa,  dy = wy * (y - ya) / ha,  dw = ww * log(w / wa),  dh = wh * log(h / ha)

RetinaNet uses weights (1, 1, 1, 1); Faster R-CNN's second stage traditionally (10, 10, 5, 5).
Both functions work on any leading shape (anchors broadcast against boxes / deltas).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax.numpy as jnp

# Decoded dw / dh above log(1000 / 16) would make a box more than 62x its anchor: clamped before
# exp so an untrained head cannot produce inf boxes (the detectron2 default).
DEFAULT_SCALE_CLIP = math.log(1000.0 / 16)

# Sizes are floored at this (px) when encoding, so a degenerate (zero-width) box gives a large but
# finite target instead of -inf.
_MIN_SIZE = 1e-6


def _centre_size(boxes: jnp.ndarray):
    w = boxes[..., 2] - boxes[..., 0]
    h = boxes[..., 3] - boxes[..., 1]
    return boxes[..., 0] + 0.5 * w, boxes[..., 1] + 0.5 * h, w, h


def encode_boxes(
    boxes: jnp.ndarray,
    anchors: jnp.ndarray,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
) -> jnp.ndarray:
    """Regression targets of ``boxes`` relative to ``anchors``.

    Args:
        boxes: ``[..., 4]`` float32 xyxy (e.g. the matched ground truth of each anchor).
        anchors: ``[..., 4]`` float32 xyxy, broadcastable against ``boxes``.
        weights: ``(wx, wy, ww, wh)`` multipliers of the four deltas.

    Returns:
        ``[..., 4]`` float32 deltas ``(dx, dy, dw, dh)``; finite even for zero-size boxes.
    """
    boxes = jnp.asarray(boxes, jnp.float32)
    anchors = jnp.asarray(anchors, jnp.float32)
    wx, wy, ww, wh = weights
    xa, ya, wa, ha = _centre_size(anchors)
    x, y, w, h = _centre_size(boxes)
    wa = jnp.maximum(wa, _MIN_SIZE)
    ha = jnp.maximum(ha, _MIN_SIZE)
    w = jnp.maximum(w, _MIN_SIZE)
    h = jnp.maximum(h, _MIN_SIZE)
    dx = wx * (x - xa) / wa
    dy = wy * (y - ya) / ha
    dw = ww * jnp.log(w / wa)
    dh = wh * jnp.log(h / ha)
    return jnp.stack([dx, dy, dw, dh], axis=-1)


def decode_boxes(
    deltas: jnp.ndarray,
    anchors: jnp.ndarray,
    weights: Sequence[float] = (1.0, 1.0, 1.0, 1.0),
    clip: float = DEFAULT_SCALE_CLIP,
) -> jnp.ndarray:
    """Boxes from regression ``deltas`` applied to ``anchors`` (inverse of ``encode_boxes``).

    Args:
        deltas: ``[..., 4]`` ``(dx, dy, dw, dh)`` (any float dtype; computed in float32).
        anchors: ``[..., 4]`` float32 xyxy, broadcastable against ``deltas``.
        weights: the ``(wx, wy, ww, wh)`` used for encoding.
        clip: upper bound on ``dw / ww`` and ``dh / wh`` before ``exp``.

    Returns:
        ``[..., 4]`` float32 xyxy boxes (not clipped to the image).
    """
    deltas = jnp.asarray(deltas, jnp.float32)
    anchors = jnp.asarray(anchors, jnp.float32)
    wx, wy, ww, wh = weights
    xa, ya, wa, ha = _centre_size(anchors)
    dx = deltas[..., 0] / wx
    dy = deltas[..., 1] / wy
    dw = jnp.minimum(deltas[..., 2] / ww, clip)
    dh = jnp.minimum(deltas[..., 3] / wh, clip)
    x = xa + dx * wa
    y = ya + dy * ha
    half_w = 0.5 * wa * jnp.exp(dw)
    half_h = 0.5 * ha * jnp.exp(dh)
    return jnp.stack([x - half_w, y - half_h, x + half_w, y + half_h], axis=-1)
