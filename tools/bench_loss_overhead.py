r"""Train-step overhead of the Repulsion Loss terms (and HarmonicDet) over the RetinaNet baseline.

  python -m tools.bench_loss_overhead --config configs/retinanet_r50.py \
      --config.input.batch_size=2 --positives_per_image 2000 --repeats 3 \
      --out runs/bench_loss_overhead.json

Times the jitted train step (`train.jit_steps`, as `tools/benchmark.py` does) of the same model,
on the same batch and mesh, for several `config.loss.terms` variants:

  baseline        ('focal', 'smooth_l1')
  rep_gt          + 'rep_gt'
  rep_box         + 'rep_box'
  rep_gt+rep_box  + 'rep_gt' + 'rep_box'
  harmonic, harmonic+rep_gt+rep_box   (optional, `--variants`)

The repulsion terms' cost grows with the number of positive anchors (RepBox) and of ground truths
(RepGT), so random boxes (which give a few dozen positives) would under-state it. The batch here is
built so that every image has about `--positives_per_image` positives after the real matcher runs:
its ground truths are the detector's own anchors (an anchor is then a positive of the box equal to
it, and so are its neighbours with IoU >= 0.5), placed in crowds -- rows of pedestrians one anchor
stride apart, IoU ~0.44 between neighbours -- so that positives have other ground truths and other
positives' boxes to be repelled from. The number of boxes of each image is bisected until the
matcher's positive count (`detectors.retinanet.assign_image_targets`) is within `--tolerance` of
the request; `config.input.max_boxes` of this benchmark's copy of the config is raised if needed
(reported).

Timing: each variant is compiled (`lower().compile()`, timed), run once, then `--warmup` untimed
steps; the `--repeats` timed steps are interleaved over the variants (round-robin, rotating the
order) so that load drift on a shared machine hits every variant alike. Reported per variant: the
median step time, its overhead vs the baseline's median, the median of the paired per-round ratios,
the compile time, XLA's cost analysis, and the positives per image the step's loss saw. A separate,
cheap micro-benchmark times the loss alone (forward + gradient w.r.t. the head outputs, no network)
to isolate where the extra time goes (`--loss_repeats 0` disables it).

Flags `--config`, `--repeats`, `--warmup` and `--out` are shared with `tools/benchmark.py` (its
`--what` and `--data_batches` are ignored here). Other jobs on the machine inflate and scatter the
times: the JSON records the load average at the start and the end.
"""

from __future__ import annotations

import os
import platform
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax
import jax.numpy as jnp
import jaxlib
import numpy as np
from absl import app, flags
from ml_collections import config_flags

# Defines --config, --repeats, --warmup, --out (reused here) and --what, --data_batches (unused).
from tools import benchmark as bench

FLAGS = flags.FLAGS
for _name in ("config", "repeats", "warmup", "out"):
    flags.declare_key_flag(_name)  # listed by --help with this tool's own flags

BASE = ("focal", "smooth_l1")
VARIANTS = {
    "baseline": BASE,
    "rep_gt": BASE + ("rep_gt",),
    "rep_box": BASE + ("rep_box",),
    "rep_gt+rep_box": BASE + ("rep_gt", "rep_box"),
    "harmonic": ("harmonic",),
    "harmonic+rep_gt+rep_box": ("harmonic", "rep_gt", "rep_box"),
}
DEFAULT_VARIANTS = ["baseline", "rep_gt", "rep_box", "rep_gt+rep_box"]

