"""Benchmark of evaluation.miss_rate, against the official CityPersons evaluation when available.

    python -m tools.bench_miss_rate [--images 500] [--dets 50000] [--repeats 3] [--seed 0]
        [--official DIR] [--out bench.json]

Builds a deterministic synthetic ground truth (0-40 pedestrians per image, ~15% ignore regions,
CityPersons-like heights and visibilities) and `--dets` detections (jittered copies of ground
truth, duplicates and random false positives, tied scores included), writes both to JSON files in
a temporary directory, then times, median over `--repeats` runs:
  - evaluation of all 7 setups (`evaluate_miss_rate`, inputs already parsed),
  - evaluation of the Reasonable setup only,
  - end to end from the JSON files, 7 setups (our CLI, `python -m evaluation.miss_rate`).
Prints a table, the MR^-2 of every setup, then one JSON line (also written to --out).

Without --official only our implementation is timed, and the table says so.

With --official DIR, DIR is the `evaluation/eval_script` folder of a local checkout of the official
CityPersons repository (github.com/cvgroup-njust/CityPersons; the checkout's root is accepted too),
holding `coco.py` (their fork of the COCO API, whose loadRes sets each detection's `height`) and
`eval_MR_multisetup.py`. Nothing of it is copied into this repository: the two files are loaded
from DIR at run time. The official code is run per repeat exactly as its `eval_demo.py` does:
    cocoGt = COCO(gt.json); cocoDt = cocoGt.loadRes(dets.json)
    cocoEval = COCOeval(cocoGt, cocoDt, 'bbox'); cocoEval.params.imgIds = sorted(cocoGt.getImgIds())
    for id_setup in ...: cocoEval.evaluate(id_setup); cocoEval.accumulate()
                         cocoEval.summarize(id_setup, res_file)
timed as "evaluation" (COCOeval construction + the three calls for every setup), "Reasonable only"
(the three calls for setup 0) and "end to end" (the above including the two JSON loads), with its
prints silenced. The run fails (exit code 1) unless every setup's MR^-2 equals ours within 1e-9;
the maximal absolute difference is reported.
  - Setups. The official Params define the first four (Reasonable, Reasonable_small,
    Reasonable_occ=heavy, All; checked to equal our `SETUPS`). Bare, Partial and Heavy are appended
    to the COCOeval instance's `params.HtRng`, `params.VisRng` and `params.SetupLbl` after
    construction (ids 4, 5, 6), the way a user sets parameters; their files are not touched.
  - MR values. `summarize` returns None (its inner `_summarize` returns the value, which
    `summarize` discards) and writes the value rounded to 2 decimals, e.g.
    ' Average Miss Rate  (MR) @ Reasonable         [ IoU=0.50      | height=... ] = 12.34%'.
    The exact value is therefore taken from the official `accumulate()` output `eval['TP']` with
    `_summarize`'s own three operations (mrs = 1 - TP[IoU 0.5, :, :, maxDets 1000];
    exp(mean(log(mrs[mrs < 2]))), -1 when empty), and checked against the line it wrote.
  - Compatibility with Python 3.11 / numpy 2, applied here without editing their files:
      * `accumulate()` calls `.astype(dtype=np.float)`; the alias was removed in numpy 1.24, so
        `numpy.float = float` is set while the official code runs and removed afterwards.
      * `coco.py` names the Python 2 builtin `unicode` in loadRes(); it is only evaluated for a
        non-str argument (we pass a str path), but `unicode = str` is bound in the loaded module's
        namespace for safety.
      * Both files import matplotlib (`pyplot`, `collections.PatchCollection`,
        `patches.Polygon`) and `eval_MR_multisetup.py` also `scipy.io`, none of which the
        evaluation uses; where one is not installed an empty stand-in module is put in
        `sys.modules` for the import only (with matplotlib and scipy installed, none is needed).
      * The two files are loaded by path under private module names (not via sys.path), so they
        neither shadow nor are shadowed by other `coco` modules.
    Nothing else was needed: the files are otherwise valid Python 3.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import importlib
import importlib.util
import io
import json
import math
import os
import platform
import re
import statistics
import sys
import tempfile
import time
import types

import numpy as np

from evaluation import miss_rate
from evaluation.io import atomic_write_json

TOLERANCE = 1e-9
OFFICIAL_FILES = ("coco.py", "eval_MR_multisetup.py")
# Modules imported at the top of the official files but unused by the evaluation path, with the
# names taken from them.
_OPTIONAL_IMPORTS = {
    "matplotlib": (),
    "matplotlib.pyplot": (),
    "matplotlib.collections": ("PatchCollection",),
    "matplotlib.patches": ("Polygon",),
    "scipy": (),
    "scipy.io": (),
}
_LINE_RE = re.compile(r"@ (\S+)\s+\[.*\] = (-?\d+\.\d+)%\s*$")


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


# ----------------------------------------------------------------------------------------------
# The official CityPersons evaluation, loaded from a local checkout.


def find_official_dir(path: str) -> str:
    """The folder holding the official files: `path` itself or `path/evaluation/eval_script`.

    Raises:
      FileNotFoundError: neither holds both files.
    """
    for candidate in (path, os.path.join(path, "evaluation", "eval_script")):
        if all(os.path.isfile(os.path.join(candidate, name)) for name in OFFICIAL_FILES):
            return candidate
    raise FileNotFoundError(
        f"--official {path!r}: no {' and '.join(OFFICIAL_FILES)} there nor in "
        "evaluation/eval_script below it; pass the eval_script folder of a local checkout of "
        "github.com/cvgroup-njust/CityPersons"
    )


@contextlib.contextmanager
def _numpy_compat():
    """Restores `numpy.float` (removed in numpy 1.24, used by the official accumulate())."""
    added = not hasattr(np, "float")
    if added:
        np.float = float
    try:
        yield
    finally:
        if added:
            del np.float


def load_official(directory: str) -> types.SimpleNamespace:
    """Loads the official `coco.py` and `eval_MR_multisetup.py` from `directory` by path.

    Returns:
      namespace(COCO, COCOeval, files={file name: sha256 hex}).
    """
    stubs = []
    for name, attrs in _OPTIONAL_IMPORTS.items():
        try:
            importlib.import_module(name)
        except ImportError:
            stub = types.ModuleType(name)
            for attr in attrs:
                setattr(stub, attr, None)
            sys.modules[name] = stub
            stubs.append(name)
            parent, _, child = name.rpartition(".")
            if parent in stubs:
                setattr(sys.modules[parent], child, stub)
    modules, digests = {}, {}
    try:
        for file_name in OFFICIAL_FILES:
            path = os.path.join(directory, file_name)
            with open(path, "rb") as f:
                digests[file_name] = hashlib.sha256(f.read()).hexdigest()
            module_name = "_citypersons_official_" + file_name[:-3]
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            module.unicode = str  # Python 2 builtin named in coco.py's loadRes
            with _numpy_compat(), contextlib.redirect_stdout(io.StringIO()):
                spec.loader.exec_module(module)
            modules[file_name] = module
    finally:
        for name in stubs:
            sys.modules.pop(name, None)
    return types.SimpleNamespace(
        COCO=modules["coco.py"].COCO,
        COCOeval=modules["eval_MR_multisetup.py"].COCOeval,
        files=digests,
    )


def _official_params(cocoeval, setups) -> list[int]:
    """Checks the official setups against ours, appends the missing ones; returns setup ids."""
    p = cocoeval.params
    ids = []
    for name, ((h_lo, h_hi), (v_lo, v_hi)) in setups.items():
        if name in p.SetupLbl:
            i = p.SetupLbl.index(name)
            theirs = [float(v) for v in (*p.HtRng[i], *p.VisRng[i])]
            if theirs != [h_lo, h_hi, v_lo, v_hi]:
                raise ValueError(
                    f"official setup {name!r} has ranges {theirs}, ours "
                    f"{[h_lo, h_hi, v_lo, v_hi]}: a different revision of the official code?"
                )
        else:
            p.HtRng.append([h_lo, h_hi])
            p.VisRng.append([v_lo, v_hi])
            p.SetupLbl.append(name)
            i = len(p.SetupLbl) - 1
        ids.append(i)
    return ids


def _official_mr(params, evaluation: dict) -> float:
    """The MR^-2 `summarize` computes (and discards), from the official accumulate() output.

    The same operations as the official `_summarize(iouThr=.5, maxDets=1000)`.
    """
    mind = [i for i, m in enumerate(params.maxDets) if m == 1000]
    s = evaluation["TP"]
    s = s[np.where(0.5 == np.array(params.iouThrs))[0]]
    mrs = 1 - s[:, :, :, mind]
    if len(mrs[mrs < 2]) == 0:
        return -1.0
    return float(np.exp(np.mean(np.log(mrs[mrs < 2]))))


def run_official(official, gt_path: str, dets_path: str, setups) -> dict:
    """One run of the official evaluation as eval_demo.py does it, for all `setups`.

    Returns:
      {"mr": {setup: MR^-2}, "seconds": {"end_to_end", "evaluation", setup...: seconds},
       "lines": the text summarize wrote}.
    """
    res_file = io.StringIO()
    evaluations, seconds = {}, {}
    with _numpy_compat(), contextlib.redirect_stdout(io.StringIO()):
        t_start = time.perf_counter()
        coco_gt = official.COCO(gt_path)
        coco_dt = coco_gt.loadRes(dets_path)
        img_ids = sorted(coco_gt.getImgIds())
        t_eval = time.perf_counter()
        cocoeval = official.COCOeval(coco_gt, coco_dt, "bbox")
        cocoeval.params.imgIds = img_ids
        ids = _official_params(cocoeval, setups)
        for name, id_setup in zip(setups, ids):
            t0 = time.perf_counter()
            cocoeval.evaluate(id_setup)
            cocoeval.accumulate()
            cocoeval.summarize(id_setup, res_file)
            seconds[name] = time.perf_counter() - t0
            evaluations[name] = cocoeval.eval  # accumulate() makes a new dict each time
        t_end = time.perf_counter()
        mr = {name: _official_mr(cocoeval.params, e) for name, e in evaluations.items()}
    seconds["end_to_end"] = t_end - t_start
    seconds["evaluation"] = t_end - t_eval
    lines = res_file.getvalue()
    written = [_LINE_RE.search(line) for line in lines.splitlines()]
    if len(written) != len(mr) or not all(written):
        raise RuntimeError(f"unexpected output of the official summarize():\n{lines}")
    for (name, value), match in zip(mr.items(), written):
        if match.group(1) != name or match.group(2) != f"{value * 100:0.2f}":
            raise RuntimeError(
                f"official summarize() wrote {match.group(0)!r} for {name}, but its eval['TP'] "
                f"gives {value!r}"
            )
    return {"mr": mr, "seconds": seconds, "lines": lines}


# ----------------------------------------------------------------------------------------------


def _fmt_seconds(sec: float | None) -> str:
    return "not run" if sec is None else f"{sec:.3f}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_miss_rate",
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--images", type=int, default=500)
    parser.add_argument("--dets", type=int, default=50_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--official",
        default=None,
        metavar="DIR",
        help="evaluation/eval_script folder of a local checkout of the official CityPersons "
        "repository (coco.py, eval_MR_multisetup.py); times it too and checks equal numbers. "
        "Without it only ours is timed.",
    )
    parser.add_argument("--out", default=None, help="write the JSON result here (atomically)")
    args = parser.parse_args(argv)
    if args.repeats < 1 or args.images < 1 or args.dets < 1:
        parser.error("--images, --dets and --repeats must be positive")
    official = None
    if args.official is not None:
        try:
            official_dir = find_official_dir(args.official)
        except FileNotFoundError as e:
            parser.error(str(e))
        official = load_official(official_dir)

    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    gt, dets = make_dataset(args.images, args.dets, args.seed)
    setups = miss_rate.SETUPS
    ours_mr: dict = {}
    ours: dict[str, float] = {}
    theirs: dict[str, float] = {}
    official_mr: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, dets_path = os.path.join(tmp, "gt.json"), os.path.join(tmp, "dets.json")
        with open(gt_path, "w") as f:
            json.dump(gt, f)
        with open(dets_path, "w") as f:
            json.dump(dets, f)

        ours["evaluation"] = _median_time(
            lambda: ours_mr.update(miss_rate.evaluate_miss_rate(gt, dets)), args.repeats
        )
        ours["Reasonable"] = _median_time(
            lambda: miss_rate.evaluate_miss_rate(gt, dets, setups=["Reasonable"]), args.repeats
        )

        def cli():
            with contextlib.redirect_stdout(io.StringIO()):
                assert miss_rate.main(["--gt", gt_path, "--dets", dets_path]) == 0

        ours["end_to_end"] = _median_time(cli, args.repeats)

        if official is not None:
            runs = [run_official(official, gt_path, dets_path, setups) for _ in range(args.repeats)]
            official_mr = runs[0]["mr"]
            if any(run["mr"] != official_mr for run in runs):
                raise RuntimeError("the official evaluation gave different numbers across runs")
            for key in ("evaluation", "Reasonable", "end_to_end"):
                theirs[key] = statistics.median(run["seconds"][key] for run in runs)
            per_setup_official = {
                name: statistics.median(run["seconds"][name] for run in runs) for name in setups
            }
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None

    cases = [
        ("evaluation", "evaluation, 7 setups"),
        ("Reasonable", "evaluation, Reasonable only"),
        ("end_to_end", "end to end from JSON files, 7 setups"),
    ]
    print(
        f"miss-rate benchmark: {args.images} images, {len(gt['annotations'])} ground truths, "
        f"{len(dets)} detections; median of {args.repeats} runs "
        f"({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}, numpy {np.__version__}"
        + (f", load average {load_before[0]:.1f} -> {load_after[0]:.1f}" if load_before else "")
        + ")"
    )
    if official is None:
        print("official CityPersons code not given (--official DIR): timing ours alone")
    width = max(len(label) for _, label in cases)
    print(f"{'case':<{width}}  {'ours (s)':>9}  {'official (s)':>12}  {'speed-up':>8}")
    speedups = {}
    for key, label in cases:
        if key in theirs:
            speedups[key] = theirs[key] / ours[key]
            su = f"{speedups[key]:7.1f}x"
        else:
            su = "-"
        print(f"{label:<{width}}  {ours[key]:9.3f}  {_fmt_seconds(theirs.get(key)):>12}  {su:>8}")
    diffs = {}
    if official is not None:
        digests = ", ".join(f"{name} {digest[:12]}" for name, digest in official.files.items())
        print(f"official code: {official_dir} (sha256 {digests})")
        print(f"{'setup':<20}  {'ours MR^-2':>22}  {'official MR^-2':>22}  |difference|")
        for name in setups:
            diffs[name] = abs(ours_mr[name] - official_mr[name])
            print(
                f"{name:<20}  {ours_mr[name]!r:>22}  {official_mr[name]!r:>22}  {diffs[name]:.3g}"
            )
        max_diff = max(diffs.values())
        identical = all(ours_mr[name] == official_mr[name] for name in setups)
        print(
            f"max |ours - official| = {max_diff:.3g} over {len(setups)} setups "
            f"({'bitwise identical' if identical else 'not bitwise identical'}; tolerance "
            f"{TOLERANCE:g}: {'OK' if max_diff <= TOLERANCE else 'FAILED'})"
        )
        met = speedups["evaluation"] >= 10 and speedups["end_to_end"] >= 10
        verdict = "met" if met else "NOT met"
        print(
            f"requirement >= 10x on all 7 setups: {verdict} (evaluation "
            f"{speedups['evaluation']:.1f}x, end to end {speedups['end_to_end']:.1f}x)"
        )
    else:
        print("MR^-2: " + ", ".join(f"{k} {100 * v:.2f}%" for k, v in ours_mr.items()))

    report = {
        "benchmark": "miss_rate",
        "images": args.images,
        "ground_truths": len(gt["annotations"]),
        "detections": len(dets),
        "repeats": args.repeats,
        "seed": args.seed,
        "median_seconds": {label: round(ours[key], 4) for key, label in cases},
        "miss_rate": ours_mr,
        "official": None,
        "numpy": np.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average": [load_before[0], load_after[0]] if load_before else None,
    }
    ok = True
    if official is not None:
        max_diff = max(diffs.values())
        ok = max_diff <= TOLERANCE and not math.isnan(max_diff)
        report["official"] = {
            "dir": os.path.abspath(official_dir),
            "sha256": official.files,
            "median_seconds": {label: round(theirs[key], 4) for key, label in cases},
            "median_seconds_per_setup": {k: round(v, 4) for k, v in per_setup_official.items()},
            "speedup": {label: round(speedups[key], 2) for key, label in cases},
            "miss_rate": official_mr,
            "max_abs_difference": max_diff,
            "bitwise_identical": all(ours_mr[n] == official_mr[n] for n in setups),
            "within_tolerance": ok,
            "tolerance": TOLERANCE,
        }
    print(json.dumps(report))
    if args.out:
        atomic_write_json(report, args.out)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
