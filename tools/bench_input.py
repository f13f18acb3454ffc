"""Benchmark of the training input pipeline (images/s with augmentation) per real dataset.

    python -m tools.bench_input [--datasets citypersons,caltech,...] [--images 200]
        [--batches 20] [--repeats 3] [--batch_size 8] [--seed 0] [--out bench.json]

For each dataset a fixture tree is written in a temporary directory in the dataset's official
layout (the layouts of the builders' tests), with `--images` training images at the dataset's real
image size and plausible pedestrian boxes. Images are random textures (smooth colour field plus
pixel noise), so decoding costs about what a real photo costs; to keep fixture writing short only
`POOL` distinct images are encoded per dataset and their bytes are written under every file name
(the decoder's work does not depend on the name). The builder is then prepared with
`input_pipeline.datasets.get_builder` (timed once: "prepare") and the TRAINING pipeline
`pipeline.train_dataset` is built with the dataset's paper config (CityPersons, Caltech and
CrowdHuman have their own; the others use configs/citypersons_retinanet.py with the dataset and
input size swapped, see OTHER_CONFIGS). Augmentation is the config's: random flip, plus the scale
jitter `input.train_scale_range` where set (none of these configs sets one), resize to
`input.image_size`. `--batch_size` replaces the config's batch size (memory). Each repeat builds
a fresh pipeline, takes 2 warm-up batches, then times `--batches` batches as numpy arrays;
images/s is the median over repeats. Prints a table, then one JSON line (also written to --out).
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time

import numpy as np

from evaluation.io import atomic_write_json

POOL = 4  # distinct encoded images per dataset
WARMUP = 2

# name -> (config module, overrides: dataset, image_size (H, W), max_boxes) for datasets
# without their own paper config here (based on configs/citypersons_retinanet.py).
PAPER_CONFIGS = {
    "citypersons": ("configs.citypersons_retinanet", None),
    "caltech": ("configs.caltech_reploss", None),
    "crowdhuman": ("configs.crowdhuman_retinanet", None),
    "mot17det": ("configs.citypersons_retinanet", ("mot17det", (800, 1333), 256)),
    "wider_pedestrian": ("configs.citypersons_retinanet", ("wider_pedestrian", (800, 1333), 256)),
    "cuhk_sysu": ("configs.citypersons_retinanet", ("cuhk_sysu", (900, 1500), 128)),
    "prw": ("configs.citypersons_retinanet", ("prw", (800, 1333), 128)),
}
# name -> (H, W, format) of the real images.
IMAGE_SIZES = {
    "citypersons": (1024, 2048, "PNG"),
    "caltech": (480, 640, "JPEG"),
    "crowdhuman": (800, 1333, "JPEG"),
    "mot17det": (1080, 1920, "JPEG"),
    "wider_pedestrian": (1080, 1920, "JPEG"),
    "cuhk_sysu": (600, 800, "JPEG"),
    "prw": (1080, 1920, "JPEG"),
}
# name -> (min, max) persons per training image.
PERSONS = {"citypersons": (0, 15), "caltech": (0, 5), "crowdhuman": (20, 50),
           "mot17det": (15, 45), "wider_pedestrian": (2, 20), "cuhk_sysu": (1, 6),
           "prw": (2, 10)}


# ---------------------------------------------------------------------------------------------
# Images and boxes.

def _texture(rng, h, w):
    from PIL import Image

    low = rng.integers(0, 256, (max(h // 32, 2), max(w // 32, 2), 3), dtype=np.uint8)
    base = np.asarray(Image.fromarray(low).resize((w, h), Image.BILINEAR), np.int16)
    noise = rng.integers(-20, 21, (h, w, 3), dtype=np.int16)
    return np.clip(base + noise, 0, 255).astype(np.uint8)


def _encoded_pool(rng, h, w, fmt):
    from PIL import Image

    out = []
    for _ in range(POOL):
        buf = io.BytesIO()
        kwargs = {"quality": 90} if fmt == "JPEG" else {}
        Image.fromarray(_texture(rng, h, w)).save(buf, format=fmt, **kwargs)
        out.append(buf.getvalue())
    return out


def _write(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def _boxes(rng, n, h, w):
    """`[n, 4]` int x, y, w, h pedestrians (aspect 0.41) of 30 .. h/2 pixels, mostly inside."""
    bh = rng.uniform(30, h / 2, n)
    bw = 0.41 * bh
    x = rng.uniform(-0.1 * bw, w - 0.9 * bw)
    y = rng.uniform(0, np.maximum(h - bh, 1))
    return np.stack([x, y, bw, bh], 1).round().astype(np.int64)


def _count(rng, name):
    lo, hi = PERSONS[name]
    return int(rng.integers(lo, hi + 1))


# ---------------------------------------------------------------------------------------------
# Fixture trees in the official layouts (as in tests/test_<name>_builder.py).

def _citypersons(root, n, rng, pool, h, w):
    for split, count in (("train", n), ("val", 2)):
        for i in range(count):
            city = "aachen" if split == "train" else "frankfurt"
            stem = f"{city}_{i:06d}_000019"
            _write(os.path.join(root, "leftImg8bit", split, city, f"{stem}_leftImg8bit.png"),
                   pool[i % len(pool)])
            objects = [{"label": "pedestrian", "instanceId": 24000 + k, "bbox": b.tolist(),
                        "bboxVis": b.tolist()}
                       for k, b in enumerate(_boxes(rng, _count(rng, "citypersons"), h, w))]
            objects += [{"label": "ignore", "instanceId": 0, "bbox": b.tolist(),
                         "bboxVis": b.tolist()} for b in _boxes(rng, 1, h, w)]
            _write(os.path.join(root, "gtBboxCityPersons", split, city,
                                f"{stem}_gtBboxCityPersons.json"),
                   json.dumps({"imgHeight": h, "imgWidth": w, "objects": objects}).encode())


def _caltech(root, n, rng, pool, h, w):
    from input_pipeline.datasets import caltech

    for split, count, prefix, suffix in (("train10x", n, "set00", ".txt"),
                                         ("test", 2, "set06", ".jpg.txt")):
        for i in range(count):
            stem = f"{prefix}_V000_I{i:05d}"
            rows = ["% bbGt version=3"] + [
                f"person {x} {y} {bw} {bh} 0 0 0 0 0 0 0"
                for x, y, bw, bh in _boxes(rng, _count(rng, "caltech"), h, w)]
            _write(os.path.join(root, caltech.ANNOTATION_DIRS[split], stem + suffix),
                   ("\n".join(rows) + "\n").encode())
            _write(os.path.join(root, "images", stem + ".jpg"), pool[i % len(pool)])


def _crowdhuman(root, n, rng, pool, h, w):
    def record(i, tag):
        gt = []
        for x, y, bw, bh in _boxes(rng, _count(rng, "crowdhuman"), h, w).tolist():
            gt.append({"tag": "person", "fbox": [x, y, bw, bh], "vbox": [x, y, bw, bh // 2 + 1],
                       "hbox": [x + bw // 4, y, bw // 2, bh // 7 + 1],
                       "head_attr": {"ignore": 0, "occ": 0, "unsure": 0},
                       "extra": {"box_id": len(gt), "occ": 0}})
        return {"ID": f"{tag}{i:06d},{i:x}", "gtboxes": gt}

    for split, count, image_dir in (("train", n, "Images"),
                                    ("val", 2, os.path.join("CrowdHuman_val", "Images"))):
        records = [record(i, split) for i in range(count)]
        _write(os.path.join(root, f"annotation_{split}.odgt"),
               "".join(json.dumps(r) + "\n" for r in records).encode())
        for i, r in enumerate(records):
            _write(os.path.join(root, image_dir, r["ID"] + ".jpg"), pool[i % len(pool)])


def _mot17det(root, n, rng, pool, h, w):
    for name, length in (("MOT17-02", n), ("MOT17-13", 2)):
        seq = os.path.join(root, "train", name)
        _write(os.path.join(seq, "seqinfo.ini"),
               (f"[Sequence]\nname={name}\nimDir=img1\nframeRate=30\nseqLength={length}\n"
                f"imWidth={w}\nimHeight={h}\nimExt=.jpg\n").encode())
        rows = []
        for frame in range(1, length + 1):
            for k, (x, y, bw, bh) in enumerate(_boxes(rng, _count(rng, "mot17det"), h, w)):
                rows.append(f"{frame},{k + 1},{x},{y},{bw},{bh},1,1,0.8\n")
            _write(os.path.join(seq, "img1", f"{frame:06d}.jpg"), pool[frame % len(pool)])
        _write(os.path.join(seq, "gt", "gt.txt"), "".join(rows).encode())


def _wider_pedestrian(root, n, rng, pool, h, w):
    for split, count in (("train", n), ("val", 2)):
        lines = []
        for i in range(count):
            name = f"img{split}{i:05d}.jpg"
            boxes = _boxes(rng, _count(rng, "wider_pedestrian"), h, w)
            lines.append(" ".join([name] + [str(v) for b in boxes for v in (1, *b.tolist())]))
            _write(os.path.join(root, split, name), pool[i % len(pool)])
        _write(os.path.join(root, f"{split}_annotations.txt"), ("\n".join(lines) + "\n").encode())
    _write(os.path.join(root, "pedestrian_ignore_part_val.txt"), b"imgval00000.jpg 0 0 20 10\n")


def _mat_struct(fields, rows):
    arr = np.empty((1, len(rows)), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        for f, v in zip(fields, row):
            arr[0, i][f] = v
    return arr


def _mat_cell(items):
    arr = np.empty((len(items), 1), dtype=object)
    for i, v in enumerate(items):
        arr[i, 0] = v
    return arr


def _cuhk_sysu(root, n, rng, pool, h, w):
    from scipy.io import savemat

    ann = os.path.join(root, "annotation")
    proto = os.path.join(ann, "test", "train_test")
    os.makedirs(proto, exist_ok=True)
    n_test = 2
    names = [f"s{i + 1}.jpg" for i in range(n + n_test)]
    boxes = {nm: _boxes(rng, _count(rng, "cuhk_sysu"), h, w) for nm in names}
    for i, nm in enumerate(names):
        _write(os.path.join(root, "Image", "SSM", nm), pool[i % len(pool)])
    zero = np.array([[0.0]])
    img_rows = [(nm, np.array([[len(b)]], np.float64),
                 _mat_struct(("idlocate", "ishard"), [(np.array([x], np.float64), zero)
                                                      for x in b]))
                for nm, b in boxes.items()]
    savemat(os.path.join(ann, "Images.mat"), {"Img": _mat_struct(("imname", "nAppear", "box"),
                                                                  img_rows)})
    pool_names = names[n:]
    savemat(os.path.join(ann, "pool.mat"), {"pool": _mat_cell(pool_names)})

    def scenes(items):
        return _mat_struct(("imname", "idlocate", "ishard"),
                           [(nm, np.array([b], np.float64), zero) for nm, b in items])

    person = (names[0], boxes[names[0]][0])
    train = _mat_cell([_mat_struct(("idname", "nAppear", "scene"),
                                   [("p1", np.array([[1.0]]), scenes([person]))])])
    savemat(os.path.join(proto, "Train.mat"), {"Train": train})
    savemat(os.path.join(ann, "Person.mat"), {"Person": _mat_struct(
        ("idname", "nAppear", "scene"), [("p1", np.array([[1.0]]), scenes([person]))])})
    q, g = pool_names
    query = _mat_struct(("Query", "Gallery"), [(
        _mat_struct(("imname", "idlocate", "ishard", "idname"),
                    [(q, np.array([boxes[q][0]], np.float64), zero, "p2")]),
        _mat_struct(("imname", "idlocate", "ishard"),
                    [(g, np.array([boxes[g][0]], np.float64), zero)]))])
    savemat(os.path.join(proto, "TestG50.mat"), {"TestG50": query})
    savemat(os.path.join(proto, "TestG100.mat"), {"TestG100": query})


def _prw(root, n, rng, pool, h, w):
    from scipy.io import savemat

    frames = {"train": [f"c1s1_{i:06d}" for i in range(n)],
              "test": [f"c2s2_{i:06d}" for i in range(2)]}
    first_test = None
    for split, names in frames.items():
        for i, nm in enumerate(names):
            b = _boxes(rng, _count(rng, "prw"), h, w)
            pids = np.where(np.arange(len(b)) == 0, 1 if split == "train" else 10, -2)
            rows = np.concatenate([pids[:, None], b], 1).astype(np.float64)
            if first_test is None and split == "test":
                first_test = (nm, b[0])
            _write(os.path.join(root, "frames", nm + ".jpg"), pool[i % len(pool)])
            os.makedirs(os.path.join(root, "annotations"), exist_ok=True)
            savemat(os.path.join(root, "annotations", nm + ".jpg.mat"), {"box_new": rows})
    savemat(os.path.join(root, "frame_train.mat"), {"img_index_train": _mat_cell(frames["train"])})
    savemat(os.path.join(root, "frame_test.mat"), {"img_index_test": _mat_cell(frames["test"])})
    savemat(os.path.join(root, "ID_train.mat"), {"ID_train": np.array([[1.0]])})
    savemat(os.path.join(root, "ID_test.mat"), {"ID_test2": np.array([[10.0]])})
    nm, (x, y, bw, bh) = first_test
    _write(os.path.join(root, "query_info.txt"), f"10 {x} {y} {bw} {bh} {nm}\n".encode())


WRITERS = {"citypersons": _citypersons, "caltech": _caltech, "crowdhuman": _crowdhuman,
           "mot17det": _mot17det, "wider_pedestrian": _wider_pedestrian,
           "cuhk_sysu": _cuhk_sysu, "prw": _prw}


def write_fixture(name: str, root: str, n: int, seed: int = 0) -> None:
    """Writes `n` training images (plus a tiny val/test split) of `name` under `root`."""
    rng = np.random.default_rng(seed)
    h, w, fmt = IMAGE_SIZES[name]
    WRITERS[name](root, n, rng, _encoded_pool(rng, h, w, fmt), h, w)


def input_config(name: str, batch_size: int):
    """The dataset's paper input config (see PAPER_CONFIGS), batch size replaced."""
    module, override = PAPER_CONFIGS[name]
    cfg = importlib.import_module(module).get_config()
    cfg.unlock()
    c = cfg.input
    if override is not None:
        c.dataset, c.image_size, c.max_boxes = override[0], tuple(override[1]), override[2]
        c.train_split = "train"
    c.batch_size = int(batch_size)
    return c


