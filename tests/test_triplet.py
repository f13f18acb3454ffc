"""Batch-hard and semi-hard triplet losses vs naive loops, by hand, under padding, and grads."""

from __future__ import annotations

import functools
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from losses import triplet

# Jitted: op-by-op dispatch would compile every primitive apart. Float margins are traced, so
# every hinge margin shares one compilation; gradients are jitted whole (one program each).
_jit = functools.partial(jax.jit, static_argnames="metric")
_soft = functools.partial(triplet.batch_hard_triplet_loss, margin="soft")
_hinge = triplet.batch_hard_triplet_loss
_bh_soft, _bh_hinge = _jit(_soft), _jit(_hinge)
_bh_soft_vg, _bh_hinge_vg = _jit(jax.value_and_grad(_soft)), _jit(jax.value_and_grad(_hinge))
semi_hard = _jit(triplet.semi_hard_triplet_loss)
semi_hard_vg = _jit(jax.value_and_grad(triplet.semi_hard_triplet_loss))
pdist = _jit(triplet.pairwise_distances)
pdist_sum_grad = jax.jit(jax.grad(lambda e: jnp.sum(triplet.pairwise_distances(e))))


def batch_hard(emb, labels, margin="soft", metric="euclidean", valid=None):
    if margin == "soft":
        return _bh_soft(emb, labels, metric=metric, valid=valid)
    return _bh_hinge(emb, labels, margin, metric=metric, valid=valid)


def batch_hard_vg(emb, labels, margin="soft", metric="euclidean", valid=None):
    if margin == "soft":
        return _bh_soft_vg(emb, labels, metric=metric, valid=valid)
    return _bh_hinge_vg(emb, labels, margin, metric=metric, valid=valid)


def _np_dist(emb, metric):
    b = len(emb)
    d = np.zeros((b, b))
    for i, j in itertools.product(range(b), range(b)):
        d2 = float(np.sum((emb[i] - emb[j]) ** 2))
        d[i, j] = d2 if metric == "sqeuclidean" else np.sqrt(d2)
    return d


def _naive_batch_hard(emb, labels, margin, metric, valid=None):
    """Hermans et al. per anchor; unlabeled rows are negatives only; no negative -> 0 loss."""
    emb = np.asarray(emb, np.float64)
    b = len(emb)
    valid = np.ones(b, bool) if valid is None else valid
    d = _np_dist(emb, metric)
    losses = []
    for a in range(b):
        if not valid[a] or labels[a] < 0:
            continue
        pos = [d[a, p] for p in range(b) if valid[p] and p != a and labels[p] == labels[a]]
        neg = [d[a, n] for n in range(b) if valid[n] and labels[n] != labels[a]]
        if not neg:
            losses.append(0.0)
            continue
        gap = (max(pos) if pos else 0.0) - min(neg)
        losses.append(np.logaddexp(0.0, gap) if margin == "soft" else max(0.0, margin + gap))
    return float(np.mean(losses)) if losses else 0.0


def _naive_semi_hard(emb, labels, margin, metric, valid=None):
    """tfa.losses.triplet_semihard_loss written pair by pair (plus: labels < 0 never positive)."""
    emb = np.asarray(emb, np.float64)
    b = len(emb)
    valid = np.ones(b, bool) if valid is None else valid
    d = _np_dist(emb, metric)
    total, count = 0.0, 0
    for a, p in itertools.product(range(b), range(b)):
        if a == p or not (valid[a] and valid[p]) or labels[a] < 0 or labels[a] != labels[p]:
            continue
        neg = [d[a, n] for n in range(b) if valid[n] and labels[n] != labels[a]]
        farther = [x for x in neg if x > d[a, p]]
        if farther:
            d_an = min(farther)
        else:
            d_an = max(neg) if neg else 0.0  # TF's masked maximum -> row minimum = 0 if empty
        total += max(margin + d[a, p] - d_an, 0.0)
        count += 1
    return total / count if count else 0.0


def _random_batch(seed, b=12, dim=4):
    rng = np.random.default_rng(seed)
    emb = rng.normal(size=(b, dim)).astype(np.float32)
    # Repeated identities, unlabeled (-1, -2) rows and a singleton identity (99).
    labels = rng.choice(np.array([-1, -2, 0, 1, 2, 3]), size=b).astype(np.int32)
    labels[:3] = [0, 0, 99]
    return emb, labels


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("margin", ["soft", 0.5])
@pytest.mark.parametrize("metric", ["euclidean", "sqeuclidean"])
def test_batch_hard_matches_naive(seed, margin, metric):
    emb, labels = _random_batch(seed)
    ours = batch_hard(emb, labels, margin=margin, metric=metric)
    ref = _naive_batch_hard(emb, labels, margin, metric)
    assert ours.dtype == jnp.float32 and ours.shape == ()
    np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("metric", ["sqeuclidean", "euclidean"])
