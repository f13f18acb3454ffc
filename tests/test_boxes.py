"""Box conversions and overlaps vs hand values and a brute-force numpy loop."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from detectors.ops import boxes as box_ops


def _random_boxes(rng, n, size=50.0, degenerate_every=4):
    """xyxy boxes; every `degenerate_every`-th box has zero width or height (or both)."""
    xy = rng.uniform(0, size, (n, 2))
    wh = rng.uniform(0, size / 2, (n, 2))
    wh[::degenerate_every, 0] = 0.0
    wh[1 :: degenerate_every * 2, 1] = 0.0
    return np.concatenate([xy, xy + wh], axis=1).astype(np.float32)


def _overlap_loop(a, b, denominator):
    """Brute force: for each pair, intersection over union ('iou') or over a's area ('ioa')."""
    out = np.zeros((len(a), len(b)), np.float64)
    for i, p in enumerate(a.astype(np.float64)):
        for j, q in enumerate(b.astype(np.float64)):
            iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
            ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
            inter = iw * ih
            area_p = (p[2] - p[0]) * (p[3] - p[1])
            area_q = (q[2] - q[0]) * (q[3] - q[1])
            den = area_p + area_q - inter if denominator == "iou" else area_p
            out[i, j] = inter / den if den > 0 else 0.0
    return out


def test_format_conversions():
    xywh = jnp.array([[10.0, 20.0, 30.0, 40.0], [0.0, 0.0, 0.0, 5.0]])
    xyxy = box_ops.boxes_xywh_to_xyxy(xywh)
    chex.assert_trees_all_close(xyxy, jnp.array([[10.0, 20.0, 40.0, 60.0], [0.0, 0.0, 0.0, 5.0]]))
    chex.assert_trees_all_close(box_ops.boxes_xyxy_to_xywh(xyxy), xywh)
    yxyx = jnp.array([[[1.0, 2.0, 3.0, 4.0]]])  # leading dims kept
    out = box_ops.boxes_yxyx_to_xyxy(yxyx)
    chex.assert_shape(out, (1, 1, 4))
    chex.assert_trees_all_close(out, jnp.array([[[2.0, 1.0, 4.0, 3.0]]]))


def test_area_and_clip():
    b = jnp.array([[0.0, 0.0, 10.0, 5.0], [5.0, 5.0, 5.0, 9.0], [4.0, 4.0, 2.0, 8.0]])
    chex.assert_trees_all_close(box_ops.box_area(b), jnp.array([50.0, 0.0, 0.0]))
    clipped = box_ops.clip_boxes(
        jnp.array([[-5.0, -1.0, 130.0, 70.0], [10.0, 20.0, 30.0, 40.0]]), 64, 128
    )
    chex.assert_trees_all_close(
        clipped, jnp.array([[0.0, 0.0, 128.0, 64.0], [10.0, 20.0, 30.0, 40.0]])
    )


def test_pairwise_hand_values():
    pairwise_iou, pairwise_ioa = jax.jit(box_ops.pairwise_iou), jax.jit(box_ops.pairwise_ioa)
    a = jnp.array([[0.0, 0.0, 10.0, 10.0]])
    b = jnp.array(
        [
            [5.0, 0.0, 15.0, 10.0],
            [0.0, 0.0, 10.0, 10.0],
            [20.0, 20.0, 30.0, 30.0],
            [5.0, 0.0, 100.0, 100.0],
        ]
    )
    chex.assert_trees_all_close(
        pairwise_iou(a, b), jnp.array([[50 / 150, 1.0, 0.0, 50 / 9550]]), rtol=1e-6
    )
    # IoA divides by the FIRST argument's area: half the anchor is inside the big box.
    chex.assert_trees_all_close(pairwise_ioa(a, b), jnp.array([[0.5, 1.0, 0.0, 0.5]]), rtol=1e-6)
    chex.assert_trees_all_close(pairwise_ioa(b[3:], a), jnp.array([[50 / 9500]]), rtol=1e-6)


@pytest.mark.parametrize("seed", [0, 1])
def test_pairwise_vs_brute_force(seed):
    rng = np.random.default_rng(seed)
    a = _random_boxes(rng, 13)
    b = _random_boxes(rng, 9)
    b[0] = a[0]  # an identical (zero-area) pair: 0, not NaN
    iou = np.asarray(jax.jit(box_ops.pairwise_iou)(a, b))
    ioa = np.asarray(jax.jit(box_ops.pairwise_ioa)(a, b))
    chex.assert_shape(iou, (13, 9))
    assert np.all(np.isfinite(iou)) and np.all(np.isfinite(ioa))
    np.testing.assert_allclose(iou, _overlap_loop(a, b, "iou"), atol=1e-6)
    np.testing.assert_allclose(ioa, _overlap_loop(a, b, "ioa"), atol=1e-6)
    assert iou[0, 0] == 0.0  # a[0] has zero width
    # Elementwise IoU is the diagonal of the pairwise one, and broadcasts.
    elementwise = jax.jit(box_ops.iou)
    np.testing.assert_allclose(elementwise(a[:9], b), np.diagonal(iou[:9]), atol=1e-6)
    broadcast = elementwise(a[:, None, :], b[None, :, :])
    chex.assert_shape(broadcast, (13, 9))
    np.testing.assert_allclose(broadcast, iou, atol=1e-6)


def test_gradients_finite_on_degenerate_boxes():
    a = jnp.array([[0.0, 0.0, 0.0, 0.0], [3.0, 3.0, 3.0, 8.0], [0.0, 0.0, 4.0, 4.0]])
    b = jnp.array([[0.0, 0.0, 0.0, 0.0], [3.0, 3.0, 3.0, 8.0], [2.0, 2.0, 6.0, 6.0]])

    def total(x, y):
        # A NaN anywhere in a term's value or gradient survives the sum.
        return (
            jnp.sum(box_ops.pairwise_iou(x, y))
            + jnp.sum(box_ops.pairwise_ioa(x, y))
            + jnp.sum(box_ops.iou(x, y))
        )

    value, (ga, gb) = jax.jit(jax.value_and_grad(total, argnums=(0, 1)))(a, b)
    chex.assert_shape([ga, gb], (3, 4))
    assert np.isfinite(value)
    assert np.all(np.isfinite(ga)) and np.all(np.isfinite(gb))
    # The non-degenerate pair still has a useful (non-zero) gradient.
    assert np.any(ga[2] != 0)
