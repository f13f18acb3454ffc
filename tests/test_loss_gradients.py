"""tools/loss_gradients.py: per-term gradient norms agree with a direct jax.grad of each term."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import train
from detectors.builder import build_detector
from input_pipeline import pipeline
from tools import loss_gradients

TERMS = ["focal", "smooth_l1", "rep_gt"]


def _first_batch(config):
    builder = pipeline.get_builder(config.input.dataset, config.input.data_dir)
    batch = next(pipeline.as_numpy_iterator(pipeline.train_dataset(builder, config.input, 0)))
    batch.pop("image_id"), batch.pop("scale_xy")
    return batch


@pytest.fixture()
def config(tiny_config):
    c = tiny_config.copy_and_resolve_references()
    with c.unlocked():
        c.loss.terms = tuple(TERMS)
        c.loss.rep_gt_weight = 0.7  # a weight != 1 checks that each row is scaled by its own
    return c


def test_term_norms_match_direct_gradients(config):
    c = config
    det = build_detector(c, pipeline.train_input_size(c.input))
    state = train.create_train_state(build_detector(c), c, train.create_mesh(1))
    batch = _first_batch(c)
    fn = loss_gradients.make_term_gradients(det, TERMS, c.loss, c.targets)
    per_term, total, iog = jax.device_get(fn(state.params, state.batch_stats, batch))

    @jax.jit
    def direct(params):
        """Norms of the gradients of each weighted term and of the whole objective, one by one."""
        def term(p, key, weight):
            out, _ = det.model.apply({"params": p, "batch_stats": state.batch_stats},
                                     batch["image"], train=True, mutable=["batch_stats"])
            loss, aux = det.loss_fn(out, batch)
            return loss if key is None else weight * aux[key]
        parts = [("focal", 1.0), ("box_smooth_l1", c.loss.box_weight), ("rep_gt", 0.7), (None, 1)]
        return jnp.stack([optax.global_norm(jax.grad(term)(params, k, w)) for k, w in parts])

    expected = np.asarray(direct(state.params))
    np.testing.assert_allclose(per_term, expected[:3], rtol=1e-4)
    np.testing.assert_allclose(total, expected[3], rtol=1e-4)

    counted = iog[np.isfinite(iog[..., 0])]
    assert counted.shape[0] > 0  # the tiny crowd scenes have positives with a repulsion target
    assert np.all((counted[:, 0] >= 0) & (counted[:, 0] <= 1)) and np.all(counted[:, 1] >= 0)


def test_analyse_reports_and_validates(config):
    # Same config and terms as above, so the persistent compilation cache serves the step.
    r = loss_gradients.analyse(config, None, 0, TERMS, 1)
    assert set(r["grad_norm"]) == set(TERMS) and r["step"] == 0
    assert r["grad_norm_total"] <= sum(r["grad_norm"].values()) + 1e-6  # triangle inequality
    assert 0 < r["clip_scale_median"] <= 1
    assert 0 <= r["rep_iog"]["fraction_above_0.9"] <= 1
    assert "gradient norm" in loss_gradients.format_table(r)
    with pytest.raises(ValueError, match="unknown"):
        loss_gradients.analyse(config, None, 0, ["focal", "repulsion"], 1)
    with pytest.raises(ValueError, match="--workdir"):
        loss_gradients.analyse(config, None, None, ["focal"], 1)
    assert jnp.isfinite(r["grad_norm_total"])
