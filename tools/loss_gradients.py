"""Which loss term drives the update? Per-term gradient norms of a RetinaNet checkpoint.

  python -m tools.loss_gradients --config configs/quickstart.py \
      --workdir runs/ablation/baseline/seed0 --terms focal,smooth_l1,rep_gt,rep_box \
      --out runs/loss_gradients.json

For `--batches` training batches (the config's seed and augmentation, from the first step), at
the checkpoint's parameters (latest, `--step N`, or `--step 0` for the initialisation), it
reports for every term of `--terms` the global L2 norm of the gradient of that term as it enters
the objective (times its config weight), the norm of the summed gradient, and the factor by which
the config's `optimizer.grad_clip_norm` would scale the update (1 = not clipped). A term whose
gradient norm is far above the others' dominates the update direction, and through clipping
shrinks every other term's step.

With `rep_gt` among the terms it also reports, over positive anchors that have a repulsion ground
truth, the IoG of the regressed box with that ground truth and each box's "pull": the norm of the
gradient of Smooth_ln(IoG) (RepLoss eqs. 4-5) with respect to the box's four coordinates, times
the box height (so boxes of all sizes compare). With sigma = 1 the slope in IoG is 1 / (1 - IoG),
so boxes overlapping most of a neighbour pull hardest.

The checkpoint may come from a run with other loss terms (the terms only enter the objective).
Prints a table; `--out` writes the numbers as JSON.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS


def define_flags():
    """The CLI's flags; defined only when run as a program, so importing this module (tests,
    notebooks, other tools with their own --config) never collides with another --config."""
    config_flags.DEFINE_config_file("config", "configs/quickstart.py", "Config of the checkpoint.")
    flags.DEFINE_string("workdir", None, "Run directory with checkpoints/ (not needed for --step 0).")
    flags.DEFINE_integer("step", None, "Checkpoint step (default latest; 0 = fresh initialisation).")
    flags.DEFINE_list("terms", ["focal", "smooth_l1", "rep_gt", "rep_box"], "Loss terms to compare.")
    flags.DEFINE_integer("batches", 4, "Training batches to average over (median reported).")
    flags.DEFINE_string("out", None, "Write the results as JSON here.")


# loss term -> (key of the normalised term in the loss aux dict, config weight name)
TERM_KEYS = {
    "focal": ("focal", "focal_weight"),
    "smooth_l1": ("box_smooth_l1", "box_weight"),
    "rep_gt": ("rep_gt", "rep_gt_weight"),
    "rep_box": ("rep_box", "rep_box_weight"),
    "harmonic": ("harmonic", "harmonic_weight"),
}


def tree_norm_rows(tree) -> jnp.ndarray:
    """`[T]` L2 norms of the rows of a pytree whose leaves all have a leading axis T."""
    sq = [jnp.sum(jnp.reshape(x, (x.shape[0], -1)) ** 2, axis=1) for x in jax.tree.leaves(tree)]
    return jnp.sqrt(sum(sq))


def make_term_gradients(detector, terms, loss_cfg, target_cfg):
    """Jitted `(params, batch_stats, batch) -> (per_term [T], total, rep [B, N, 2])`.

    per_term: gradient norm of each weighted term of `terms`; total: norm of their summed
    gradient; rep: per anchor, IoG with its repulsion ground truth and the box's RepGT pull
    (NaN where the anchor is not a positive with a repulsion target; `[0, 2]` without rep_gt).
    The target assignment and box decoding are the loss's own (`detectors.retinanet`).
    """
    from detectors import retinanet
    from detectors.ops import box_coder
    from losses import box_overlap, repulsion

    keys = [TERM_KEYS[t] for t in terms]
    anchors = jnp.asarray(detector.anchors)

    def weighted_terms(params, batch_stats, batch):
        outputs, _ = detector.model.apply(
            {"params": params, "batch_stats": batch_stats}, batch["image"], train=True,
            mutable=["batch_stats"],
        )
        _, aux = detector.loss_fn(outputs, batch)
        return jnp.stack([loss_cfg[w] * aux[k] for k, w in keys]), outputs

    sigma = float(loss_cfg.rep_gt_sigma)

    def box_pull(box, rep_box):
        """|d Smooth_ln(IoG(box, rep_box)) / d box| in units of the box's height."""
        g = jax.grad(lambda b: repulsion.smooth_ln(box_overlap.iog(b, rep_box), sigma))(box)
        return jnp.linalg.norm(g) * (box[3] - box[1])

    def rep_iog(outputs, batch):
        """[B, N, 2]: IoG(regressed box, its repulsion gt) and its RepGT pull; NaN if not counted."""
        def one(deltas, g, gv, ig, iv):
            t = retinanet.assign_image_targets(anchors, g, gv, ig, iv, target_cfg)
            positive = t["labels"] == 1
            target = jnp.where(positive, t["matched_gt_idx"], -1)
            rep = repulsion.repulsion_gt_index(anchors, g, gv, target)
            boxes = box_coder.decode_boxes(deltas.astype(jnp.float32), anchors,
                                           weights=tuple(target_cfg.box_weights))
            rep_boxes = g[jnp.maximum(rep, 0)]
            val = jnp.stack([box_overlap.iog(boxes, rep_boxes),
                             jax.vmap(box_pull)(boxes, rep_boxes)], -1)
            return jnp.where((positive & (rep >= 0))[:, None], val, jnp.nan)

        return jax.vmap(one)(outputs["box_deltas"], batch["gt_boxes"], batch["gt_valid"],
                             batch["ignore_boxes"], batch["ignore_valid"])

    @jax.jit
    def fn(params, batch_stats, batch):
        jac, outputs = jax.jacrev(weighted_terms, has_aux=True)(params, batch_stats, batch)
        per_term = tree_norm_rows(jac)
        total = jnp.sqrt(sum(jnp.sum(jnp.sum(x, 0) ** 2) for x in jax.tree.leaves(jac)))
        iog = rep_iog(outputs, batch) if "rep_gt" in terms else jnp.zeros((0, 2))
        return per_term, total, iog

    return fn


