"""Training and evaluation loops: `train_and_evaluate(config, workdir)` and `evaluate(...)`.

Importable from a notebook or a test; `main.py` only parses flags and calls these. One `jax.jit`
train step over global arrays on a `('data',)` mesh: the batch is sharded `P('data')`, parameters
and optimizer state are replicated `P()`. The same code runs on one CPU, N simulated CPU devices, a
GPU, or a multi-host TPU slice (each process feeds its slice of the global batch).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tensorflow as tf
import tensorflow_datasets as tfds
from flax.training import train_state
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from detectors.builder import Detector, build_detector
from evaluation import analysis, coco_ap, miss_rate, visualize
from evaluation.io import atomic_write_json
from input_pipeline import pipeline
from input_pipeline.datasets.citypersons_format import export_citypersons_gt

log = logging.getLogger("train")


class TrainState(train_state.TrainState):
    batch_stats: Any = None
    # Exponential moving average of {'params', 'batch_stats'} (None when optimizer.ema_decay=0);
    # evaluation uses it when present.
    ema: Any = None


def eval_variables(state: TrainState) -> dict:
    """The variables evaluation runs with: the moving average if kept, else the live weights."""
    if state.ema is not None:
        return state.ema
    return {"params": state.params, "batch_stats": state.batch_stats}


def ema_decay_at(step, decay: float):
    """Decay for the update after `step` updates: min(decay, (1 + step) / (10 + step)).

    The ramp (as in tf.train.ExponentialMovingAverage's num_updates) keeps the average from
    being dominated by the random initialisation in short runs.
    """
    step = jnp.asarray(step, jnp.float32)
    return jnp.minimum(decay, (1.0 + step) / (10.0 + step))


class NonFiniteLossError(RuntimeError):
    pass


# ----------------------------------------------------------------------------- set-up pieces


def create_mesh(num_devices: int = 0) -> jax.sharding.Mesh:
    """A 1-D `('data',)` mesh over the first `num_devices` devices (0 = all, every process)."""
    devices = jax.devices()
    if num_devices:
        if num_devices > len(devices):
            raise ValueError(f"mesh.num_devices={num_devices} but only {len(devices)} devices exist")
        devices = devices[:num_devices]
    return jax.make_mesh(
        (len(devices),), ("data",), axis_types=(jax.sharding.AxisType.Auto,), devices=devices
    )


def learning_rate_schedule(opt_cfg, sched_cfg) -> optax.Schedule:
    """Linear warm-up from `lr * warmup_init_factor`, then step decay or cosine to zero."""
    lr = opt_cfg.learning_rate
    warm = int(sched_cfg.warmup_steps)
    total = int(sched_cfg.total_steps)
    if sched_cfg.kind == "step":
        after = optax.piecewise_constant_schedule(
            lr, {int(b) - warm: sched_cfg.decay_factor for b in sched_cfg.boundaries if b > warm}
        )
    elif sched_cfg.kind == "cosine":
        after = optax.cosine_decay_schedule(lr, max(total - warm, 1))
    else:
        raise ValueError(f"Unknown schedule.kind {sched_cfg.kind!r}; valid: ['step', 'cosine']")
    if warm <= 0:
        return after
    warmup = optax.linear_schedule(lr * sched_cfg.warmup_init_factor, lr, warm)
    return optax.join_schedules([warmup, after], [warm])


def _decay_mask(params):
    # Weight decay on conv/dense kernels only; biases and BN scales/offsets are not decayed.
    return jax.tree.map(lambda p: p.ndim > 1, params)


OPTIMIZERS = ("sgd", "adamw")


def build_optimizer(opt_cfg, sched_cfg) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """SGD with momentum (the paper's) or AdamW; weight decay masked to kernels; optional clip."""
    if opt_cfg.name not in OPTIMIZERS:
        raise ValueError(f"Unknown optimizer.name {opt_cfg.name!r}; valid: {list(OPTIMIZERS)}")
    schedule = learning_rate_schedule(opt_cfg, sched_cfg)
    parts = []
    if opt_cfg.grad_clip_norm:
        parts.append(optax.clip_by_global_norm(opt_cfg.grad_clip_norm))
    if opt_cfg.name == "sgd":
        parts += [
            optax.add_decayed_weights(opt_cfg.weight_decay, mask=_decay_mask),
            optax.sgd(schedule, momentum=opt_cfg.momentum),
        ]
    else:
        parts.append(optax.adamw(schedule, weight_decay=opt_cfg.weight_decay, mask=_decay_mask))
    return optax.chain(*parts), schedule


def create_train_state(detector: Detector, config, mesh) -> TrainState:
    """Initialises parameters (replicated over the mesh) from `config.seed`."""
    tx, _ = build_optimizer(config.optimizer, config.schedule)
    h, w = config.input.image_size
    dummy = jnp.zeros((1, h, w, 3), jnp.float32)

    ema_decay = float(config.optimizer.get("ema_decay", 0.0))
    if not 0.0 <= ema_decay < 1.0:
        raise ValueError(f"optimizer.ema_decay must be in [0, 1), got {ema_decay}")

    def init():
        variables = detector.model.init(jax.random.PRNGKey(config.seed), dummy, train=False)
        params = variables["params"]
        batch_stats = variables.get("batch_stats", {})
        ema = {"params": params, "batch_stats": batch_stats} if ema_decay else None
        return TrainState.create(
            apply_fn=detector.model.apply, params=params, batch_stats=batch_stats, tx=tx, ema=ema,
        )

    replicated = NamedSharding(mesh, P())
    abstract = jax.eval_shape(init)
    shardings = jax.tree.map(lambda _: replicated, abstract)
    return jax.jit(init, out_shardings=shardings)()


def make_train_step(detector: Detector, schedule, ema_decay: float = 0.0):
    """`train_step(state, batch) -> (state, metrics)`; jit it with shardings (see `jit_steps`).

    With `ema_decay` > 0 the step also updates `state.ema` (see `ema_decay_at`)."""

    def train_step(state: TrainState, batch):
        def loss_fn(params):
            outputs, new_vars = state.apply_fn(
                {"params": params, "batch_stats": state.batch_stats}, batch["image"], train=True,
                mutable=["batch_stats"],
            )
            loss, aux = detector.loss_fn(outputs, batch)
            return loss, (aux, new_vars["batch_stats"])

        (loss, (aux, batch_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        new_state = state.apply_gradients(grads=grads, batch_stats=batch_stats)
        if ema_decay:
            d = ema_decay_at(state.step, ema_decay)
            live = {"params": new_state.params, "batch_stats": batch_stats}
            new_state = new_state.replace(
                ema=jax.tree.map(lambda e, x: d * e + (1.0 - d) * x, state.ema, live)
            )
        metrics = {
            "loss": loss,
            "grad_norm": optax.global_norm(grads),
            "learning_rate": schedule(state.step),
            "num_boxes_lost": jnp.sum(batch["num_boxes_lost"]),
            "num_zero_area_dropped": jnp.sum(batch["num_zero_area_dropped"]),
            **aux,
        }
        return new_state, metrics

    return train_step


def make_eval_step(detector: Detector, with_raw: bool = False):
    """`eval_step(state, images)` -> padded detections; with `with_raw` also the pre-NMS
    candidates under key "raw" (one forward pass for both)."""

    def eval_step(state: TrainState, images):
        outputs = state.apply_fn(eval_variables(state), images, train=False)
        dets = detector.postprocess_fn(outputs)
        if with_raw and detector.raw_fn is not None:
            dets = {**dets, "raw": detector.raw_fn(outputs)}
        return dets

    return eval_step


def jit_steps(train_detector, eval_detector, schedule, mesh, state, ema_decay: float = 0.0,
              with_raw: bool = False):
    """Jitted train and eval steps with explicit shardings (state replicated, batch sharded).

    The two detectors share one module; they differ only in anchors when training uses crops.
    `with_raw`: the eval step also returns the pre-NMS candidates (see `make_eval_step`)."""
    repl = NamedSharding(mesh, P())
    data = NamedSharding(mesh, P("data"))
    state_sh = jax.tree.map(lambda _: repl, state)
    train_step = jax.jit(
        make_train_step(train_detector, schedule, ema_decay),
        in_shardings=(state_sh, data), out_shardings=(state_sh, repl), donate_argnums=(0,),
    )
    eval_step = jax.jit(
        make_eval_step(eval_detector, with_raw), in_shardings=(state_sh, data),
        out_shardings=data,
    )
    return train_step, eval_step


def to_global(batch: dict, mesh) -> dict:
    """Per-process numpy batch -> global jax arrays sharded over the data axis."""
    sharding = NamedSharding(mesh, P("data"))
    return {
        k: jax.make_array_from_process_local_data(sharding, np.asarray(v))
        for k, v in batch.items()
    }


def _checkpoint_manager(workdir, ckpt_cfg, read_only=False) -> ocp.CheckpointManager:
    options = ocp.CheckpointManagerOptions(
        max_to_keep=ckpt_cfg.max_to_keep, save_interval_steps=ckpt_cfg.every_steps,
        create=not read_only, read_only=read_only,
    )
    return ocp.CheckpointManager(os.path.join(os.path.abspath(workdir), "checkpoints"), options=options)


def restore_state(mgr: ocp.CheckpointManager, state: TrainState, step: int | None = None):
    """Restores `step` (latest if None) into the structure and shardings of `state`."""
    if step is None:
        step = mgr.latest_step()
        if step is None:
            return state, None
    elif step not in mgr.all_steps():
        raise FileNotFoundError(
            f"No checkpoint for step {step} in {mgr.directory}; available: {list(mgr.all_steps())}"
        )
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, state)
    try:
        restored = mgr.restore(step, args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # orbax raises several types for corrupt or mismatched checkpoints
        restored = _restore_without_ema(mgr, step, abstract) if state.ema is None else None
        if restored is None:
            raise RuntimeError(
                f"Could not restore checkpoint step {step} from {mgr.directory}: {e}. "
                "Is it from a different config (model size / optimizer / optimizer.ema_decay)? "
                "Use another --workdir."
            ) from e
        restored = state.replace(**restored)
    return restored, step


def _restore_without_ema(mgr, step, abstract):
    """Checkpoints written before `TrainState.ema` existed have no `ema` entry at all (a None
    field is saved as an empty entry); restore their four fields, or return None."""
    fields = ("step", "params", "batch_stats", "opt_state")
    try:
        return mgr.restore(
            step, args=ocp.args.StandardRestore({k: getattr(abstract, k) for k in fields})
        )
    except Exception:  # not such a checkpoint either: the caller reports the first error
        return None


# ----------------------------------------------------------------------------- logging


class Progress:
    """Console progress with steps/s and ETA, plus TensorBoard scalars and a JSONL log."""

    def __init__(self, workdir, total_steps, start_step, is_main):
        self.total = total_steps
        self.is_main = is_main
        self.t0 = time.time()
        self.last_t = self.t0
        self.last_step = start_step
        self.writer = None
        self.jsonl = None
        if is_main:
            self.writer = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
            self.jsonl = open(os.path.join(workdir, "train_metrics.jsonl"), "a")

    def log_train(self, step, metrics: dict):
        now = time.time()
        rate = (step - self.last_step) / max(now - self.last_t, 1e-9)
        self.last_t, self.last_step = now, step
        eta = (self.total - step) / rate if rate > 0 else float("nan")
        if not self.is_main:
            return
        terms = " ".join(f"{k}={v:.4g}" for k, v in metrics.items() if k != "learning_rate")
        print(
            f"step {step}/{self.total} | {terms} | lr={metrics['learning_rate']:.3g} | "
            f"{rate:.2f} steps/s | ETA {_fmt_time(eta)}",
            flush=True,
        )
        self.scalars(step, {f"train/{k}": v for k, v in metrics.items()})
        self.jsonl.write(json.dumps({"step": step, **{k: float(v) for k, v in metrics.items()}}) + "\n")
        self.jsonl.flush()

    def scalars(self, step, values: dict):
        if self.writer is None:
            return
        with self.writer.as_default():
            for k, v in values.items():
                tf.summary.scalar(k, float(v), step=step)
        self.writer.flush()

    def close(self):
        if self.jsonl:
            self.jsonl.close()
        if self.writer:
            self.writer.close()


def _fmt_time(seconds):
    if not math.isfinite(seconds):
        return "?"
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}h{m:02d}m{s:02d}s" if h else f"{m}m{s:02d}s"


def _check_finite(step_metrics: list[tuple[int, dict]]):
    for step, m in step_metrics:
        if not np.isfinite(m["loss"]):
            terms = {k: float(v) for k, v in m.items()}
            raise NonFiniteLossError(
                f"Loss became non-finite at step {step} ({terms}). Training stopped; the last "
                "checkpoint is untouched. Lower optimizer.learning_rate or enable "
                "optimizer.grad_clip_norm."
            )


# ----------------------------------------------------------------------------- evaluation


def run_detection(detector, eval_step, state, builder, config, mesh, split, raw=None):
    """Runs the detector over `split`; returns (CityPersons-style detections list, num images).

    If `raw` is a list and the eval step returns pre-NMS candidates, their records are appended
    to it."""
    ds, n = pipeline.eval_dataset(
        builder, config.input, split, config.eval.max_images, jax.process_index(),
        jax.process_count(),
    )
    dets = []
    it = pipeline.as_numpy_iterator(ds)
    while True:
        try:
            local = next(it)
        except StopIteration:
            break
        except tf.errors.InvalidArgumentError as e:
            raise pipeline.explain_decode_error(builder, split, e) from None
        meta = {k: local.pop(k) for k in ("image_id", "scale_xy", "example_valid")}
        batch = to_global({"image": local["image"]}, mesh)
        out = eval_step(state, batch["image"])
        out = multihost_utils.process_allgather(out, tiled=True)
        meta = multihost_utils.process_allgather(meta, tiled=True)
        dets.extend(detections_to_records(out, meta))
        if raw is not None and "raw" in out:
            raw.extend(detections_to_records(out["raw"], meta))
    return dets, n


def detections_to_records(out: dict, meta: dict) -> list[dict]:
    """Padded detections (network-input pixels, xyxy) -> CityPersons/COCO result records
    (`bbox` [x, y, w, h] in pixels of the stored image)."""
    records = []
    boxes = np.asarray(out["boxes"], np.float64)
    scale = np.asarray(meta["scale_xy"], np.float64)
    for b in range(boxes.shape[0]):
        if not meta["example_valid"][b]:
            continue
        sx, sy = scale[b]
        for d in np.flatnonzero(out["valid"][b]):
            x1, y1, x2, y2 = boxes[b, d]
            records.append({
                "image_id": int(meta["image_id"][b]),
                "category_id": 1,
                "bbox": [round(x1 * sx, 2), round(y1 * sy, 2), round((x2 - x1) * sx, 2),
                         round((y2 - y1) * sy, 2)],
                "score": round(float(out["scores"][b, d]), 5),
            })
    return records


def eval_ground_truth(builder, split, max_images, path) -> dict:
    """Exports (once) and loads the split's ground truth in the CityPersons evaluation format."""
    if not os.path.exists(path):
        ds = builder.as_dataset(split=split, shuffle_files=False)
        if max_images:
            ds = ds.take(max_images)
        export_citypersons_gt(tfds.as_numpy(ds), path)
    return miss_rate.load_gt(path)


def _example_images(builder, split, k: int) -> list[tuple]:
    """The first `k` images of `split` as (image id, [H, W, 3] uint8) pairs."""
    if k <= 0:
        return []
    return [(int(ex["image/id"]), ex["image"])
            for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False).take(k))]


def draw_examples(builder, split, dets, config, path):
    """PNG of the first few images with ground truth (green/yellow) and detections (red)."""
    k = int(config.eval.num_images_to_draw)
    if k <= 0:
        return
    by_image: dict[int, list] = {}
    for d in dets:
        by_image.setdefault(d["image_id"], []).append(d)
    panels = []
    for ex in tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False).take(k)):
        img = ex["image"]
        h, w = img.shape[:2]
        o = ex["objects"]
        gt = np.asarray(o["bbox"], np.float64).reshape(-1, 4)[:, [1, 0, 3, 2]] * [w, h, w, h]
        ds_ = by_image.get(int(ex["image/id"]), [])
        db = np.array([d["bbox"] for d in ds_], np.float64).reshape(-1, 4)
        db[:, 2:] += db[:, :2]
        panels.append(visualize.draw_detections(
            img, gt, np.asarray(o["ignore"], bool), db,
            np.array([d["score"] for d in ds_], np.float64),
            score_threshold=config.eval.draw_score_threshold,
        ))
    visualize.save_grid(panels, path, ncols=1 if w > h else 2)


