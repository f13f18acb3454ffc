"""The loss terms selected by `config.loss.terms`, wired into RetinaNet's jitted objective."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import quickstart
from detectors import retinanet
from detectors.builder import build_detector
from detectors.ops import box_coder
from losses import harmonic, repulsion


def _config(terms, **loss):
    c = quickstart.get_config("tiny")
    with c.unlocked():
        c.loss.terms = tuple(terms)
        for k, v in loss.items():
            setattr(c.loss, k, v)
    return c


def _batch(rng, num_images=2, m=6):
    """Crowded pedestrians (several overlapping pairs) in 64x128 images, with padding rows."""
    boxes = np.zeros((num_images, m, 4), np.float32)
    valid = np.zeros((num_images, m), bool)
    for b in range(num_images):
        n = 4 if b == 0 else 0  # the second image has no pedestrians at all
        h = rng.uniform(24, 40, n)
        x = rng.uniform(10, 40, n)
        y = rng.uniform(5, 20, n)
        boxes[b, :n] = np.stack([x, y, x + 0.41 * h, y + h], -1)
        valid[b, :n] = True
        boxes[b, n:] = [5, 5, 30, 50]  # garbage in the padding rows
    return {
        "gt_boxes": jnp.asarray(boxes),
        "gt_valid": jnp.asarray(valid),
        "ignore_boxes": jnp.zeros((num_images, 2, 4)),
        "ignore_valid": jnp.zeros((num_images, 2), bool),
    }


def _outputs(det, num_images, seed=0):
    rng = np.random.default_rng(seed)
    n = det.anchors.shape[0]
    return {
        "cls_logits": jnp.asarray(rng.normal(-2.0, 1.0, (num_images, n, 1)), jnp.float32),
        "box_deltas": jnp.asarray(rng.normal(0.0, 0.1, (num_images, n, 4)), jnp.float32),
    }


def test_repulsion_terms_add_alpha_and_beta_times_the_library_losses():
    rng = np.random.default_rng(0)
    batch = _batch(rng)
    base = build_detector(_config(("focal", "smooth_l1")))
    out = _outputs(base, 2)
    total0, aux0 = base.loss_fn(out, batch)
    c = _config(("focal", "smooth_l1", "rep_gt", "rep_box"), rep_box_max_positives=10_000)
    det = build_detector(c)
    total, aux = jax.jit(det.loss_fn)(out, batch)
    for k in ("focal", "box_smooth_l1", "num_pos"):
        assert float(aux[k]) == pytest.approx(float(aux0[k]), rel=1e-6)
    assert float(aux["rep_gt"]) > 0 and float(aux["rep_box"]) > 0
    expected = float(total0) + 0.5 * float(aux["rep_gt"]) + 0.5 * float(aux["rep_box"])
    assert float(total) == pytest.approx(expected, rel=1e-6)

    # The same terms from the library functions on image 0 (image 1 has no pedestrians, so its
    # repulsion counts are 0 and the batch normalisers are image 0's).
    t = retinanet.assign_image_targets(
        det.anchors, batch["gt_boxes"][0], batch["gt_valid"][0], batch["ignore_boxes"][0],
        batch["ignore_valid"][0], c.targets,
    )
    pos = t["labels"] == 1
    target = jnp.where(pos, t["matched_gt_idx"], -1)
    pred = box_coder.decode_boxes(out["box_deltas"][0], det.anchors)
    rep_idx = repulsion.repulsion_gt_index(det.anchors, batch["gt_boxes"][0],
                                           batch["gt_valid"][0], target)
    want_gt = repulsion.rep_gt_loss(pred, batch["gt_boxes"][0], rep_idx, pos, sigma=1.0)
    want_box = repulsion.rep_box_loss(pred, target, pos, sigma=0.0)
    assert float(aux["rep_gt"]) == pytest.approx(float(want_gt), rel=1e-5)
    assert float(aux["rep_box"]) == pytest.approx(float(want_box), rel=1e-5)


def test_rep_box_sample_is_bounded_and_deterministic():
    rng = np.random.default_rng(1)
    batch = _batch(rng)
    c = _config(("focal", "smooth_l1", "rep_box"), rep_box_max_positives=3)
    det = build_detector(c)
    out = _outputs(det, 2)
    (_, a1), (_, a2) = det.loss_fn(out, batch), det.loss_fn(out, batch)
    assert float(a1["rep_box"]) == float(a2["rep_box"])
    # The kept positives are the 3 with the highest fixed priority: the library loss on them.
    t = retinanet.assign_image_targets(
        det.anchors, batch["gt_boxes"][0], batch["gt_valid"][0], batch["ignore_boxes"][0],
        batch["ignore_valid"][0], c.targets,
    )
    pos = np.asarray(t["labels"] == 1)
    assert pos.sum() > 3
    priority = np.asarray(retinanet.rep_box_priority(det.anchors.shape[0], c.seed))
    keep = np.argsort(-np.where(pos, priority, -1.0))[:3]
    pred = box_coder.decode_boxes(out["box_deltas"][0], det.anchors)
    target = np.asarray(t["matched_gt_idx"])
    want = repulsion.rep_box_loss(np.asarray(pred)[keep], target[keep], pos[keep])
    assert float(a1["rep_box"]) == pytest.approx(float(want), rel=1e-5)


def test_harmonic_objective_matches_the_library_and_has_finite_gradients():
    rng = np.random.default_rng(2)
    batch = _batch(rng)
    det = build_detector(_config(("harmonic",)))
    out = _outputs(det, 2)
    total, aux = jax.jit(det.loss_fn)(out, batch)
    assert "focal" not in aux and "harmonic" in aux
    assert float(total) == pytest.approx(float(aux["harmonic"]), rel=1e-6)
    # beta_c of the paper's CE is the positives' mean probability.
    t = retinanet.assign_image_targets(
        det.anchors, batch["gt_boxes"][0], batch["gt_valid"][0], batch["ignore_boxes"][0],
        batch["ignore_valid"][0], det_cfg := _config(("harmonic",)).targets,
    )
    del det_cfg
    pos = np.asarray(t["labels"] == 1)
    p = np.asarray(jax.nn.sigmoid(out["cls_logits"][0, :, 0]))
    assert float(aux["beta_c"]) == pytest.approx(float(p[pos].mean()), rel=1e-4)
    grads = jax.grad(lambda o: det.loss_fn(o, batch)[0])(out)
    for g in jax.tree_util.tree_leaves(grads):
        assert np.all(np.isfinite(np.asarray(g)))
    # The AIC metric is logged for every variant, and equals eq. 14 on the positives.
    pred = box_coder.decode_boxes(out["box_deltas"][0], det.anchors)
    matched = batch["gt_boxes"][0][jnp.maximum(t["matched_gt_idx"], 0)]
    from losses.box_overlap import iou

    want = harmonic.average_inconsistency_coefficient(p, iou(pred, matched), pos)
    assert float(aux["aic"]) == pytest.approx(float(want), rel=1e-5)


def test_factor_gradient_switch_changes_the_gradient_not_the_value():
    rng = np.random.default_rng(3)
    batch = _batch(rng)
    a = build_detector(_config(("harmonic",), harmonic_factor_gradient=True))
    b = build_detector(_config(("harmonic",), harmonic_factor_gradient=False))
    out = _outputs(a, 2)
    assert float(a.loss_fn(out, batch)[0]) == pytest.approx(float(b.loss_fn(out, batch)[0]))
    ga = jax.grad(lambda o: a.loss_fn(o, batch)[0])(out)["cls_logits"]
    gb = jax.grad(lambda o: b.loss_fn(o, batch)[0])(out)["cls_logits"]
    assert not np.allclose(np.asarray(ga), np.asarray(gb))


def test_empty_ground_truth_batch_is_finite_for_every_term():
    rng = np.random.default_rng(4)
    batch = _batch(rng)
    batch["gt_valid"] = jnp.zeros_like(batch["gt_valid"])
    for terms in [("focal", "smooth_l1", "rep_gt", "rep_box"), ("harmonic", "rep_gt", "rep_box")]:
        det = build_detector(_config(terms))
        out = _outputs(det, 2)
        total, aux = det.loss_fn(out, batch)
        assert np.isfinite(float(total)) and float(aux["num_pos"]) == 0.0
        grads = jax.grad(lambda o, d=det: d.loss_fn(o, batch)[0])(out)
        assert all(np.all(np.isfinite(np.asarray(g))) for g in jax.tree_util.tree_leaves(grads))


@pytest.mark.parametrize(
    "terms, message",
    [
        (("focal", "repulsion"), "Unknown loss term"),
        (("harmonic", "focal"), "already contains"),
        (("smooth_l1", "rep_gt"), "no classification term"),
        (("focal", "focal"), "twice"),
    ],
)
def test_bad_loss_terms_fail_at_build_time_naming_the_valid_ones(terms, message):
    with pytest.raises(ValueError, match=message) as e:
        build_detector(_config(terms))
    if message == "Unknown loss term":
        assert "rep_gt" in str(e.value) and "harmonic" in str(e.value)
