"""Matcher on hand-made cases, an independent numpy loop on random boxes, and jit + vmap."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from detectors.ops import matcher

F = np.float32
# Jitted once per configuration / shape; op-by-op dispatch would compile every primitive.
assign = jax.jit(matcher.assign_targets, static_argnames=("allow_low_quality",))

# Two ground truths side by side, a small one no anchor fits well, and a padded row whose
# coordinates coincide exactly with anchor 2 (it must still never match).
GT = np.array([[0, 0, 10, 10], [20, 0, 30, 10], [50, 50, 70, 90], [10, 0, 20, 10]], F)
GT_VALID = np.array([True, True, True, False])
ANCHORS = np.array(
    [
        [0, 0, 10, 10],  # 0: IoU 1 with gt 0                            -> positive, gt 0
        [20, 0, 30, 10],  # 1: IoU 1 with gt 1                           -> positive, gt 1
        [10, 0, 20, 10],  # 2: between the gts, IoU 0 (padded gt = it)   -> negative, -1
        [2, 0, 12, 10],  # 3: IoU 80/120 with gt 0                       -> positive, gt 0
        [5, 0, 25, 10],  # 4: IoU 50/250 with both gts (tie -> lower index) -> negative, gt 0
        [3, 0, 13, 10],  # 5: IoU 70/130 = 0.538                          -> positive, gt 0
        [0, 0, 10, 22],  # 6: IoU 100/220 = 0.45, in [0.4, 0.5)           -> ignored, gt 0
        [50, 50, 60, 60],  # 7: IoU 100/800, gt 2's best (tie with 8)     -> forced positive, gt 2
        [60, 80, 70, 90],  # 8: IoU 100/800, the other best of gt 2       -> forced positive, gt 2
        [50, 50, 55, 55],  # 9: IoU 25/800 with gt 2                      -> negative, gt 2
        [90, 0, 110, 10],  # 10: half inside the ignore region            -> ignored, -1
        [80, 0, 110, 10],  # 11: a third inside the ignore region         -> negative, -1
        [150, 50, 160, 60],  # 12: inside the ignore region              -> ignored, -1
        [300, 0, 310, 10],  # 13: inside the PADDED ignore row only       -> negative, -1
    ],
    F,
)
IGNORE = np.array([[100, 0, 200, 100], [290, 0, 320, 20]], F)
IGNORE_VALID = np.array([True, False])


def _assign(**kwargs):
    return assign(ANCHORS, GT, GT_VALID, IGNORE, IGNORE_VALID, **kwargs)


def test_hand_made_case():
    out = _assign()
    chex.assert_shape([out["labels"], out["matched_gt_idx"], out["max_iou"]], (14,))
    assert out["labels"].dtype == jnp.int32 and out["matched_gt_idx"].dtype == jnp.int32
    np.testing.assert_array_equal(out["labels"], [1, 1, 0, 1, 0, 1, -1, 1, 1, 0, -1, 0, -1, 0])
    np.testing.assert_array_equal(
        out["matched_gt_idx"], [0, 1, -1, 0, 0, 0, 0, 2, 2, 2, -1, -1, -1, -1]
    )
    np.testing.assert_allclose(
        out["max_iou"],
        [1, 1, 0, 80 / 120, 50 / 250, 70 / 130, 100 / 220, 1 / 8, 1 / 8, 25 / 800, 0, 0, 0, 0],
        rtol=1e-6,
    )


def test_without_low_quality_matches():
    out = _assign(allow_low_quality=False)
    np.testing.assert_array_equal(out["labels"][7:9], [0, 0])
    np.testing.assert_array_equal(out["matched_gt_idx"][7:9], [2, 2])
    np.testing.assert_array_equal(out["labels"][:7], [1, 1, 0, 1, 0, 1, -1])


def test_thresholds_are_inclusive_as_in_the_paper():
    # IoU >= 0.5 positive, IoU in [0.4, 0.5) ignored, < 0.4 negative.
    gt = np.array([[0, 0, 10, 10]], F)
    anchors = np.array([[0, 0, 10, 10], [0, 0, 10, 20], [0, 0, 10, 25], [0, 0, 10, 26]], F)
    no_ignore = (np.zeros((1, 4), F), np.zeros(1, bool))
    out = assign(anchors, gt, np.ones(1, bool), *no_ignore, allow_low_quality=False)
    np.testing.assert_allclose(out["max_iou"], [1.0, 0.5, 0.4, 100 / 260], rtol=1e-6)
    np.testing.assert_array_equal(out["labels"], [1, 1, -1, 0])


def test_padded_gt_never_matches():
    # Validate the padded row: anchor 2 becomes a positive of gt 3. Padded, it must not.
    out = assign(ANCHORS, GT, np.ones(4, bool), IGNORE, IGNORE_VALID)
    assert out["labels"][2] == 1 and out["matched_gt_idx"][2] == 3
    out = _assign()
    assert out["labels"][2] == 0 and out["matched_gt_idx"][2] == -1
    assert not np.any(np.asarray(out["matched_gt_idx"]) == 3)
    # Padded rows: changing their coordinates changes nothing.
    gt = GT.copy()
    gt[3] = [2, 0, 12, 10]
    moved = assign(ANCHORS, gt, GT_VALID, IGNORE, IGNORE_VALID)
    chex.assert_trees_all_equal(moved, out)


def test_ignore_regions_never_override_positives():
    ignore = np.array([[0, 0, 30, 10]], F)  # covers anchors 0-5 completely
    out = assign(ANCHORS, GT, GT_VALID, ignore, np.array([True]))
    np.testing.assert_array_equal(out["labels"][:6], [1, 1, -1, 1, -1, 1])
    # ignore_ioa: anchor 11 (a third inside) is ignored with a lower threshold.
    out = _assign(ignore_ioa=0.3)
    assert out["labels"][11] == -1


def test_empty_ground_truth():
    no_gt = np.zeros(4, bool)
    out = assign(ANCHORS, GT, no_gt, IGNORE, IGNORE_VALID)
    expected = np.zeros(14, np.int32)
    expected[[10, 12]] = -1  # only the ignore region ignores anything
    np.testing.assert_array_equal(out["labels"], expected)
    np.testing.assert_array_equal(out["matched_gt_idx"], -1)
    np.testing.assert_array_equal(out["max_iou"], 0.0)
    # Zero-size gt / ignore arrays (static shapes) work too.
    out = assign(
        ANCHORS, np.zeros((0, 4), F), np.zeros(0, bool), np.zeros((0, 4), F), np.zeros(0, bool)
    )
    np.testing.assert_array_equal(out["labels"], 0)
    np.testing.assert_array_equal(out["matched_gt_idx"], -1)


def test_forced_match_reassigns_to_the_gt_it_rescues():
    gt = np.array([[0, 0, 10, 10], [0, 0, 10, 30]], F)
    anchors = np.array(
        [
            [0, 0, 10, 12],  # IoU 100/120 = 0.83 with gt 0 (not its best); gt 1's best (120/300)
            [0, 0, 10, 10],  # gt 0's best (IoU 1); IoU 1/3 with gt 1
        ],
        F,
    )
    out = assign(anchors, gt, np.ones(2, bool), np.zeros((1, 4), F), np.zeros(1, bool))
    np.testing.assert_array_equal(out["labels"], [1, 1])
    np.testing.assert_array_equal(out["matched_gt_idx"], [1, 0])
    np.testing.assert_allclose(out["max_iou"], [100 / 120, 1.0], rtol=1e-6)
    # An anchor that is the best of two gts goes to the one it overlaps most.
    anchors = np.array([[0, 0, 10, 10], [100, 100, 110, 110]], F)
    out = assign(anchors, gt, np.ones(2, bool), np.zeros((1, 4), F), np.zeros(1, bool))
    np.testing.assert_array_equal(out["matched_gt_idx"], [0, -1])
    np.testing.assert_array_equal(out["labels"], [1, 0])


def _reference(anchors, gt, gt_valid, ignore, ignore_valid, pos=0.5, neg=0.4, ioa_thr=0.5):
    """Independent loop implementation of the documented rules (float32 arithmetic)."""

    def overlap(p, q, over_first):
        iw = max(F(0), min(p[2], q[2]) - max(p[0], q[0]))
        ih = max(F(0), min(p[3], q[3]) - max(p[1], q[1]))
        inter = F(iw * ih)
        area_p = F((p[2] - p[0]) * (p[3] - p[1]))
        area_q = F((q[2] - q[0]) * (q[3] - q[1]))
        den = area_p if over_first else F(area_p + area_q - inter)
        return F(inter / den) if den > 0 else F(0)

    n, m = len(anchors), len(gt)
    iou = np.full((n, m), -1.0, F)
    for i in range(n):
        for j in range(m):
            if gt_valid[j]:
                iou[i, j] = overlap(anchors[i], gt[j], False)
    labels, idx, max_iou = [], [], []
    gt_best = [max(iou[:, j]) for j in range(m)]
    for i in range(n):
        best_j, best = -1, 0.0
        for j in range(m):
            if gt_valid[j] and iou[i, j] > best:
                best_j, best = j, iou[i, j]
        label = 1 if best >= pos else (0 if best < neg else -1)
        forced = [j for j in range(m) if gt_valid[j] and gt_best[j] > 0 and iou[i, j] == gt_best[j]]
        if forced:
            label = 1
            best_j = max(forced, key=lambda j: (iou[i, j], -j))
        if label != 1:
            for k in range(len(ignore)):
                if ignore_valid[k] and overlap(anchors[i], ignore[k], True) >= ioa_thr:
                    label = -1
        labels.append(label)
        idx.append(best_j)
        max_iou.append(best)
    return np.array(labels), np.array(idx), np.array(max_iou, F)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_vs_loop_reference(seed):
    rng = np.random.default_rng(seed)

    def boxes(n, lo, hi):
        xy = rng.integers(0, 60, (n, 2))
        wh = rng.integers(lo, hi, (n, 2))
        return np.concatenate([xy, xy + wh], 1).astype(F)

    anchors, gt, ignore = boxes(40, 4, 20), boxes(6, 0, 25), boxes(3, 5, 30)
    gt_valid = rng.random(6) < 0.7
    ignore_valid = rng.random(3) < 0.7
    out = jax.jit(matcher.assign_targets)(anchors, gt, gt_valid, ignore, ignore_valid)
    labels, idx, max_iou = _reference(anchors, gt, gt_valid, ignore, ignore_valid)
    np.testing.assert_array_equal(out["labels"], labels)
    np.testing.assert_array_equal(out["matched_gt_idx"], idx)
    np.testing.assert_allclose(out["max_iou"], max_iou, rtol=1e-6)
    assert np.sum(labels == 1) > 0 and np.sum(labels == 0) > 0  # the case is not trivial


def test_jit_vmap_over_images():
    gt = np.stack([GT, GT])
    gt_valid = np.stack([GT_VALID, np.zeros(4, bool)])
    fn = jax.jit(jax.vmap(matcher.assign_targets, in_axes=(None, 0, 0, None, None)))
    out = fn(ANCHORS, gt, gt_valid, IGNORE, IGNORE_VALID)
    chex.assert_shape(out["labels"], (2, 14))
    chex.assert_trees_all_equal(jax.tree.map(lambda x: x[0], out), _assign())
    assert np.all(np.asarray(out["labels"][1]) <= 0)