def evaluate_checkpoint(detector, eval_step, state, builder, config, mesh, workdir, step,
                        progress: Progress | None = None) -> dict:
    """Detections, MR^-2 for every setup, COCO AP, JSON files and a PNG under workdir/eval/<step>."""
    split = config.input.eval_split
    t0 = time.time()
    raw: list = []
    dets, n = run_detection(detector, eval_step, state, builder, config, mesh, split, raw)
    infer_s = time.time() - t0
    if jax.process_index() != 0:
        return {}
    out_dir = os.path.join(workdir, "eval", str(step))
    os.makedirs(out_dir, exist_ok=True)
    gt = eval_ground_truth(
        builder, split, config.eval.max_images,
        os.path.join(workdir, "eval", f"gt_{split}_{config.eval.max_images or 'all'}.json"),
    )
    mr = miss_rate.evaluate_miss_rate(gt, dets)
    ap = coco_ap.coco_ap(gt, dets)
    metrics = {
        "step": int(step), "split": split, "num_images": n, "num_detections": len(dets),
        "miss_rate": mr, "coco": ap, "inference_images_per_s": n / max(infer_s, 1e-9),
    }
    atomic_write_json(dets, os.path.join(out_dir, "detections.json"))
    draw_examples(builder, split, dets, config, os.path.join(out_dir, "detections.png"))
    if config.eval.analysis:
        t1 = time.time()
        metrics.update(analysis.analyse_eval_dir(
            gt, dets, raw or None, out_dir, step=int(step), metrics=metrics,
            images=_example_images(builder, split, int(config.eval.num_images_to_draw)),
            max_detections=int(config.inference.max_detections),
        ))
        metrics["analysis_seconds"] = time.time() - t1
    atomic_write_json(metrics, os.path.join(out_dir, "metrics.json"))
    if config.eval.analysis:
        analysis.write_index(out_dir, metrics)
    print(format_miss_rate_table(step, mr, ap), flush=True)
    if progress is not None:
        progress.scalars(step, {**{f"eval/MR_{k}": v for k, v in mr.items()},
                                **{f"eval/{k}": v for k, v in ap.items()}})
    return metrics


