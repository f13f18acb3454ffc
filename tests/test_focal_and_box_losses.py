"""Focal loss vs its formula and optax; smooth L1, IoU and GIoU losses by hand; NaN-free grads."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from losses import box_regression, focal

# Jitted: op-by-op dispatch would compile every primitive (and every gradient primitive) apart.
focal_loss = jax.jit(focal.sigmoid_focal_loss)
smooth_l1 = jax.jit(box_regression.smooth_l1, static_argnames="beta")
iou_loss = jax.jit(box_regression.iou_loss)
giou_loss = jax.jit(box_regression.giou_loss)


def _sig(x):
    return 1 / (1 + math.exp(-x))


def test_focal_by_hand():
    # logit 0, positive: p_t = 0.5 -> 0.25 * 0.5^2 * log 2; negative: 0.75 * 0.5^2 * log 2.
    # logit 2, positive: 0.25 * (1 - s(2))^2 * -log s(2); negative: 0.75 * s(2)^2 * -log(1 - s(2)).
    logits = jnp.array([0.0, 0.0, 2.0, 2.0])
    targets = jnp.array([1.0, 0.0, 1.0, 0.0])
    expected = [
        0.25 * 0.25 * math.log(2),
        0.75 * 0.25 * math.log(2),
        0.25 * (1 - _sig(2)) ** 2 * -math.log(_sig(2)),
        0.75 * _sig(2) ** 2 * -math.log(1 - _sig(2)),
    ]
    np.testing.assert_allclose(focal_loss(logits, targets), expected, rtol=1e-5)
    # alpha < 0: no alpha weighting; gamma = 0: plain binary cross-entropy.
    np.testing.assert_allclose(
        focal_loss(logits, targets, alpha=-1.0, gamma=0.0),
        [math.log(2), math.log(2), -math.log(_sig(2)), -math.log(1 - _sig(2))],
        rtol=1e-5,
    )


@pytest.mark.parametrize("alpha,gamma", [(0.25, 2.0), (-1.0, 2.0), (0.5, 0.5), (0.25, 0.0)])
def test_focal_matches_optax(alpha, gamma):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 4, (6, 7)).astype(np.float32)
    targets = (rng.random((6, 7)) < 0.3).astype(np.float32)
    targets[0] = rng.random(7)  # soft targets too
    ours = focal_loss(logits, targets, alpha=alpha, gamma=gamma)
    ref = jax.jit(
        lambda x, t: optax.sigmoid_focal_loss(x, t, alpha=None if alpha < 0 else alpha, gamma=gamma)
    )(logits, targets)
    chex.assert_trees_all_close(ours, ref, rtol=1e-5, atol=1e-7)


def test_focal_stable_for_extreme_logits():
    logits = jnp.array([-200.0, -30.0, 30.0, 200.0] * 2, jnp.bfloat16)
    targets = jnp.array([1.0] * 4 + [0.0] * 4)
    for gamma in (0.5, 2.0):
        loss = focal_loss(logits, targets, gamma=gamma)
        assert loss.dtype == jnp.float32
        assert np.all(np.isfinite(loss))
        g = jax.jit(jax.grad(lambda x, g=gamma: jnp.sum(focal_loss(x, targets, gamma=g))))(
            logits.astype(jnp.float32)
        )
        assert np.all(np.isfinite(g))
    # Confidently wrong costs ~ alpha * |logit| (no saturation at log(eps)); confidently right ~ 0.
    loss = np.asarray(focal_loss(logits.astype(jnp.float32), targets))
    np.testing.assert_allclose(loss[[0, 7]], [0.25 * 200, 0.75 * 200], rtol=1e-3)
    assert loss[3] < 1e-30 and loss[4] < 1e-30


@pytest.mark.parametrize("gamma", [0.5, 2.0])
def test_focal_relative_precision_for_confident_logits(gamma):
    # Where 1 - sigmoid(|x|) rounds to 0 in float32 (|x| > ~17) the loss is tiny but not 0,
    # for positives (large x) and negatives (very negative x) alike.
    x = np.array([5.0, 18.0, 22.0])
    q = 1 / (1 + np.exp(x))  # float64: 1 - p_t in both cases below
    expected_pos = 0.25 * q**gamma * np.log1p(np.exp(-x))
    expected_neg = 0.75 * q**gamma * np.log1p(np.exp(-x))
    logits = np.concatenate([x, -x]).astype(np.float32)
    targets = np.array([1.0] * 3 + [0.0] * 3, np.float32)
    loss = np.asarray(focal_loss(logits, targets, gamma=gamma))
    np.testing.assert_allclose(loss, np.concatenate([expected_pos, expected_neg]), rtol=1e-4)


def test_smooth_l1():
    pred = jnp.array([0.05, 1.0, -2.0, 0.0])
    target = jnp.zeros(4)
    beta = 1 / 9
    np.testing.assert_allclose(
        smooth_l1(pred, target),
        [0.5 * 0.05**2 / beta, 1 - beta / 2, 2 - beta / 2, 0.0],
        rtol=1e-5,
    )
    np.testing.assert_allclose(smooth_l1(pred, target, beta=0.0), [0.05, 1, 2, 0])
    g = jax.jit(jax.grad(lambda p: jnp.sum(smooth_l1(p, target))))(pred)
    np.testing.assert_allclose(g, [0.05 / beta, 1, -1, 0], rtol=1e-5)
    g = jax.jit(jax.grad(lambda p: jnp.sum(smooth_l1(p, target, beta=0.0))))(pred)
    assert np.all(np.isfinite(g))


def test_iou_and_giou_by_hand():
    pred = jnp.array([[0.0, 0, 2, 2], [0.0, 0, 1, 1], [0.0, 0, 4, 4]])
    target = jnp.array([[1.0, 1, 3, 3], [2.0, 0, 3, 1], [0.0, 0, 4, 4]])
    # Overlapping: IoU 1/7, enclosing 9 -> GIoU 1/7 - 2/9. Disjoint: IoU 0, C 3, U 2 -> -1/3.
    np.testing.assert_allclose(iou_loss(pred, target), [6 / 7, 1.0, 0.0], rtol=1e-6)
    np.testing.assert_allclose(
        giou_loss(pred, target), [1 - (1 / 7 - 2 / 9), 4 / 3, 0.0], rtol=1e-6
    )


def test_box_losses_nan_free_on_degenerate_boxes():
    pred = jnp.array([[5.0, 5, 5, 5], [5.0, 5, 5, 5], [0.0, 0, 0, 10], [0.0, 0, 4, 4]])
    target = jnp.array([[5.0, 5, 5, 5], [0.0, 0, 4, 4], [0.0, 0, 0, 10], [6.0, 6, 6, 6]])
    for fn in (iou_loss, giou_loss):
        loss = fn(pred, target)
        assert np.all(np.isfinite(loss))
        g = jax.jit(jax.grad(lambda p, t, f=fn: jnp.sum(f(p, t)), argnums=(0, 1)))(pred, target)
        assert all(np.all(np.isfinite(x)) for x in g)
    np.testing.assert_allclose(giou_loss(pred[:1], target[:1]), [1.0])  # C = 0
    # A point outside a box: GIoU still pulls the point towards the box (non-zero gradient).
    g = jax.jit(jax.grad(lambda p: jnp.sum(giou_loss(p, target[1:2]))))(
        jnp.array([[5.0, 5, 5.5, 5.5]])
    )
    assert np.all(np.isfinite(g)) and np.any(g != 0)


def test_empty_and_padding():
    empty = jnp.zeros((0, 4))
    for fn in (iou_loss, giou_loss):
        chex.assert_shape(fn(empty, empty), (0,))
    chex.assert_shape(smooth_l1(empty, empty), (0, 4))
    chex.assert_shape(focal_loss(jnp.zeros((0, 2)), jnp.zeros((0, 2))), (0, 2))
    # Elementwise: appending padded rows leaves the real rows' losses unchanged.
    pred = jnp.array([[0.0, 0, 2, 2]])
    target = jnp.array([[1.0, 1, 3, 3]])
    padded = giou_loss(
        jnp.concatenate([pred, jnp.zeros((2, 4))]), jnp.concatenate([target, jnp.zeros((2, 4))])
    )
    chex.assert_trees_all_close(padded[:1], giou_loss(pred, target))
