"""Online hard negative mining at a fixed negative:positive ratio (3:1 by default).

SSD (Liu et al., "SSD: Single Shot MultiBox Detector", 2016, section 2.2, "Hard negative
mining") and GDFL (Lin et al., "Graininess-Aware Deep Feature Learning for Pedestrian
Detection", training details) do not use every negative anchor in the classification loss: the
negatives are sorted by their loss, highest first, and only the top ones are kept, so that there
are at most 3 negatives per positive.

Everything here is static-shaped and jit-able: the selection is a boolean mask over the anchors
(computed from sort ranks, no boolean indexing), never a gathered subset.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def num_hard_negatives(
    num_positives: jnp.ndarray,
    num_negatives: jnp.ndarray,
    ratio: float = 3.0,
    min_negatives: int = 0,
) -> jnp.ndarray:
    """How many negatives the miner keeps: ``min(max(floor(ratio * P), min_negatives), N)``.

    ``floor`` as SSD's ``static_cast<int>(num_pos * neg_pos_ratio)``; ``min_negatives`` as the
    TensorFlow Object Detection API's ``min_negatives_per_image`` (it matters for images without
    positives, which would otherwise train on no negative at all).

    Args:
        num_positives, num_negatives: integer scalars (or broadcastable arrays).
        ratio: negatives per positive (>= 0).
        min_negatives: lower bound on the count, before capping by the available negatives.

    Returns:
        int32, same shape as the broadcast inputs.
    """
    wanted = jnp.floor(jnp.asarray(ratio, jnp.float32) * jnp.asarray(num_positives, jnp.float32))
    wanted = jnp.maximum(wanted.astype(jnp.int32), jnp.asarray(min_negatives, jnp.int32))
    return jnp.minimum(wanted, jnp.asarray(num_negatives, jnp.int32))


def hard_negative_mask(
    neg_loss: jnp.ndarray,
    positive: jnp.ndarray,
    negative: jnp.ndarray,
    ratio: float = 3.0,
    min_negatives: int = 0,
) -> jnp.ndarray:
    """Selects the hardest negatives of one image, at most ``ratio`` per positive.

    Exactly ``k = min(max(floor(ratio * num_positives), min_negatives), num_negatives)`` entries
    are selected, all of them negatives: those with the largest ``neg_loss``. Ties are broken
    deterministically by position, the lower index winning (a stable sort on
    ``(is not negative, -loss, index)``), so the result never depends on the backend's sort.
    ``-0.0`` and ``0.0`` tie; a NaN loss ranks after every other negative.

    The mask carries no gradient; multiply the per-anchor loss by it (and typically add the
    positives' loss) to form the mined classification loss.

    Args:
        neg_loss: ``[N]`` per-anchor loss used for ranking (e.g. the classification loss of each
            anchor taken as background). Entries of non-negatives are ignored.
        positive: ``[N]`` bool, anchors matched to an object (only counted).
        negative: ``[N]`` bool, background anchors eligible for mining (ignored anchors, e.g.
            in the matcher's between-thresholds band, should be neither).
        ratio: maximum negatives per positive (3.0: SSD / GDFL's 3:1).
        min_negatives: negatives kept even with few or no positives (0 in SSD).

    Returns:
        ``[N]`` bool mask of the selected negatives.
    """
    neg_loss = jnp.asarray(neg_loss, jnp.float32)
    positive = jnp.asarray(positive, bool)
    negative = jnp.asarray(negative, bool)
    if neg_loss.ndim != 1 or positive.shape != neg_loss.shape or negative.shape != neg_loss.shape:
        raise ValueError(
            f"expected three [N] arrays, got {neg_loss.shape}, {positive.shape}, {negative.shape}"
        )
    n = neg_loss.shape[0]
    k = num_hard_negatives(
        jnp.sum(positive.astype(jnp.int32)),
        jnp.sum(negative.astype(jnp.int32)),
        ratio,
        min_negatives,
    )
    index = jnp.arange(n, dtype=jnp.int32)
    # lexsort: the last key is the primary one. Negatives first, then loss descending, then index.
    order = jnp.lexsort((index, -neg_loss, (~negative).astype(jnp.int32)))
    rank = jnp.zeros((n,), jnp.int32).at[order].set(index)
    return negative & (rank < k)


def batched_hard_negative_mask(
    neg_loss: jnp.ndarray,
    positive: jnp.ndarray,
    negative: jnp.ndarray,
    ratio: float = 3.0,
    min_negatives: int = 0,
) -> jnp.ndarray:
    """:func:`hard_negative_mask` per image, as in SSD (the ratio holds within each image).

    Args:
        neg_loss, positive, negative: ``[B, N]`` (the per-image arrays stacked).
        ratio, min_negatives: as in :func:`hard_negative_mask`, shared by all images.

    Returns:
        ``[B, N]`` bool.
    """
    return jax.vmap(
        lambda loss, pos, neg: hard_negative_mask(loss, pos, neg, ratio, min_negatives)
    )(neg_loss, positive, negative)
