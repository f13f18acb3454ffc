"""GDFL segmentation losses (eqs. 4, 5, 7, 8; Table II) against naive per-pixel numpy loops."""

from __future__ import annotations

import inspect
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from losses import segmentation as seg

# Jitted once per shape. Tests use the same map shapes and box count (M = 12) where they can, so
# that compilations (the bulk of the run time on CPU) are shared. The single-map stride is traced;
# the branch strides are static, so that branches of equal size and stride share their masks.
boxes_to_masks = jax.jit(seg.boxes_to_masks, static_argnames=("height", "width"))
instance_loss = jax.jit(
    seg.instance_sensitive_mask_loss, static_argnames=("class_height_thresholds",)
)
scale_loss = jax.jit(
    seg.scale_aware_mask_loss,
    static_argnames=("stride", "height_ranges", "out_of_range_as_background"),
)
instance_grad = jax.jit(jax.grad(seg.instance_sensitive_mask_loss))
scale_grad = jax.jit(jax.grad(seg.scale_aware_mask_loss), static_argnames=("stride",))

TABLE_II = ((30.0, 90.0), (90.0, 170.0), (170.0, 260.0), (260.0, math.inf))
IMAGE_H, IMAGE_W = 320, 128  # tall enough for every Table II branch
STRIDE = 8  # of the single (eqs. 4-5) map
MAP_SHAPE = (IMAGE_H // STRIDE, IMAGE_W // STRIDE)
BRANCH_STRIDES = (8, 8, 16, 16)  # of the four (eqs. 7-8) maps
BRANCH_SHAPES = [(IMAGE_H // s, IMAGE_W // s) for s in BRANCH_STRIDES]
NUM_BOXES = 12


# ----------------------------------------------------------------------------- naive references


def naive_instance_ids(boxes, valid, height, width, stride):
    """Owner box of each cell: the valid box of smallest area containing its centre."""
    ids = np.full((height, width), -1, np.int64)
    for i in range(height):
        for j in range(width):
            x, y = (j + 0.5) * stride, (i + 0.5) * stride
            best, best_area = -1, math.inf
            for k in range(len(boxes)):
                if not valid[k]:
                    continue
                x1, y1, x2, y2 = (float(v) for v in boxes[k])
                if x1 <= x < x2 and y1 <= y < y2:
                    area = (x2 - x1) * (y2 - y1)
                    if area < best_area:  # strict: the earlier box keeps a tie
                        best, best_area = k, area
            ids[i, j] = best
    return ids


def naive_log_softmax(z):
    z = [float(v) for v in z]
    top = max(z)
    log_norm = top + math.log(sum(math.exp(v - top) for v in z))
    return [v - log_norm for v in z]


def naive_instance_loss(logits, boxes, valid, stride, alpha=3.0, beta=10.0, thresholds=()):
    """Eq. 5: -1/N_s sum over pixels of w^{1[label != 0]} log p[label], w = alpha + beta / h."""
    height, width, _ = logits.shape
    ids = naive_instance_ids(boxes, valid, height, width, stride)
    total = 0.0
    for i in range(height):
        for j in range(width):
            log_p = naive_log_softmax(logits[i, j])
            k = ids[i, j]
            if k < 0:
                total += -log_p[0]
            else:
                h = float(boxes[k][3]) - float(boxes[k][1])
                label = 1 + sum(1 for t in thresholds if h >= t)
                total += -(alpha + beta / h) * log_p[label]
    return total / (height * width)


def naive_scale_loss(
    logits_per_scale, boxes, valid, strides, ranges, alpha=3.0, beta=10.0, as_background=False
):
    """Eqs. 7-8 summed over branches; out-of-range pedestrians ignored (or background)."""
    total = 0.0
    for logits, stride, (lo, hi) in zip(logits_per_scale, strides, ranges):
        height, width, _ = logits.shape
        ids = naive_instance_ids(boxes, valid, height, width, stride)
        branch = 0.0
        for i in range(height):
            for j in range(width):
                log_p = naive_log_softmax(logits[i, j])
                k = ids[i, j]
                if k < 0:
                    branch += -log_p[0]
                    continue
                h = float(boxes[k][3]) - float(boxes[k][1])
                if lo <= h < hi:
                    branch += -(alpha + beta / h) * log_p[1]
                elif as_background:
                    branch += -log_p[0]
        total += branch / (height * width)
    return total


# ----------------------------------------------------------------------------- scenes


def crowded_scene(seed):
    """``NUM_BOXES`` rows of overlapping pedestrians with heights across and on the edges of every
    Table II range, one exact duplicate (an area tie), a zero-width box and two invalid rows.

    Coordinates are multiples of 0.25, so areas, heights and centre tests are exact in float32
    and float64 alike.
    """
    rng = np.random.default_rng(seed)
    choices = [12.0, 29.75, 30.0, 55.5, 89.75, 90.0, 120.0, 169.5, 170.0, 259.75, 260.0, 300.0]
    heights = rng.choice(choices, NUM_BOXES)
    cx = IMAGE_W / 2 + rng.normal(0, IMAGE_W / 6, NUM_BOXES)  # clustered: heavy overlap
    top = np.round(rng.uniform(0, IMAGE_H * 0.5, NUM_BOXES) * 4) / 4
    half_w = np.round(np.maximum(0.41 * heights / 2, 6.0) * 4) / 4
    x1 = np.round((cx - half_w) * 4) / 4
    boxes = np.stack([x1, top, x1 + 2 * half_w, top + heights], axis=1).astype(np.float32)
    boxes[0] = boxes[1]  # an exact duplicate: equal areas
    boxes[2, 2] = boxes[2, 0]  # zero width: covers nothing
    boxes[NUM_BOXES - 1] = [np.nan, 0.0, np.inf, 1e6]  # garbage in a padded row
    valid = np.ones(NUM_BOXES, bool)
    valid[[3, NUM_BOXES - 1]] = False  # a real-looking box in an invalid row, and padding
    return boxes, valid


def pad_boxes(boxes, num=NUM_BOXES):
    """Hand-made boxes, padded with invalid rows to ``num`` (valid first)."""
    boxes = np.asarray(boxes, np.float32)
    padded = np.full((num, 4), 7.0, np.float32)
    padded[: len(boxes)] = boxes
    return padded, np.arange(num) < len(boxes)


def random_logits(seed, shape, scale=3.0):
    return np.random.default_rng(seed).normal(0.0, scale, shape).astype(np.float32)


def branch_logits(seed, scale=3.0):
    return [random_logits(seed + j, (*hw, 2), scale) for j, hw in enumerate(BRANCH_SHAPES)]


def with_garbage_rows(boxes, valid, interleave):
    """Append 5 invalid rows whose boxes would cover everything, or are NaN, inf or zero-area;
    with ``interleave`` they are spread among the real rows (whose relative order is kept)."""
    garbage = np.array(
        [
            [-1e6, -1e6, 1e6, 1e6],
            [np.nan, 0, 10, np.nan],
            [0, 0, np.inf, np.inf],
            [5, 5, 5, 5],
            [1, 1, 2, 2],
        ],
        np.float32,
    )
    num = len(boxes) + len(garbage)
    is_garbage = np.arange(num) >= len(boxes)
    if interleave:
        is_garbage = np.isin(np.arange(num), np.random.default_rng(0).permutation(num)[:5])
    all_boxes = np.zeros((num, 4), np.float32)
    all_boxes[~is_garbage], all_boxes[is_garbage] = boxes, garbage
    all_valid = np.zeros(num, bool)
    all_valid[~is_garbage] = valid
    return all_boxes, all_valid


def mean_background_ce(logits):
    z = np.asarray(logits, np.float64)
    return float(np.mean(np.log(np.exp(z).sum(-1)) - z[..., 0]))


# ----------------------------------------------------------------------------- boxes_to_masks


def test_boxes_to_masks_smallest_box_by_hand():
    boxes = np.array(
        [
            [0, 0, 8, 6],  # 0: whole map, area 48
            [1, 1, 4, 5],  # 1: area 12, inside box 0
            [3, 2, 6, 4],  # 2: area 6, overlaps box 1 in column 3
            [5, 0, 7, 2],  # 3: area 4
            [6, 1, 8, 3],  # 4: area 4, ties box 3 at (row 1, col 6): the lower index wins
            [2, 2, 2, 5],  # 5: zero width, covers nothing
            [0, 0, 1, 1],  # 6: invalid, would own (0, 0)
        ],
        np.float32,
    )
    valid = np.array([True] * 6 + [False])
    expected = np.array(
        [
            [0, 0, 0, 0, 0, 3, 3, 0],
            [0, 1, 1, 1, 0, 3, 3, 4],
            [0, 1, 1, 2, 2, 2, 4, 4],
            [0, 1, 1, 2, 2, 2, 0, 0],
            [0, 1, 1, 1, 0, 0, 0, 0],
            [0, 0, 0, 0, 0, 0, 0, 0],
        ]
    )
    ids, fg = boxes_to_masks(boxes, valid, height=6, width=8, stride=1)
    chex.assert_type(ids, jnp.int32)
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(fg, np.ones((6, 8), bool))
    # Without box 0 the cells it alone covered are background (-1), in both outputs.
    valid[0] = False
    ids, fg = boxes_to_masks(boxes, valid, height=6, width=8, stride=1)
    expected_without_0 = np.where(expected == 0, -1, expected)
    np.testing.assert_array_equal(ids, expected_without_0)
    np.testing.assert_array_equal(fg, expected_without_0 >= 0)


def test_boxes_to_masks_stride_uses_cell_centres():
    # Stride 4: centres at 2, 6, 10, ... Box 0 = [2, 2, 6, 10] holds x = 2 (x1 <= x) but not
    # x = 6 (x < x2), and y = 2, 6 but not y = 10. Box 1 holds no centre (6 < 7, 10 >= 9).
    boxes = np.zeros((7, 4), np.float32)
    boxes[:2] = [[2, 2, 6, 10], [7, 0, 9, 24]]
    valid = np.arange(7) < 2
    ids, fg = boxes_to_masks(boxes, valid, height=6, width=8, stride=4)
    expected = np.full((6, 8), -1)
    expected[:2, 0] = 0
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(fg, expected >= 0)


@pytest.mark.parametrize("seed,stride", [(0, 8), (1, 16), (2, 8)])
def test_boxes_to_masks_matches_naive(seed, stride):
    boxes, valid = crowded_scene(seed)
    ids, fg = boxes_to_masks(boxes, valid, height=MAP_SHAPE[0], width=MAP_SHAPE[1], stride=stride)
    expected = naive_instance_ids(boxes, valid, *MAP_SHAPE, stride)
    assert (expected >= 0).sum() > 0.1 * expected.size  # a real scene, not an empty one
    assert len(np.unique(expected[expected >= 0])) >= 4  # several owners
    np.testing.assert_array_equal(ids, expected)
    np.testing.assert_array_equal(fg, expected >= 0)


def test_boxes_to_masks_without_boxes():
    ids, fg = seg.boxes_to_masks(np.zeros((0, 4), np.float32), np.zeros(0, bool), 3, 4)
    chex.assert_shape([ids, fg], (3, 4))
    np.testing.assert_array_equal(ids, np.full((3, 4), -1))
    assert not np.any(fg)


# ----------------------------------------------------------------------------- eqs. 4-5


def test_paper_constants():
    assert (seg.GDFL_ALPHA, seg.GDFL_BETA) == (3.0, 10.0)
    assert seg.GDFL_SMALL_LARGE_THRESHOLD == 120.0
    assert seg.TABLE_II_HEIGHT_RANGES == TABLE_II
    for fn in (seg.instance_sensitive_mask_loss, seg.scale_aware_mask_loss):
        params = inspect.signature(fn).parameters
        assert (params["alpha"].default, params["beta"].default) == (3.0, 10.0)
    default_ranges = inspect.signature(seg.scale_aware_mask_loss).parameters["height_ranges"]
    assert default_ranges.default == TABLE_II


# One 24-pixel pedestrian: at stride 8 (centres 4, 12, 20, ...) it covers columns 12, 20 and rows
# 20, 28, 36, i.e. 6 of the 640 cells.
SMALL_BOX = [[8, 16, 24, 40]]
SMALL_WEIGHT = 3.0 + 10.0 / 24.0


def test_instance_loss_by_hand():
    boxes, valid = pad_boxes(SMALL_BOX)
    # Zero logits: every cell costs log 2, the 6 pedestrian cells SMALL_WEIGHT times.
    logits = np.zeros((*MAP_SHAPE, 2), np.float32)
    np.testing.assert_allclose(
        instance_loss(logits, boxes, valid, STRIDE),
        math.log(2) * (6 * SMALL_WEIGHT + 634) / 640,
        rtol=1e-5,
    )
    # Confidently right everywhere costs ~0; one confidently wrong pedestrian cell costs
    # SMALL_WEIGHT * margin / N_s, one confidently wrong background cell margin / N_s.
    logits[..., 0] = 30.0
    logits[2:5, 1:3] = [0.0, 30.0]
    assert float(instance_loss(logits, boxes, valid, STRIDE)) < 1e-6
    logits[3, 2] = [30.0, 0.0]
    logits[0, 0] = [0.0, 30.0]
    np.testing.assert_allclose(
        instance_loss(logits, boxes, valid, STRIDE), (SMALL_WEIGHT + 1) * 30.0 / 640, rtol=1e-5
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_instance_loss_matches_naive(seed):
    boxes, valid = crowded_scene(seed)
    logits = random_logits(seed, (*MAP_SHAPE, 2))
    expected = naive_instance_loss(logits, boxes, valid, STRIDE)
    np.testing.assert_allclose(instance_loss(logits, boxes, valid, STRIDE), expected, rtol=1e-5)
    # Other constants are honoured too.
    np.testing.assert_allclose(
        instance_loss(logits, boxes, valid, STRIDE, 1.0, 50.0),
        naive_instance_loss(logits, boxes, valid, STRIDE, alpha=1.0, beta=50.0),
        rtol=1e-5,
    )


def test_instance_loss_gdfl_three_classes_matches_naive():
    # GDFL proper: S_c = 2 scale classes split at 120 pixels (section III-B).
    boxes, valid = crowded_scene(4)
    logits = random_logits(4, (*MAP_SHAPE, 3))
    thresholds = (seg.GDFL_SMALL_LARGE_THRESHOLD,)
    loss = instance_loss(logits, boxes, valid, STRIDE, class_height_thresholds=thresholds)
    expected = naive_instance_loss(logits, boxes, valid, STRIDE, thresholds=(120.0,))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    with pytest.raises(ValueError):
        seg.instance_sensitive_mask_loss(logits, boxes, valid, STRIDE)  # 3 channels, no split


# ----------------------------------------------------------------------------- eqs. 7-8

# One 96-pixel pedestrian (branch [90, 170)): at stride 8 it covers 4 x 12 = 48 of 640 cells, at
# stride 16 2 x 6 = 12 of 160 cells.
MEDIUM_BOX = [[32, 0, 64, 96]]
MEDIUM_WEIGHT = 3.0 + 10.0 / 96.0


def test_scale_loss_by_hand():
    boxes, valid = pad_boxes(MEDIUM_BOX)
    logits = [np.zeros((*hw, 2), np.float32) for hw in BRANCH_SHAPES]
    log2 = math.log(2)
    in_range = log2 * (48 * MEDIUM_WEIGHT + 592) / 640  # branch 1
    # Elsewhere the pedestrian's cells weigh 0 but still count in N_s.
    ignored = [log2 * 592 / 640, log2 * 148 / 160, log2 * 148 / 160]  # branches 0, 2, 3
    np.testing.assert_allclose(
        scale_loss(logits, boxes, valid, BRANCH_STRIDES), in_range + sum(ignored), rtol=1e-5
    )
    # Ablation: out-of-range pedestrians as background.
    np.testing.assert_allclose(
        scale_loss(logits, boxes, valid, BRANCH_STRIDES, out_of_range_as_background=True),
        in_range + 3 * log2,
        rtol=1e-5,
    )


@pytest.mark.parametrize("seed,as_background", [(0, False), (1, False), (2, True)])
def test_scale_loss_matches_naive(seed, as_background):
    boxes, valid = crowded_scene(seed)
    logits = branch_logits(seed)
    loss = scale_loss(
        logits, boxes, valid, BRANCH_STRIDES, out_of_range_as_background=as_background
    )
    expected = naive_scale_loss(
        logits, boxes, valid, BRANCH_STRIDES, TABLE_II, as_background=as_background
    )
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_scale_loss_one_stride_and_custom_ranges():
    boxes, valid = crowded_scene(5)
    ranges = ((0.0, 100.0), (100.0, math.inf))
    logits = [random_logits(5 + j, (*MAP_SHAPE, 2)) for j in range(2)]
    expected = naive_scale_loss(logits, boxes, valid, [STRIDE] * 2, ranges)
    np.testing.assert_allclose(
        scale_loss(logits, boxes, valid, STRIDE, height_ranges=ranges), expected, rtol=1e-5
    )
    with pytest.raises(ValueError):
        seg.scale_aware_mask_loss(logits, boxes, valid, STRIDE)  # 2 maps, 4 Table II ranges
    with pytest.raises(ValueError):
        seg.scale_aware_mask_loss(logits, boxes, valid, (8, 8, 8), height_ranges=ranges)


# ----------------------------------------------------------------------------- robustness


@pytest.mark.parametrize("interleave", [False, True])
def test_padding_invariance(interleave):
    boxes, valid = crowded_scene(6)
    boxes, valid = boxes[: NUM_BOXES - 5], valid[: NUM_BOXES - 5]  # 7 rows, one of them invalid
    padded_boxes, padded_valid = with_garbage_rows(boxes, valid, interleave)  # 12 rows
    assert interleave == bool(padded_valid[-5:].any())
    ids, fg = boxes_to_masks(boxes, valid, height=MAP_SHAPE[0], width=MAP_SHAPE[1], stride=STRIDE)
    ids_p, fg_p = boxes_to_masks(
        padded_boxes, padded_valid, height=MAP_SHAPE[0], width=MAP_SHAPE[1], stride=STRIDE
    )
    assert fg.any()
    np.testing.assert_array_equal(fg_p, fg)
    # The same box owns each cell (renumbered when garbage rows come before it).
    owner = np.where(fg[..., None], boxes[np.maximum(ids, 0)], 0)
    owner_p = np.where(fg_p[..., None], padded_boxes[np.maximum(ids_p, 0)], 0)
    np.testing.assert_array_equal(owner_p, owner)
    if not interleave:
        np.testing.assert_array_equal(ids_p, ids)
    logits = random_logits(6, (*MAP_SHAPE, 2))
    np.testing.assert_allclose(
        instance_loss(logits, padded_boxes, padded_valid, STRIDE),
        instance_loss(logits, boxes, valid, STRIDE),
        rtol=1e-5,
    )
    # The scale-aware loss (slower to compile) is compared at the shared M = 12: garbage rows
    # vs. plain zero padding.
    zero_padded_boxes, zero_padded_valid = pad_boxes(boxes)
    zero_padded_valid[: len(valid)] = valid
    logits = branch_logits(6)
    np.testing.assert_allclose(
        scale_loss(logits, padded_boxes, padded_valid, BRANCH_STRIDES),
        scale_loss(logits, zero_padded_boxes, zero_padded_valid, BRANCH_STRIDES),
        rtol=1e-5,
    )


def test_empty_ground_truth_and_zero_area_boxes():
    logits = random_logits(7, (*MAP_SHAPE, 2))
    branch = branch_logits(7)
    scene_boxes, _ = crowded_scene(7)
    zero_area = np.tile(np.array([[10, 10, 10, 90], [5, 40, 60, 40]], np.float32), (6, 1))
    cases = {
        "no rows": (np.zeros((0, 4), np.float32), np.zeros(0, bool)),
        "all invalid": (scene_boxes, np.zeros(NUM_BOXES, bool)),
        "zero area": (zero_area, np.ones(NUM_BOXES, bool)),
    }
    for name, (boxes, valid) in cases.items():
        loss = instance_loss(logits, boxes, valid, STRIDE)
        np.testing.assert_allclose(loss, mean_background_ce(logits), rtol=1e-5, err_msg=name)
        if name != "no rows":  # (M = 0 takes the same path in all three functions)
            scale = scale_loss(branch, boxes, valid, BRANCH_STRIDES)
            expected = sum(mean_background_ce(x) for x in branch)
            np.testing.assert_allclose(scale, expected, rtol=1e-5, err_msg=name)
            assert np.all(np.isfinite(instance_grad(logits, boxes, valid, STRIDE))), name
            grads = scale_grad(branch, boxes, valid, BRANCH_STRIDES)
            assert all(np.all(np.isfinite(g)) for g in grads), name


def test_gradients():
    boxes, valid = crowded_scene(8)
    logits = jnp.asarray(random_logits(8, (*MAP_SHAPE, 2), 1.0))
    tolerances = {"order": 1, "modes": ["rev"], "eps": 1e-2, "atol": 2e-3, "rtol": 2e-3}
    check_grads(lambda x: instance_loss(x, boxes, valid, STRIDE), (logits,), **tolerances)
    branch = tuple(jnp.asarray(x) for x in branch_logits(8, 1.0))
    check_grads(
        lambda *xs: scale_loss(list(xs), boxes, valid, BRANCH_STRIDES), branch, **tolerances
    )
    # By hand, with zero logits: d/dz of -w log softmax(z)[l] / N_s is w (softmax - onehot) / N_s.
    boxes, valid = pad_boxes(MEDIUM_BOX)
    g = instance_grad(jnp.zeros((*MAP_SHAPE, 2)), boxes, valid, STRIDE)
    np.testing.assert_allclose(g[0, 4], MEDIUM_WEIGHT * np.array([0.5, -0.5]) / 640, rtol=1e-5)
    np.testing.assert_allclose(g[0, 0], np.array([-0.5, 0.5]) / 640, rtol=1e-5)
    g = scale_grad([jnp.zeros((*hw, 2)) for hw in BRANCH_SHAPES], boxes, valid, BRANCH_STRIDES)
    np.testing.assert_array_equal(g[0][0, 4], [0.0, 0.0])  # out of range: ignored
    np.testing.assert_allclose(g[1][0, 4], MEDIUM_WEIGHT * np.array([0.5, -0.5]) / 640, rtol=1e-5)
    np.testing.assert_allclose(g[1][0, 0], np.array([-0.5, 0.5]) / 640, rtol=1e-5)
    np.testing.assert_array_equal(g[3][0, 2], [0.0, 0.0])
    np.testing.assert_allclose(g[3][0, 0], np.array([-0.5, 0.5]) / 160, rtol=1e-5)


def test_jit_and_vmap_over_batch():
    scenes = [crowded_scene(seed) for seed in (9, 10, 11)]
    boxes = np.stack([b for b, _ in scenes])
    valid = np.stack([v for _, v in scenes])
    valid[2] = False  # an image without pedestrians
    logits = np.stack([random_logits(s, (*MAP_SHAPE, 2)) for s in range(3)])
    branch = [np.stack([x] * 3) for x in branch_logits(12)]

    def per_image(x, xs, b, v):
        masks = seg.boxes_to_masks(b, v, *MAP_SHAPE, STRIDE)
        inst = seg.instance_sensitive_mask_loss(x, b, v, STRIDE)
        return masks, inst, seg.scale_aware_mask_loss(xs, b, v, BRANCH_STRIDES)

    (ids, fg), inst, scale = jax.jit(jax.vmap(per_image))(logits, branch, boxes, valid)
    chex.assert_shape([ids, fg], (3, *MAP_SHAPE))
    chex.assert_shape([inst, scale], (3,))
    for n in range(3):
        expected_ids = naive_instance_ids(boxes[n], valid[n], *MAP_SHAPE, STRIDE)
        np.testing.assert_array_equal(ids[n], expected_ids)
        np.testing.assert_array_equal(fg[n], expected_ids >= 0)
        expected = naive_instance_loss(logits[n], boxes[n], valid[n], STRIDE)
        np.testing.assert_allclose(inst[n], expected, rtol=1e-5)
        xs = [x[n] for x in branch]
        expected = naive_scale_loss(xs, boxes[n], valid[n], BRANCH_STRIDES, TABLE_II)
        np.testing.assert_allclose(scale[n], expected, rtol=1e-5)
