"""Benchmark of evaluation.miss_rate on a synthetic crowded CityPersons-sized set.

    python -m tools.bench_miss_rate [--images 500] [--dets 50000] [--repeats 3] [--out bench.json]

Builds a deterministic synthetic ground truth (0-40 pedestrians per image, ~15% ignore regions,
CityPersons-like heights and visibilities) and `--dets` detections (jittered copies of ground
truth, duplicates and random false positives, tied scores included), then times, median over
`--repeats` runs: evaluate_miss_rate on all 7 setups, on the Reasonable setup only, and the CLI
path (JSON files -> printed JSON). Prints a table, then one JSON line (also written to --out).
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from evaluation import miss_rate
from evaluation.io import atomic_write_json


def make_dataset(num_images: int, num_dets: int, seed: int = 0) -> tuple[dict, list[dict]]:
    """Synthetic ground truth and detections ([x, y, w, h] pixels, 2048x1024 images)."""
    rng = np.random.default_rng(seed)
    images, anns = [], []
    gt_boxes_per_image = []
    ann_id = 1
    for i in range(num_images):
        images.append({"id": i + 1, "file_name": f"img_{i:05d}.png", "width": 2048, "height": 1024})
        n = int(rng.integers(0, 41))
        h = np.exp(rng.uniform(np.log(20), np.log(300), n))
        w = 0.41 * h
        x = rng.uniform(0, 2048 - w)
        y = rng.uniform(200, 1024 - h).clip(0)
        vis = np.where(rng.random(n) < 0.5, 1.0, rng.uniform(0, 1, n))
        ignore = rng.random(n) < 0.15
        boxes = np.stack([x, y, w, h], 1)
        gt_boxes_per_image.append(boxes)
        for k in range(n):
            anns.append(
                {
                    "id": ann_id,
                    "image_id": i + 1,
                    "category_id": 1,
                    "bbox": [float(v) for v in boxes[k]],
                    "height": float(h[k]),
                    "vis_ratio": float(vis[k]),
                    "ignore": int(ignore[k]),
                }
            )
            ann_id += 1
    det_image = np.sort(rng.integers(0, num_images, num_dets))
    dets = []
    for i in det_image.tolist():
        boxes = gt_boxes_per_image[i]
        if len(boxes) and rng.random() < 0.6:
            x, y, w, h = boxes[int(rng.integers(len(boxes)))]
            s = rng.uniform(0.85, 1.15)
            x, y, w, h = x + rng.normal(0, 0.05 * w), y + rng.normal(0, 0.05 * h), w * s, h * s
            score = float(rng.beta(5, 2))
        else:
            h = float(np.exp(rng.uniform(np.log(15), np.log(300))))
            w = 0.41 * h
            x, y = float(rng.uniform(0, 2048 - w)), float(rng.uniform(0, 1024 - h))
            score = float(rng.beta(2, 5))
        if rng.random() < 0.2:
            score = round(score, 2)  # ties, within and across images
        dets.append(
            {
                "image_id": i + 1,
                "category_id": 1,
                "bbox": [float(x), float(y), float(w), float(h)],
                "score": score,
            }
        )
    gt = {"images": images, "categories": [{"id": 1, "name": "pedestrian"}], "annotations": anns}
    return gt, dets


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--dets", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the JSON result here (atomically)")
    args = parser.parse_args(argv)

    gt, dets = make_dataset(args.images, args.dets, args.seed)
    rows = []
    result = {}

    t = _median_time(lambda: result.update(miss_rate.evaluate_miss_rate(gt, dets)), args.repeats)
    rows.append(("evaluate_miss_rate, 7 setups", t))
    t = _median_time(
        lambda: miss_rate.evaluate_miss_rate(gt, dets, setups=["Reasonable"]), args.repeats
    )
    rows.append(("evaluate_miss_rate, Reasonable only", t))
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dets_path = os.path.join(tmp, "gt.json"), os.path.join(tmp, "dets.json")
        with open(gt_path, "w") as f:
            json.dump(gt, f)
        with open(dets_path, "w") as f:
            json.dump(dets, f)

        def cli():
            with contextlib.redirect_stdout(io.StringIO()):
                assert miss_rate.main(["--gt", gt_path, "--dets", dets_path]) == 0

        rows.append(("CLI incl. JSON parsing, 7 setups", _median_time(cli, args.repeats)))

    print(
        f"miss-rate benchmark: {args.images} images, {len(gt['annotations'])} ground truths, "
        f"{len(dets)} detections; median of {args.repeats} runs "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numpy {np.__version__})"
    )
    width = max(len(name) for name, _ in rows)
    print(f"{'case':<{width}}  seconds")
    for name, sec in rows:
        print(f"{name:<{width}}  {sec:7.3f}")
    print("MR^-2: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in result.items()))
    report = {
        "benchmark": "miss_rate",
        "images": args.images,
        "ground_truths": len(gt["annotations"]),
        "detections": len(dets),
        "repeats": args.repeats,
        "median_seconds": {name: round(sec, 4) for name, sec in rows},
        "miss_rate": result,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    print(json.dumps(report))
    if args.out:
        atomic_write_json(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
