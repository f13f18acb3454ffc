"""Box overlaps, repulsion and harmonic losses against naive numpy loops and hand-made scenes."""

from __future__ import annotations

import itertools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from losses import box_overlap, harmonic, repulsion

# ----------------------------------------------------------------------------------------------
# Independent references: plain Python loops over boxes, written from the papers' equations.


def _area(b):
    return max(b[2] - b[0], 0.0) * max(b[3] - b[1], 0.0)


def _inter(a, b):
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    return max(w, 0.0) * max(h, 0.0)


def _iou(a, b):
    i = _inter(a, b)
    u = _area(a) + _area(b) - i
    return i / u if u > 0 else 0.0


def _iog(b, g):
    return _inter(b, g) / _area(g) if _area(g) > 0 else 0.0


def _smooth_ln(x, sigma):
    x = min(max(x, 0.0), 1.0)
    if x <= sigma:
        return -math.log(1.0 - min(x, float(np.float32(1.0 - 1e-6))))  # the cap, as float32 has it
    return (x - sigma) / (1.0 - sigma) - math.log(1.0 - sigma)


def _crowd(rng, n, spread=60.0):
    """`[n, 4]` pedestrian-shaped xyxy boxes packed into a small area so that many overlap."""
    h = rng.uniform(20, 80, n)
    w = 0.41 * h * rng.uniform(0.8, 1.2, n)
    x = rng.uniform(0, spread, n)
    y = rng.uniform(0, spread / 3, n)
    return np.stack([x, y, x + w, y + h], -1).astype(np.float32)


def _jitter(rng, boxes, scale=6.0):
    return (boxes + rng.normal(0, scale, boxes.shape)).astype(np.float32)


# ----------------------------------------------------------------------------------------------
# box_overlap


def test_pairwise_overlaps_match_loops_and_zero_area_is_zero():
    rng = np.random.default_rng(0)
    a = _crowd(rng, 7)
    b = _crowd(rng, 5)
    a[2, 2] = a[2, 0]  # zero width
    b[1, 3] = b[1, 1] - 3  # inverted: zero area
    iou = np.asarray(box_overlap.pairwise_iou(a, b))
    iog = np.asarray(box_overlap.pairwise_iog(a, b))
    ioa = np.asarray(box_overlap.pairwise_ioa(a, b))
    for i in range(7):
        for j in range(5):
            assert iou[i, j] == pytest.approx(_iou(a[i], b[j]), abs=1e-6)
            assert iog[i, j] == pytest.approx(_iog(a[i], b[j]), abs=1e-6)
            ref_ioa = _inter(a[i], b[j]) / _area(a[i]) if _area(a[i]) > 0 else 0.0
            assert ioa[i, j] == pytest.approx(ref_ioa, abs=1e-6)
    assert np.all(iog[:, 1] == 0) and np.all(ioa[2] == 0)
    np.testing.assert_allclose(box_overlap.iog(a[:5], b), np.diag(iog[:5]), atol=1e-7)
    np.testing.assert_allclose(box_overlap.iou(a[:5], b), np.diag(iou[:5]), atol=1e-7)
    assert box_overlap.pairwise_iog(a, np.zeros((0, 4), np.float32)).shape == (7, 0)


def test_iog_ignores_prediction_size_but_iou_does_not():
    g = np.array([0, 0, 10, 10], np.float32)
    small = np.array([5, 0, 15, 10], np.float32)  # half of g covered
    big = np.array([5, 0, 45, 40], np.float32)  # same intersection, far larger box
    assert float(box_overlap.iog(small, g)) == pytest.approx(0.5)
    assert float(box_overlap.iog(big, g)) == pytest.approx(0.5)
    assert float(box_overlap.iou(big, g)) < float(box_overlap.iou(small, g))


def test_iog_gradient_is_finite_for_degenerate_boxes():
    def f(b):
        return jnp.sum(box_overlap.pairwise_iog(b, jnp.array([[0.0, 0.0, 0.0, 5.0], [1, 1, 4, 9]])))

    g = jax.grad(f)(jnp.array([[0.0, 0.0, 0.0, 0.0], [2.0, 2.0, 3.0, 8.0]]))
    assert np.all(np.isfinite(np.asarray(g)))


