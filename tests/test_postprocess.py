"""Detection generation: a hand-built image, a numpy reference pipeline, jit + vmap shapes."""

import functools
import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

from detectors.ops import anchors as anchor_ops
from detectors.ops import postprocess

IMAGE = (64, 128)
# P3-P4, one 32 / 64 px square anchor per location: 8 x 16 + 4 x 8 = 160 anchors.
ANCHORS, SHAPES = anchor_ops.generate_anchors(IMAGE, 3, 4, 4.0, 1, (1.0,))
LEVEL_SIZES = anchor_ops.anchors_per_level(SHAPES, 1, (1.0,))
K = 2


def _hand_built():
    logits = np.full((160, K), -10.0, np.float32)
    deltas = np.zeros((160, 4), np.float32)
    # Anchor 53 = P3 (y 3, x 5): [28, 12, 60, 44]. Shift by (+8, -4), widen 1.5x -> [28, 8, 76, 40].
    logits[53, 1] = 4.0
    deltas[53] = [0.25, -0.125, math.log(1.5), 0.0]
    # Anchor 54 = [36, 12, 68, 44]: IoU 896 / 1664 with the top box -> suppressed in class 1 ...
    logits[54, 1] = 2.0
    # ... but kept as class 0 (NMS is per class).
    logits[54, 0] = 1.0
    # Anchor 135 = P4 (y 0, x 7): [88, -24, 152, 40] -> clipped to [88, 0, 128, 40].
    logits[135, 0] = 0.0
    # Below the 0.05 score threshold (sigmoid(-3.5) = 0.029).
    logits[10, 0] = -3.5
    # Decodes entirely outside the image: zero area after clipping, dropped.
    logits[15, 1] = 3.0
    deltas[15] = [10.0, 0.0, 0.0, 0.0]
    return logits, deltas


# Thresholds may be traced; sizes are static. Jitted so each configuration compiles once.
_generate = jax.jit(
    postprocess.generate_detections,
    static_argnames=("level_sizes", "image_size", "pre_nms_topk", "max_detections", "box_weights"),
)


def _run(logits, deltas, **kwargs):
    kwargs = {"max_detections": 6, **kwargs}
    return _generate(
        logits, deltas, ANCHORS, level_sizes=tuple(LEVEL_SIZES), image_size=IMAGE, **kwargs
    )


def test_hand_built_image():
    out = _run(*_hand_built())
    chex.assert_shape(out["boxes"], (6, 4))
    chex.assert_shape([out["scores"], out["classes"], out["valid"]], (6,))
    assert out["classes"].dtype == jnp.int32 and out["valid"].dtype == jnp.bool_
    np.testing.assert_array_equal(out["valid"], [True, True, True, False, False, False])
    np.testing.assert_allclose(out["boxes"][0], [28.0, 8.0, 76.0, 40.0], atol=1e-4)
    np.testing.assert_allclose(out["boxes"][1], [36.0, 12.0, 68.0, 44.0], atol=1e-4)
    np.testing.assert_allclose(out["boxes"][2], [88.0, 0.0, 128.0, 40.0], atol=1e-4)
    sig = [1 / (1 + math.exp(-x)) for x in (4.0, 1.0, 0.0)]
    np.testing.assert_allclose(out["scores"][:3], sig, rtol=1e-6)
    np.testing.assert_array_equal(out["classes"][:3], [1, 0, 0])
    np.testing.assert_array_equal(out["boxes"][3:], 0.0)
    np.testing.assert_array_equal(out["scores"][3:], 0.0)


def test_topk_per_level_and_max_detections():
    logits, deltas = _hand_built()
    out = _run(logits, deltas, pre_nms_topk=1)  # one candidate per level
    np.testing.assert_array_equal(out["valid"], [True, True, False, False, False, False])
    np.testing.assert_allclose(out["boxes"][1], [88.0, 0.0, 128.0, 40.0], atol=1e-4)
    out = _run(logits, deltas, max_detections=2)
    np.testing.assert_array_equal(out["classes"], [1, 0])
    assert np.all(out["valid"])
    out = _run(logits, deltas, score_threshold=0.6)
    np.testing.assert_array_equal(out["valid"], [True, True, False, False, False, False])


