"""Crowd-loss ablation: baseline vs +RepGT / +RepBox / both / HarmonicDet, over seeds.

  python -m tools.ablation --config configs/quickstart.py --workdir runs/ablation

For every (variant, seed) it trains the base config with that variant's `loss.terms`
(`configs.common.LOSS_VARIANTS`) and that seed in `<workdir>/<variant>/seed<k>` (a finished run
is reused; an interrupted one resumes from its checkpoint), then makes ONE pass over the
validation split with the final checkpoint that yields:
  * detections post-processed at every NMS threshold of `--nms` (the RepBox paper's Figure 6:
    MR^-2 as a function of the NMS threshold, from the same network outputs);
  * MR^-2 on Reasonable and Heavy (official CityPersons setups) and on the RepLoss paper's
    reasonable-crowd subset (`evaluation.crowd_subsets`), at the config's NMS threshold;
  * AIC (Harmonic Loss eq. 14) over the validation images' positive anchors (the training target
    assignment), |score - IoU of the regressed box with its ground truth|, averaged.
Writes `<workdir>/ablation.json` (every run's numbers), `ablation.md` (the table: mean and
min-max over seeds) and `ablation_nms.png` (MR^-2 Reasonable vs NMS threshold per variant), and
prints the table. `--steps` shortens every run's schedule (same for all variants).
"""

from __future__ import annotations

import json
import os
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags, logging  # noqa: E402
from jax.experimental import multihost_utils  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/quickstart.py", "Base config (its loss terms "
                                "are replaced by each variant's).")
flags.DEFINE_string("workdir", "runs/ablation", "Where runs and results go.")
flags.DEFINE_list("variants", ["baseline", "rep_gt", "rep_box", "rep_gt+rep_box", "harmonic"],
                  "Variants from configs.common.LOSS_VARIANTS.")
flags.DEFINE_list("seeds", ["0", "1"], "Seeds (model init and data order), at least 2.")
flags.DEFINE_list("nms", ["0.3", "0.4", "0.5", "0.6", "0.7"], "NMS IoU thresholds to sweep.")
flags.DEFINE_integer("steps", 0, "If > 0, train this many steps (schedule shortened to match).")

METRIC_SETUPS = ("Reasonable", "Heavy")


