"""Repulsion losses (Wang et al., "Repulsion Loss: Detecting Pedestrians in a Crowd", CVPR 2018).

  L = L_Attr + alpha * L_RepGT + beta * L_RepBox                                    (eq. 1)

The attraction term is the detector's ordinary box regression (smooth L1 here). The two repulsion
terms push a predicted box away from the ground truth it is NOT assigned to (RepGT, eqs. 3-4) and
from predicted boxes assigned to other ground truth (RepBox, eq. 6), both through Smooth_ln (eq. 5).
The paper's best settings (section 5.2, Tables 1-2) are the defaults: alpha = beta = 0.5,
sigma_RepGT = 1.0, sigma_RepBox = 0.0.

Per image, pure, static shapes, ``jax.vmap``-able over a batch. Boxes are ``[x1, y1, x2, y2]``
float32 absolute pixels (no +1). "Positives" are proposals (anchors, for RetinaNet) with IoU >= the
positive threshold with some ground truth; their designated target (eq. 2's argmax) is the index
the matcher assigned. Padded rows are described by masks and never contribute.
"""

from __future__ import annotations

import jax.numpy as jnp

from losses.box_overlap import iog, pairwise_iou

# Paper defaults (Tables 1 and 2).
ALPHA_REP_GT = 0.5
BETA_REP_BOX = 0.5
SIGMA_REP_GT = 1.0
SIGMA_REP_BOX = 0.0

# -ln(1 - x) is infinite at x = 1 (a predicted box covering its whole repulsion ground truth, quite
# possible for IoG). The log branch takes x at most 1 - _LOG_EPS: -ln(1e-6) ~ 13.8 at worst.
_LOG_EPS = 1e-6


def smooth_ln(x: jnp.ndarray, sigma: float) -> jnp.ndarray:
    """Smooth_ln of eq. 5, elementwise.

      Smooth_ln(x) = -ln(1 - x)                                  x <= sigma
                     (x - sigma) / (1 - sigma) - ln(1 - sigma)  x > sigma

    Continuous with a continuous first derivative at sigma. ``sigma = 1`` is -ln(1 - x) on all of
    [0, 1]; ``sigma = 0`` is x itself.

    Args:
        x: ``[...]`` overlaps in [0, 1] (values outside are clipped to [0, 1]).
        sigma: smoothing point in [0, 1]; a Python float (it selects the formula's form).

    Returns:
        ``[...]`` float32, finite for every input: in the log branch x is capped at 1 - 1e-6.
    """
    if not 0.0 <= sigma <= 1.0:
        raise ValueError(f"smooth_ln: sigma must be in [0, 1], got {sigma}")
    x = jnp.clip(jnp.asarray(x, jnp.float32), 0.0, 1.0)
    if sigma >= 1.0:
        return -jnp.log1p(-jnp.minimum(x, 1.0 - _LOG_EPS))
    # The log branch sees x capped at sigma, so its (unused) value and gradient stay finite above.
    log_part = -jnp.log1p(-jnp.minimum(x, sigma))
    linear_part = (x - sigma) / (1.0 - sigma) - jnp.log1p(-sigma)
    return jnp.where(x > sigma, linear_part, log_part)


def repulsion_gt_index(
    proposals: jnp.ndarray, gt: jnp.ndarray, gt_valid: jnp.ndarray, target_idx: jnp.ndarray
) -> jnp.ndarray:
    """Each proposal's repulsion ground truth G_Rep (eq. 3).

    The valid ground truth with the largest IoU with the *proposal* (the anchor, not the regressed
    box), excluding the proposal's designated target. Ties go to the lowest index.

    Args:
        proposals: ``[N, 4]`` float32 xyxy anchors / proposals.
        gt: ``[M, 4]`` float32 xyxy ground truth (padded).
        gt_valid: ``[M]`` bool, False for padding.
        target_idx: ``[N]`` int, the designated target of each proposal (eq. 2), -1 for none
            (then no ground truth is excluded).

    Returns:
        ``[N]`` int32 index into ``gt``; -1 where no other valid ground truth overlaps the proposal
        (IoU > 0): a repulsion target the proposal does not touch would contribute nothing to
        eq. 4 except noise from how far the regressor wanders.
    """
    proposals = jnp.asarray(proposals, jnp.float32)
    gt = jnp.asarray(gt, jnp.float32)
    m = gt.shape[0]
    if m == 0:
        return jnp.full(proposals.shape[:1], -1, jnp.int32)
    overlaps = pairwise_iou(proposals, gt)  # [N, M]
    eligible = jnp.asarray(gt_valid, bool)[None, :] & (
        jnp.arange(m)[None, :] != jnp.asarray(target_idx)[:, None]
    )
    overlaps = jnp.where(eligible, overlaps, -1.0)
    best = jnp.argmax(overlaps, axis=1).astype(jnp.int32)
    best_iou = jnp.take_along_axis(overlaps, best[:, None], axis=1)[:, 0]
    return jnp.where(best_iou > 0.0, best, -1)