def analyse(config, workdir, step, terms, num_batches) -> dict:
    """Per-term gradient norms (median over batches) and RepGT IoG statistics; see module doc."""
    import train
    from detectors.builder import build_detector
    from input_pipeline import pipeline

    unknown = [t for t in terms if t not in TERM_KEYS]
    if unknown:
        raise ValueError(f"--terms: unknown {unknown}; valid: {list(TERM_KEYS)}")
    c = config.copy_and_resolve_references()
    with c.unlocked():
        c.loss.terms = tuple(terms)
    detector = build_detector(c, pipeline.train_input_size(c.input))
    full = build_detector(c)
    mesh = train.create_mesh(1)
    state = train.create_train_state(full, c, mesh)
    if step != 0:
        if not workdir:
            raise ValueError("--workdir is needed to restore a checkpoint (or pass --step 0)")
        ckpt = os.path.join(os.path.abspath(workdir), "checkpoints")
        if not os.path.isdir(ckpt):
            raise FileNotFoundError(f"No checkpoints in {ckpt}; train first or pass --step 0")
        mgr = train._checkpoint_manager(workdir, c.checkpoint, read_only=True)
        state, step = train.restore_state(mgr, state, step)
        if step is None:
            raise FileNotFoundError(f"No checkpoint steps in {ckpt}")
    builder = pipeline.get_builder(c.input.dataset, c.input.data_dir, c.input.manual_dir)
    data = pipeline.as_numpy_iterator(pipeline.train_dataset(builder, c.input, c.seed))
    fn = make_term_gradients(detector, terms, c.loss, c.targets)
    norms, totals, iogs = [], [], []
    for _ in range(num_batches):
        batch = next(data)
        batch.pop("image_id"), batch.pop("scale_xy")
        per_term, total, iog = jax.device_get(fn(state.params, state.batch_stats, batch))
        norms.append(per_term)
        totals.append(float(total))
        iogs.append(np.asarray(iog).reshape(-1, 2))
    norms = np.asarray(norms)
    clip = float(c.optimizer.get("grad_clip_norm") or 0.0)
    scale = [min(1.0, clip / t) if clip > 0 and t > 0 else 1.0 for t in totals]
    out = {
        "config_terms": list(config.loss.terms), "step": int(step or 0), "batches": num_batches,
        "grad_norm": {t: float(np.median(norms[:, i])) for i, t in enumerate(terms)},
        "grad_norm_total": float(np.median(totals)),
        "grad_clip_norm": clip,
        "clip_scale_median": float(np.median(scale)),
    }
    if "rep_gt" in terms:
        v = np.concatenate(iogs)
        v, pull = v[np.isfinite(v[:, 0]), 0], v[np.isfinite(v[:, 0]), 1]
        hi = v > 0.9
        out["rep_gt_sigma"] = float(c.loss.rep_gt_sigma)
        out["rep_iog"] = {
            "count": int(v.size),
            "median": float(np.median(v)) if v.size else float("nan"),
            "p90": float(np.percentile(v, 90)) if v.size else float("nan"),
            "fraction_above_0.9": float(np.mean(hi)) if v.size else float("nan"),
            "pull_median": float(np.median(pull)) if v.size else float("nan"),
            "pull_p99": float(np.percentile(pull, 99)) if v.size else float("nan"),
            "pull_share_above_0.9": float(pull[hi].sum() / max(pull.sum(), 1e-12)),
        }
    return out


def format_table(r: dict) -> str:
    lines = [f"checkpoint step {r['step']}, {r['batches']} batches, medians",
             "| term (times its weight) | gradient norm |", "|---|---|"]
    lines += [f"| {t} | {v:.3g} |" for t, v in r["grad_norm"].items()]
    lines.append(f"| sum of the terms | {r['grad_norm_total']:.3g} |")
    if r["grad_clip_norm"]:
        lines.append(f"| clip scale at {r['grad_clip_norm']:g} | {r['clip_scale_median']:.3g} |")
    if "rep_iog" in r:
        s = r["rep_iog"]
        lines.append(
            f"\nRepGT (sigma {r['rep_gt_sigma']:g}) over {s['count']} positives with a repulsion "
            f"ground truth: IoG median {s['median']:.3f}, p90 {s['p90']:.3f}, "
            f"{100 * s['fraction_above_0.9']:.1f}% above 0.9; per-box pull |dSmooth_ln/dbox| x "
            f"height: median {s['pull_median']:.3g}, p99 {s['pull_p99']:.3g}, "
            f"{100 * s['pull_share_above_0.9']:.1f}% of the total from IoG > 0.9"
        )
    return "\n".join(lines)


def main(argv):
    del argv
    from evaluation.io import atomic_write_json

    if FLAGS.out:  # before the work, so a bad path fails in seconds, not after it
        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
    try:
        r = analyse(FLAGS.config, FLAGS.workdir, FLAGS.step, FLAGS.terms, FLAGS.batches)
    except (ValueError, FileNotFoundError, RuntimeError) as e:  # bad flags, workdir, checkpoint
        print(f"loss_gradients: {e}", file=sys.stderr)
        sys.exit(2)
    print(format_table(r))
    if FLAGS.out:
        atomic_write_json(r, FLAGS.out)


if __name__ == "__main__":
    define_flags()
    app.run(main)
