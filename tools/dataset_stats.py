"""Crowd statistics of a pedestrian dataset split (CityPersons-style), as a table, JSON and PNG.

    python -m tools.dataset_stats --dataset synthetic_crowd/quickstart --split val \\
        --data_dir /tmp/tfds [--out /tmp/stats]

Builds `synthetic_crowd/<config>` locally if it is missing (never touching the network); other
TFDS datasets must already be prepared in --data_dir. The numbers come from the pure function
`compute_statistics(examples)`, usable from tests and notebooks on any iterable of numpy
examples with an `objects` dict (normalised boxes, label, height, vis_ratio, ignore).

Reference rates printed next to ours (CityPersons val, the figures this project targets):
48.8% of pedestrians overlap another with IoU > 0.1, 26.4% with IoU > 0.3.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from configs.common import default_data_dir

HEIGHT_BINS = (0.0, 20.0, 50.0, 75.0, 100.0, 200.0, float("inf"))
VISIBILITY_BINS = (0.0, 0.2, 0.65, 0.9, 1.0)
IOU_THRESHOLDS = (0.1, 0.3)
CITYPERSONS_VAL_OVERLAP = {"iou>0.1": 0.488, "iou>0.3": 0.264}
LABEL_IGNORE_REGION, LABEL_PEDESTRIAN, LABEL_GROUP = 0, 1, 5


def pairwise_iou_yxyx(boxes: np.ndarray) -> np.ndarray:
    """[N, 4] boxes (any consistent corner format, e.g. normalised yxyx) -> [N, N] IoU.

    IoU is invariant to scaling each axis, so normalised boxes give the pixel IoU.
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    lo = np.maximum(b[:, None, :2], b[None, :, :2])
    hi = np.minimum(b[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0.0, None), axis=-1)
    area = np.prod(np.clip(b[:, 2:] - b[:, :2], 0.0, None), axis=-1)
    union = area[:, None] + area[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def _bin_labels(edges) -> list[str]:
    def fmt(v):
        return "inf" if v == float("inf") else f"{v:g}"

    labels = [f"{fmt(a)}-{fmt(b)}" for a, b in itertools.pairwise(edges)]
    return [label.replace("-inf", "+") for label in labels]


def _histogram(values: np.ndarray, edges) -> dict:
    """Counts with left-closed bins, the last bin closed on both sides (so vis 1.0 counts)."""
    values = np.asarray(values, np.float64)
    idx = np.clip(np.searchsorted(np.asarray(edges), values, side="right") - 1, 0, len(edges) - 2)
    counts = (
        np.bincount(idx, minlength=len(edges) - 1).astype(int)
        if values.size
        else (np.zeros(len(edges) - 1, int))
    )
    total = max(1, int(values.size))
    return {
        "edges": [float(e) for e in edges],
        "labels": _bin_labels(edges),
        "counts": counts.tolist(),
        "fractions": [c / total for c in counts.tolist()],
    }


def compute_statistics(examples: Iterable[Mapping[str, Any]]) -> dict:
    """Crowd statistics of a split; a pure function of the examples.

    Args:
      examples: numpy example dicts with `objects/{bbox, label, height, vis_ratio, ignore}`
        (bbox normalised [ymin, xmin, ymax, xmax]); images are not read.

    Returns:
      A JSON-serialisable dict. Rates and histograms are over non-ignored pedestrians
      (label 1, ignore False); overlap counts a pedestrian whose full box has IoU above the
      threshold with any other label-1 box of its image (ignored tiny ones included).
      Subsets follow the CityPersons evaluation: Reasonable = height >= 50 and vis >= 0.65,
      Heavy = height >= 50 and 0.2 <= vis <= 0.65.
    """
    num_images = 0
    boxes_per_image, peds_per_image = [], []
    heights, vis, overlap_max = [], [], []
    counts = {"ignore_regions": 0, "groups": 0, "tiny": 0, "ignored": 0, "pedestrians": 0}
    person_ids = set()
    for ex in examples:
        num_images += 1
        obj = ex["objects"]
        labels = np.asarray(obj["label"]).reshape(-1)
        ignore = np.asarray(obj["ignore"]).astype(bool).reshape(-1)
        boxes = np.asarray(obj["bbox"], np.float64).reshape(-1, 4)
        is_ped = labels == LABEL_PEDESTRIAN
        boxes_per_image.append(int(labels.size))
        peds_per_image.append(int(np.sum(is_ped & ~ignore)))
        counts["pedestrians"] += int(np.sum(is_ped))
        counts["ignore_regions"] += int(np.sum(labels == LABEL_IGNORE_REGION))
        counts["groups"] += int(np.sum(labels == LABEL_GROUP))
        counts["tiny"] += int(np.sum(is_ped & ignore))
        counts["ignored"] += int(np.sum(ignore))
        if "person_id" in obj:
            pid = np.asarray(obj["person_id"]).reshape(-1)
            person_ids.update(int(p) for p in pid[is_ped & (pid >= 0)])
        ped_idx = np.nonzero(is_ped)[0]
        iou = pairwise_iou_yxyx(boxes[ped_idx])
        np.fill_diagonal(iou, 0.0)
        best = iou.max(axis=1) if len(ped_idx) > 1 else np.zeros(len(ped_idx))
        keep = ~ignore[ped_idx]
        overlap_max.extend(best[keep].tolist())
        heights.extend(np.asarray(obj["height"], np.float64).reshape(-1)[ped_idx][keep].tolist())
        vis.extend(np.asarray(obj["vis_ratio"], np.float64).reshape(-1)[ped_idx][keep].tolist())

    overlap_max, heights, vis = np.asarray(overlap_max), np.asarray(heights), np.asarray(vis)
    n = int(heights.size)
    per_image = np.asarray(boxes_per_image if boxes_per_image else [0])
    peds_img = np.asarray(peds_per_image if peds_per_image else [0])
    reasonable = int(np.sum((heights >= 50) & (vis >= 0.65)))
    heavy = int(np.sum((heights >= 50) & (vis >= 0.2) & (vis <= 0.65)))
    return {
        "num_images": num_images,
        "num_boxes": int(sum(boxes_per_image)),
        "num_pedestrians": counts["pedestrians"],
        "num_pedestrians_non_ignored": n,
        "num_ignore_regions": counts["ignore_regions"],
        "num_groups": counts["groups"],
        "num_tiny": counts["tiny"],
        "num_ignored": counts["ignored"],
        "num_identities": len(person_ids),
        "overlap": {
            f"iou>{t:g}": float(np.mean(overlap_max > t)) if n else 0.0 for t in IOU_THRESHOLDS
        },
        "overlap_citypersons_val": dict(CITYPERSONS_VAL_OVERLAP),
        "height_histogram": _histogram(heights, HEIGHT_BINS),
        "visibility_histogram": _histogram(vis, VISIBILITY_BINS),
        "boxes_per_image": {
            "mean": float(per_image.mean()),
            "min": int(per_image.min()),
            "max": int(per_image.max()),
        },
        "pedestrians_per_image": {
            "mean": float(peds_img.mean()),
            "min": int(peds_img.min()),
            "max": int(peds_img.max()),
        },
        "subsets": {"reasonable": reasonable, "heavy_occlusion": heavy, "all": n},
    }


def format_statistics(stats: Mapping[str, Any], title: str = "") -> str:
    """A readable plain-text table of `compute_statistics` output."""
    lines = [title] if title else []
    n = stats["num_pedestrians_non_ignored"]

    def row(name, value):
        lines.append(f"  {name:<40s} {value}")

    lines.append("Counts")
    row("images", stats["num_images"])
    row("boxes (all labels)", stats["num_boxes"])
    row("pedestrians (label 1)", stats["num_pedestrians"])
    row("pedestrians, not ignored", n)
    row("tiny pedestrians (ignored)", stats["num_tiny"])
    row("ignore regions (label 0)", stats["num_ignore_regions"])
    row("groups (label 5)", stats["num_groups"])
    row("identities", stats["num_identities"])
    b, p = stats["boxes_per_image"], stats["pedestrians_per_image"]
    row("boxes per image (mean/min/max)", f"{b['mean']:.2f} / {b['min']} / {b['max']}")
    row("pedestrians per image (mean/min/max)", f"{p['mean']:.2f} / {p['min']} / {p['max']}")
    lines.append("Crowd overlap (non-ignored pedestrians)     this split   CityPersons val")
    for key, ref in stats["overlap_citypersons_val"].items():
        lines.append(
            f"  {'overlap ' + key:<40s} {100 * stats['overlap'][key]:9.1f}%   {100 * ref:12.1f}%"
        )
    for title_, key in (
        ("Height histogram (px)", "height_histogram"),
        ("Visibility histogram", "visibility_histogram"),
    ):
        lines.append(title_)
        h = stats[key]
        for label, c, f in zip(h["labels"], h["counts"], h["fractions"]):
            bar = "#" * round(40 * f)
            lines.append(f"  {label:>10s} {c:7d} {100 * f:6.1f}%  {bar}")
    lines.append("CityPersons subsets")
    s = stats["subsets"]
    row("Reasonable (h>=50, vis>=0.65)", s["reasonable"])
    row("Heavy occlusion (h>=50, 0.2<=vis<=0.65)", s["heavy_occlusion"])
    row("All non-ignored", s["all"])
    return "\n".join(lines)


def _atomic_write(path: str, write_fn) -> None:
    """Writes through a temporary file in the same directory, then renames."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=os.path.splitext(path)[1], dir=directory)
    os.close(fd)
    try:
        write_fn(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def plot_statistics(stats: Mapping[str, Any], path: str, title: str = "") -> None:
    """Saves a PNG with the height, visibility and overlap histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, key, name in (
        (axes[0], "height_histogram", "full-box height (px)"),
        (axes[1], "visibility_histogram", "visibility ratio"),
    ):
        h = stats[key]
        ax.bar(range(len(h["counts"])), h["counts"], color="tab:blue")
        ax.set_xticks(range(len(h["counts"])), h["labels"])
        ax.set_xlabel(name)
        ax.set_ylabel("non-ignored pedestrians")
    keys = list(stats["overlap"])
    x = np.arange(len(keys))
    axes[2].bar(x - 0.2, [stats["overlap"][k] for k in keys], 0.4, label="this split")
    axes[2].bar(
        x + 0.2, [stats["overlap_citypersons_val"][k] for k in keys], 0.4, label="CityPersons val"
    )
    axes[2].set_xticks(x, [f"overlap {k}" for k in keys])
    axes[2].set_ylabel("fraction of pedestrians")
    axes[2].legend()
    if title:
        fig.suptitle(title)
    fig.tight_layout()

    def save(tmp):
        fig.savefig(tmp, format="png", dpi=100)

    try:
        _atomic_write(path, save)
    finally:
        plt.close(fig)


def load_examples(dataset: str, split: str, data_dir: str, max_images: int | None = None):
    """Numpy examples of a split, images left encoded; builds synthetic_crowd if missing."""
    import tensorflow_datasets as tfds

    name, _, config = dataset.partition("/")
    if name == "synthetic_crowd":
        from input_pipeline.datasets import synthetic_crowd

        builder = synthetic_crowd.build(config or "quickstart", data_dir)
    else:
        builder = tfds.builder(dataset, data_dir=data_dir)
        if not builder.is_prepared():
            raise SystemExit(
                f"Dataset {dataset!r} is not prepared in {data_dir}; this tool only generates "
                "synthetic_crowd. Prepare it first (locally) or point --data_dir at it."
            )
    if split not in builder.info.splits:
        raise SystemExit(
            f"Unknown split {split!r} of {dataset}; available: {sorted(builder.info.splits)}"
        )
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    if max_images:
        ds = ds.take(max_images)
    return tfds.as_numpy(ds)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(
        prog="python -m tools.dataset_stats",
        description="Crowd statistics of a pedestrian dataset split: overlap rates, height and "
        "visibility histograms, boxes per image, ignore counts, CityPersons subsets.",
    )
    parser.add_argument(
        "--dataset",
        default="synthetic_crowd/quickstart",
        help="TFDS name/config, e.g. synthetic_crowd/tiny (built if missing).",
    )
    parser.add_argument("--split", default="val", help="split name (train, val, test).")
    parser.add_argument(
        "--data_dir", default=default_data_dir(),
        help="TFDS data directory (default: $TFDS_DATA_DIR or ~/tensorflow_datasets, as training).",
    )
    parser.add_argument(
        "--out", default=None, help="if set, write stats.json and stats.png into this directory."
    )
    parser.add_argument(
        "--max_images", type=int, default=None, help="only use the first N images of the split."
    )
    args = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    examples = load_examples(args.dataset, args.split, args.data_dir, args.max_images)
    stats = compute_statistics(examples)
    title = f"{args.dataset} [{args.split}]"
    print(format_statistics(stats, title))
    if args.out:
        json_path = os.path.join(args.out, "stats.json")
        png_path = os.path.join(args.out, "stats.png")

        def dump(tmp):
            with open(tmp, "w") as f:
                json.dump({"dataset": args.dataset, "split": args.split, **stats}, f, indent=2)

        _atomic_write(json_path, dump)
        plot_statistics(stats, png_path, title)
        print(f"wrote {json_path} and {png_path}", file=sys.stderr)
    return stats


if __name__ == "__main__":
    main()