def format_miss_rate_table(step, mr: dict, ap: dict) -> str:
    lines = [f"Evaluation at step {step} (MR^-2, lower is better)", f"{'setup':<24}{'MR^-2':>8}"]
    # -1 is the official evaluator's value for a setup without any non-ignored ground truth.
    lines += [f"{k:<24}{v * 100:>7.2f}%" if v >= 0 else f"{k:<24}{'n/a':>8}" for k, v in mr.items()]
    # COCO's -1: no ground truth of that size (APs / APm / APl).
    lines += [f"{'COCO ' + k:<24}{v * 100:>7.2f}%" if v >= 0 else f"{'COCO ' + k:<24}{'n/a':>8}"
              for k, v in ap.items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry points


def _setup(config, workdir):
    os.makedirs(workdir, exist_ok=True)
    mesh = create_mesh(config.mesh.num_devices)
    pipeline.check_batch_size(config.input.batch_size, jax.process_count(), mesh.size)
    pipeline.check_batch_size(config.input.eval_batch_size, jax.process_count(), mesh.size)
    detector = build_detector(config)
    train_detector = build_detector(config, pipeline.train_input_size(config.input))
    # One process prepares the data; the others wait and then open the prepared copy.
    if jax.process_index() == 0:
        builder = pipeline.get_builder(config.input.dataset, config.input.data_dir,
                                       config.input.manual_dir)
    multihost_utils.sync_global_devices("dataset ready")
    if jax.process_index() != 0:
        builder = pipeline.get_builder(config.input.dataset, config.input.data_dir,
                                       config.input.manual_dir)
    state = create_train_state(detector, config, mesh)
    _, schedule = build_optimizer(config.optimizer, config.schedule)
    train_step, eval_step = jit_steps(
        train_detector, detector, schedule, mesh, state, float(config.optimizer.ema_decay),
        with_raw=bool(config.eval.analysis),
    )
    if jax.process_index() == 0:
        with open(os.path.join(workdir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    return mesh, detector, builder, state, train_step, eval_step


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str,
                       stop_at_step: int | None = None) -> dict:
    """Trains (resuming from the latest checkpoint in `workdir`), evaluates, returns metrics.

    `stop_at_step` ends the run early as if it had been interrupted there (for tests/debugging).
    """
    mesh, detector, builder, state, train_step, eval_step = _setup(config, workdir)
    mgr = _checkpoint_manager(workdir, config.checkpoint)
    state, restored = restore_state(mgr, state)
    start = int(state.step)
    total = int(config.schedule.total_steps)
    is_main = jax.process_index() == 0
    if restored is not None and is_main:
        print(f"Resumed from checkpoint step {restored} in {mgr.directory}", flush=True)
    progress = Progress(workdir, total, start, is_main)
    data = pipeline.as_numpy_iterator(pipeline.train_dataset(
        builder, config.input, config.seed, start, jax.process_index(), jax.process_count()
    ))
    pending: list[tuple[int, dict]] = []
    last_eval: dict = {}
    end = total if stop_at_step is None else min(total, stop_at_step)
    log_every = max(int(config.log_every_steps), 1)
    try:
        for step in range(start + 1, end + 1):
            try:
                local = next(data)
            except tf.errors.InvalidArgumentError as e:
                if "max_boxes" in e.message:  # the overflow check names its image already
                    raise ValueError(e.message) from None
                raise pipeline.explain_decode_error(builder, config.input.train_split, e) from None
            local.pop("image_id"), local.pop("scale_xy")
            state, metrics = train_step(state, to_global(local, mesh))
            pending.append((step, metrics))
            is_ckpt = step % config.checkpoint.every_steps == 0 or step == total
            is_eval = step % config.eval.every_steps == 0 or step == total
            if step % log_every == 0 or is_ckpt or is_eval or step == end:
                fetched = [(s, jax.device_get(m)) for s, m in pending]
                pending.clear()
                _check_finite(fetched)  # before any save: never checkpoint a diverged state
                mean = {k: float(np.mean([m[k] for _, m in fetched])) for k in fetched[-1][1]}
                mean["learning_rate"] = float(fetched[-1][1]["learning_rate"])
                progress.log_train(step, mean)
            if is_ckpt:
                mgr.save(step, args=ocp.args.StandardSave(state), force=(step == total))
            if is_eval:
                last_eval = evaluate_checkpoint(
                    detector, eval_step, state, builder, config, mesh, workdir, step, progress
                )
    finally:
        mgr.wait_until_finished()
        mgr.close()
        progress.close()
    return last_eval


def evaluate(config: ml_collections.ConfigDict, workdir: str, step: int | None = None) -> dict:
    """Restores `step` (latest if None) from `workdir` and evaluates it."""
    ckpt_dir = os.path.join(os.path.abspath(workdir), "checkpoints")
    if not os.path.isdir(ckpt_dir):
        raise FileNotFoundError(
            f"No checkpoints in {ckpt_dir}: train first (python main.py --config ... --workdir "
            f"{workdir})"
        )
    mesh, detector, builder, state, _, eval_step = _setup(config, workdir)
    mgr = _checkpoint_manager(workdir, config.checkpoint, read_only=True)
    state, restored = restore_state(mgr, state, step)
    if restored is None:
        raise FileNotFoundError(f"No checkpoint found in {ckpt_dir}")
    mgr.close()
    return evaluate_checkpoint(detector, eval_step, state, builder, config, mesh, workdir, restored)
