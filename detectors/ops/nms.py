"""Greedy non-maximum suppression with static shapes (jit / vmap friendly).

The classic greedy algorithm: visit boxes in descending score order (ties: lower index first), keep
a box unless a box kept before it overlaps it with IoU > ``iou_threshold``.

Implemented as ``max_output`` rounds of "take the best-scoring box still alive, suppress everything
overlapping it", which selects exactly the boxes the greedy pass keeps, in the same order, while
needing only O(N) memory per round (one IoU row, never the N x N matrix), ``max_output`` (not N)
sequential steps, and no sort (sorting is slow to compile on XLA:CPU).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from detectors.ops import boxes as box_ops


def non_max_suppression_padded(
    boxes: jnp.ndarray,
    scores: jnp.ndarray,
    valid: jnp.ndarray,
    iou_threshold: float,
    max_output: int,
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Greedy NMS of one set of boxes, padded to ``max_output`` results.

    Args:
        boxes: ``[N, 4]`` float32 xyxy.
        scores: ``[N]`` float; higher is better. NaN scores are treated as invalid.
        valid: ``[N]`` bool; invalid boxes are never returned and suppress nothing.
        iou_threshold: a box is suppressed by a kept box when their IoU is > this.
        max_output: static number of output slots.

    Returns:
        indices: ``[max_output]`` int32 indices into ``boxes`` of the kept boxes, in descending
            score order; slots past the last kept box hold 0 (a safe gather index) - use ``valid``.
        valid: ``[max_output]`` bool, True for filled slots (a prefix of the slots).
    """
    boxes = jnp.asarray(boxes, jnp.float32)
    scores = jnp.asarray(scores)
    num_boxes = boxes.shape[0]
    max_output = int(max_output)
    if num_boxes == 0 or max_output == 0:
        return jnp.zeros((max_output,), jnp.int32), jnp.zeros((max_output,), bool)

    scores = scores.astype(jnp.float32)
    valid = jnp.asarray(valid, bool) & ~jnp.isnan(scores)
    positions = jnp.arange(num_boxes)

    def select_one(alive, _):
        # The best-scoring box still alive, ties by lower index (argmax returns the first True).
        # Comparing with the max instead of sorting up front also handles valid -inf scores.
        best = jnp.max(jnp.where(alive, scores, -jnp.inf))
        pos = jnp.argmax(alive & (scores == best))
        found = alive[pos]
        overlap = box_ops.iou(boxes[pos][None, :], boxes)  # [N]
        suppressed = (overlap > iou_threshold) | (positions == pos)
        alive = alive & ~suppressed  # once nothing is alive this changes nothing
        return alive, (jnp.where(found, pos, 0), found)

    _, (indices, out_valid) = jax.lax.scan(select_one, valid, None, length=max_output)
    return indices.astype(jnp.int32), out_valid