def variant_config(base, variant: str, seed: int, steps: int = 0):
    """`base` with the variant's loss terms, `seed`, and optionally a shorter schedule."""
    from configs import common

    c = base.copy_and_resolve_references()
    with c.unlocked():
        common.with_loss_variant(c, variant)
        c.seed = int(seed)
        if steps > 0:
            c.schedule.total_steps = int(steps)
            c.schedule.warmup_steps = min(int(c.schedule.warmup_steps), max(int(steps) // 8, 1))
            c.schedule.boundaries = tuple(
                int(b * steps / base.schedule.total_steps) for b in base.schedule.boundaries
            )
            c.eval.every_steps = int(steps)
            c.checkpoint.every_steps = min(int(c.checkpoint.every_steps), int(steps))
    return c


def _nms_detectors(config, thresholds):
    from detectors.builder import build_detector

    out = {}
    for t in thresholds:
        c = config.copy_and_resolve_references()
        with c.unlocked():
            c.inference.nms_iou = float(t)
        out[float(t)] = build_detector(c)
    return out


def analyse_checkpoint(config, workdir: str, thresholds) -> dict:
    """One validation pass of the final checkpoint: detections per NMS threshold and AIC."""
    import train
    from evaluation import crowd_subsets, miss_rate
    from input_pipeline import pipeline

    mesh, detector, builder, state, _, _ = train._setup(config, workdir)
    mgr = train._checkpoint_manager(workdir, config.checkpoint, read_only=True)
    state, step = train.restore_state(mgr, state)
    mgr.close()
    if step is None:
        raise FileNotFoundError(f"No checkpoint in {workdir}/checkpoints to analyse")
    by_nms = _nms_detectors(config, thresholds)

    @jax.jit
    def forward(state, batch):
        outputs = state.apply_fn(train.eval_variables(state), batch["image"], train=False)
        _, aux = detector.loss_fn(outputs, batch)  # targets as in training: positives' AIC
        dets = {t: d.postprocess_fn(outputs) for t, d in by_nms.items()}
        return aux["aic"] * aux["num_pos"], aux["num_pos"], dets

    split = config.input.eval_split
    ds, _ = pipeline.eval_dataset(builder, config.input, split, config.eval.max_images,
                                  jax.process_index(), jax.process_count())
    records = {t: [] for t in by_nms}
    aic_sum = num_pos = 0.0
    for local in pipeline.as_numpy_iterator(ds):
        meta = {k: local.pop(k) for k in ("image_id", "scale_xy")}
        meta["example_valid"] = local["example_valid"]
        s, n, dets = forward(state, train.to_global(local, mesh))
        aic_sum += float(s)
        num_pos += float(n)
        meta = multihost_utils.process_allgather(meta, tiled=True)
        for t, out in dets.items():
            out = multihost_utils.process_allgather(out, tiled=True)
            records[t].extend(train.detections_to_records(out, meta))
    gt = train.eval_ground_truth(
        builder, split, config.eval.max_images,
        os.path.join(workdir, "eval", f"gt_{split}_{config.eval.max_images or 'all'}.json"),
    )
    default_nms = float(config.inference.nms_iou)
    result = {"step": int(step), "aic": aic_sum / max(num_pos, 1.0), "val_positives": num_pos,
              "mr_vs_nms": {}}
    for t, dets in records.items():
        result["mr_vs_nms"][f"{t:g}"] = miss_rate.evaluate_miss_rate(gt, dets, ["Reasonable"])[
            "Reasonable"]
    dets = records.get(default_nms)
    if dets is None:
        dets = train.run_detection(detector, jax.jit(train.make_eval_step(detector)), state,
                                   builder, config, mesh, split)[0]
    result.update(miss_rate.evaluate_miss_rate(gt, dets, list(METRIC_SETUPS)))
    result["Reasonable_crowd"] = crowd_subsets.evaluate_crowd_subsets(gt, dets)["Reasonable_crowd"]
    return result


COLUMNS = ("Reasonable", "Heavy", "Reasonable_crowd", "aic")


def _fmt(values, pct=True):
    v = np.asarray(values, np.float64)
    scale = 100.0 if pct else 1.0
    if v.size == 1:
        return f"{scale * v[0]:.1f}" if pct else f"{v[0]:.3f}"
    if pct:
        return f"{scale * v.mean():.1f} ({scale * v.min():.1f}-{scale * v.max():.1f})"
    return f"{v.mean():.3f} ({v.min():.3f}-{v.max():.3f})"


def summarise(results: dict, thresholds) -> str:
    """Markdown table: mean (min-max) over seeds of each variant's metrics."""
    keys = [f"{float(t):g}" for t in thresholds]
    head = ["variant", "seeds", "MR Reasonable", "MR Heavy", "MR R-crowd", "AIC"]
    head += [f"MR R @NMS {k}" for k in keys]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for variant, runs in results.items():
        if not runs:
            continue
        row = [variant, str(len(runs))]
        for col in COLUMNS:
            row.append(_fmt([r[col] for r in runs.values()], pct=(col != "aic")))
        for k in keys:
            row.append(_fmt([r["mr_vs_nms"][k] for r in runs.values()]))
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def plot_nms(results: dict, thresholds, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [f"{float(t):g}" for t in thresholds]
    xs = [float(t) for t in thresholds]
    fig, ax = plt.subplots(figsize=(6, 4))
    for variant, runs in results.items():
        if not runs:
            continue
        ys = np.array([[r["mr_vs_nms"][k] for k in keys] for r in runs.values()]) * 100
        ax.plot(xs, ys.mean(0), marker="o", label=f"{variant} (n={len(runs)})")
        if len(runs) > 1:
            ax.fill_between(xs, ys.min(0), ys.max(0), alpha=0.15)
    ax.set_xlabel("NMS IoU threshold")
    ax.set_ylabel("MR$^{-2}$ Reasonable (%)")
    ax.set_title("Miss rate vs NMS threshold (mean, min-max over seeds)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = path + ".tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


# Where data lives, and the loss terms (every variant sets its own), are not part of the base.
_LOCATION_KEYS = ("input.data_dir", "input.manual_dir", "loss.terms")


def _config_diff(a, b, prefix=""):
    """Dotted keys present in both nested config dicts whose values differ (keys added to the
    config since `a` was written, and data locations, are not differences of the experiment)."""
    out = []
    for k in sorted(set(a) & set(b)):
        x, y = a[k], b[k]
        if isinstance(x, dict) and isinstance(y, dict):
            out += _config_diff(x, y, f"{prefix}{k}.")
        elif x != y and f"{prefix}{k}" not in _LOCATION_KEYS:
            out.append(f"{prefix}{k}")
    return out


def main(argv):
    del argv
    if not FLAGS["verbosity"].present:  # TFDS / orbax INFO lines would drown the progress lines
        logging.set_verbosity(logging.WARNING)
    import train
    from configs import common
    from evaluation.io import atomic_write_json

    unknown = [v for v in FLAGS.variants if v not in common.LOSS_VARIANTS]
    if unknown:
        raise app.UsageError(f"Unknown variant(s) {unknown}; valid: {list(common.LOSS_VARIANTS)}")
    try:
        seeds = [int(s) for s in FLAGS.seeds]
        thresholds = [float(t) for t in FLAGS.nms]
    except ValueError as e:
        raise app.UsageError(f"--seeds takes integers and --nms numbers: {e}") from None
    if not all(0.0 < t <= 1.0 for t in thresholds):
        raise app.UsageError(f"--nms thresholds must be in (0, 1], got {thresholds}")
    base = FLAGS.config
    os.makedirs(FLAGS.workdir, exist_ok=True)
    summary_path = os.path.join(FLAGS.workdir, "ablation.json")
    results: dict = {}
    if os.path.exists(summary_path):
        with open(summary_path) as f:
            saved = json.load(f)
        results = saved.get("runs", {})
        # Reusing finished runs is only sound for the same base config: a changed default (say
        # the quick start's scale jitter) would silently mix two experiments in one table.
        old, new = saved.get("base_config"), json.loads(json.dumps(base.to_dict(), default=str))
        if results and old is not None and old != new:
            diff = sorted(_config_diff(old, new))
            raise app.UsageError(
                f"{summary_path} was made with a different base config ({', '.join(diff[:6])}"
                f"{' ...' if len(diff) > 6 else ''}); use another --workdir, or pass the same "
                "settings as overrides.")
    # Seed-major: an interrupted ablation still has every variant at the first seed.
    todo = [(v, s) for s in seeds for v in FLAGS.variants]
    # ETA from the runs this process trained from scratch (reused and resumed ones are shorter).
    fresh_runs, fresh_seconds = 0, 0.0
    for i, (variant, seed) in enumerate(todo):
        wd = os.path.join(FLAGS.workdir, variant, f"seed{seed}")
        done = results.get(variant, {}).get(str(seed))
        cfg = variant_config(base, variant, seed, FLAGS.steps)
        if done is not None and done.get("step") == int(cfg.schedule.total_steps):
            print(f"[{i + 1}/{len(todo)}] {variant} seed {seed}: done before, reused", flush=True)
            continue
        left = len(todo) - i
        eta = (f", ETA {fresh_seconds / fresh_runs * left / 60:.0f} min" if fresh_runs
               else f", {left} run(s) to train")
        print(f"[{i + 1}/{len(todo)}] {variant} seed {seed}: training in {wd}{eta}", flush=True)
        resumed = os.path.isdir(os.path.join(wd, "checkpoints"))
        t_run = time.time()
        train.train_and_evaluate(cfg, wd)
        r = analyse_checkpoint(cfg, wd, thresholds)
        if not resumed:
            fresh_runs += 1
            fresh_seconds += time.time() - t_run
        r["terms"] = list(cfg.loss.terms)
        results.setdefault(variant, {})[str(seed)] = r
        if jax.process_index() == 0:  # after every run, so an interruption loses nothing
            atomic_write_json({"base_config": base.to_dict(), "steps": FLAGS.steps,
                               "nms": thresholds, "runs": results}, summary_path)
    ordered = {v: results.get(v, {}) for v in FLAGS.variants}
    table = summarise(ordered, thresholds)
    if jax.process_index() == 0:
        with open(os.path.join(FLAGS.workdir, "ablation.md"), "w") as f:
            f.write(table + "\n")
        plot_nms(ordered, thresholds, os.path.join(FLAGS.workdir, "ablation_nms.png"))
    print(table)


if __name__ == "__main__":
    app.run(main)