def test_semi_hard_matches_naive_tfa_semantics(seed, metric):
    emb, labels = _random_batch(seed)
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)  # TF expects L2-normalised embeddings
    for margin in (0.2, 1.0):
        ours = semi_hard(emb, labels, margin, metric=metric)
        ref = _naive_semi_hard(emb, labels, margin, metric)
        np.testing.assert_allclose(ours, ref, rtol=2e-5, atol=1e-6)


def test_batch_hard_by_hand():
    # 1-D points; labels 0,0,1,1. Hardest (pos, neg) per anchor: (1,3) (1,2) (4,2) (4,6).
    emb = np.array([[0.0], [1.0], [3.0], [7.0]], np.float32)
    labels = np.array([0, 0, 1, 1])
    gaps = np.array([-2.0, -1.0, 2.0, -2.0])
    np.testing.assert_allclose(batch_hard(emb, labels, margin=0.5), 2.5 / 4, rtol=1e-6)
    np.testing.assert_allclose(batch_hard(emb, labels), np.mean(np.logaddexp(0, gaps)), rtol=1e-6)
    # Squared distances: (1,9) (1,4) (16,4) (16,36) -> hinge 1: 0, 0, 13, 0.
    np.testing.assert_allclose(
        batch_hard(emb, labels, margin=1.0, metric="sqeuclidean"), 13 / 4, rtol=1e-6
    )


def test_batch_hard_singleton_and_unlabeled_by_hand():
    # Anchors 0,1 (id 0), 2 (id 1, singleton), 4 (id 2, singleton); row 3 is unlabeled.
    # (pos, neg): (1, 2) (1, 1) (0, 1) (0, 1) -> hinge 1: 0, 1, 0, 0; mean over 4 anchors.
    emb = np.array([[0.0], [1.0], [3.0], [7.0], [2.0]], np.float32)
    labels = np.array([0, 0, 1, -1, 2])
    np.testing.assert_allclose(batch_hard(emb, labels, margin=1.0), 0.25, rtol=1e-6)
    # Unlabeled samples are negatives: (1, 1.5) and (1, 0.5) -> 0.5, 1.5 (else no negative, 0).
    emb = np.array([[0.0], [1.0], [1.5]], np.float32)
    np.testing.assert_allclose(batch_hard(emb, np.array([0, 0, -1]), margin=1.0), 1.0, rtol=1e-6)
    # ... but never positives of each other (two -1 rows 10 apart would add a hinge of 2).
    emb = np.array([[0.0], [1.0], [10.0], [20.0]], np.float32)
    np.testing.assert_allclose(batch_hard(emb, np.array([0, 0, -1, -1]), margin=1.0), 0.0)


def test_batch_hard_degenerate_batches_finite():
    emb, _ = _random_batch(6)
    # One identity only (no anchor has a negative) or no anchor at all: 0, zero gradient.
    for labels in (np.full(12, 4), np.full(12, -1), -np.arange(1, 13)):
        for margin in ("soft", 0.3):
            loss, grad = batch_hard_vg(emb, labels, margin)
            assert loss == 0.0
            np.testing.assert_array_equal(grad, np.zeros_like(grad))


def test_batch_hard_negatives_only_from_valid_rows():
    emb = np.array([[0.0], [1.0], [3.0], [0.5]], np.float32)
    labels = np.array([0, 0, 0, 1])
    # The only negative is padding: no anchor has a negative, so the loss is 0 (and finite).
    loss = batch_hard(emb, labels, margin=1.0, valid=np.array([True, True, True, False]))
    np.testing.assert_allclose(loss, 0.0)
    # With it: anchors at x = 0, 1, 3 have (pos, neg) (3, 0.5) (2, 0.5) (3, 2.5); the singleton
    # negative's own anchor (0, 0.5). Hinge 1, mean over 4 anchors.
    loss = batch_hard(emb, labels, margin=1.0)
    np.testing.assert_allclose(loss, (3.5 + 2.5 + 1.5 + 0.5) / 4, rtol=1e-6)


def test_semi_hard_by_hand():
    # Squared distances of 1-D points 0, 1, 2, 4 with ids 0, 0, 1, 1 (margin 1):
    #   (0,1): d_ap 1, negatives {4, 16} -> semi-hard 4 -> 0
    #   (1,0): d_ap 1, negatives {1, 9}  -> semi-hard 9 (1 is not > 1) -> 0
    #   (2,3): d_ap 4, negatives {4, 1}  -> none > 4: largest negative 4 -> 1 + 4 - 4 = 1
    #   (3,2): d_ap 4, negatives {16, 9} -> semi-hard 9 -> 0
    emb = np.array([[0.0], [1.0], [2.0], [4.0]], np.float32)
    labels = np.array([0, 0, 1, 1])
    np.testing.assert_allclose(semi_hard(emb, labels, 1.0), 0.25, rtol=1e-6)
    # Margin 6, same negatives: 6+1-4 = 3, max(6+1-9, 0) = 0, 6+4-4 = 6, 6+4-9 = 1 -> 10 / 4.
    np.testing.assert_allclose(semi_hard(emb, labels, 6.0), 10 / 4, rtol=1e-6)


