"""Speed benchmark: train step, inference and tf.data throughput of a config's detector.

  python -m tools.benchmark --config configs/retinanet_r50.py --config.input.batch_size=2 \
      --out runs/bench_r50.json

Reports medians over repeated runs after compilation (never a single timing), the compile time,
and the process's peak resident memory; prints a table and writes JSON. Timing uses random
images and boxes of the configured sizes, so it measures the model, not the data.
"""

from __future__ import annotations

import json
import os
import resource
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax  # noqa: E402
import numpy as np  # noqa: E402
from absl import app, flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", "configs/retinanet_r50.py", "Config to benchmark.")
flags.DEFINE_integer("repeats", 5, "Timed repetitions (median reported).")
flags.DEFINE_integer("warmup", 1, "Untimed repetitions after compilation.")
flags.DEFINE_multi_enum("what", ["train", "infer", "data"], ["train", "infer", "data"], "What to time.")
flags.DEFINE_integer("data_batches", 20, "Batches for the tf.data measurement.")
flags.DEFINE_string("out", None, "Write the results as JSON here.")


def _peak_rss_gib():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def random_batch(config, batch_size, image_size, seed=0):
    """Random `image_size` images and up to `max_boxes` pedestrian boxes (xyxy pixels)."""
    rng = np.random.default_rng(seed)
    h, w = image_size
    m, r = config.input.max_boxes, config.input.max_ignore
    hh = rng.uniform(20, h / 2, (batch_size, m))
    ww = hh * 0.41
    x = rng.uniform(0, w - ww)
    y = rng.uniform(0, h - hh)
    return {
        "image": rng.normal(size=(batch_size, h, w, 3)).astype(np.float32),
        "gt_boxes": np.stack([x, y, x + ww, y + hh], -1).astype(np.float32),
        "gt_valid": rng.random((batch_size, m)) < 0.2,
        "ignore_boxes": np.zeros((batch_size, r, 4), np.float32),
        "ignore_valid": np.zeros((batch_size, r), bool),
        "num_boxes_lost": np.zeros((batch_size,), np.int32),
        "num_zero_area_dropped": np.zeros((batch_size,), np.int32),
        "example_valid": np.ones((batch_size,), bool),
    }


def _time(fn, repeats, warmup):
    t0 = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - t0
    for _ in range(warmup):
        jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t0)
    return first, float(np.median(times)), times


def bench_model(config, repeats, warmup, what):
    import train
    from detectors.builder import build_detector

    mesh = train.create_mesh(config.mesh.num_devices)
    from input_pipeline import pipeline

    detector = build_detector(config)
    train_size = pipeline.train_input_size(config.input)  # training crops, if configured
    train_detector = build_detector(config, train_size)
    t0 = time.perf_counter()
    state = train.create_train_state(detector, config, mesh)
    jax.block_until_ready(state)
    init_s = time.perf_counter() - t0
    _, schedule = train.build_optimizer(config.optimizer, config.schedule)
    train_step, eval_step = train.jit_steps(
        train_detector, detector, schedule, mesh, state, float(config.optimizer.ema_decay)
    )
    results = {"init_s": init_s}
    b = config.input.batch_size
    batch = train.to_global(random_batch(config, b, train_size), mesh)
    if "train" in what:
        holder = {"state": state}

        def step():
            holder["state"], m = train_step(holder["state"], batch)
            return m

        first, med, times = _time(step, repeats, warmup)
        results["train"] = {
            "batch": b, "image_size": list(train_size), "compile_plus_first_s": first, "step_s_median": med,
            "images_per_s": b / med, "step_s_all": times,
        }
        state = holder["state"]
    if "infer" in what:
        eb = config.input.eval_batch_size
        images = train.to_global(random_batch(config, eb, config.input.image_size), mesh)["image"]
        first, med, times = _time(lambda: eval_step(state, images), repeats, warmup)
        results["infer"] = {
            "batch": eb, "compile_plus_first_s": first, "batch_s_median": med,
            "images_per_s": eb / med, "batch_s_all": times,
        }
    return results


def bench_data(config, num_batches):
    from input_pipeline import pipeline

    builder = pipeline.get_builder(config.input.dataset, config.input.data_dir,
                                       config.input.manual_dir)
    it = pipeline.as_numpy_iterator(pipeline.train_dataset(builder, config.input, config.seed))
    next(it)  # start-up (file opening, shuffle buffer fill) is not throughput
    t0 = time.perf_counter()
    for _ in range(num_batches):
        next(it)
    dt = time.perf_counter() - t0
    return {"batches": num_batches, "images_per_s": num_batches * config.input.batch_size / dt}


def main(argv):
    del argv
    config = FLAGS.config
    what = set(FLAGS.what)
    res = {
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "config": {
            "backbone": config.model.backbone, "image_size": list(config.input.image_size),
            "batch_size": config.input.batch_size, "dtype": config.model.dtype,
        },
        "device": str(jax.devices()[0].device_kind), "num_devices": jax.device_count(),
        "cpu_count": os.cpu_count(), "repeats": FLAGS.repeats,
    }
    if what & {"train", "infer"}:
        res.update(bench_model(config, FLAGS.repeats, FLAGS.warmup, what))
    if "data" in what:
        res["data"] = bench_data(config, FLAGS.data_batches)
    res["peak_rss_gib"] = _peak_rss_gib()
    rows = [("device", f"{res['device']} x{res['num_devices']} ({res['cpu_count']} CPUs)")]
    rows.append(("model", f"{config.model.backbone} {tuple(config.input.image_size)} {config.model.dtype}"))
    if "train" in res:
        t = res["train"]
        rows += [("train step (median)",
                  f"{t['step_s_median']:.3f} s  (batch {t['batch']} x {tuple(t['image_size'])})"),
                 ("train images/s", f"{t['images_per_s']:.2f}"),
                 ("compile + first step", f"{t['compile_plus_first_s']:.1f} s")]
    if "infer" in res:
        t = res["infer"]
        rows += [("inference batch (median)", f"{t['batch_s_median']:.3f} s  (batch {t['batch']})"),
                 ("inference images/s", f"{t['images_per_s']:.2f}")]
    if "data" in res:
        rows.append(("tf.data images/s", f"{res['data']['images_per_s']:.1f}"))
    rows.append(("peak RSS", f"{res['peak_rss_gib']:.2f} GiB"))
    width = max(len(k) for k, _ in rows)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in rows))
    print(json.dumps(res))
    if FLAGS.out:
        from evaluation.io import atomic_write_json

        os.makedirs(os.path.dirname(os.path.abspath(FLAGS.out)), exist_ok=True)
        atomic_write_json(res, FLAGS.out)


if __name__ == "__main__":
    app.run(main)
