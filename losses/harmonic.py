"""Harmonic losses (Wang et al., "Harmonic Loss: Towards Harmonizing Classification and
Localization in Object Detection").

  L_Har^i    = (1 + beta_r) CE_i + (1 + beta_c) L_loc^i,                               (eq. 2)
  beta_r     = exp(-L_loc^i),  beta_c = exp(-CE_i)                                     (eq. 3)
  L_HIoU^i   = (1 + IoU_i)^gamma (1 - IoU_i)                                           (eq. 10)
  L_loc^i    = SmoothL1_i + alpha L_HIoU^i                                             (eq. 11)
  L_TC^i     = max(0, |p_i - IoU_i| - margin) / (1 + beta_e),  beta_e = exp(H(probs_i)) (eq. 8)
  L_HarDet^i = (1 + beta_r) CE_i + (1 + beta_c) L_loc^i + L_TC^i                       (eq. 12)
  L_HarDet   = (sum_pos L_HarDet^i + sum_neg CE_j) / N_pos                             (eq. 13)
  AIC        = mean over positives of |p_i - IoU_i|                                    (eq. 14)

Paper settings (section 4, Table 5): alpha = 1.5, gamma = 0.8 (gamma <= 1 keeps HIoU monotonic),
margin = 0.2.

Gradient through the harmonic factors: eq. 4 and its derivative (eq. 7) differentiate
beta_r = exp(-L_loc) with respect to the regression output and beta_c = exp(-CE) with respect to
the score, i.e. the factors are part of the graph. That is the default here
(``factor_gradient=True``); ``False`` treats them as constant weights (``stop_gradient``). With
gradient, d L_Har / d CE = (1 + beta_r) - L_loc * beta_c: for a positive whose box is poor
(L_loc > (1 + beta_r) / beta_c) the score is pushed *down*, which is the paper's argument in
section 3.1 ("the gradient will suppress the classification scores of samples with low regression
quality").

The entropy weight of eq. 8 is always a constant weight (``stop_gradient``): the paper presents it
as a per-sample confidence weight, not as a term to minimise, and differentiating exp(H) would push
the classifier towards *higher* entropy.

All per image (or per flattened batch), float32, static shapes, padded rows masked out.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Paper settings (section 4.4, Table 5; eq. 8).
HIOU_ALPHA = 1.5
HIOU_GAMMA = 0.8
TC_MARGIN = 0.2


def _factor(x: jnp.ndarray, gradient: bool) -> jnp.ndarray:
    return x if gradient else jax.lax.stop_gradient(x)


def harmonic_factors(
    cls_loss: jnp.ndarray, loc_loss: jnp.ndarray, factor_gradient: bool = True
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(beta_r, beta_c) of eq. 3 from ``[N]`` classification and localisation losses."""
    cls_loss = jnp.asarray(cls_loss, jnp.float32)
    loc_loss = jnp.asarray(loc_loss, jnp.float32)
    beta_r = _factor(jnp.exp(-loc_loss), factor_gradient)
    beta_c = _factor(jnp.exp(-cls_loss), factor_gradient)
    return beta_r, beta_c


def harmonic_loss(
    cls_loss: jnp.ndarray,
    loc_loss: jnp.ndarray,
    positive: jnp.ndarray,
    factor_gradient: bool = True,
    normalizer: jnp.ndarray | float | None = None,
) -> jnp.ndarray:
    """Harmonic loss of the positives (eqs. 2-3), summed and normalised.

    Args:
        cls_loss: ``[N]`` classification loss of each sample w.r.t. its ground-truth class
            (cross-entropy in the paper: ``-log p``).
        loc_loss: ``[N]`` localisation loss of each sample (summed over its 4 coordinates).
        positive: ``[N]`` bool; only positives carry the harmonic loss.
        factor_gradient: whether beta_r and beta_c are differentiated (the paper: yes).
        normalizer: divide by this (e.g. positives of the global batch); default the number of
            positives here, floored at 1.

    Returns:
        float32 scalar.
    """
    cls_loss = jnp.asarray(cls_loss, jnp.float32)
    loc_loss = jnp.asarray(loc_loss, jnp.float32)
    positive = jnp.asarray(positive, bool)
    beta_r, beta_c = harmonic_factors(cls_loss, loc_loss, factor_gradient)
    per = (1.0 + beta_r) * cls_loss + (1.0 + beta_c) * loc_loss
    total = jnp.sum(jnp.where(positive, per, 0.0))
    return total / _normalizer(positive, normalizer)