def rep_gt_sum_and_count(
    pred_boxes: jnp.ndarray,
    gt: jnp.ndarray,
    rep_idx: jnp.ndarray,
    positive: jnp.ndarray,
    sigma: float = SIGMA_REP_GT,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Numerator and denominator of ``rep_gt_loss`` (to normalise over a whole batch).

    Returns:
        (sum over counted positives of Smooth_ln(IoG(B, G_Rep)), number of counted positives),
        both float32 scalars. Counted: positive and ``rep_idx >= 0``.
    """
    pred_boxes = jnp.asarray(pred_boxes, jnp.float32)
    rep_idx = jnp.asarray(rep_idx)
    counted = jnp.asarray(positive, bool) & (rep_idx >= 0)
    if gt.shape[0] == 0:
        zero = jnp.zeros((), jnp.float32)
        return zero, zero
    rep_boxes = jnp.asarray(gt, jnp.float32)[jnp.maximum(rep_idx, 0)]  # [N, 4]
    per_box = smooth_ln(iog(pred_boxes, rep_boxes), sigma)
    total = jnp.sum(jnp.where(counted, per_box, 0.0))
    return total, jnp.sum(counted.astype(jnp.float32))


def rep_gt_loss(
    pred_boxes: jnp.ndarray,
    gt: jnp.ndarray,
    rep_idx: jnp.ndarray,
    positive: jnp.ndarray,
    sigma: float = SIGMA_REP_GT,
) -> jnp.ndarray:
    """RepGT (eq. 4): mean Smooth_ln of the IoG between each positive's regressed box and G_Rep.

    Args:
        pred_boxes: ``[N, 4]`` float32 xyxy boxes regressed from the proposals (B^P).
        gt: ``[M, 4]`` float32 xyxy ground truth.
        rep_idx: ``[N]`` int from ``repulsion_gt_index``; -1 means no repulsion target.
        positive: ``[N]`` bool, the positive proposals (P+).
        sigma: Smooth_ln's smoothing point; 1.0 (the paper's best for RepGT) is -ln(1 - IoG).

    Returns:
        float32 scalar: the mean over positives that have a repulsion target (eq. 4 divides by all
        of |P+|; positives without any overlapping neighbour would only dilute the term, so they
        are left out of the mean). 0 when there is none.
    """
    total, count = rep_gt_sum_and_count(pred_boxes, gt, rep_idx, positive, sigma)
    return total / jnp.maximum(count, 1.0)


def rep_box_sum_and_count(
    pred_boxes: jnp.ndarray,
    target_idx: jnp.ndarray,
    positive: jnp.ndarray,
    sigma: float = SIGMA_REP_BOX,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Numerator and denominator of eq. 6, over unordered pairs (the ratio is the same as over
    ordered pairs). Returns float32 scalars (sum of Smooth_ln(IoU), number of pairs with IoU > 0).
    """
    pred_boxes = jnp.asarray(pred_boxes, jnp.float32)
    target_idx = jnp.asarray(target_idx)
    positive = jnp.asarray(positive, bool)
    n = pred_boxes.shape[0]
    overlaps = pairwise_iou(pred_boxes, pred_boxes)  # [N, N]
    upper = jnp.arange(n)[:, None] < jnp.arange(n)[None, :]
    pairs = (
        upper & positive[:, None] & positive[None, :] & (target_idx[:, None] != target_idx[None, :])
    )
    total = jnp.sum(jnp.where(pairs, smooth_ln(overlaps, sigma), 0.0))
    count = jnp.sum((pairs & (overlaps > 0.0)).astype(jnp.float32))
    return total, count


def rep_box_loss(
    pred_boxes: jnp.ndarray,
    target_idx: jnp.ndarray,
    positive: jnp.ndarray,
    sigma: float = SIGMA_REP_BOX,
) -> jnp.ndarray:
    """RepBox (eq. 6): overlap between regressed boxes of positives with different targets.

    Sum of Smooth_ln(IoU(B_i, B_j)) over pairs of positives whose designated targets differ,
    divided by the number of such pairs whose IoU is > 0. The paper's epsilon in the denominator
    is realised as a floor of 1: with no overlapping pair every term is Smooth_ln(0) = 0, and the
    loss is exactly 0.

    Args:
        pred_boxes: ``[N, 4]`` float32 xyxy regressed boxes. Cost and memory are O(N^2): a detector
            passes a bounded sample of its positives (see ``detectors/retinanet.py``).
        target_idx: ``[N]`` int designated target of each box.
        positive: ``[N]`` bool; non-positive rows (and padding) never pair.
        sigma: Smooth_ln's smoothing point; 0.0 (the paper's best for RepBox) makes the term the
            plain IoU.

    Returns:
        float32 scalar >= 0.
    """
    total, count = rep_box_sum_and_count(pred_boxes, target_idx, positive, sigma)
    return total / jnp.maximum(count, 1.0)
