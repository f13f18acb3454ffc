"""Anchor count, order (vs a head-output reshape), sizes, aspect ratio and centres."""

import math

import numpy as np
import pytest

from detectors.ops import anchors as anchor_ops


def test_count_and_level_shapes():
    anchors, shapes = anchor_ops.generate_anchors((64, 128))
    assert shapes == [(8, 16), (4, 8), (2, 4), (1, 2), (1, 1)]
    assert anchors.shape == (3 * (128 + 32 + 8 + 2 + 1), 4)
    assert anchors.dtype == np.float32
    # Sizes not divisible by the stride round up, like a stride-2 SAME conv.
    _, shapes = anchor_ops.generate_anchors((65, 100), min_level=3, max_level=5)
    assert shapes == [(9, 13), (5, 7), (3, 4)]
    assert anchor_ops.num_anchors_per_location(3, (0.5, 1.0, 2.0)) == 9
    assert anchor_ops.num_anchors_per_location(2, (0.41,)) == 2
    assert anchor_ops.anchors_per_level(shapes, 2, (0.41,)) == [234, 70, 24]


def test_order_matches_head_output_reshape():
    """Row i of the concatenated, reshaped head output must describe anchors[i]."""
    image_size, ratios, num_scales, k = (40, 72), (0.5, 1.0, 2.0), 2, 3
    anchors, shapes = anchor_ops.generate_anchors(
        image_size,
        min_level=3,
        max_level=5,
        anchor_size=4.0,
        num_scales=num_scales,
        aspect_ratios=ratios,
    )
    a = num_scales * len(ratios)
    rows = []
    for level, (h, w) in zip(range(3, 6), shapes):
        # A head output [H_l, W_l, A * K] whose channel a * K + c carries (level, y, x, a, c).
        out = np.zeros((h, w, a * k, 5), np.int64)
        for y in range(h):
            for x in range(w):
                for ai in range(a):
                    for c in range(k):
                        out[y, x, ai * k + c] = (level, y, x, ai, c)
        rows.append(out.reshape(h * w * a, k, 5))
    rows = np.concatenate(rows)
    assert rows.shape[0] == anchors.shape[0]
    assert np.all(rows[:, :, 4] == np.arange(k))  # classes stay in the last axis
    for i, (level, y, x, ai, _) in enumerate(rows[:, 0]):
        stride = 2.0**level
        scale_idx, ratio_idx = divmod(ai, len(ratios))
        side = 4.0 * stride * 2.0 ** (scale_idx / num_scales)
        r = ratios[ratio_idx]
        cx, cy = (x + 0.5) * stride, (y + 0.5) * stride
        hw, hh = side * math.sqrt(r) / 2, side / math.sqrt(r) / 2
        np.testing.assert_allclose(anchors[i], [cx - hw, cy - hh, cx + hw, cy + hh], rtol=1e-6)


def test_areas_follow_the_paper():
    # anchor_size 4, one scale, ratio 1: 32^2 at P3 .. 512^2 at P7 (RetinaNet section 4).
    anchors, shapes = anchor_ops.generate_anchors((128, 128), 3, 7, 4.0, 1, (1.0,))
    sizes = anchor_ops.anchors_per_level(shapes, 1, (1.0,))
    starts = np.cumsum([0] + sizes[:-1])
    area = (anchors[:, 2] - anchors[:, 0]) * (anchors[:, 3] - anchors[:, 1])
    for start, level in zip(starts, range(3, 8)):
        assert area[start] == pytest.approx((32.0 * 2 ** (level - 3)) ** 2, rel=1e-6)
    # Three octave scales: sides 32 * {2^0, 2^(1/3), 2^(2/3)} at the first P3 location.
    anchors, _ = anchor_ops.generate_anchors((64, 64), 3, 3, 4.0, 3, (1.0,))
    sides = anchors[:3, 2] - anchors[:3, 0]
    np.testing.assert_allclose(sides, 32 * 2.0 ** (np.arange(3) / 3), rtol=1e-6)


def test_aspect_ratio_is_width_over_height():
    anchors, _ = anchor_ops.generate_anchors((64, 128), aspect_ratios=(0.41,))
    w = anchors[:, 2] - anchors[:, 0]
    h = anchors[:, 3] - anchors[:, 1]
    np.testing.assert_allclose(w / h, 0.41, rtol=1e-5)  # tall pedestrian boxes
    assert np.all(h > w)
    # Area is kept at the base size squared: 32^2 at the first P3 anchor.
    assert w[0] * h[0] == pytest.approx(32.0**2, rel=1e-5)


def test_centres():
    anchors, shapes = anchor_ops.generate_anchors((64, 128), 3, 4, 4.0, 1, (0.41,))
    cx = (anchors[:, 0] + anchors[:, 2]) / 2
    cy = (anchors[:, 1] + anchors[:, 3]) / 2
    # P3, row 1, column 2 -> index 1 * 16 + 2; centre ((2 + 0.5) * 8, (1 + 0.5) * 8).
    assert (cx[18], cy[18]) == (20.0, 12.0)
    # First P4 anchor after the 8 * 16 P3 ones: centre (8, 8).
    assert (cx[128], cy[128]) == (8.0, 8.0)
    assert shapes == [(8, 16), (4, 8)]


def test_bad_arguments():
    with pytest.raises(ValueError, match="min_level"):
        anchor_ops.generate_anchors((64, 64), min_level=5, max_level=3)
    with pytest.raises(ValueError, match="positive"):
        anchor_ops.generate_anchors((64, 64), aspect_ratios=(0.0,))