def harmonic_iou_loss(iou: jnp.ndarray, gamma: float = HIOU_GAMMA) -> jnp.ndarray:
    """Harmonic IoU loss (eq. 10), elementwise: ``(1 + IoU)^gamma * (1 - IoU)``.

    Args:
        iou: ``[N]`` IoU of each regressed box with its ground truth, in [0, 1].
        gamma: focusing exponent; the paper requires gamma <= 1 for the loss to decrease
            monotonically in IoU, and uses 0.8.

    Returns:
        ``[N]`` float32 in [0, 1].
    """
    iou = jnp.clip(jnp.asarray(iou, jnp.float32), 0.0, 1.0)
    return (1.0 + iou) ** gamma * (1.0 - iou)


def entropy_weight(probs: jnp.ndarray) -> jnp.ndarray:
    """``1 / (1 + beta_e)`` of eq. 8 with beta_e = exp(-sum_k p_k log p_k); ``[N, C]`` -> ``[N]``.

    ``probs`` is each sample's class distribution (rows summing to 1; a one-class sigmoid detector
    passes ``[p, 1 - p]``). 0 log 0 is taken as 0. Never differentiated (see the module docstring).
    """
    probs = jnp.asarray(probs, jnp.float32)
    plogp = jnp.where(probs > 0.0, probs * jnp.log(jnp.where(probs > 0.0, probs, 1.0)), 0.0)
    beta_e = jnp.exp(-jnp.sum(plogp, axis=-1))
    return jax.lax.stop_gradient(1.0 / (1.0 + beta_e))


def task_contrastive_loss(
    p: jnp.ndarray, iou: jnp.ndarray, probs: jnp.ndarray, margin: float = TC_MARGIN
) -> jnp.ndarray:
    """Task-contrastive loss (eq. 8), elementwise.

    Args:
        p: ``[N]`` predicted score of each sample's ground-truth class.
        iou: ``[N]`` IoU of its regressed box with its ground truth.
        probs: ``[N, C]`` class distribution, for the entropy weight.
        margin: gaps smaller than this are not penalised (the paper: 0.2).

    Returns:
        ``[N]`` float32 >= 0. Gradients reach both ``p`` and ``iou``.
    """
    p = jnp.asarray(p, jnp.float32)
    iou = jnp.asarray(iou, jnp.float32)
    gap = jnp.maximum(jnp.abs(p - iou) - margin, 0.0)
    return entropy_weight(probs) * gap