flags.DEFINE_integer("positives_per_image", 2000, "Requested positive anchors per image.")
flags.DEFINE_float("tolerance", 0.10, "Accepted relative error of the positives per image.")
flags.DEFINE_list(
    "variants",
    DEFAULT_VARIANTS,
    f"Loss-term variants to time, first is the reference; any of {list(VARIANTS)}.",
)
flags.DEFINE_integer("crowd_min", 2, "Fewest pedestrians in one crowd (a row of anchors).")
flags.DEFINE_integer("crowd_max", 6, "Most pedestrians in one crowd.")
flags.DEFINE_float(
    "level_decay",
    0.5,
    "Crowd seeds on pyramid level l are drawn with weight level_decay^(l - min_level) "
    "(< 1: mostly small pedestrians, as in CityPersons).",
)
flags.DEFINE_integer("batch_seed", 0, "Seed of the synthetic batch.")
flags.DEFINE_integer(
    "loss_repeats", 10, "Timed repetitions of the loss-only micro-benchmark (0 disables it)."
)
flags.DEFINE_bool(
    "interleave",
    True,
    "Interleave the timed steps of the variants (else time each variant in turn "
    "with tools.benchmark._time).",
)


# ----------------------------------------------------------------------------- the crowded batch


def _anchor_grid(image_size, level_sizes, config):
    """Per-anchor (level, row, col, anchor-in-cell) following detectors/ops/anchors.py's order."""
    from detectors.ops import anchors as anchor_ops

    m = config.model
    a = anchor_ops.num_anchors_per_location(m.num_scales, tuple(m.aspect_ratios))
    level, row, col, cell = [], [], [], []
    for l in range(m.min_level, m.max_level + 1):
        h, w = anchor_ops.level_shape(image_size, l)
        y, x, k = np.meshgrid(np.arange(h), np.arange(w), np.arange(a), indexing="ij")
        level.append(np.full(h * w * a, l))
        row.append(y.ravel())
        col.append(x.ravel())
        cell.append(k.ravel())
    grid = tuple(np.concatenate(v) for v in (level, row, col, cell))
    assert grid[0].shape[0] == sum(level_sizes), (
        "anchor order differs from detectors/ops/anchors.py"
    )
    return grid


def crowd_pool(anchors, grid, image_size, pool_size, rng, crowd_min, crowd_max, level_decay):
    """Up to `pool_size` distinct ground-truth boxes `[P, 4]`, each equal to an anchor inside the image.

    Boxes come in crowds: a random seed anchor and the anchors of the same level, scale and row
    1..k-1 strides to its right (neighbouring pedestrians overlap, IoU ~0.44 one stride apart).
    Taking a prefix of the pool adds boxes, so the matcher's positive count grows monotonically
    with the prefix length."""
    level, row, col, cell = grid
    h, w = image_size
    inside = (
        (anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] <= w) & (anchors[:, 3] <= h)
    )
    index = {
        (int(l), int(y), int(x), int(k)): i
        for i, (l, y, x, k) in enumerate(zip(level, row, col, cell))
    }
    levels = np.unique(level[inside])
    if levels.size == 0:
        raise ValueError(f"No anchor fits inside the {image_size} image; cannot place boxes.")
    weights = level_decay ** (levels - levels.min()).astype(np.float64)
    weights /= weights.sum()
    candidates = {int(l): np.flatnonzero(inside & (level == l)) for l in levels}
    chosen, seen = [], set()
    available = int(inside.sum())
    for _ in range(20 * pool_size):
        if len(chosen) >= min(pool_size, available):
            break
        l = int(rng.choice(levels, p=weights))
        seed = int(rng.choice(candidates[l]))
        k = int(rng.integers(crowd_min, crowd_max + 1))
        for dx in range(k):
            i = index.get((int(l), int(row[seed]), int(col[seed]) + dx, int(cell[seed])))
            if i is None or not inside[i] or i in seen:
                continue
            seen.add(i)
            chosen.append(i)
    # Fewer than pool_size when the image has too few anchors inside it (tiny configs).
    return anchors[np.asarray(chosen[:pool_size], np.int64)].reshape(-1, 4)