def test_semi_hard_degenerate_batches():
    emb = np.array([[0.0], [1.0], [3.0]], np.float32)
    # No positive pair at all (all singletons / unlabeled): 0, not TF's 0/0 = NaN.
    for labels in ([0, 1, 2], [-1, -1, -1], [-1, -1, 3]):
        assert semi_hard(emb, np.array(labels), 1.0) == 0.0
    # No negative: TF's masked maximum falls back to the zero self-distance, d_an = 0.
    # Pairs (0,1),(1,0): 1+1; (0,2),(2,0): 1+9; (1,2),(2,1): 1+4 -> mean 17/3.
    np.testing.assert_allclose(semi_hard(emb, np.array([7, 7, 7]), 1.0), 17 / 3, rtol=1e-6)


@pytest.mark.parametrize("where", ["tail", "interleaved"])
def test_padding_invariance(where):
    emb, labels = _random_batch(3)
    # Adversarial padding, harmful if used: negatives on top of real anchors (new ids and an
    # unlabeled row) and a far-away positive of the real identity of row 1.
    pad_emb = np.stack([emb[5], emb[0], 10 * emb[1], emb[7] + 1e-3])
    pad_labels = np.array([1000, 1001, labels[1], -1], labels.dtype)
    all_emb = np.concatenate([emb, pad_emb])
    all_labels = np.concatenate([labels, pad_labels])
    valid = np.arange(16) < 12
    order = np.arange(12)  # where the real rows end up among the valid ones
    if where == "interleaved":
        perm = np.random.default_rng(1).permutation(16)
        all_emb, all_labels, valid = all_emb[perm], all_labels[perm], valid[perm]
        order = perm[valid]
    cases = [  # (loss and gradient, loss only)
        (
            lambda e, lab, v=None: batch_hard_vg(e, lab, valid=v),
            lambda e, lab: batch_hard(e, lab),
        ),
        (
            lambda e, lab, v=None: semi_hard_vg(e, lab, 1.0, valid=v),
            lambda e, lab: semi_hard(e, lab, 1.0),
        ),
    ]
    for fn, value in cases:
        loss, grad = fn(emb, labels)
        loss_p, grad_p = fn(all_emb, all_labels, valid)
        np.testing.assert_allclose(loss_p, loss, rtol=1e-6)
        np.testing.assert_allclose(grad_p[valid], grad[order], rtol=1e-5, atol=1e-7)
        np.testing.assert_array_equal(grad_p[~valid], 0.0)
        # Without the mask the padding does change the loss (so the test can fail).
        assert not np.isclose(value(all_emb, all_labels), loss, rtol=1e-4)


def test_gradients_match_finite_differences():
    emb, labels = _random_batch(5)
    emb = jnp.asarray(emb, jnp.float32)
    check_grads(
        lambda e: batch_hard(e, labels), (emb,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2
    )
    check_grads(
        lambda e: semi_hard(e, labels, 1.0), (emb,), order=1, modes=["rev"], atol=1e-2, rtol=1e-2
    )


def test_finite_gradient_at_identical_embeddings():
    # Rows 0, 1 (same id) and 2 (another id) coincide: zero Euclidean distances for the hardest
    # positive and negative, where a plain sqrt has an infinite slope (NaN gradients).
    emb, labels = _random_batch(8)
    emb[1] = emb[2] = emb[0]
    assert labels[0] == labels[1] != labels[2]
    d = pdist(emb)
    np.testing.assert_array_equal(np.diag(d), 0.0)
    assert d[0, 1] == 0.0 and d[0, 2] == 0.0
    for loss, grad in (
        batch_hard_vg(emb, labels),
        semi_hard_vg(emb, labels, 1.0, metric="euclidean"),
        (jnp.sum(pdist(emb)), pdist_sum_grad(emb)),
    ):
        assert np.isfinite(loss)
        assert np.all(np.isfinite(grad)), grad
    # All embeddings equal: every distance 0, softplus(0) = log 2 per anchor, zero gradient.
    loss, grad = batch_hard_vg(np.ones_like(emb), labels)
    np.testing.assert_allclose(loss, np.log(2.0), rtol=1e-6)
    chex.assert_trees_all_equal(grad, jnp.zeros_like(grad))


def test_pairwise_distances_and_bad_arguments():
    emb, _ = _random_batch(4)
    for metric in ("euclidean", "sqeuclidean"):
        np.testing.assert_allclose(
            pdist(emb, metric=metric), _np_dist(emb, metric), rtol=1e-5, atol=1e-6
        )
    with pytest.raises(ValueError):
        triplet.pairwise_distances(emb, "cosine")
    with pytest.raises(ValueError):
        triplet.batch_hard_triplet_loss(emb, np.zeros(6, np.int32), margin="hard")