def harmonic_detection_loss(
    pos_cls_loss: jnp.ndarray,
    neg_cls_loss: jnp.ndarray,
    box_loss: jnp.ndarray,
    iou: jnp.ndarray,
    p: jnp.ndarray,
    probs: jnp.ndarray,
    positive: jnp.ndarray,
    negative: jnp.ndarray,
    alpha: float = HIOU_ALPHA,
    gamma: float = HIOU_GAMMA,
    margin: float = TC_MARGIN,
    factor_gradient: bool = True,
    normalizer: jnp.ndarray | float | None = None,
) -> tuple[jnp.ndarray, dict]:
    """The HarmonicDet objective (eqs. 11-13).

    Args:
        pos_cls_loss: ``[N]`` classification loss of a sample as a positive (``-log p``, the
            paper's CE; beta_c = exp(-CE) = p then).
        neg_cls_loss: ``[N]`` classification loss of a sample as a negative (CE in the paper;
            RetinaNet keeps its focal loss here).
        box_loss: ``[N]`` smooth-L1 of the regression deltas, summed over the 4 coordinates.
        iou: ``[N]`` IoU of the regressed box with the designated ground truth.
        p: ``[N]`` predicted probability of the ground-truth class.
        probs: ``[N, C]`` class distribution (for the task-contrastive entropy weight).
        positive, negative: ``[N]`` bool; samples that are neither (ignored, padding) contribute
            nothing.
        alpha, gamma, margin: eq. 11's HIoU weight, eq. 10's exponent, eq. 8's margin.
        factor_gradient: whether the harmonic factors are differentiated (paper: yes).
        normalizer: N_pos of eq. 13 (e.g. over the global batch); default: positives here, >= 1.

    Returns:
        (float32 scalar loss, aux dict of unweighted, normalised terms: ``harmonic_cls``,
        ``harmonic_loc``, ``hiou``, ``task_contrastive``, ``negative_cls``, and the mean factors
        ``beta_r``, ``beta_c`` over positives).
    """
    positive = jnp.asarray(positive, bool)
    negative = jnp.asarray(negative, bool) & ~positive
    pos_cls_loss = jnp.asarray(pos_cls_loss, jnp.float32)
    hiou = harmonic_iou_loss(iou, gamma)
    loc = jnp.asarray(box_loss, jnp.float32) + alpha * hiou  # eq. 11
    beta_r, beta_c = harmonic_factors(pos_cls_loss, loc, factor_gradient)
    tc = task_contrastive_loss(p, iou, probs, margin)
    norm = _normalizer(positive, normalizer)

    def pos_sum(x):
        return jnp.sum(jnp.where(positive, x, 0.0)) / norm

    cls_term = pos_sum((1.0 + beta_r) * pos_cls_loss)
    loc_term = pos_sum((1.0 + beta_c) * loc)
    tc_term = pos_sum(tc)
    neg_term = jnp.sum(jnp.where(negative, jnp.asarray(neg_cls_loss, jnp.float32), 0.0)) / norm
    total = cls_term + loc_term + tc_term + neg_term  # eq. 13
    count = jnp.maximum(jnp.sum(positive.astype(jnp.float32)), 1.0)
    aux = {
        "harmonic_cls": cls_term,
        "harmonic_loc": loc_term,
        "hiou": pos_sum(hiou),
        "task_contrastive": tc_term,
        "negative_cls": neg_term,
        "beta_r": jax.lax.stop_gradient(jnp.sum(jnp.where(positive, beta_r, 0.0)) / count),
        "beta_c": jax.lax.stop_gradient(jnp.sum(jnp.where(positive, beta_c, 0.0)) / count),
    }
    return total, aux


def average_inconsistency_coefficient(
    p: jnp.ndarray, iou: jnp.ndarray, positive: jnp.ndarray
) -> jnp.ndarray:
    """AIC (eq. 14): the mean of |p_i - IoU_i| over positives; 0 when there are none.

    Eq. 14 is printed as a sum with N (the number of positives) on the sigma; the text calls it an
    *average* and compares it across detectors with different numbers of positives, so the sum is
    divided by N here.

    Args:
        p: ``[N]`` predicted score of the ground-truth class.
        iou: ``[N]`` IoU of the regressed (or detected) box with its ground truth.
        positive: ``[N]`` bool, which samples count.

    Returns:
        float32 scalar in [0, 1].
    """
    positive = jnp.asarray(positive, bool)
    gap = jnp.abs(jnp.asarray(p, jnp.float32) - jnp.asarray(iou, jnp.float32))
    count = jnp.sum(positive.astype(jnp.float32))
    return jnp.sum(jnp.where(positive, gap, 0.0)) / jnp.maximum(count, 1.0)


def _normalizer(positive: jnp.ndarray, normalizer) -> jnp.ndarray:
    if normalizer is None:
        return jnp.maximum(jnp.sum(positive.astype(jnp.float32)), 1.0)
    return jnp.maximum(jnp.asarray(normalizer, jnp.float32), 1.0)