def _positives_fn(anchors, config):
    """jit: (gt_boxes [B,P,4], num_gt [B]) -> dict of per-image counts from the real matcher."""
    from detectors import retinanet
    from losses import repulsion

    anchors = jnp.asarray(anchors)
    target_cfg = config.targets

    def one(gt, n):
        m = gt.shape[0]
        valid = jnp.arange(m) < n
        no_ignore = jnp.zeros((1, 4), jnp.float32), jnp.zeros((1,), bool)
        t = retinanet.assign_image_targets(anchors, gt, valid, *no_ignore, target_cfg)
        positive = t["labels"] == 1
        target_idx = jnp.where(positive, t["matched_gt_idx"], -1)
        rep_idx = repulsion.repulsion_gt_index(anchors, gt, valid, target_idx)
        return {
            "positives": jnp.sum(positive),
            "ignored": jnp.sum(t["labels"] == -1),
            "positives_with_rep_gt_target": jnp.sum(positive & (rep_idx >= 0)),
        }

    return jax.jit(jax.vmap(one))


def build_crowded_batch(
    config,
    detector,
    image_size,
    batch_size,
    target,
    tolerance,
    seed,
    crowd_min,
    crowd_max,
    level_decay,
):
    """Returns (numpy batch, info) with ~`target` positives per image (see the module doc)."""
    anchors = np.asarray(detector.anchors)
    grid = _anchor_grid(image_size, detector.level_sizes, config)
    count = _positives_fn(anchors, config)
    rng = np.random.default_rng(seed)
    pool_size = 64
    while True:
        pools = [
            crowd_pool(anchors, grid, image_size, pool_size, rng, crowd_min, crowd_max, level_decay)
            for _ in range(batch_size)
        ]
        sizes = np.asarray([len(p) for p in pools], np.int32)  # < pool_size: image exhausted
        padded = np.zeros((batch_size, pool_size, 4), np.float32)
        for b, p in enumerate(pools):
            padded[b, : len(p)] = p
        full = np.asarray(count(padded, sizes)["positives"])
        exhausted = sizes < pool_size
        if ((full >= target) | exhausted).all() or pool_size >= 16384:
            break
        pool_size *= 2
    pools = padded
    # Smallest prefix reaching the target, per image (positives grow with the prefix).
    lo = np.zeros(batch_size, np.int64)  # positives(lo) < target (0 boxes: 0 positives)
    hi = sizes.astype(np.int64)  # positives(hi) >= target (or the whole pool)
    while (hi - lo > 1).any():
        mid = (lo + hi) // 2
        pos = np.asarray(count(pools, mid.astype(np.int32))["positives"])
        done = hi - lo <= 1
        lo = np.where(~done & (pos < target), mid, lo)
        hi = np.where(~done & (pos >= target), mid, hi)
    pos_hi = np.asarray(count(pools, hi.astype(np.int32))["positives"])
    pos_lo = np.asarray(count(pools, lo.astype(np.int32))["positives"])
    n = np.where(np.abs(pos_lo - target) < np.abs(pos_hi - target), lo, hi)
    n = np.maximum(n, 1)

    max_boxes_config = int(config.input.max_boxes)
    needed = int(n.max())
    max_boxes = max(max_boxes_config, -(-needed // 8) * 8)
    gt_boxes = np.zeros((batch_size, max_boxes, 4), np.float32)
    gt_valid = np.zeros((batch_size, max_boxes), bool)
    for b in range(batch_size):
        gt_boxes[b, : n[b]] = pools[b, : n[b]]
        gt_valid[b, : n[b]] = True
    # Measured on the padded batch itself, exactly as the loss will see it.
    measured = jax.tree.map(np.asarray, count(gt_boxes, n.astype(np.int32)))
    positives = measured["positives"]
    rel_err = np.abs(positives - target) / max(target, 1)
    info = {
        "positives_requested": int(target),
        "positives_per_image": positives.tolist(),
        "positives_per_image_mean": float(positives.mean()),
        "relative_error_max": float(rel_err.max()),
        "within_tolerance": bool((rel_err <= tolerance).all()),
        "gt_boxes_per_image": n.tolist(),
        "ignored_anchors_per_image": measured["ignored"].tolist(),
        "positives_with_rep_gt_target_per_image": measured["positives_with_rep_gt_target"].tolist(),
        "num_anchors": int(anchors.shape[0]),
        "max_boxes_config": max_boxes_config,
        "max_boxes_used": max_boxes,
        "pool_size": int(pool_size),
        "pool_boxes_per_image": sizes.tolist(),
        "crowd_size_range": [crowd_min, crowd_max],
        "level_decay": level_decay,
        "seed": seed,
    }
    return gt_boxes, gt_valid, info


# ----------------------------------------------------------------------------- timing


def _variant_config(config, terms, max_boxes):
    c = config.copy_and_resolve_references()
    c.loss.terms = tuple(terms)
    c.input.max_boxes = int(max_boxes)
    return c


def _cost(compiled):
    try:
        cost = compiled.cost_analysis()
    except Exception as e:  # noqa: BLE001 -- not every backend implements it
        return {"error": repr(e)}
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    keep = ("flops", "transcendentals", "bytes accessed", "optimal_seconds")
    return {k: float(cost[k]) for k in keep if cost and k in cost}


def _block(x):
    return jax.block_until_ready(x)


def time_loss_only(detectors, batch, repeats, seed):
    """Loss forward + gradient w.r.t. the head outputs (no network), per variant, in seconds."""
    b = batch["gt_boxes"].shape[0]
    some = next(iter(detectors.values()))
    n = some.anchors.shape[0]
    k = int(some.model.head.num_classes)
    rng = np.random.default_rng(seed)
    outputs = {
        "cls_logits": jnp.asarray(rng.normal(-4.0, 1.0, (b, n, k)), jnp.float32),
        "box_deltas": jnp.asarray(rng.normal(0.0, 0.1, (b, n, 4)), jnp.float32),
    }
    res = {}
    for name, det in detectors.items():
        fn = jax.jit(jax.value_and_grad(lambda o, bt, det=det: det.loss_fn(o, bt)[0]))
        t0 = time.perf_counter()
        compiled = fn.lower(outputs, batch).compile()
        compile_s = time.perf_counter() - t0
        _block(compiled(outputs, batch))
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            _block(compiled(outputs, batch))
            times.append(time.perf_counter() - t0)
        res[name] = {
            "s_median": float(np.median(times)),
            "s_all": times,
            "compile_s": compile_s,
            "cost": _cost(compiled),
        }
    return res


def time_train_steps(
    config, variants, max_boxes, batch_np, image_size, repeats, warmup, interleave
):
    import train
    from detectors.builder import build_detector

    mesh = train.create_mesh(config.mesh.num_devices)
    configs = {v: _variant_config(config, VARIANTS[v], max_boxes) for v in variants}
    detectors = {v: build_detector(c, image_size) for v, c in configs.items()}
    first = configs[variants[0]]
    t0 = time.perf_counter()
    state0 = train.create_train_state(detectors[variants[0]], first, mesh)
    _block(state0)
    init_s = time.perf_counter() - t0
    _, schedule = train.build_optimizer(first.optimizer, first.schedule)
    batch = train.to_global(batch_np, mesh)
    copy_state = jax.jit(lambda s: jax.tree.map(jnp.copy, s))

    res = {v: {"terms": list(VARIANTS[v])} for v in variants}
    steps, times, holders = {}, {}, {}
    for v in variants:
        # The same initial parameters for every variant: a copy (the step donates its state).
        state = copy_state(state0)
        train_step, _ = train.jit_steps(detectors[v], detectors[v], schedule, mesh, state)
        t0 = time.perf_counter()
        compiled = train_step.lower(state, batch).compile()
        res[v]["compile_s"] = time.perf_counter() - t0
        res[v]["cost"] = _cost(compiled)
        holder = holders[v] = {"state": state}

        def step(compiled=compiled, holder=holder):
            holder["state"], holder["metrics"] = compiled(holder["state"], batch)
            return holder["metrics"]

        if interleave:
            t0 = time.perf_counter()
            _block(step())
            res[v]["first_step_s"] = time.perf_counter() - t0
            for _ in range(warmup):
                _block(step())
            times[v] = []
        else:
            res[v]["first_step_s"], _, times[v] = bench._time(step, repeats, warmup)
        steps[v] = step
        print(
            f"  compiled {v}: {res[v]['compile_s']:.1f} s, first step "
            f"{res[v]['first_step_s']:.1f} s",
            flush=True,
        )
    if interleave:
        for r in range(repeats):
            order = variants[r % len(variants) :] + variants[: r % len(variants)]
            for v in order:
                t0 = time.perf_counter()
                _block(steps[v]())
                times[v].append(time.perf_counter() - t0)
            print(
                f"  round {r + 1}/{repeats}: "
                + ", ".join(f"{v} {times[v][-1]:.2f} s" for v in variants),
                flush=True,
            )
    ref = variants[0]
    b = batch_np["gt_boxes"].shape[0]
    for v in variants:
        t = res[v]
        t["metrics"] = {
            k: float(np.asarray(x)) for k, x in holders[v]["metrics"].items() if np.ndim(x) == 0
        }
        t["step_s_all"] = times[v]
        t["step_s_median"] = float(np.median(times[v]))
        t["images_per_s"] = b / t["step_s_median"]
        t["overhead_pct"] = 100.0 * (t["step_s_median"] / res[ref]["step_s_median"] - 1)
        if interleave:
            ratios = np.asarray(times[v]) / np.asarray(times[ref])
            t["overhead_pct_paired_median"] = float(100.0 * (np.median(ratios) - 1))
        t["positives_per_image_in_step"] = t["metrics"]["num_pos"] / b
    return {"init_s": init_s, "variants": res}, detectors


def main(argv):
    del argv
    config = FLAGS.config
    variants = list(FLAGS.variants)
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise app.UsageError(f"--variants: unknown {unknown}; valid: {list(VARIANTS)}")
    if len(set(variants)) != len(variants):
        raise app.UsageError(f"--variants lists a variant twice: {variants}")
    if not 1 <= FLAGS.crowd_min <= FLAGS.crowd_max:
        raise app.UsageError("Need 1 <= --crowd_min <= --crowd_max")
    from detectors.builder import build_detector
    from input_pipeline import pipeline

    image_size = pipeline.train_input_size(config.input)
    b = int(config.input.batch_size)
    load_start = os.getloadavg()
    t_start = time.perf_counter()

    # The batch: crowded anchors as ground truth, ~positives_per_image positives each.
    probe = build_detector(_variant_config(config, BASE, config.input.max_boxes), image_size)
    gt_boxes, gt_valid, batch_info = build_crowded_batch(
        config,
        probe,
        image_size,
        b,
        FLAGS.positives_per_image,
        FLAGS.tolerance,
        FLAGS.batch_seed,
        FLAGS.crowd_min,
        FLAGS.crowd_max,
        FLAGS.level_decay,
    )
    print(
        f"batch: {batch_info['gt_boxes_per_image']} boxes/image -> "
        f"{batch_info['positives_per_image']} positives/image (requested "
        f"{FLAGS.positives_per_image}); max_boxes {batch_info['max_boxes_config']} -> "
        f"{batch_info['max_boxes_used']}",
        flush=True,
    )
    if not batch_info["within_tolerance"]:
        print(
            f"WARNING: positives per image off by up to "
            f"{100 * batch_info['relative_error_max']:.1f}% (> {100 * FLAGS.tolerance:.0f}%)"
        )
    cfg = _variant_config(config, BASE, batch_info["max_boxes_used"])
    batch_np = bench.random_batch(cfg, b, image_size, seed=FLAGS.batch_seed)
    batch_np["gt_boxes"], batch_np["gt_valid"] = gt_boxes, gt_valid

    steps, detectors = time_train_steps(
        config,
        variants,
        batch_info["max_boxes_used"],
        batch_np,
        image_size,
        FLAGS.repeats,
        FLAGS.warmup,
        FLAGS.interleave,
    )
    loss_only = None
    if FLAGS.loss_repeats > 0:
        loss_batch = {
            k: jnp.asarray(batch_np[k])
            for k in ("gt_boxes", "gt_valid", "ignore_boxes", "ignore_valid", "example_valid")
        }
        loss_only = time_loss_only(detectors, loss_batch, FLAGS.loss_repeats, FLAGS.batch_seed)
        ref = variants[0]
        for v in variants:
            loss_only[v]["extra_s_vs_ref"] = loss_only[v]["s_median"] - loss_only[ref]["s_median"]

    config_file = config_flags.get_config_filename(FLAGS["config"])
    res = {
        "config_file": config_file,
        "config": {
            "backbone": config.model.backbone,
            "image_size": list(config.input.image_size),
            "train_image_size": list(image_size),
            "batch_size": b,
            "dtype": config.model.dtype,
            "max_boxes_config": int(config.input.max_boxes),
            "max_boxes_used": batch_info["max_boxes_used"],
            "rep_box_max_positives": int(config.loss.rep_box_max_positives),
            "rep_gt_sigma": float(config.loss.rep_gt_sigma),
            "rep_box_sigma": float(config.loss.rep_box_sigma),
        },
        "device": str(jax.devices()[0].device_kind),
        "platform": jax.devices()[0].platform,
        "num_devices": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "jax_version": jax.__version__,
        "jaxlib_version": jaxlib.__version__,
        "python": platform.python_version(),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "repeats": FLAGS.repeats,
        "warmup": FLAGS.warmup,
        "interleaved": FLAGS.interleave,
        "reference_variant": variants[0],
        "batch": batch_info,
        "init_s": steps["init_s"],
        "train_step": steps["variants"],
        "loss_only": loss_only,
        "loadavg_start": list(load_start),
        "loadavg_end": list(os.getloadavg()),
        "wall_s": time.perf_counter() - t_start,
        "peak_rss_gib": bench._peak_rss_gib(),
    }

    header = (
        "variant",
        "terms",
        "step s (median)",
        "overhead",
        "paired",
        "pos/img",
        "compile s",
        "loss-only ms",
    )
    rows = []
    for v in variants:
        t = steps["variants"][v]
        paired = t.get("overhead_pct_paired_median")
        lo = loss_only[v]["s_median"] * 1e3 if loss_only else None
        rows.append(
            (
                v,
                ",".join(VARIANTS[v]),
                f"{t['step_s_median']:.3f}",
                f"{t['overhead_pct']:+.1f}%",
                "-" if paired is None else f"{paired:+.1f}%",
                f"{t['positives_per_image_in_step']:.0f}",
                f"{t['compile_s']:.1f}",
                "-" if lo is None else f"{lo:.1f}",
            )
        )
    widths = [max(len(str(r[i])) for r in [header] + rows) for i in range(len(header))]
    fmt = lambda r: "  ".join(f"{x!s:<{w}}" for x, w in zip(r, widths))
    print(
        f"\n{config_file}: {config.model.backbone} {tuple(image_size)} batch {b}, "
        f"{res['device']} x{res['num_devices']} ({res['cpu_count']} CPUs), jax {jax.__version__}; "
        f"{batch_info['gt_boxes_per_image']} gt/image, max_boxes {batch_info['max_boxes_used']}, "
        f"rep_box_max_positives {res['config']['rep_box_max_positives']}, "
        f"repeats {FLAGS.repeats} (+{FLAGS.warmup} warm-up)"
    )
    print(fmt(header))
    print(fmt(["-" * w for w in widths]))
    print("\n".join(fmt(r) for r in rows))
    if FLAGS.out:
        from evaluation.io import atomic_write_json

        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        atomic_write_json(res, FLAGS.out)
        print(f"wrote {FLAGS.out}")


if __name__ == "__main__":
    app.run(main)
