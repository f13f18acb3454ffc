"""Weakly supervised pedestrian segmentation losses of GDFL.

Lin, Lu, Wang, Zhou, "Graininess-aware Deep Feature Learning for Robust Pedestrian Detection"
(IEEE TIP; GDFL and its channel-adaptive variant CA-GDFL):

* Weak masks (section V-B, "Weakly supervised training for attention module"): pixels inside a
  ground-truth box are foreground, the rest background; a pixel inside several boxes belongs to
  the box of smallest area. ``boxes_to_masks``.
* Instance-sensitive weight, eq. 4: ``w_i = alpha + beta / h_i`` with ``h_i`` the height of the
  pedestrian that pixel ``i`` belongs to; ``alpha = 3`` and ``beta = 10`` (text under eq. 5).
* Weighted softmax loss, eq. 5: ``L = -1/N_s sum_i w_i^{1[l_i != 0]} log c_i^{l_i}``: a pedestrian
  pixel costs ``w_i`` times its cross-entropy, a background pixel (label 0) costs it once, and
  the sum is divided by ``N_s``, the number of pixels of the mask. ``instance_sensitive_mask_loss``.
* Scale-specific form, eqs. 7-8 (CA-GDFL): one two-class map per detection branch ``j``; the weight
  of a pedestrian pixel is eq. 4 when its height is in the branch's range (Table II) and 0
  otherwise, so out-of-range pedestrians are ignored rather than called background. Eq. 9 sums
  the branch losses. ``scale_aware_mask_loss``.

Conventions shared by every function here: boxes are ``[M, 4]`` float32 ``(x1, y1, x2, y2)`` in
absolute input-image pixels with no ``+1`` (a box's width is ``x2 - x1``, its height ``y2 - y1``);
``valid`` is ``[M]`` bool and rows where it is False (padding) have no effect whatever their
coordinates (NaN and inf included). Everything is per image, float32, jit-able with static
shapes, and vmap-able over a batch.

Where the paper leaves a choice open, this module decides as follows:

1. Rasterisation. Cell ``(i, j)`` of an ``[H, W]`` map with stride ``s`` is represented by the
   pixel centre ``x = (j + 0.5) s, y = (i + 0.5) s`` and lies in a box when
   ``x1 <= x < x2 and y1 <= y < y2`` (half-open, so abutting boxes do not share cells and a box of
   zero width or height covers nothing). Among the boxes containing a cell the smallest area
   wins; equal areas go to the lowest row index.
2. ``h_i`` is the height ``y2 - y1`` of the winning box in input-image pixels, whatever the stride
   of the map, because Table II and the 120-pixel threshold are image-pixel heights.
3. ``N_s`` is ``H * W``, every cell of the map, including cells whose weight is 0 (eq. 7). It is
   not the sum of the weights; an image without pedestrians thus gives the mean background
   cross-entropy.
4. Eq. 8 is applied to the single smallest-box assignment of rule 1, made over all valid boxes
   before any height filtering: a branch ignores a cell whose winning pedestrian is out of its
   range even when a larger, in-range box also contains that cell (there the in-range pedestrian
   is hidden behind a smaller one; GDFL's one-label-per-pixel small/large masks agree).
5. Table II lists integer ranges {30, 89}, {90, 169}, {170, 259}, {260, -}. For real-valued box
   heights they are read as the half-open ``[30, 90), [90, 170), [170, 260), [260, inf)`` so no
   height falls between two branches. Pedestrians shorter than 30 pixels are in no range and are
   ignored by every branch (weight 0), as eq. 8 says.
6. GDFL proper (section III-B) uses ``S_c = 2`` scale classes split at 120 pixels; with
   ``class_height_thresholds=(120.0,)`` and 3-channel logits a pedestrian of height ``h < 120``
   has label 1 and one with ``h >= 120`` label 2. The default is the two-class (pedestrian vs.
   background) map, the "single scale attention" row of Table VII.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp

# Eq. 4 constants (cross-validated in the paper; stated just below eq. 5).
GDFL_ALPHA = 3.0
GDFL_BETA = 10.0
# Section III-B: small vs. large pedestrians for GDFL's S_c = 2 attention classes.
GDFL_SMALL_LARGE_THRESHOLD = 120.0
# Table II (conv4_3, conv5_3, conv6_2, conv7_2) as half-open [h_min, h_max) image-pixel heights.
TABLE_II_HEIGHT_RANGES: tuple[tuple[float, float], ...] = (
    (30.0, 90.0),
    (90.0, 170.0),
    (170.0, 260.0),
    (260.0, math.inf),
)


class BoxMasks(NamedTuple):
    """Weak box supervision rasterised on one feature map (a pytree: jit/vmap pass it through).

    Attributes:
        instance_ids: ``[H, W]`` int32, the row of ``boxes`` each cell is assigned to (the
            smallest-area valid box containing it), ``-1`` for background.
        foreground: ``[H, W]`` bool, ``instance_ids >= 0``.
    """

    instance_ids: jnp.ndarray
    foreground: jnp.ndarray


def boxes_to_masks(
    boxes: jnp.ndarray,
    valid: jnp.ndarray,
    height: int,
    width: int,
    stride: float = 1,
) -> BoxMasks:
    """Rasterise ground-truth boxes into an instance-index map and a foreground mask.

    Cell ``(i, j)`` stands for the input pixel centre ``((j + 0.5) * stride, (i + 0.5) * stride)``
    and is inside box ``(x1, y1, x2, y2)`` when ``x1 <= x < x2`` and ``y1 <= y < y2``. A cell inside
    several valid boxes is given to the one of smallest area ``(x2 - x1) * (y2 - y1)`` (GDFL,
    section V-B); ties go to the lowest box index. Vectorised over boxes (an ``[H, W, M]`` boolean
    intermediate), no data-dependent control flow.

    Args:
        boxes: ``[M, 4]`` xyxy boxes in absolute input-image pixels (no ``+1``).
        valid: ``[M]`` bool; False rows (padding) are ignored whatever their coordinates.
        height, width: static size ``H, W`` of the feature map.
        stride: input pixels per feature cell.

    Returns:
        ``BoxMasks(instance_ids [H, W] int32 with -1 = background, foreground [H, W] bool)``.
        Per-cell instance heights are ``(boxes[:, 3] - boxes[:, 1])[instance_ids]`` where
        ``foreground``.
    """
    boxes = jnp.asarray(boxes, jnp.float32)
    valid = jnp.asarray(valid).astype(bool)
    num_boxes = boxes.shape[0]
    if num_boxes == 0:
        return BoxMasks(jnp.full((height, width), -1, jnp.int32), jnp.zeros((height, width), bool))
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    centre_y = (jnp.arange(height, dtype=jnp.float32) + 0.5) * stride  # [H]
    centre_x = (jnp.arange(width, dtype=jnp.float32) + 0.5) * stride  # [W]
    in_rows = (centre_y[:, None] >= y1) & (centre_y[:, None] < y2)  # [H, M]
    in_cols = (centre_x[:, None] >= x1) & (centre_x[:, None] < x2) & valid  # [W, M]
    inside = in_rows[:, None, :] & in_cols[None, :, :]  # [H, W, M]
    # A box containing a cell centre has positive (possibly infinite, never NaN) area.
    area = (x2 - x1) * (y2 - y1)  # [M]
    smallest = jnp.min(jnp.where(inside, area, jnp.inf), axis=-1)  # [H, W]
    # argmax of a bool picks the first True: the lowest index among the smallest containing boxes.
    owner = jnp.argmax(inside & (area == smallest[..., None]), axis=-1)
    foreground = jnp.any(inside, axis=-1)
    instance_ids = jnp.where(foreground, owner, -1).astype(jnp.int32)
    return BoxMasks(instance_ids, foreground)


def _cell_heights(masks: BoxMasks, boxes: jnp.ndarray) -> jnp.ndarray:
    """``[H, W]`` float32 height of each cell's instance (1 on background, never used there)."""
    boxes = jnp.asarray(boxes, jnp.float32)
    if boxes.shape[0] == 0:
        return jnp.ones(masks.instance_ids.shape, jnp.float32)
    box_heights = boxes[:, 3] - boxes[:, 1]
    heights = box_heights[jnp.maximum(masks.instance_ids, 0)]
    # A cell owned by a box has y1 <= y < y2, so its height is > 0; the guard keeps 1 / h finite
    # (and its derivative NaN-free) on background cells.
    return jnp.where(masks.foreground, heights, 1.0)


