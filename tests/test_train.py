"""End-to-end training on the tiny config: checkpoints, exact resume, eval mode, 1 vs 4 devices,
a train step that never retraces, empty ground truth, and the non-finite-loss stop."""

import json
import os
import subprocess
import sys

import chex
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

import train
from input_pipeline import pipeline

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _losses(workdir):
    with open(os.path.join(workdir, "train_metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


def test_train_resume_and_eval_mode(tiny_config, tmp_path):
    full = str(tmp_path / "full")
    metrics = train.train_and_evaluate(tiny_config, full)
    # Everything a user looks for in the workdir.
    assert sorted(os.listdir(os.path.join(full, "checkpoints"))) == ["2", "4"]
    assert any(f.startswith("events") for f in os.listdir(os.path.join(full, "tensorboard")))
    for f in ("detections.json", "metrics.json", "detections.png", "index.html", "mr_fppi.png",
              "errors.png", "mr_vs_nms.png", "raw_detections.json", "crowd_analysis.json"):
        assert os.path.getsize(os.path.join(full, "eval", "4", f)) > 0, f
    assert set(metrics) >= {"crowd_subsets", "voc", "consistency", "crowd_analysis"}
    assert set(metrics["crowd_analysis"]["mr_vs_nms"]["Reasonable"]) >= {"0.3", "0.5", "0.7"}
    assert set(metrics["miss_rate"]) >= {"Reasonable", "Reasonable_small", "Heavy", "All"}
    assert 0.0 <= metrics["coco"]["AP"] <= 1.0 or metrics["coco"]["AP"] == -1.0
    uninterrupted = _losses(full)
    assert sorted(uninterrupted) == [1, 2, 3, 4]

    # Interrupted after step 2, then restarted: steps 3 and 4 must repeat exactly.
    resumed = str(tmp_path / "resumed")
    train.train_and_evaluate(tiny_config, resumed, stop_at_step=2)
    assert sorted(os.listdir(os.path.join(resumed, "checkpoints"))) == ["2"]
    train.train_and_evaluate(tiny_config, resumed)
    again = _losses(resumed)
    for step in (1, 2, 3, 4):
        assert again[step] == pytest.approx(uninterrupted[step], rel=1e-6, abs=1e-7), step

    # --mode=eval restores the latest checkpoint and reproduces the training-time evaluation.
    ev = train.evaluate(tiny_config, full)
    assert ev["miss_rate"] == pytest.approx(metrics["miss_rate"])
    with pytest.raises(FileNotFoundError, match="step 3"):
        train.evaluate(tiny_config, full, step=3)
    with pytest.raises(FileNotFoundError, match="checkpoints"):
        train.evaluate(tiny_config, str(tmp_path / "never_trained"))


def test_same_losses_on_one_and_four_devices(tiny_config, tmp_path):
    assert jax.device_count() == 4
    runs = {}
    for n in (1, 4):
        with tiny_config.unlocked():
            tiny_config.mesh.num_devices = n
        wd = str(tmp_path / f"dev{n}")
        train.train_and_evaluate(tiny_config, wd, stop_at_step=3)
        runs[n] = _losses(wd)
    for step in (1, 2, 3):
        assert runs[4][step] == pytest.approx(runs[1][step], rel=1e-4), step


def test_train_step_traces_once_and_empty_ground_truth_is_finite(tiny_config, tmp_path):
    mesh, detector, builder, state, train_step, _ = train._setup(tiny_config, str(tmp_path))
    data = pipeline.as_numpy_iterator(pipeline.train_dataset(builder, tiny_config.input, 0))
    counts = set()
    for _ in range(3):
        local = next(data)
        local.pop("image_id"), local.pop("scale_xy")
        counts.add(int(local["gt_valid"].sum()))
        state, metrics = train_step(state, train.to_global(local, mesh))
        assert np.isfinite(float(metrics["loss"]))
    # Different numbers of boxes per batch, one compiled step.
    assert train_step._cache_size() == 1

    local["gt_valid"][:] = False
    local["ignore_valid"][:] = False
    state, metrics = train_step(state, train.to_global(local, mesh))
    m = jax.device_get(metrics)
    assert m["num_pos"] == 0 and np.isfinite(m["loss"]) and np.isfinite(m["grad_norm"])
    assert all(bool(jnp.all(jnp.isfinite(p))) for p in jax.tree.leaves(state.params))
    assert train_step._cache_size() == 1


def test_weight_ema_follows_its_formula_is_checkpointed_and_used_for_eval(tiny_config, tmp_path):
    with tiny_config.unlocked():
        tiny_config.optimizer.ema_decay = 0.9
    mesh, detector, builder, state, train_step, _ = train._setup(tiny_config, str(tmp_path))
    data = pipeline.as_numpy_iterator(pipeline.train_dataset(builder, tiny_config.input, 0))
    expected = jax.device_get(state.ema)
    chex.assert_trees_all_close(expected["params"], jax.device_get(state.params))
    for t in range(3):
        local = next(data)
        local.pop("image_id"), local.pop("scale_xy")
        state, _ = train_step(state, train.to_global(local, mesh))
        d = min(0.9, (1.0 + t) / (10.0 + t))  # the ramp: 0.1, 0.18, 0.25
        live = jax.device_get({"params": state.params, "batch_stats": state.batch_stats})
        expected = jax.tree.map(lambda e, x, d=d: d * e + (1 - d) * x, expected, live)
    chex.assert_trees_all_close(jax.device_get(state.ema), expected, rtol=1e-5, atol=1e-6)
    assert train.eval_variables(state) is state.ema
    # The average is part of the checkpoint.
    mgr = train._checkpoint_manager(str(tmp_path), tiny_config.checkpoint)
    mgr.save(3, args=ocp.args.StandardSave(state), force=True)
    mgr.wait_until_finished()
    fresh = train.create_train_state(detector, tiny_config, mesh)
    restored, step = train.restore_state(mgr, fresh)
    assert step == 3
    chex.assert_trees_all_close(jax.device_get(restored.ema), expected, rtol=1e-5, atol=1e-6)
    # A checkpoint with an average does not restore into a run without one (clear error) ...
    with tiny_config.unlocked():
        tiny_config.optimizer.ema_decay = 0.0
    plain = train.create_train_state(detector, tiny_config, mesh)
    with pytest.raises(RuntimeError, match="ema_decay"):
        train.restore_state(mgr, plain)
    mgr.close()
    # ... and one written before the `ema` field existed (no entry at all) still restores.
    legacy = train._checkpoint_manager(str(tmp_path / "legacy"), tiny_config.checkpoint)
    fields = ("step", "params", "batch_stats", "opt_state")
    legacy.save(3, args=ocp.args.StandardSave({k: getattr(state, k) for k in fields}), force=True)
    legacy.wait_until_finished()
    restored, _ = train.restore_state(legacy, plain)
    legacy.close()
    assert restored.ema is None
    chex.assert_trees_all_close(jax.device_get(restored.params), jax.device_get(state.params))
    with tiny_config.unlocked():
        tiny_config.optimizer.ema_decay = 1.0
    with pytest.raises(ValueError, match="ema_decay"):
        train.create_train_state(detector, tiny_config, mesh)


def test_non_finite_loss_stops_with_the_step(tiny_config, tmp_path):
    with tiny_config.unlocked():
        tiny_config.optimizer.learning_rate = 1e30
        tiny_config.schedule.warmup_steps = 0
        tiny_config.checkpoint.every_steps = 100
    with pytest.raises(train.NonFiniteLossError, match=r"non-finite at step \d"):
        train.train_and_evaluate(tiny_config, str(tmp_path))
    assert not os.path.exists(os.path.join(str(tmp_path), "checkpoints", "4"))


def _main(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "main.py", *args], cwd=REPO, capture_output=True, text=True,
        timeout=timeout,
    )


def test_cli_help_and_bad_config_keys(tmp_path):
    r = _main("--help")  # absl prints the flags and exits (with status 1, absl's choice)
    assert "--workdir" in r.stdout and "--config" in r.stdout and "--mode" in r.stdout
    r = _main("--config", "configs/quickstart.py:tiny", "--workdir", str(tmp_path),
              "--config.optimizer.learnin_rate=0.1")
    assert r.returncode != 0 and "learnin_rate" in r.stderr
    r = _main("--config", "configs/quickstart.py:huge", "--workdir", str(tmp_path))
    assert r.returncode != 0 and "tiny" in r.stderr
