"""Padded greedy NMS vs a plain numpy greedy reference."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from detectors.ops import nms

# The IoU threshold may be traced; only the output size is static.
nms_fn = jax.jit(nms.non_max_suppression_padded, static_argnames="max_output")


def _iou(p, q):
    iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
    ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
    inter = iw * ih
    union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - inter
    return inter / union if union > 0 else 0.0


def _greedy_reference(boxes, scores, valid, thr, max_output):
    order = sorted((i for i in range(len(boxes)) if valid[i]), key=lambda i: (-scores[i], i))
    kept = []
    for i in order:
        if all(_iou(boxes[i], boxes[k]) <= thr for k in kept):
            kept.append(i)
    return kept[:max_output]


def _clustered(rng, n, clusters=5):
    centres = rng.uniform(20, 100, (clusters, 2))
    c = centres[rng.integers(0, clusters, n)] + rng.normal(0, 3, (n, 2))
    wh = rng.uniform(8, 20, (n, 2)) * np.array([0.41, 1.0])
    boxes = np.concatenate([c - wh / 2, c + wh / 2], 1).astype(np.float32)
    # Coarse scores so that exact ties (broken by lower index) occur.
    scores = np.round(rng.uniform(0, 1, n), 1).astype(np.float32)
    return boxes, scores


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("thr", [0.3, 0.5])
def test_matches_numpy_greedy(seed, thr):
    rng = np.random.default_rng(seed)
    boxes, scores = _clustered(rng, 60)
    boxes[::11, 2] = boxes[::11, 0]  # some zero-area boxes: never suppress or get suppressed
    valid = rng.random(60) < 0.85
    for max_output in (5, 80):
        idx, ok = nms_fn(boxes, scores, valid, thr, max_output=max_output)
        chex.assert_shape([idx, ok], (max_output,))
        assert idx.dtype == jnp.int32 and ok.dtype == jnp.bool_
        expected = _greedy_reference(boxes, scores, valid, thr, max_output)
        n = len(expected)
        assert n > 3  # clusters really get suppressed, but several boxes survive
        np.testing.assert_array_equal(np.asarray(idx)[:n], expected)
        np.testing.assert_array_equal(ok, np.arange(max_output) < n)
        np.testing.assert_array_equal(np.asarray(idx)[n:], 0)
    assert len(_greedy_reference(boxes, scores, valid, thr, 80)) < valid.sum()


def test_invalid_boxes_neither_returned_nor_suppressing():
    boxes = jnp.array([[50.0, 50, 60, 60], [0.0, 0, 10, 10], [1.0, 0, 11, 10], [0.0, 0, 10, 10]])
    scores = jnp.array([jnp.nan, 0.9, 0.8, 0.95])
    valid = jnp.array([True, True, True, False])
    idx, ok = nms_fn(boxes, scores, valid, 0.5, 4)
    # Box 3 (invalid) would suppress box 1; box 0 has a NaN score; box 2 is suppressed by box 1.
    np.testing.assert_array_equal(idx, [1, 0, 0, 0])
    np.testing.assert_array_equal(ok, [True, False, False, False])
    # A valid box with a -inf score is still a box to return.
    valid = jnp.array([True, True, False, False])
    idx, ok = nms_fn(boxes, jnp.array([0.0, -jnp.inf, 0.5, 0.1]), valid, 0.5, 3)
    np.testing.assert_array_equal(np.asarray(idx)[np.asarray(ok)], [0, 1])


def test_ties_broken_by_lower_index_and_threshold_is_strict():
    boxes = jnp.array([[0.0, 0, 10, 10], [0.0, 0, 10, 10], [0.0, 0, 10, 20]])
    scores = jnp.array([0.5, 0.5, 0.5])
    idx, ok = nms_fn(boxes, scores, jnp.ones(3, bool), 0.5, 3)
    # Box 1 duplicates box 0; IoU(0, 2) is exactly 0.5, not above the threshold: kept.
    np.testing.assert_array_equal(np.asarray(idx)[np.asarray(ok)], [0, 2])
    idx, ok = nms_fn(boxes, scores, jnp.ones(3, bool), 0.49, 3)
    np.testing.assert_array_equal(np.asarray(idx)[np.asarray(ok)], [0])


def test_vmap_and_empty():
    rng = np.random.default_rng(5)
    boxes, scores = zip(*[_clustered(rng, 30) for _ in range(3)])
    boxes, scores = np.stack(boxes), np.stack(scores)
    valid = np.ones((3, 30), bool)
    valid[2] = False  # an image with nothing to keep
    fn = jax.jit(jax.vmap(lambda b, s, v: nms_fn(b, s, v, 0.5, 10)))
    idx, ok = fn(boxes, scores, valid)
    chex.assert_shape([idx, ok], (3, 10))
    for i in range(2):
        expected = _greedy_reference(boxes[i], scores[i], valid[i], 0.5, 10)
        np.testing.assert_array_equal(np.asarray(idx[i])[: len(expected)], expected)
        assert int(ok[i].sum()) == len(expected)
    assert not np.any(ok[2])
    idx, ok = nms_fn(jnp.zeros((0, 4)), jnp.zeros(0), jnp.zeros(0, bool), 0.5, 4)
    chex.assert_shape([idx, ok], (4,))
    assert not np.any(ok)