# ---------------------------------------------------------------------------------------------

def bench_dataset(name, args, tmp):
    from input_pipeline import datasets, pipeline

    root = os.path.join(tmp, name)
    manual, data_dir = os.path.join(root, "manual"), os.path.join(root, "tfds")
    t0 = time.perf_counter()
    write_fixture(name, manual, args.images, args.seed)
    t_fixture = time.perf_counter() - t0
    c = input_config(name, args.batch_size)
    t0 = time.perf_counter()
    builder = datasets.get_builder(c.dataset, data_dir, manual)
    t_prepare = time.perf_counter() - t0
    n_train = builder.info.splits[c.train_split].num_examples
    rates = []
    for r in range(args.repeats):
        it = pipeline.as_numpy_iterator(pipeline.train_dataset(builder, c, seed=args.seed + r))
        for _ in range(WARMUP):
            batch = next(it)
        t0 = time.perf_counter()
        for _ in range(args.batches):
            batch = next(it)
        rates.append(args.batches * args.batch_size / (time.perf_counter() - t0))
        del it
    shape = list(batch["image"].shape)
    shutil.rmtree(root, ignore_errors=True)
    h, w, fmt = IMAGE_SIZES[name]
    return {
        "dataset": c.dataset, "source_size": [h, w], "format": fmt, "train_images": n_train,
        "input_size": list(c.image_size), "batch_shape": shape,
        "scale_range": list(c.get("train_scale_range") or (1.0, 1.0)),
        "random_flip": bool(c.random_flip), "max_boxes": int(c.max_boxes),
        "fixture_s": t_fixture, "prepare_s": t_prepare,
        "images_per_s": statistics.median(rates), "images_per_s_all": rates,
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tools.bench_input", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", default=",".join(PAPER_CONFIGS),
                        help="comma-separated names of " + ", ".join(PAPER_CONFIGS))
    parser.add_argument("--images", type=int, default=200, help="training images per fixture")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="write the JSON result here (atomically)")
    args = parser.parse_args(argv)
    names = [s.strip() for s in args.datasets.split(",") if s.strip()]
    unknown = [s for s in names if s not in PAPER_CONFIGS]
    if unknown:
        parser.error(f"unknown dataset(s) {unknown}; valid: {sorted(PAPER_CONFIGS)}")
    if min(args.images, args.batches, args.repeats, args.batch_size) < 1:
        parser.error("--images, --batches, --repeats and --batch_size must be >= 1")

    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    load_before = os.getloadavg() if hasattr(os, "getloadavg") else None
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_input_") as tmp:
        for name in names:
            results[name] = bench_dataset(name, args, tmp)
            r = results[name]
            print(f"  {name}: {r['images_per_s']:.1f} images/s (prepare {r['prepare_s']:.1f} s)",
                  file=sys.stderr, flush=True)
    load_after = os.getloadavg() if hasattr(os, "getloadavg") else None

    print(
        f"input pipeline benchmark: {args.images} training images per dataset, batch "
        f"{args.batch_size}, {args.batches} timed batches after {WARMUP} warm-up, median of "
        f"{args.repeats} runs ({platform.processor() or platform.machine()}, {os.cpu_count()} "
        f"CPUs, Python {platform.python_version()}, TensorFlow {tf.__version__}"
        + (f", load average {load_before[0]:.1f} -> {load_after[0]:.1f}" if load_before else "")
        + ")")
    head = (f"{'dataset':<17} {'source':>10} {'fmt':>4} {'input':>10} {'flip':>4} {'scale':>9} "
            f"{'prepare (s)':>11} {'images/s':>9}")
    print(head)
    for name, r in results.items():
        src = "x".join(str(v) for v in r["source_size"])
        inp = "x".join(str(v) for v in r["input_size"])
        scale = "-" if r["scale_range"] == [1.0, 1.0] else "{:g}-{:g}".format(*r["scale_range"])
        print(f"{name:<17} {src:>10} {r['format']:>4} {inp:>10} {'yes' if r['random_flip'] else 'no':>4} "
              f"{scale:>9} {r['prepare_s']:11.1f} {r['images_per_s']:9.1f}")
    report = {
        "benchmark": "input_pipeline", "images": args.images, "batches": args.batches,
        "warmup": WARMUP, "repeats": args.repeats, "batch_size": args.batch_size,
        "seed": args.seed, "cpus": os.cpu_count(), "python": platform.python_version(),
        "tensorflow": tf.__version__,
        "load_average": [load_before[0], load_after[0]] if load_before else None,
        "datasets": results,
    }
    print(json.dumps(report))
    if args.out:
        atomic_write_json(report, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
