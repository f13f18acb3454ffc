"""RetinaNet model parts: output shapes vs anchors, FPN levels, head initialisation, dtypes."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import quickstart
from detectors.backbones.resnet import ResNet, backbone_channels
from detectors.builder import build_detector
from detectors.necks.fpn import FPN


def _tiny_config(**model):
    c = quickstart.get_config("tiny")
    with c.unlocked():
        for k, v in model.items():
            setattr(c.model, k, v)
    return c


def test_outputs_match_anchor_count_and_level_order():
    c = _tiny_config()
    det = build_detector(c)
    h, w = c.input.image_size
    x = jnp.zeros((2, h, w, 3))
    v = det.model.init(jax.random.PRNGKey(0), x, train=False)
    out = det.model.apply(v, x, train=False)
    n = det.anchors.shape[0]
    chex.assert_shape(out["cls_logits"], (2, n, 1))
    chex.assert_shape(out["box_deltas"], (2, n, 4))
    assert sum(det.level_sizes) == n
    # P3 at stride 8 comes first: 8x16 locations for a 64x128 input, one anchor each.
    assert det.level_sizes[0] == (h // 8) * (w // 8)


def test_classification_prior_bias_gives_pi():
    c = _tiny_config()
    det = build_detector(c)
    h, w = c.input.image_size
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, h, w, 3)), jnp.float32)
    v = det.model.init(jax.random.PRNGKey(0), x, train=False)
    bias = v["params"]["head"]["cls_out"]["bias"]
    np.testing.assert_allclose(bias, -math.log(99.0), rtol=1e-6)
    probs = jax.nn.sigmoid(det.model.apply(v, x, train=False)["cls_logits"])
    # Gaussian(0.01) weights keep the initial probabilities close to the prior pi = 0.01.
    assert abs(float(jnp.mean(probs)) - 0.01) < 0.005


def test_fpn_levels_shapes_with_odd_sizes():
    feats = {
        "C3": jnp.zeros((1, 13, 25, 8)),
        "C4": jnp.zeros((1, 7, 13, 16)),
        "C5": jnp.zeros((1, 4, 7, 32)),
    }
    fpn = FPN(num_channels=8)
    v = fpn.init(jax.random.PRNGKey(0), feats)
    out = fpn.apply(v, feats)
    assert [out[f"P{l}"].shape[1:3] for l in range(3, 8)] == [
        (13, 25), (7, 13), (4, 7), (2, 4), (1, 2)
    ]


@pytest.mark.parametrize("name", ["tiny", "resnet18", "resnet50"])
def test_resnet_feature_strides_and_channels(name):
    x = jnp.zeros((1, 64, 64, 3))
    net = ResNet(name)
    shapes = jax.eval_shape(lambda: net.init_with_output(jax.random.PRNGKey(0), x)[0])
    expected = backbone_channels(name)
    for i, level in enumerate(("C2", "C3", "C4", "C5")):
        stride = 2 ** (i + 2)
        assert shapes[level].shape == (1, 64 // stride, 64 // stride, expected[i])


def test_unknown_backbone_lists_valid_names():
    c = _tiny_config(backbone="resnet7")
    with pytest.raises(ValueError, match="resnet50"):
        build_detector(c)


def test_bfloat16_compute_keeps_float32_params_and_outputs():
    c = _tiny_config(dtype="bfloat16")
    det = build_detector(c)
    h, w = c.input.image_size
    x = jnp.zeros((1, h, w, 3))
    v = det.model.init(jax.random.PRNGKey(0), x, train=False)
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(v["params"]))
    out = det.model.apply(v, x, train=False)
    assert out["cls_logits"].dtype == jnp.float32


def test_frozen_bn_never_updates_statistics():
    c = _tiny_config(frozen_bn=True)
    det = build_detector(c)
    h, w = c.input.image_size
    x = jnp.asarray(np.random.default_rng(0).normal(size=(2, h, w, 3)), jnp.float32)
    v = det.model.init(jax.random.PRNGKey(0), x, train=False)
    _, new = det.model.apply(v, x, train=True, mutable=["batch_stats"])
    chex.assert_trees_all_equal(new["batch_stats"], v["batch_stats"])
    c2 = _tiny_config(frozen_bn=False)
    det2 = build_detector(c2)
    _, new2 = det2.model.apply(v, x, train=True, mutable=["batch_stats"])
    with pytest.raises(AssertionError):
        chex.assert_trees_all_equal(new2["batch_stats"], v["batch_stats"])


def test_group_norm_heads_option():
    c = _tiny_config(head_norm="group")
    det = build_detector(c)
    h, w = c.input.image_size
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, h, w, 3)), jnp.float32)
    v = det.model.init(jax.random.PRNGKey(0), x, train=False)
    assert "cls_norm0" in v["params"]["head"] and "box_norm0" in v["params"]["head"]
    out = det.model.apply(v, x, train=False)
    assert bool(jnp.all(jnp.isfinite(out["cls_logits"])))
    with pytest.raises(ValueError, match="head_norm"):
        build_detector(_tiny_config(head_norm="batch")).model.init(jax.random.PRNGKey(0), x)
