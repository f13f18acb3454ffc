"""Anchor boxes of a dense detector (RetinaNet paper, section 4 "Anchors").

Anchors are a host-side numpy constant computed once per image size. Their order is the order in
which a head's outputs are flattened, so that ``anchors[i]`` belongs to row ``i`` of the
concatenated head output:

    levels ascending (P_min .. P_max), then row y, then column x, then anchor index
    ``a = scale_idx * len(aspect_ratios) + ratio_idx`` (scale outer),

which is exactly ``head_out_l.reshape(H_l * W_l * A, K)`` for a level output of shape
``[H_l, W_l, A * K]``, concatenated over levels.

Aspect ratio is width / height (CityPersons' pedestrian ratio is 0.41): for base size ``s`` and
ratio ``r`` the anchor is ``w = s * sqrt(r)`` wide and ``h = s / sqrt(r)`` tall, so its area stays
``s^2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def num_anchors_per_location(num_scales: int = 3, aspect_ratios: Sequence[float] = (0.41,)) -> int:
    """A: anchors at each feature-map location (``num_scales * len(aspect_ratios)``)."""
    return int(num_scales) * len(tuple(aspect_ratios))


def level_shape(image_size: tuple[int, int], level: int) -> tuple[int, int]:
    """``(ceil(H / 2^level), ceil(W / 2^level))``: the size of a stride-2^level SAME-padded map."""
    h, w = image_size
    stride = 2**level
    return (-(-int(h) // stride), -(-int(w) // stride))


def generate_anchors(
    image_size: tuple[int, int],
    min_level: int = 3,
    max_level: int = 7,
    anchor_size: float = 4.0,
    num_scales: int = 3,
    aspect_ratios: Sequence[float] = (0.41,),
) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Anchors for every level, location, scale and aspect ratio.

    Args:
        image_size: ``(H, W)`` of the network input, pixels.
        min_level, max_level: pyramid levels P_min..P_max (inclusive); level l has stride 2^l.
        anchor_size: base anchor side in strides: at level l the base side is
            ``anchor_size * 2^l * 2^(i / num_scales)`` for scale ``i`` (4.0 gives 32 px at P3).
        num_scales: octave scales per level (the paper's {2^0, 2^(1/3), 2^(2/3)} for 3).
        aspect_ratios: width / height of the anchors.

    Returns:
        anchors: ``[N, 4]`` float32 xyxy, absolute pixels,
            ``N = sum_l H_l * W_l * num_scales * len(aspect_ratios)``; centres at
            ``((x + 0.5) * 2^l, (y + 0.5) * 2^l)``; not clipped to the image.
        level_shapes: ``[(H_l, W_l)]`` for l = min_level..max_level, with ``H_l = ceil(H / 2^l)``.
    """
    if min_level > max_level:
        raise ValueError(f"min_level ({min_level}) must be <= max_level ({max_level}).")
    if num_scales < 1 or not tuple(aspect_ratios):
        raise ValueError("Need num_scales >= 1 and at least one aspect ratio.")
    if any(r <= 0 for r in aspect_ratios):
        raise ValueError(f"Aspect ratios (width / height) must be positive, got {aspect_ratios}.")

    all_anchors = []
    level_shapes = []
    for level in range(min_level, max_level + 1):
        stride = 2.0**level
        h_l, w_l = level_shape(image_size, level)
        level_shapes.append((h_l, w_l))

        # [A, 2] (w, h) with the scale index outer and the ratio index inner.
        sizes = []
        for scale_idx in range(num_scales):
            base = anchor_size * stride * 2.0 ** (scale_idx / num_scales)
            for ratio in aspect_ratios:
                sizes.append((base * math.sqrt(ratio), base / math.sqrt(ratio)))
        sizes = np.asarray(sizes, np.float64)  # [A, 2]

        cx = (np.arange(w_l, dtype=np.float64) + 0.5) * stride
        cy = (np.arange(h_l, dtype=np.float64) + 0.5) * stride
        cy, cx = np.meshgrid(cy, cx, indexing="ij")  # [H_l, W_l]
        centres = np.stack([cx, cy], axis=-1)[:, :, None, :]  # [H_l, W_l, 1, 2]
        half = 0.5 * sizes[None, None, :, :]  # [1, 1, A, 2]
        boxes = np.concatenate([centres - half, centres + half], axis=-1)  # [H_l, W_l, A, 4]
        all_anchors.append(boxes.reshape(-1, 4))

    anchors = np.concatenate(all_anchors, axis=0).astype(np.float32)
    return anchors, level_shapes


def anchors_per_level(
    level_shapes: Sequence[tuple[int, int]],
    num_scales: int = 3,
    aspect_ratios: Sequence[float] = (0.41,),
) -> list[int]:
    """Number of anchors on each level (the static ``level_sizes`` for post-processing)."""
    a = num_anchors_per_location(num_scales, aspect_ratios)
    return [int(h * w * a) for h, w in level_shapes]