def _instance_weights(heights: jnp.ndarray, alpha: float, beta: float) -> jnp.ndarray:
    """Eq. 4: ``alpha + beta / h`` for positive heights ``h``."""
    return alpha + beta / heights


def _weighted_softmax_loss(
    logits: jnp.ndarray, labels: jnp.ndarray, weights: jnp.ndarray
) -> jnp.ndarray:
    """``-1/(H W) sum_cells weight * log softmax(logits)[label]`` (eqs. 5 and 7), float32 scalar."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    picked = jnp.take_along_axis(log_probs, labels[..., None], axis=-1)[..., 0]
    num_cells = labels.shape[0] * labels.shape[1]
    return -jnp.sum(weights * picked) / num_cells


def instance_sensitive_mask_loss(
    logits: jnp.ndarray,
    boxes: jnp.ndarray,
    valid: jnp.ndarray,
    stride: float,
    alpha: float = GDFL_ALPHA,
    beta: float = GDFL_BETA,
    *,
    class_height_thresholds: Sequence[float] = (),
) -> jnp.ndarray:
    """GDFL's instance-sensitive weighted softmax loss for one attention map (eqs. 4-5).

    ``L = -1/N_s sum_i w_i^{1[l_i != 0]} log softmax(logits_i)[l_i]`` with ``N_s = H * W``,
    ``l_i`` the ground-truth class of cell ``i`` (0 = background) and, for a pedestrian cell,
    ``w_i = alpha + beta / h_i`` where ``h_i`` is the height ``y2 - y1`` (input-image pixels) of
    the smallest-area box containing the cell (see ``boxes_to_masks``). Background cells have
    weight 1.

    Args:
        logits: ``[H, W, K]`` per-cell class logits, channel 0 = background; ``K = 2``
            (pedestrian vs. background) by default, ``K = len(class_height_thresholds) + 2``.
        boxes: ``[M, 4]`` xyxy ground-truth boxes, absolute input-image pixels, no ``+1``.
        valid: ``[M]`` bool; invalid (padding) rows have no effect.
        stride: input pixels per cell of ``logits``.
        alpha, beta: eq. 4 constants, paper values 3 and 10.
        class_height_thresholds: increasing heights splitting pedestrians into scale classes
            ``1..K-1`` (class ``1 + #{t : h >= t}``). GDFL uses ``(120.0,)`` with ``K = 3``
            (``GDFL_SMALL_LARGE_THRESHOLD``); empty gives the two-class map.

    Returns:
        float32 scalar. Finite with finite gradients for finite logits, also without any valid
        box (then the mean background cross-entropy).
    """
    logits = jnp.asarray(logits, jnp.float32)
    thresholds = tuple(float(t) for t in class_height_thresholds)
    if logits.ndim != 3 or logits.shape[-1] != len(thresholds) + 2:
        raise ValueError(
            f"logits must be [H, W, {len(thresholds) + 2}] for {len(thresholds)} height "
            f"thresholds, got shape {logits.shape}"
        )
    masks = boxes_to_masks(boxes, valid, logits.shape[0], logits.shape[1], stride)
    heights = _cell_heights(masks, boxes)
    scale_class = jnp.ones(heights.shape, jnp.int32)
    for t in thresholds:
        scale_class = scale_class + (heights >= t).astype(jnp.int32)
    labels = jnp.where(masks.foreground, scale_class, 0)
    weights = jnp.where(masks.foreground, _instance_weights(heights, alpha, beta), 1.0)
    return _weighted_softmax_loss(logits, labels, weights)


def scale_aware_mask_loss(
    logits_per_scale: Sequence[jnp.ndarray],
    boxes: jnp.ndarray,
    valid: jnp.ndarray,
    stride: float | Sequence[float],
    height_ranges: Sequence[tuple[float, float]] = TABLE_II_HEIGHT_RANGES,
    alpha: float = GDFL_ALPHA,
    beta: float = GDFL_BETA,
    *,
    out_of_range_as_background: bool = False,
) -> jnp.ndarray:
    """CA-GDFL's scale-specific segmentation loss, summed over branches (eqs. 7-9).

    For branch ``j`` with two-class logits ``[H_j, W_j, 2]`` (channel 0 = background):
    ``L_j = -1/N_s sum_i w_ij^{1[l_i != 0]} log softmax(logits_i)[l_i]``, ``N_s = H_j * W_j``,
    where (eq. 8) a pedestrian cell has ``w_ij = alpha + beta / h_i`` if
    ``h_min_j <= h_i < h_max_j`` and ``w_ij = 0`` (ignored) otherwise; background cells have
    weight 1. ``h_i`` is the height ``y2 - y1`` in input-image pixels of the smallest-area box
    containing the cell, chosen among all valid boxes before the range test (module docstring,
    rule 4). Returns ``sum_j L_j`` (the mask term of eq. 9, without ``lambda_m``).

    Args:
        logits_per_scale: ``N_d`` arrays ``[H_j, W_j, 2]``, one per detection branch.
        boxes: ``[M, 4]`` xyxy ground-truth boxes, absolute input-image pixels, no ``+1``.
        valid: ``[M]`` bool; invalid (padding) rows have no effect.
        stride: input pixels per cell, one for all branches or one per branch.
        height_ranges: ``N_d`` half-open ``(h_min, h_max)`` image-pixel ranges; the default is
            Table II, ``[30, 90), [90, 170), [170, 260), [260, inf)``.
        alpha, beta: eq. 4 constants, paper values 3 and 10.
        out_of_range_as_background: label out-of-range pedestrians as background with weight 1
            instead of ignoring them (the "standard instance-sensitive weight" ablation of
            section V-D, which the paper finds slightly worse). Default False = eq. 8.

    Returns:
        float32 scalar; finite with finite gradients for finite logits, also without boxes.
    """
    logits_per_scale = [jnp.asarray(x, jnp.float32) for x in logits_per_scale]
    ranges = [(float(lo), float(hi)) for lo, hi in height_ranges]
    num_branches = len(logits_per_scale)
    if len(ranges) != num_branches:
        raise ValueError(f"{num_branches} logit maps but {len(ranges)} height ranges")
    if isinstance(stride, Sequence):
        strides = list(stride)
        if len(strides) != num_branches:
            raise ValueError(f"{num_branches} logit maps but {len(strides)} strides")
    else:
        strides = [stride] * num_branches
    total = jnp.zeros((), jnp.float32)
    rasterised = {}  # branches of equal size and (Python number) stride share their masks
    for logits, (lo, hi), branch_stride in zip(logits_per_scale, ranges, strides):
        if logits.ndim != 3 or logits.shape[-1] != 2:
            raise ValueError(f"each branch's logits must be [H, W, 2], got {logits.shape}")
        # A traced stride is only known to equal itself (strides outlive the loop: ids are safe).
        same_stride = branch_stride if isinstance(branch_stride, int | float) else id(branch_stride)
        key = (logits.shape[:2], same_stride)
        if key not in rasterised:
            masks = boxes_to_masks(boxes, valid, logits.shape[0], logits.shape[1], branch_stride)
            rasterised[key] = (masks, _cell_heights(masks, boxes))
        masks, heights = rasterised[key]
        in_range = masks.foreground & (heights >= lo) & (heights < hi)
        out_of_range_weight = 1.0 if out_of_range_as_background else 0.0
        weights = jnp.where(
            in_range,
            _instance_weights(heights, alpha, beta),
            jnp.where(masks.foreground, out_of_range_weight, 1.0),
        )
        total = total + _weighted_softmax_loss(logits, in_range.astype(jnp.int32), weights)
    return total
