"""3:1 hard negative mining: naive sort-and-take reference, counts, ties, and edge cases."""

from __future__ import annotations

import math

import jax
import numpy as np
import pytest

from losses import sampling

# ratio and min_negatives traced (not static): one compilation per shape only.
_mine = jax.jit(sampling.hard_negative_mask)
mine_batched = jax.jit(sampling.batched_hard_negative_mask)
_N = 64


def mine(loss, positive, negative, ratio=3.0, min_negatives=0):
    """``hard_negative_mask`` on inputs padded to one shape with ignored, high-loss anchors."""
    n = len(loss)
    pad = _N - n
    out = np.asarray(
        _mine(
            np.concatenate([np.asarray(loss, np.float32), np.full(pad, 100.0, np.float32)]),
            np.concatenate([positive, np.zeros(pad, bool)]),
            np.concatenate([negative, np.zeros(pad, bool)]),
            ratio,
            min_negatives,
        )
    )
    assert not out[n:].any()  # neither positive nor negative: never selected
    return out[:n]


def _naive_mask(loss, positive, negative, ratio=3.0, min_negatives=0):
    """Sort the negatives by loss (highest first, lower index on ties) and keep the first k."""
    k = min(max(math.floor(ratio * int(positive.sum())), min_negatives), int(negative.sum()))
    candidates = sorted(np.flatnonzero(negative), key=lambda i: (-float(loss[i]), i))
    out = np.zeros(len(loss), bool)
    out[candidates[:k]] = True
    return out


def _random_case(seed, n=40):
    rng = np.random.default_rng(seed)
    # Losses rounded to one decimal: plenty of exact ties.
    loss = np.round(rng.random(n) * 2, 1).astype(np.float32)
    state = rng.choice(3, size=n, p=[0.1, 0.7, 0.2])  # 0 positive, 1 negative, 2 ignored
    return loss, state == 0, state == 1


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ratio,min_negatives", [(3.0, 0), (1.5, 0), (3.0, 5)])
def test_matches_naive(seed, ratio, min_negatives):
    loss, pos, neg = _random_case(seed)
    ours = mine(loss, pos, neg, ratio=ratio, min_negatives=min_negatives)
    np.testing.assert_array_equal(ours, _naive_mask(loss, pos, neg, ratio, min_negatives))


def test_count_and_top_losses():
    rng = np.random.default_rng(0)
    loss = rng.random(50).astype(np.float32)  # distinct values
    pos = np.zeros(50, bool)
    pos[[3, 17, 30]] = True
    neg = ~pos
    neg[[5, 6]] = False  # ignored anchors
    # Ignored anchors and positives have the largest losses: they must never be picked.
    loss[[3, 5, 6, 17, 30]] = 10.0
    sel = mine(loss, pos, neg)
    assert sel.sum() == 9  # 3 x 3 positives
    assert not np.any(sel & ~neg)
    assert loss[sel].min() > loss[neg & ~sel].max()
    np.testing.assert_array_equal(np.sort(loss[sel]), np.sort(loss[neg])[-9:])


def test_ties_broken_by_lower_index():
    loss = np.ones(12, np.float32)
    pos = np.zeros(12, bool)
    pos[0] = True
    neg = ~pos
    neg[2] = False
    sel = mine(loss, pos, neg)
    np.testing.assert_array_equal(np.flatnonzero(sel), [1, 3, 4])
    # A tie at the cut: one loss of 5, then five of 2 competing for the remaining two places.
    loss = np.array([0, 2, 2, 5, 2, 2, 2, 1], np.float32)
    pos = np.array([1, 0, 0, 0, 0, 0, 0, 0], bool)
    np.testing.assert_array_equal(np.flatnonzero(mine(loss, pos, ~pos)), [1, 2, 3])
    # -0.0 and 0.0 tie as well (index order), and the result is the same on every call.
    loss = np.array([0.0, -0.0, 0.0, -0.0, 0.0], np.float32)
    pos = np.array([0, 0, 0, 0, 1], bool)
    first = mine(loss, pos, ~pos, ratio=2.0)
    np.testing.assert_array_equal(np.flatnonzero(first), [0, 1])
    np.testing.assert_array_equal(mine(loss, pos, ~pos, ratio=2.0), first)


def test_no_positives_gives_min_negatives():
    loss = np.array([0.1, 0.9, 0.5, 0.7, 0.3], np.float32)
    none = np.zeros(5, bool)
    assert not np.any(mine(loss, none, ~none))
    np.testing.assert_array_equal(np.flatnonzero(mine(loss, none, ~none, min_negatives=2)), [1, 3])
    # min_negatives is capped by the available negatives too.
    assert np.all(mine(loss, none, ~none, min_negatives=50))


def test_fewer_negatives_than_ratio_keeps_all():
    loss = np.array([0.2, 0.1, 0.4, 0.3, 0.0, 0.9], np.float32)
    pos = np.array([1, 1, 0, 0, 1, 0], bool)
    sel = mine(loss, pos, ~pos)
    np.testing.assert_array_equal(sel, ~pos)
    # Fractional ratio: floor(2.5 * 3) = 7 of 9 negatives.
    loss = np.arange(12, dtype=np.float32)
    pos = np.zeros(12, bool)
    pos[:3] = True
    sel = mine(loss, pos, ~pos, ratio=2.5)
    np.testing.assert_array_equal(np.flatnonzero(sel), np.arange(5, 12))


def test_nan_loss_ranks_last_among_negatives():
    loss = np.array([np.nan, 0.5, 0.1, 0.2, 7.0], np.float32)
    pos = np.array([0, 0, 0, 0, 1], bool)
    np.testing.assert_array_equal(np.flatnonzero(mine(loss, pos, ~pos)), [1, 2, 3])


def test_batched_matches_per_image():
    cases = [_random_case(s, n=30) for s in range(4)]
    loss, pos, neg = (np.stack(x) for x in zip(*cases))
    ours = np.asarray(mine_batched(loss, pos, neg))
    for i in range(4):
        np.testing.assert_array_equal(ours[i], _naive_mask(loss[i], pos[i], neg[i]))
    # Per image, not pooled: the ratio holds in each row.
    counts = ours.sum(1)
    np.testing.assert_array_equal(counts, np.minimum(3 * pos.sum(1), neg.sum(1)))


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        sampling.hard_negative_mask(np.zeros(4), np.zeros(3, bool), np.zeros(4, bool))