# ----------------------------------------------------------------------------------------------
# Smooth_ln (eq. 5)


@pytest.mark.parametrize("sigma", [0.0, 0.3, 0.5, 0.9, 1.0])
def test_smooth_ln_matches_eq5_and_is_continuous(sigma):
    xs = np.linspace(0.0, 1.0, 41, dtype=np.float32)
    got = np.asarray(repulsion.smooth_ln(xs, sigma))
    ref = np.array([_smooth_ln(float(x), sigma) for x in xs])
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-6)
    assert np.all(np.isfinite(got)) and np.all(np.diff(got) >= 0)
    if 0.0 < sigma < 1.0:  # value and slope continuous at sigma
        eps = 1e-3
        lo, hi = repulsion.smooth_ln(jnp.array([sigma - eps, sigma + eps]), sigma)
        assert float(hi - lo) == pytest.approx(2 * eps / (1 - sigma), rel=1e-2)
        d = jax.grad(lambda x: repulsion.smooth_ln(x, sigma))
        assert float(d(sigma - 1e-4)) == pytest.approx(float(d(sigma + 1e-4)), rel=1e-2)


def test_smooth_ln_special_cases_and_gradients():
    x = jnp.array([0.0, 0.2, 0.7])
    np.testing.assert_allclose(repulsion.smooth_ln(x, 1.0), -np.log1p(-np.asarray(x)), rtol=1e-6)
    np.testing.assert_allclose(repulsion.smooth_ln(x, 0.0), x, atol=1e-7)
    assert np.isfinite(float(repulsion.smooth_ln(1.0, 1.0)))
    assert np.isfinite(float(jax.grad(lambda v: repulsion.smooth_ln(v, 1.0))(1.0)))
    for sigma in (0.0, 0.5, 1.0):
        check_grads(lambda v, s=sigma: repulsion.smooth_ln(v, s), (jnp.array([0.1, 0.35, 0.8]),),
                    order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
    with pytest.raises(ValueError, match="sigma"):
        repulsion.smooth_ln(x, 1.5)


# ----------------------------------------------------------------------------------------------
# RepGT (eqs. 3-4)


def _ref_rep_index(props, gt, valid, target):
    out = []
    for i in range(len(props)):
        best, best_iou = -1, 0.0
        for j in range(len(gt)):
            if not valid[j] or j == target[i]:
                continue
            v = _iou(props[i], gt[j])
            if v > best_iou:
                best, best_iou = j, v
        out.append(best)
    return np.array(out)


def _ref_rep_gt(pred, gt, rep_idx, positive, sigma):
    terms = [_smooth_ln(_iog(pred[i], gt[rep_idx[i]]), sigma)
             for i in range(len(pred)) if positive[i] and rep_idx[i] >= 0]
    return sum(terms) / max(len(terms), 1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_repulsion_gt_index_and_rep_gt_loss_match_loops(seed):
    rng = np.random.default_rng(seed)
    gt = _crowd(rng, 8)
    valid = rng.random(8) < 0.8
    props = _jitter(rng, gt[rng.integers(0, 8, 40)])
    target = rng.integers(-1, 8, 40)
    positive = (target >= 0) & valid[np.maximum(target, 0)]
    target = np.where(positive, target, -1)
    rep_idx = np.asarray(repulsion.repulsion_gt_index(props, gt, valid, target))
    np.testing.assert_array_equal(rep_idx, _ref_rep_index(props, gt, valid, target))
    assert np.any(rep_idx >= 0) and np.any(rep_idx == -1)
    pred = _jitter(rng, props, 3.0)
    for sigma in (1.0, 0.5, 0.0):
        got = float(repulsion.rep_gt_loss(pred, gt, rep_idx, positive, sigma))
        assert got == pytest.approx(_ref_rep_gt(pred, gt, rep_idx, positive, sigma), rel=1e-5)


def test_rep_gt_padding_and_empty_ground_truth():
    rng = np.random.default_rng(3)
    gt = _crowd(rng, 5)
    props = _jitter(rng, gt[rng.integers(0, 5, 20)])
    target = rng.integers(0, 5, 20)
    pos = np.ones(20, bool)
    idx = repulsion.repulsion_gt_index(props, gt, np.ones(5, bool), target)
    loss = repulsion.rep_gt_loss(props, gt, idx, pos)
    # Padding rows (garbage boxes right on top of the proposals, marked invalid) change nothing.
    gt_pad = np.concatenate([gt, props[:3] + 1.0])
    valid_pad = np.array([True] * 5 + [False] * 3)
    idx_pad = repulsion.repulsion_gt_index(props, gt_pad, valid_pad, target)
    np.testing.assert_array_equal(np.asarray(idx_pad), np.asarray(idx))
    assert float(repulsion.rep_gt_loss(props, gt_pad, idx_pad, pos)) == pytest.approx(float(loss))
    # Non-positive rows change nothing either.
    more = np.concatenate([props, props[:4]])
    idx_more = np.concatenate([np.asarray(idx), np.asarray(idx)[:4]])
    pos_more = np.concatenate([pos, np.zeros(4, bool)])
    assert float(repulsion.rep_gt_loss(more, gt, idx_more, pos_more)) == pytest.approx(float(loss))
    # No ground truth at all, or none valid: no repulsion target, loss 0, finite gradient.
    empty = np.zeros((0, 4), np.float32)
    assert np.all(np.asarray(repulsion.repulsion_gt_index(props, empty, np.zeros(0, bool),
                                                          target)) == -1)
    none_valid = repulsion.repulsion_gt_index(props, gt, np.zeros(5, bool), target)
    assert np.all(np.asarray(none_valid) == -1)
    g = jax.grad(lambda p: repulsion.rep_gt_loss(p, gt, none_valid, pos))(jnp.asarray(props))
    assert float(repulsion.rep_gt_loss(props, gt, none_valid, pos)) == 0.0
    assert np.all(np.asarray(g) == 0.0)


def test_rep_gt_falls_as_prediction_moves_away_from_its_repulsion_ground_truth():
    target_box = np.array([[0.0, 0.0, 20.0, 50.0]], np.float32)
    neighbour = np.array([[12.0, 0.0, 32.0, 50.0]], np.float32)
    gt = np.concatenate([target_box, neighbour])
    anchor = np.array([[2.0, 0.0, 22.0, 50.0]], np.float32)
    rep = repulsion.repulsion_gt_index(anchor, gt, np.ones(2, bool), np.array([0]))
    assert int(rep[0]) == 1
    losses = [float(repulsion.rep_gt_loss(anchor - [[dx, 0, dx, 0]], gt, rep, np.array([True])))
              for dx in (0.0, 2.0, 4.0, 8.0)]
    assert all(a > b for a, b in itertools.pairwise(losses)), losses
    # ... and its gradient points that way (x decreases the loss when it moves left).
    g = jax.grad(lambda p: repulsion.rep_gt_loss(p, gt, rep, np.array([True])))(jnp.asarray(anchor))
    assert float(g[0, 2]) > 0.0  # moving the right edge right would add overlap
    check_grads(lambda p: repulsion.rep_gt_loss(p, gt, rep, np.array([True])),
                (jnp.asarray(anchor),), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)


# ----------------------------------------------------------------------------------------------
# RepBox (eq. 6)


def _ref_rep_box(pred, target, positive, sigma):
    num, den = 0.0, 0
    for i in range(len(pred)):
        for j in range(len(pred)):
            if i == j or not (positive[i] and positive[j]) or target[i] == target[j]:
                continue
            v = _iou(pred[i], pred[j])
            num += _smooth_ln(v, sigma)
            den += v > 0
    return num / den if den else 0.0


@pytest.mark.parametrize("seed", [0, 1])
def test_rep_box_loss_matches_ordered_pair_loop(seed):
    rng = np.random.default_rng(seed)
    gt = _crowd(rng, 6)
    target = rng.integers(0, 6, 30)
    pred = _jitter(rng, gt[target], 4.0)
    positive = rng.random(30) < 0.8
    for sigma in (0.0, 0.5, 1.0):
        got = float(repulsion.rep_box_loss(pred, target, positive, sigma))
        assert got == pytest.approx(_ref_rep_box(pred, target, positive, sigma), rel=1e-5)
        assert got > 0.0


def test_rep_box_zero_for_shared_target_and_padding_invariant():
    rng = np.random.default_rng(4)
    gt = _crowd(rng, 1)
    pred = _jitter(rng, np.repeat(gt, 10, 0), 3.0)
    assert float(repulsion.rep_box_loss(pred, np.zeros(10, int), np.ones(10, bool))) == 0.0
    target = np.array([0, 1] * 5)
    base = float(repulsion.rep_box_loss(pred, target, np.ones(10, bool)))
    padded = np.concatenate([pred, pred[:5]])
    t_pad = np.concatenate([target, np.array([1, 0, 1, 0, 1])])
    pos_pad = np.array([True] * 10 + [False] * 5)
    assert float(repulsion.rep_box_loss(padded, t_pad, pos_pad)) == pytest.approx(base)
    check_grads(lambda p: repulsion.rep_box_loss(p, target, np.ones(10, bool), 0.5),
                (jnp.asarray(pred),), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
    none = repulsion.rep_box_loss(pred, target, np.zeros(10, bool))
    assert float(none) == 0.0


def test_repulsion_losses_vmap_over_a_batch():
    rng = np.random.default_rng(5)
    gt = np.stack([_crowd(rng, 4) for _ in range(3)])
    props = np.stack([_jitter(rng, g[rng.integers(0, 4, 12)]) for g in gt])
    target = rng.integers(0, 4, (3, 12))
    valid = np.ones((3, 4), bool)
    pos = np.ones((3, 12), bool)
    idx = jax.vmap(repulsion.repulsion_gt_index)(props, gt, valid, target)
    batched = jax.jit(jax.vmap(repulsion.rep_gt_loss))(props, gt, idx, pos)
    for b in range(3):
        assert float(batched[b]) == pytest.approx(
            float(repulsion.rep_gt_loss(props[b], gt[b], idx[b], pos[b])), rel=1e-6)
    rb = jax.vmap(repulsion.rep_box_loss)(props, target, pos)
    assert rb.shape == (3,) and np.all(np.isfinite(np.asarray(rb)))


# ----------------------------------------------------------------------------------------------
# Harmonic losses


def test_harmonic_loss_matches_eqs_2_3_and_its_gradient_eq7():
    rng = np.random.default_rng(0)
    cls = rng.uniform(0.01, 3.0, 12).astype(np.float32)
    loc = rng.uniform(0.0, 2.0, 12).astype(np.float32)
    pos = rng.random(12) < 0.7
    ref = sum((1 + math.exp(-loc[i])) * cls[i] + (1 + math.exp(-cls[i])) * loc[i]
              for i in range(12) if pos[i]) / max(pos.sum(), 1)
    assert float(harmonic.harmonic_loss(cls, loc, pos)) == pytest.approx(ref, rel=1e-5)
    assert float(harmonic.harmonic_loss(cls, loc, pos, normalizer=1.0)) == pytest.approx(
        ref * pos.sum(), rel=1e-5)
    # With gradient through the factors: dL/dCE_i = (1 + e^-loc) - loc e^-CE (per positive / N).
    g = np.asarray(jax.grad(harmonic.harmonic_loss)(jnp.asarray(cls), jnp.asarray(loc), pos))
    want = np.where(pos, (1 + np.exp(-loc)) - loc * np.exp(-cls), 0.0) / pos.sum()
    np.testing.assert_allclose(g, want, rtol=1e-4, atol=1e-6)
    g_const = np.asarray(jax.grad(harmonic.harmonic_loss)(jnp.asarray(cls), jnp.asarray(loc), pos,
                                                         False))
    np.testing.assert_allclose(g_const, np.where(pos, 1 + np.exp(-loc), 0.0) / pos.sum(), rtol=1e-5)
    check_grads(lambda c, lo: harmonic.harmonic_loss(c, lo, pos), (jnp.asarray(cls),
                jnp.asarray(loc)), order=1, modes=["rev"], atol=1e-2, rtol=1e-2)
    assert float(harmonic.harmonic_loss(cls, loc, np.zeros(12, bool))) == 0.0


def test_harmonic_iou_loss_eq10_and_monotonic_for_gamma_at_most_one():
    iou = np.linspace(0, 1, 51, dtype=np.float32)
    for gamma in (0.5, 0.8, 1.0):
        got = np.asarray(harmonic.harmonic_iou_loss(iou, gamma))
        np.testing.assert_allclose(got, (1 + iou) ** gamma * (1 - iou), rtol=1e-6, atol=1e-7)
        assert np.all(np.diff(got) <= 1e-7)
    # gamma > 1 is not monotonic near IoU = 0 (why the paper requires gamma <= 1).
    assert np.any(np.diff(np.asarray(harmonic.harmonic_iou_loss(iou, 3.0))) > 0)


def test_task_contrastive_and_entropy_weight_eq8():
    rng = np.random.default_rng(1)
    p = rng.random(10).astype(np.float32)
    iou = rng.random(10).astype(np.float32)
    probs = np.stack([p, 1 - p], -1)
    got = np.asarray(harmonic.task_contrastive_loss(p, iou, probs, 0.2))
    for i in range(10):
        ent = -sum(q * math.log(q) for q in probs[i] if q > 0)
        ref = max(0.0, abs(p[i] - iou[i]) - 0.2) / (1 + math.exp(ent))
        assert got[i] == pytest.approx(ref, rel=1e-5, abs=1e-7)
    one_hot = np.array([[1.0, 0.0]], np.float32)  # entropy 0: weight 1/2, no NaN from 0 log 0
    assert float(harmonic.entropy_weight(one_hot)[0]) == pytest.approx(0.5)
    assert np.all(got >= 0) and np.any(got > 0) and np.any(got == 0)


def test_harmonic_detection_loss_matches_eqs_11_13():
    rng = np.random.default_rng(2)
    n = 16
    p = rng.uniform(0.05, 0.95, n).astype(np.float32)
    iou = rng.uniform(0.3, 0.95, n).astype(np.float32)
    box = rng.uniform(0.0, 1.0, n).astype(np.float32)
    neg_cls = rng.uniform(0.0, 0.3, n).astype(np.float32)
    labels = rng.integers(-1, 2, n)  # 1 positive, 0 negative, -1 ignored
    pos, neg = labels == 1, labels == 0
    pos_ce = -np.log(p)
    probs = np.stack([p, 1 - p], -1)
    total, aux = harmonic.harmonic_detection_loss(pos_ce, neg_cls, box, iou, p, probs, pos, neg)
    ref = 0.0
    for i in range(n):
        if pos[i]:
            loc = box[i] + 1.5 * (1 + iou[i]) ** 0.8 * (1 - iou[i])
            ent = -sum(q * math.log(q) for q in probs[i])
            tc = max(0.0, abs(p[i] - iou[i]) - 0.2) / (1 + math.exp(ent))
            ref += (1 + math.exp(-loc)) * pos_ce[i] + (1 + math.exp(-pos_ce[i])) * loc + tc
        elif neg[i]:
            ref += neg_cls[i]
    ref /= max(pos.sum(), 1)
    assert float(total) == pytest.approx(ref, rel=1e-5)
    parts = aux["harmonic_cls"] + aux["harmonic_loc"] + aux["task_contrastive"] + aux["negative_cls"]
    assert float(parts) == pytest.approx(float(total), rel=1e-6)
    # beta_c = exp(-CE) = p for positives (eq. 3 with the paper's CE).
    assert float(aux["beta_c"]) == pytest.approx(float(p[pos].mean()), rel=1e-5)
    # No positives: only the negatives' term remains, divided by the floor of 1.
    t0, _ = harmonic.harmonic_detection_loss(pos_ce, neg_cls, box, iou, p, probs,
                                             np.zeros(n, bool), neg)
    assert float(t0) == pytest.approx(float(neg_cls[neg].sum()), rel=1e-5)


def test_average_inconsistency_coefficient_eq14():
    p = np.array([0.9, 0.2, 0.5, 0.7], np.float32)
    iou = np.array([0.8, 0.6, 0.5, 0.1], np.float32)
    pos = np.array([True, True, False, True])
    aic = float(harmonic.average_inconsistency_coefficient(p, iou, pos))
    assert aic == pytest.approx((0.1 + 0.4 + 0.6) / 3, rel=1e-5)
    assert float(harmonic.average_inconsistency_coefficient(p, iou, np.zeros(4, bool))) == 0.0
