"""Benchmark of evaluation.crowdhuman on a synthetic CrowdHuman-val-sized set.

    python -m tools.bench_crowdhuman [--images 4370] [--repeats 3] [--official /path/to/CrowdDet]
        [--out bench.json]

Writes a deterministic synthetic ground truth (.odgt: CrowdHuman-like crowded images with
1-300 persons, integer boxes crossing the image border, ~8% "mask" ignore regions and ~2%
persons with extra.ignore = 1) and a detection dump (jittered copies of the persons, duplicates,
false positives near and away from people and inside ignore regions; boxes rounded to 0.1 px and
scores to 1e-5 as CrowdDet's test.py writes them, so equal scores are common; lines in shuffled
order; each line also carries the rounded `gtboxes` CrowdDet's JI reads) into a temporary
directory. Then times, median over --repeats runs, reading the files each time: AP+MR, JI, and
the whole CLI (both files -> printed JSON).

With --official pointing at a local CrowdDet checkout (nothing of it is copied here), its
evaluator is imported from <checkout>/lib (`evaluate.compute_APMR.compute_APMR` and
`evaluate.compute_JI.evaluation_all`, run as they are: JI with its 10 worker processes), timed
once, checked against ours (AP and MR within 1e-9, JI within 1e-12) and the speed-up is printed.
Prints a table, then one JSON line (also written to --out).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import os
import platform
import statistics
import sys
import tempfile
import time

import numpy as np

from evaluation import crowdhuman
from evaluation.io import atomic_write_json

MEAN_PERSONS = 22.8  # CrowdHuman val: 99,481 persons on 4,370 images


def _persons(rng: np.random.Generator, W: int, H: int, n: int) -> np.ndarray:
    """[n, 4] integer xywh full-body boxes, clustered into crowds, some crossing the border."""
    h = H * np.exp(rng.uniform(np.log(0.06), np.log(0.9), n))
    w = h * rng.uniform(0.33, 0.5, n)
    x = rng.uniform(-0.15 * w, W - 0.85 * w)
    y = rng.uniform(-0.1 * h, H - 0.75 * h)
    crowd = rng.random(n) < 0.5  # half of the persons stand next to the previous one
    for i in np.flatnonzero(crowd[1:]) + 1:
        x[i] = x[i - 1] + rng.uniform(-0.7, 0.7) * w[i - 1]
        y[i] = y[i - 1] + rng.uniform(-0.15, 0.15) * h[i - 1]
    return np.round(np.stack([x, y, w, h], 1)).astype(np.int64)


def _jitter(rng: np.random.Generator, boxes: np.ndarray, sigma: float) -> np.ndarray:
    x, y, w, h = boxes.T.astype(np.float64)
    j = rng.normal(0, sigma, (4, len(boxes)))
    return np.stack([x + j[0] * w, y + j[1] * h, w * np.exp(j[2]), h * np.exp(j[3])], 1)


def _image(rng: np.random.Generator, image_id: str) -> tuple[dict, dict]:
    """One ground-truth line and its detection-dump line."""
    W = int(rng.integers(500, 1500))
    H = int(W * rng.uniform(0.55, 1.0))
    # At least one person (as in CrowdHuman; CrowdDet crashes on an empty gtboxes list).
    n = min(300, 1 + int(rng.negative_binomial(1.5, 1.5 / (0.5 + MEAN_PERSONS))))
    persons = _persons(rng, W, H, n)
    n_mask = int(rng.poisson(0.08 * n + 0.3))
    masks = _persons(rng, W, H, n_mask) * np.array([1, 1, 2, 1])  # wider regions (groups)
    boxes = np.concatenate([persons, masks])
    tags = ["person"] * n + ["mask"] * n_mask
    ignored = np.concatenate([rng.random(n) < 0.02, np.ones(n_mask, bool)])
    order = rng.permutation(len(boxes))
    gtboxes, dump_gt = [], []
    for k in order.tolist():
        x, y, w, h = boxes[k].tolist()
        gtboxes.append(
            {
                "tag": tags[k],
                "fbox": [x, y, w, h],
                "hbox": [x + w // 4, y, w // 2, h // 7],
                "vbox": [x, y, w, int(h * 0.8)],
                "head_attr": {"ignore": 0, "occ": 0},
                "extra": {"box_id": k, "occ": 0, "ignore": int(ignored[k])},
            }
        )
        dump_gt.append(
            {"box": [float(x), float(y), float(w), float(h)], "tag": -1 if ignored[k] else 1}
        )

    valid = persons[~ignored[:n]]
    found = valid[rng.random(len(valid)) < 0.92]
    parts = [(_jitter(rng, found, 0.04), rng.beta(6, 1.3, len(found)))]
    dup = (
        valid[rng.integers(0, max(len(valid), 1), rng.poisson(0.6 * len(valid)))]
        if len(valid)
        else valid
    )
    parts.append((_jitter(rng, dup, 0.12), rng.beta(2, 3, len(dup))))
    near = (
        valid[rng.integers(0, max(len(valid), 1), rng.poisson(1.0 * len(valid)))]
        if len(valid)
        else valid
    )
    shifted = _jitter(rng, near, 0.1)
    shifted[:, 0] += rng.choice([-1, 1], len(near)) * rng.uniform(0.4, 0.9, len(near)) * near[:, 2]
    parts.append((shifted, rng.beta(1.2, 5, len(near))))
    n_far = int(rng.poisson(0.9 * len(valid) + 6))
    parts.append((_jitter(rng, _persons(rng, W, H, n_far), 0.0), rng.beta(1, 8, n_far)))
    if n_mask:
        inside = masks[rng.integers(0, n_mask, rng.poisson(1.5 * n_mask))]
        parts.append(
            (_jitter(rng, inside, 0.1) * np.array([1, 1, 0.5, 0.5]), rng.beta(2, 4, len(inside)))
        )
    det_boxes = np.concatenate([p[0] for p in parts])
    scores = np.concatenate([p[1] for p in parts]).clip(0.0101, 0.99999)
    perm = rng.permutation(len(scores))
    dtboxes = [
        {"box": [round(v, 1) for v in b], "score": round(s, 5), "tag": 1}
        for b, s in zip(det_boxes[perm].tolist(), scores[perm].tolist())
    ]
    gt_line = {"ID": image_id, "gtboxes": gtboxes}
    dump_line = {"ID": image_id, "height": H, "width": W, "dtboxes": dtboxes, "gtboxes": dump_gt}
    return gt_line, dump_line


def make_dataset(num_images: int, seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Deterministic synthetic ground-truth lines (file order) and dump lines (shuffled)."""
    rng = np.random.default_rng(seed)
    gt_lines, dump_lines = [], []
    for i in range(num_images):
        g, d = _image(rng, f"{273271 + i},{i:08x}")
        gt_lines.append(g)
        dump_lines.append(d)
    order = rng.permutation(num_images)
    return gt_lines, [dump_lines[i] for i in order.tolist()]


