"""Triplet losses for the re-ID branch: batch-hard and semi-hard (TensorFlow-style) mining.

The person search model of Loesch et al. ("End-to-end person search sequentially trained on
aggregated dataset") learns its re-ID embedding with a triplet objective on mini-batches of
P identities x K shots: it is first trained with the semi-hard triplet loss (FaceNet, Schroff et
al. 2015), which avoids the collapse to the trivial all-equal embedding, and then with the
batch-hard triplet loss of Hermans, Beyer and Leibe ("In Defense of the Triplet Loss for Person
Re-Identification", 2017).

Conventions shared by both losses:

* ``labels < 0`` means *unlabeled* (e.g. the unidentified people of person search datasets). An
  unlabeled sample is never a positive (not even of another unlabeled sample or of itself) and is
  never an anchor, but it is a negative of every labeled anchor: it is known to be nobody among
  the labeled identities.
* ``valid`` (optional ``[B]`` bool) marks real rows; a ``False`` row (padding to a static batch
  size) is neither anchor, positive nor negative, so padded rows change neither the loss nor the
  gradients of the real rows. ``None`` means all rows are real.
* Distances come from explicit differences (``O(B^2 D)`` memory), so that identical embeddings
  are at distance exactly 0 and the matrix is exactly symmetric. The Euclidean distance uses a
  safe square root: its value at 0 is 0 and its gradient there is 0 (not NaN).
* Everything is float32, static-shaped and jit-able (``margin`` as a string and ``metric`` must be
  static; a float ``margin`` may be traced).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

_METRICS = ("euclidean", "sqeuclidean")


def pairwise_distances(emb: jnp.ndarray, metric: str = "euclidean") -> jnp.ndarray:
    """All pairwise distances of the rows of ``emb``.

    Args:
        emb: ``[B, D]`` embeddings (any float dtype; computed in float32).
        metric: ``'euclidean'`` (L2 norm of the difference) or ``'sqeuclidean'`` (its square).

    Returns:
        ``[B, B]`` float32, symmetric, exactly 0 on the diagonal and between identical rows. The
        Euclidean version has a finite (zero) gradient where the distance is 0.
    """
    if metric not in _METRICS:
        raise ValueError(f"metric must be one of {_METRICS}, got {metric!r}")
    emb = jnp.asarray(emb, jnp.float32)
    diff = emb[:, None, :] - emb[None, :, :]
    d2 = jnp.sum(diff * diff, axis=-1)
    if metric == "sqeuclidean":
        return d2
    # sqrt'(0) is infinite and 0 * inf = NaN in the backward pass: take the root of d2 > 0 only.
    positive = d2 > 0.0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, d2, 1.0)), 0.0)


def _pair_masks(
    labels: jnp.ndarray, valid: jnp.ndarray | None
) -> tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]:
    """``(anchor [B], positive [B, B], negative [B, B])`` boolean masks, rows = anchors."""
    labels = jnp.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"labels must be [B], got shape {labels.shape}")
    n = labels.shape[0]
    valid = jnp.ones((n,), bool) if valid is None else jnp.asarray(valid, bool)
    anchor = valid & (labels >= 0)
    same = labels[:, None] == labels[None, :]
    not_self = ~jnp.eye(n, dtype=bool)
    # Requiring a labeled anchor makes every positive labeled too (same label).
    positive = same & not_self & anchor[:, None] & valid[None, :]
    negative = ~same & anchor[:, None] & valid[None, :]
    return anchor, positive, negative


def batch_hard_triplet_loss(
    emb: jnp.ndarray,
    labels: jnp.ndarray,
    margin: str | float = "soft",
    metric: str = "euclidean",
    *,
    valid: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """Batch-hard triplet loss (Hermans, Beyer & Leibe 2017, eq. 5; soft margin eq. 6).

    For every anchor ``a`` (a valid, labeled row):

        d_pos(a) = max over positives p of d(a, p)   (hardest positive)
        d_neg(a) = min over negatives n of d(a, n)   (hardest negative)
        loss(a)  = softplus(d_pos - d_neg)           if margin == 'soft'
                 = max(0, margin + d_pos - d_neg)    for a float margin

    and the result is the mean of ``loss(a)`` over anchors.

    Edge cases (all finite, with finite gradients):

    * An anchor whose identity has no other (valid) sample in the batch still counts, with
      ``d_pos = 0``, as in the authors' reference code (where the max runs over the anchor's own
      zero self-distance).
    * An anchor with no negative at all behaves as ``d_neg = +inf``, like the reference code's
      minimum over an empty set: a loss of exactly 0 and no gradient. That only happens when every
      valid row has the anchor's identity, so then the whole loss is 0.
    * Unlabeled rows (``label < 0``) are not anchors and never positives; they are negatives of
      labeled anchors. With no anchor at all the loss is 0.

    Args:
        emb: ``[B, D]`` embeddings.
        labels: ``[B]`` integer identities, ``< 0`` for unlabeled samples.
        margin: ``'soft'`` for the soft-margin (softplus) version, or a float hinge margin.
        metric: ``'euclidean'`` (the paper's choice) or ``'sqeuclidean'``.
        valid: optional ``[B]`` bool; ``False`` rows are padding and change nothing.

    Returns:
        float32 scalar.
    """
    if isinstance(margin, str) and margin != "soft":
        raise ValueError(f"margin must be 'soft' or a float, got {margin!r}")
    dist = pairwise_distances(emb, metric)
    anchor, positive, negative = _pair_masks(labels, valid)
    # Distances are >= 0, so filling non-positives with 0 gives d_pos = 0 when there is none.
    d_pos = jnp.max(jnp.where(positive, dist, 0.0), axis=1)
    has_neg = jnp.any(negative, axis=1)
    d_neg = jnp.min(jnp.where(negative, dist, jnp.inf), axis=1)
    d_neg = jnp.where(has_neg, d_neg, 0.0)  # finite stand-in; those anchors are zeroed below
    gap = d_pos - d_neg
    if isinstance(margin, str):
        per_anchor = jax.nn.softplus(gap)
    else:
        per_anchor = jnp.maximum(jnp.asarray(margin, jnp.float32) + gap, 0.0)
    per_anchor = jnp.where(anchor & has_neg, per_anchor, 0.0)
    num_anchors = jnp.sum(anchor.astype(jnp.float32))
    return jnp.sum(per_anchor) / jnp.maximum(num_anchors, 1.0)


def semi_hard_triplet_loss(
    emb: jnp.ndarray,
    labels: jnp.ndarray,
    margin: float = 1.0,
    metric: str = "sqeuclidean",
    *,
    valid: jnp.ndarray | None = None,
) -> jnp.ndarray:
    """Semi-hard triplet loss with the semantics of TensorFlow's ``triplet_semihard_loss``.

    As in ``tfa.losses.triplet_semihard_loss`` (formerly ``tf.contrib.losses.metric_learning``),
    whose default ``'L_2'`` distance is the *squared* Euclidean one: every ordered positive pair
    ``(a, p)``, ``a != p``, is a term. Its negative distance is

        d_an = min{ d(a, n) : n negative of a, d(a, n) > d(a, p) }   (semi-hard negative)

    or, when no negative is farther than ``p``, the largest negative distance
    ``max{ d(a, n) : n negative of a }``; when ``a`` has no negative at all (the whole valid batch
    is one identity) it is 0, as TensorFlow's masked maximum then returns the row minimum, i.e.
    the zero self-distance, so each pair costs ``margin + d(a, p)``. The loss is

        sum over positive pairs of max(margin + d(a, p) - d_an, 0) / number of positive pairs.

    Differences from TensorFlow, both documented choices:

    * ``labels < 0`` are unlabeled: they never form positive pairs (TensorFlow would pair equal
      negative labels), are never anchors, and are negatives of labeled anchors.
    * With no positive pair in the batch the loss is 0 (TensorFlow divides 0 by 0 and gives NaN).

    Memory is ``O(B^3)`` (one ``[B, B, B]`` boolean mask), like the TensorFlow version.

    Args:
        emb: ``[B, D]`` embeddings (the paper's re-ID features; TF expects them L2-normalised).
        labels: ``[B]`` integer identities, ``< 0`` for unlabeled samples.
        margin: hinge margin (float, may be traced).
        metric: ``'sqeuclidean'`` (TensorFlow's default) or ``'euclidean'``.
        valid: optional ``[B]`` bool; ``False`` rows are padding and change nothing.

    Returns:
        float32 scalar.
    """
    dist = pairwise_distances(emb, metric)
    _, positive, negative = _pair_masks(labels, valid)
    # outside[a, p, n]: n is a negative of a farther from a than p is.
    outside = negative[:, None, :] & (dist[:, None, :] > dist[:, :, None])
    has_outside = jnp.any(outside, axis=2)
    semi_hard = jnp.min(jnp.where(outside, dist[:, None, :], jnp.inf), axis=2)
    hardest_fallback = jnp.max(jnp.where(negative, dist, 0.0), axis=1)  # 0 without negatives
    d_an = jnp.where(has_outside, semi_hard, hardest_fallback[:, None])
    terms = jnp.maximum(jnp.asarray(margin, jnp.float32) + dist - d_an, 0.0)
    terms = jnp.where(positive, terms, 0.0)
    num_positives = jnp.sum(positive.astype(jnp.float32))
    return jnp.sum(terms) / jnp.maximum(num_positives, 1.0)
