"""Box coder: hand values, round trip on any leading shape, clamp, degenerate boxes."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from detectors.ops import box_coder

encode = jax.jit(box_coder.encode_boxes, static_argnames="weights")
decode = jax.jit(box_coder.decode_boxes, static_argnames=("weights", "clip"))


def test_encode_hand_values():
    anchor = jnp.array([0.0, 0.0, 10.0, 10.0])  # centre (5, 5), size 10 x 10
    box = jnp.array([5.0, 5.0, 25.0, 15.0])  # centre (15, 10), size 20 x 10
    chex.assert_trees_all_close(
        encode(box, anchor), jnp.array([1.0, 0.5, math.log(2.0), 0.0]), atol=1e-6
    )
    chex.assert_trees_all_close(
        encode(box, anchor, weights=(10.0, 10.0, 5.0, 5.0)),
        jnp.array([10.0, 5.0, 5 * math.log(2.0), 0.0]),
        atol=1e-5,
    )
    chex.assert_trees_all_close(decode(jnp.zeros(4), anchor), anchor)
    # A tall anchor: x offsets are in anchor widths, y offsets in anchor heights.
    tall = jnp.array([0.0, 0.0, 10.0, 40.0])  # centre (5, 20), size 10 x 40
    box = jnp.array([10.0, 10.0, 20.0, 50.0])  # centre (15, 30), size 10 x 40
    chex.assert_trees_all_close(encode(box, tall), jnp.array([1.0, 0.25, 0.0, 0.0]), atol=1e-6)
    chex.assert_trees_all_close(decode(jnp.array([1.0, 0.25, 0.0, 0.0]), tall), box, atol=1e-5)


def test_round_trip_any_leading_shape():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, (2, 3, 5, 2))
    wh = rng.uniform(1, 60, (2, 3, 5, 2))
    boxes = np.concatenate([xy, xy + wh], -1).astype(np.float32)
    anchors = np.concatenate([xy[:1, :1] + 3, xy[:1, :1] + 3 + wh[:1, :1] * 0.7], -1)
    anchors = anchors.astype(np.float32)  # [1, 1, 5, 4], broadcast against [2, 3, 5, 4]
    for weights in [(1.0, 1.0, 1.0, 1.0), (10.0, 10.0, 5.0, 5.0)]:
        deltas = encode(boxes, anchors, weights)
        chex.assert_shape(deltas, (2, 3, 5, 4))
        back = decode(deltas, anchors, weights)
        chex.assert_trees_all_close(back, boxes, atol=1e-3)


def test_decode_clamps_scale():
    anchor = jnp.array([0.0, 0.0, 16.0, 32.0])
    boxes = decode(jnp.array([0.0, 0.0, 100.0, 100.0]), anchor)
    assert np.all(np.isfinite(boxes))
    w, h = boxes[2] - boxes[0], boxes[3] - boxes[1]
    np.testing.assert_allclose([w, h], [16 * 1000 / 16, 32 * 1000 / 16], rtol=1e-4)
    # The clamp applies after dividing by the weight.
    boxes = decode(
        jnp.array([0.0, 0.0, 0.8, 100.0]), anchor, weights=(1.0, 1.0, 2.0, 2.0), clip=0.5
    )
    np.testing.assert_allclose(boxes[2] - boxes[0], 16 * math.exp(0.4), rtol=1e-5)  # 0.8 / 2
    np.testing.assert_allclose(boxes[3] - boxes[1], 32 * math.exp(0.5), rtol=1e-5)  # clamped


def test_degenerate_boxes_encode_finite():
    anchors = jnp.array([[0.0, 0.0, 10.0, 10.0], [5.0, 5.0, 5.0, 5.0]])
    boxes = jnp.array([[3.0, 3.0, 3.0, 3.0], [0.0, 0.0, 0.0, 0.0]])  # e.g. padded gt rows
    deltas = encode(boxes, anchors)
    assert np.all(np.isfinite(deltas))
    grad = jax.jit(jax.grad(lambda d: jnp.sum(decode(d, anchors))))(deltas)
    assert np.all(np.isfinite(grad))