def _reference(logits, deltas, score_threshold, topk, nms_iou, max_det):
    """numpy: per-level top-k, threshold, decode, clip, per-class greedy NMS, top max_det."""
    cands, start = [], 0
    for size in LEVEL_SIZES:
        flat = logits[start : start + size].reshape(-1)
        order = sorted(range(len(flat)), key=lambda i: (-flat[i], i))[:topk]
        for f in order:
            score = 1 / (1 + np.exp(-np.float64(flat[f])))
            a, c = start + f // K, f % K
            x1, y1, x2, y2 = ANCHORS[a].astype(np.float64)
            w, h = x2 - x1, y2 - y1
            cx, cy = x1 + w / 2 + deltas[a, 0] * w, y1 + h / 2 + deltas[a, 1] * h
            w, h = w * np.exp(deltas[a, 2]), h * np.exp(deltas[a, 3])
            box = np.clip([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], 0, [128, 64, 128, 64])
            if score > score_threshold and (box[2] - box[0]) * (box[3] - box[1]) > 0:
                cands.append((score, box, c))
        start += size

    def iou(p, q):
        iw = max(0.0, min(p[2], q[2]) - max(p[0], q[0]))
        ih = max(0.0, min(p[3], q[3]) - max(p[1], q[1]))
        union = (p[2] - p[0]) * (p[3] - p[1]) + (q[2] - q[0]) * (q[3] - q[1]) - iw * ih
        return iw * ih / union

    kept = []
    for score, box, c in sorted(cands, key=lambda t: -t[0]):
        if all(kc != c or iou(box, kb) <= nms_iou for _, kb, kc in kept):
            kept.append((score, box, c))
    return kept[:max_det]


def test_random_heads_vs_numpy_reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(-2.0, 1.5, (160, K)).astype(np.float32)
    deltas = rng.normal(0, 0.3, (160, 4)).astype(np.float32)
    fn = jax.jit(
        functools.partial(
            postprocess.generate_detections,
            anchors=ANCHORS,
            level_sizes=LEVEL_SIZES,
            image_size=IMAGE,
            score_threshold=0.1,
            pre_nms_topk=40,
            nms_iou=0.5,
            max_detections=30,
        )
    )
    out = fn(logits, deltas)
    expected = _reference(logits, deltas, 0.1, 40, 0.5, 30)
    n = len(expected)
    assert 5 < n and int(out["valid"].sum()) == n
    np.testing.assert_allclose(out["scores"][:n], [e[0] for e in expected], rtol=1e-5)
    np.testing.assert_allclose(out["boxes"][:n], np.stack([e[1] for e in expected]), atol=1e-3)
    np.testing.assert_array_equal(out["classes"][:n], [e[2] for e in expected])


def test_jit_vmap_static_shapes():
    logits, deltas = _hand_built()
    batch_logits = np.stack([logits, np.full_like(logits, -10.0)])  # image 1: nothing detected
    batch_deltas = np.stack([deltas, deltas])
    per_image = functools.partial(
        postprocess.generate_detections,
        anchors=jnp.asarray(ANCHORS),
        level_sizes=LEVEL_SIZES,
        image_size=IMAGE,
        max_detections=6,
    )

    @jax.jit
    @chex.assert_max_traces(n=1)
    def batched(c, d):
        return jax.vmap(per_image)(c, d)

    out = batched(batch_logits, batch_deltas)
    batched(batch_logits + 0.1, batch_deltas)  # same shapes: no retrace
    chex.assert_shape(out["boxes"], (2, 6, 4))
    chex.assert_shape([out["scores"], out["classes"], out["valid"]], (2, 6))
    chex.assert_trees_all_close(jax.tree.map(lambda x: x[0], out), _run(logits, deltas), atol=1e-5)
    assert not np.any(out["valid"][1])
    np.testing.assert_array_equal(out["boxes"][1], 0.0)