def _write_lines(path: str, records: list[dict]) -> None:
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


def _median_time(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def _run_official(checkout: str, gt_path: str, dt_path: str) -> tuple[dict, dict]:
    """Imports CrowdDet's evaluator from <checkout>/lib, runs it once; -> (metrics, seconds)."""
    lib = os.path.join(os.path.abspath(checkout), "lib")
    if not os.path.isfile(os.path.join(lib, "evaluate", "compute_JI.py")):
        raise SystemExit(f"--official: {lib}/evaluate/compute_JI.py not found; pass the checkout")
    sys.path.insert(0, lib)
    apmr = importlib.import_module("evaluate.compute_APMR")
    ji_mod = importlib.import_module("evaluate.compute_JI")
    sink = io.StringIO()
    with contextlib.redirect_stdout(sink), contextlib.redirect_stderr(sink):
        t0 = time.perf_counter()
        ap, mr = apmr.compute_APMR(dt_path, gt_path, "box", 0)
        t1 = time.perf_counter()
        _, ji = ji_mod.evaluation_all(dt_path, "box")
        t2 = time.perf_counter()
    return (
        {"AP": float(ap), "MR": float(mr), "JI": float(ji)},
        {"AP+MR": t1 - t0, "JI": t2 - t1, "total": t2 - t0},
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        epilog="Timings include reading and parsing the files, as the CrowdDet scripts do.",
    )
    parser.add_argument("--images", type=int, default=4370)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--official", default=None, help="local CrowdDet checkout to compare")
    parser.add_argument("--out", default=None, help="write the JSON result here (atomically)")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    gt_lines, dump_lines = make_dataset(args.images, args.seed)
    n_gt = sum(len(r["gtboxes"]) for r in gt_lines)
    n_ign = sum(b["extra"]["ignore"] for r in gt_lines for b in r["gtboxes"])
    n_dt = sum(len(r["dtboxes"]) for r in dump_lines)
    rows: list[tuple[str, float]] = []
    result: dict = {}
    official = official_times = None
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dt_path = os.path.join(tmp, "annotation_val.odgt"), os.path.join(tmp, "dump.odgt")
        _write_lines(gt_path, gt_lines)
        _write_lines(dt_path, dump_lines)
        del gt_lines, dump_lines
        mb = (os.path.getsize(gt_path) + os.path.getsize(dt_path)) / 2**20
        gen_seconds = time.perf_counter() - t0

        t = _median_time(
            lambda: crowdhuman.evaluate_files(gt_path, dt_path, ("AP", "MR")), args.repeats
        )
        rows.append(("ours: AP+MR (incl. reading both files)", t))
        t = _median_time(lambda: crowdhuman.evaluate_files(gt_path, dt_path, ("JI",)), args.repeats)
        rows.append(("ours: JI (incl. reading both files)", t))

        def cli():
            sink = io.StringIO()
            with contextlib.redirect_stdout(sink):
                assert crowdhuman.main(["--gt", gt_path, "--dets", dt_path]) == 0
            result.update(json.loads(sink.getvalue()))

        ours_total = _median_time(cli, args.repeats)
        rows.append(("ours: CLI, AP+MR+JI", ours_total))
        if args.official:
            official, official_times = _run_official(args.official, gt_path, dt_path)
            rows.append(("CrowdDet: AP+MR (compute_APMR)", official_times["AP+MR"]))
            rows.append(("CrowdDet: JI (evaluation_all, 10 processes)", official_times["JI"]))
            rows.append(("CrowdDet: total", official_times["total"]))

    print(
        f"CrowdHuman evaluation benchmark: {args.images} images, {n_gt} ground truths "
        f"({n_ign} ignored), {n_dt} detections, {mb:.0f} MiB of JSON lines "
        f"(generated in {gen_seconds:.1f} s); median of {args.repeats} runs "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numpy {np.__version__})"
    )
    width = max(len(name) for name, _ in rows)
    print(f"{'case':<{width}}  seconds")
    for name, sec in rows:
        print(f"{name:<{width}}  {sec:7.3f}")
    print("ours: " + ", ".join(f"{k} {v!r}" for k, v in result.items()))
    report = {
        "benchmark": "crowdhuman",
        "images": args.images,
        "ground_truths": n_gt,
        "ignored_ground_truths": n_ign,
        "detections": n_dt,
        "repeats": args.repeats,
        "median_seconds": {name: round(sec, 4) for name, sec in rows},
        "metrics": result,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    status = 0
    if official is None:
        print("no --official CrowdDet checkout given: timed ours alone (no speed-up, no check)")
    else:
        tol = {"AP": 1e-9, "MR": 1e-9, "JI": 1e-12}
        diffs = {k: abs(official[k] - result[k]) for k in tol}
        agree = all(diffs[k] <= tol[k] for k in tol)
        speedup = official_times["total"] / ours_total
        print("CrowdDet: " + ", ".join(f"{k} {v!r}" for k, v in official.items()))
        print(
            f"agreement: {'OK' if agree else 'MISMATCH'} (|diff| "
            + ", ".join(f"{k} {d:.1e}" for k, d in diffs.items())
            + f"); speed-up {speedup:.1f}x (CrowdDet total / our CLI)"
        )
        report.update(official=official, official_seconds=official_times, speedup=speedup)
        report["agree"] = agree
        status = 0 if agree else 1
    print(json.dumps(report))
    if args.out:
        atomic_write_json(report, args.out)
    return status


if __name__ == "__main__":
    sys.exit(main())
