"""Crowd error analysis of the Repulsion Loss paper (its section 3.2, Figures 2, 3 and 6).

All of it is read off the official CityPersons matching of the Reasonable setup
(`evaluation.miss_rate.setup_matches`): the paper analyses the reasonable set and its two crowd
subsets (`evaluation.crowd_subsets`), so one matching serves every figure.

* Missed detections (Figure 2). The detections are ranked by score over the whole set and cut
  just before the (n+1)-th false positive, for n in 20 / 100 / 500; a pedestrian of a subset is
  missed when no true positive of that prefix is matched to it. Reported per subset
  (reasonable, reasonable-occ, reasonable-crowd) with the subset's size and MR^-2, and the
  shares of the reasonable misses that are occluded / crowd-occluded (the paper's "about 60%").
* Missed pedestrians against the detection score (Figure 3a): for a score threshold t, the
  subset's pedestrians without a matched detection of score >= t. The greedy matcher visits
  detections in score order, so this is exact for every t from one matching.
* False positives by kind (Figure 3b): each false positive of the ranking is a background error
  (IoU < 0.1 with every annotated pedestrian of its image), a localisation error (IoU >= 0.1 with
  exactly one) or a crowd error (IoU >= 0.1 with two or more); the proportions among the top-k
  false positives are given for every k. "Annotated pedestrian" is an annotation with
  `ignore == 0`, as for the crowd subsets; ignore regions and groups are not people.
* MR^-2 against the NMS threshold (Figure 6) from one set of raw, pre-NMS detections
  (`nms_sweep`): greedy NMS on the host per image, float64, dropping a box whose IoU with a kept
  higher-scoring box is > the threshold (the detector's own rule), keeping at most
  `max_detections` per image. The device NMS works in float32 on network-input pixels, so a
  pair whose IoU sits within float32 rounding of the threshold may be decided differently.

    python -m evaluation.crowd_analysis --gt GT.json --dets DETS.json [--raw RAW.json] --out DIR
writes `crowd_analysis.json` and the PNGs of the figures into DIR and prints the JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping, Sequence

import numpy as np

from evaluation import crowd_subsets, miss_rate, overlaps
from evaluation.io import atomic_write_json, load_detections, load_ground_truth

FP_COUNTS = (20, 100, 500)  # RepLoss Figure 2
ERROR_IOU = 0.1  # RepLoss section 3.2: background < 0.1 <= localisation / crowd
FP_KINDS = ("background", "localization", "crowd")
SUBSETS = ("Reasonable", "Reasonable_occ", "Reasonable_crowd")
NMS_THRESHOLDS = (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7)


def subset_masks(gt: dict, match: miss_rate.SetupMatch) -> dict[str, np.ndarray]:
    """[G] bool masks over `match`'s ground-truth rows for the three subsets of the paper."""
    reasonable = ~match.gt_ignored
    occ_match = miss_rate.setup_matches(gt, [], {"occ": crowd_subsets.REASONABLE_OCC})["occ"]
    occ = ~occ_match.gt_ignored
    crowd_ids = crowd_subsets.crowd_annotation_ids(gt)
    crowd = occ & np.array([a in crowd_ids for a in match.gt_ann_ids], dtype=bool)
    return {"Reasonable": reasonable, "Reasonable_occ": occ, "Reasonable_crowd": crowd}


def prefix_before_false_positive(is_tp: np.ndarray, n: int) -> int:
    """Length of the longest prefix of the ranking holding at most `n` false positives."""
    fp_positions = np.flatnonzero(~np.asarray(is_tp, bool))
    return int(fp_positions[n]) if fp_positions.size > n else int(np.size(is_tp))


def missed_at_false_positives(
    match: miss_rate.SetupMatch, masks: Mapping[str, np.ndarray], fp_counts=FP_COUNTS
) -> dict:
    """{subset: {"num_gt": G_s, "missed@n": count, ...}} (Figure 2's bars)."""
    out = {name: {"num_gt": int(m.sum())} for name, m in masks.items()}
    for n in fp_counts:
        k = prefix_before_false_positive(match.is_tp, int(n))
        found = np.zeros(match.gt_ignored.size, bool)
        tp = match.is_tp[:k]
        found[match.gt_index[:k][tp]] = True
        for name, m in masks.items():
            out[name][f"missed@{n}"] = int(np.count_nonzero(m & ~found))
    return out


def missed_vs_score(
    match: miss_rate.SetupMatch, mask: np.ndarray, thresholds: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Figure 3a: ([T] thresholds, [T] int number of `mask` pedestrians missed at score >= t)."""
    t = np.linspace(0.0, 1.0, 101) if thresholds is None else np.asarray(thresholds, np.float64)
    scores = np.sort(match.gt_matched_score()[np.asarray(mask, bool)])
    return t, np.searchsorted(scores, t, side="left").astype(np.int64)


def false_positive_kinds(gt: dict, match: miss_rate.SetupMatch) -> np.ndarray:
    """[F] int kind of each false positive of the ranking (0 background, 1 localisation,
    2 crowd), in ranking order."""
    people = [a for a in gt.get("annotations", [])
              if a.get("category_id", 1) == miss_rate.PERSON_CATEGORY_ID and not a.get("ignore", 0)]
    fp = np.flatnonzero(~match.is_tp)
    counts = overlaps.count_above(
        [match.image_ids[i] for i in fp.tolist()], match.det_boxes[fp],
        [a["image_id"] for a in people],
        np.array([a["bbox"] for a in people], np.float64).reshape(-1, 4), ERROR_IOU,
    )
    return np.minimum(counts, 2)


def false_positive_proportions(kinds: np.ndarray) -> dict[str, np.ndarray]:
    """Figure 3b: {kind: [F] share of that kind among the top-k false positives, k = 1..F}."""
    k = np.arange(1, kinds.size + 1, dtype=np.float64)
    return {name: np.cumsum(kinds == i) / k for i, name in enumerate(FP_KINDS)}


def analyse(gt: dict, dets: list[dict], fp_counts=FP_COUNTS) -> dict:
    """Every number of Figures 2 and 3 as one JSON-ready dict (curves as lists)."""
    match = miss_rate.setup_matches(gt, dets, "Reasonable")["Reasonable"]
    masks = subset_masks(gt, match)
    mr = {"Reasonable": match.mr, **crowd_subsets.evaluate_crowd_subsets(gt, dets)}
    missed = missed_at_false_positives(match, masks, fp_counts)
    for name in masks:
        missed[name]["MR"] = mr[name]
    shares = {}
    for n in fp_counts:
        r = missed["Reasonable"][f"missed@{n}"]
        shares[f"occluded_share_of_missed@{n}"] = (
            missed["Reasonable_occ"][f"missed@{n}"] / r if r else 0.0)
        shares[f"crowd_share_of_occluded_missed@{n}"] = (
            missed["Reasonable_crowd"][f"missed@{n}"] / missed["Reasonable_occ"][f"missed@{n}"]
            if missed["Reasonable_occ"][f"missed@{n}"] else 0.0)
    t, miss_curve = missed_vs_score(match, masks["Reasonable_crowd"])
    kinds = false_positive_kinds(gt, match)
    props = false_positive_proportions(kinds)
    return {
        "missed": missed,
        "shares": shares,
        "missed_vs_score": {"thresholds": t.tolist(), "Reasonable_crowd": miss_curve.tolist()},
        "false_positives": {
            "count": int(kinds.size),
            "totals": {name: int(np.count_nonzero(kinds == i)) for i, name in enumerate(FP_KINDS)},
            "proportions": {k: v.tolist() for k, v in props.items()},
        },
    }


# ----------------------------------------------------------------------------------------------
# NMS sweep from raw (pre-NMS) detections.


def nms_xywh(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float,
             max_detections: int | None = None, iou: np.ndarray | None = None) -> np.ndarray:
    """Greedy NMS of one image's [K, 4] xywh boxes; returns kept indices, best score first.

    A box is dropped when its IoU with an already kept box is > `iou_threshold` (strict, as the
    detector's NMS); score ties keep input order. `iou`: rows of IoU of the boxes in score order
    (`iou[i]` -> [K]), e.g. an `IouRows` the caller reuses across thresholds."""
    order = np.argsort(-np.asarray(scores, np.float64), kind="stable")
    if iou is None:
        iou = IouRows(np.asarray(boxes, np.float64).reshape(-1, 4)[order])
    limit = order.size if max_detections is None else int(max_detections)
    alive = np.ones(order.size, bool)
    keep = []
    i = 0
    # One vector operation per KEPT box (at most `limit`), not per candidate.
    while i < order.size and len(keep) < limit:
        keep.append(order[i])
        alive[i + 1:] &= ~(iou[i][i + 1:] > iou_threshold)
        nxt = int(np.argmax(alive[i + 1:])) if i + 1 < order.size else 0
        if i + 1 >= order.size or not alive[i + 1 + nxt]:
            break
        i = i + 1 + nxt
    return np.asarray(keep, np.int64)


class IouRows:
    """Row i of the IoU matrix of [K, 4] xywh boxes, computed on first use and cached: NMS only
    needs the rows of the boxes it keeps (at most `max_detections` per threshold), not K x K."""

    def __init__(self, boxes: np.ndarray):
        b = np.asarray(boxes, np.float64).reshape(-1, 4)
        self.x1, self.y1 = b[:, 0], b[:, 1]
        self.x2, self.y2 = b[:, 0] + b[:, 2], b[:, 1] + b[:, 3]
        self.area = b[:, 2] * b[:, 3]
        self.rows: dict[int, np.ndarray] = {}

    def __getitem__(self, i: int) -> np.ndarray:
        row = self.rows.get(i)
        if row is None:  # the same arithmetic as overlaps.iou_matrix_xywh, one row of it
            iw = np.minimum(self.x2[i], self.x2) - np.maximum(self.x1[i], self.x1)
            ih = np.minimum(self.y2[i], self.y2) - np.maximum(self.y1[i], self.y1)
            inter = np.maximum(iw, 0.0) * np.maximum(ih, 0.0)
            union = self.area[i] + self.area - inter
            row = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
            self.rows[i] = row
        return row


def _raw_groups(raw: list[dict]) -> list[tuple[list, np.ndarray, np.ndarray]]:
    """Per (image, category): (records in score order, scores, boxes)."""
    groups: dict = {}
    for d in raw:
        groups.setdefault((d["image_id"], d["category_id"]), []).append(d)
    out = []
    for recs in groups.values():
        scores = np.array([r["score"] for r in recs], np.float64)
        order = np.argsort(-scores, kind="stable")
        recs = [recs[i] for i in order]
        boxes = np.array([r["bbox"] for r in recs], np.float64).reshape(-1, 4)
        out.append((recs, scores[order], boxes))
    return out


def apply_nms_multi(raw: list[dict], thresholds: Sequence[float],
                    max_detections: int | None = 100) -> dict[float, list]:
    """{threshold: records kept by per-image, per-category NMS at it}; each image's IoU rows are
    computed once for all thresholds (and only one image's are held at a time)."""
    out: dict = {float(t): [] for t in thresholds}
    for recs, scores, boxes in _raw_groups(raw):
        iou = IouRows(boxes)  # boxes are already in score order
        for t, kept in out.items():
            kept.extend(recs[i] for i in nms_xywh(boxes, scores, t, max_detections, iou=iou))
    return out


def apply_nms(raw: list[dict], iou_threshold: float, max_detections: int | None = 100) -> list:
    """Per-image, per-category NMS of detection records ({image_id, category_id, bbox, score})."""
    return apply_nms_multi(raw, [iou_threshold], max_detections)[float(iou_threshold)]


def nms_sweep(gt: dict, raw: list[dict], thresholds=NMS_THRESHOLDS,
              setups: Sequence[str] = ("Reasonable",), max_detections: int | None = 100) -> dict:
    """Figure 6: {setup: {threshold as str: MR^-2}} from one set of raw detections."""
    out: dict = {s: {} for s in setups}
    kept = apply_nms_multi(raw, thresholds, max_detections)
    for t in thresholds:
        mr = miss_rate.evaluate_miss_rate(gt, kept[float(t)], list(setups))
        for s in setups:
            out[s][f"{float(t):g}"] = mr[s]
    return out


# ----------------------------------------------------------------------------------------------
# Figures.


def _save(fig, path: str) -> None:
    import matplotlib.pyplot as plt

    tmp = f"{path}.tmp.png"
    fig.tight_layout()
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_missed(results: Mapping[str, dict], path: str, fp_counts=FP_COUNTS) -> None:
    """Figure 2: missed pedestrians per subset at each false-positive budget, one bar group per
    method (`results`: {method: analyse() output})."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(fp_counts), figsize=(4 * len(fp_counts), 3.6), sharey=True)
    axes = np.atleast_1d(axes)
    names = list(results)
    width = 0.8 / max(len(names), 1)
    for ax, n in zip(axes, fp_counts):
        for j, name in enumerate(names):
            m = results[name]["missed"]
            vals = [m[s][f"missed@{n}"] for s in SUBSETS]
            xs = np.arange(len(SUBSETS)) + (j - (len(names) - 1) / 2) * width
            bars = ax.bar(xs, vals, width, label=name)
            ax.bar_label(bars, fontsize=7)
        ax.set_xticks(np.arange(len(SUBSETS)), ["reasonable", "r-occ", "r-crowd"])
        ax.set_title(f"missed at {n} false positives")
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("missed pedestrians")
    if len(names) > 1:
        axes[-1].legend(fontsize=8)
    _save(fig, path)


def plot_missed_vs_score(results: Mapping[str, dict], path: str) -> None:
    """Figure 3a: missed reasonable-crowd pedestrians against the score threshold."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for name, r in results.items():
        c = r["missed_vs_score"]
        ax.plot(c["thresholds"], c["Reasonable_crowd"], label=name)
    ax.set_xlabel("detection score threshold")
    ax.set_ylabel("missed reasonable-crowd pedestrians")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def plot_false_positives(results: Mapping[str, dict], path: str) -> None:
    """Figure 3b: share of crowd (solid) and localisation (dashed) errors among the top-k false
    positives, against k (log axis)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for name, r in results.items():
        p = r["false_positives"]["proportions"]
        k = np.arange(1, len(p["crowd"]) + 1)
        (line,) = ax.plot(k, p["crowd"], label=f"{name}: crowd")
        ax.plot(k, p["localization"], "--", color=line.get_color(), label=f"{name}: localisation")
    ax.set_xscale("log")
    ax.set_ylim(0, 1)
    ax.set_xlabel("number of false positives considered")
    ax.set_ylabel("proportion")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7)
    _save(fig, path)


def plot_nms_sweep(sweeps: Mapping[str, dict], path: str, setup: str = "Reasonable") -> None:
    """Figure 6: MR^-2 against the NMS threshold, one line per method."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5, 3.8))
    for name, sweep in sweeps.items():
        xs = [float(k) for k in sweep[setup]]
        ax.plot(xs, [100 * v for v in sweep[setup].values()], marker="o", label=name)
    ax.set_xlabel("NMS IoU threshold")
    ax.set_ylabel(f"MR$^{{-2}}$ {setup} (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)


def write_report(gt: dict, dets: list[dict], out_dir: str, raw: list[dict] | None = None,
                 name: str = "detector", max_detections: int | None = 100) -> dict:
    """`analyse` (+ `nms_sweep` when raw detections are given): JSON and PNGs into `out_dir`."""
    os.makedirs(out_dir, exist_ok=True)
    result = analyse(gt, dets)
    plot_missed({name: result}, os.path.join(out_dir, "missed_detections.png"))
    plot_missed_vs_score({name: result}, os.path.join(out_dir, "missed_vs_score.png"))
    plot_false_positives({name: result}, os.path.join(out_dir, "false_positive_kinds.png"))
    if raw is not None:
        result["mr_vs_nms"] = nms_sweep(gt, raw, max_detections=max_detections)
        plot_nms_sweep({name: result["mr_vs_nms"]}, os.path.join(out_dir, "mr_vs_nms.png"))
    atomic_write_json(result, os.path.join(out_dir, "crowd_analysis.json"))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m evaluation.crowd_analysis",
        description="Crowd error analysis (Repulsion Loss section 3.2): missed detections at "
        "20/100/500 false positives, missed reasonable-crowd pedestrians against the score, "
        "false-positive kinds, and MR^-2 against the NMS threshold from raw detections.",
    )
    p.add_argument("--gt", required=True, help="ground truth, CityPersons evaluation JSON")
    p.add_argument("--dets", required=True, help="detections (after NMS), JSON list")
    p.add_argument("--raw", help="raw pre-NMS detections, JSON list (enables the NMS sweep)")
    p.add_argument("--max_detections", type=int, default=100,
                   help="detections kept per image by the NMS sweep (default 100)")
    p.add_argument("--out", required=True, help="directory for crowd_analysis.json and PNGs")
    args = p.parse_args(argv)
    try:
        gt = load_ground_truth(args.gt)
        dets = load_detections(args.dets)
        raw = load_detections(args.raw) if args.raw else None
        result = write_report(gt, dets, args.out, raw, max_detections=args.max_detections)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    summary = {k: v for k, v in result.items() if k in ("missed", "shares", "mr_vs_nms")}
    summary["false_positives"] = result["false_positives"]["totals"]
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
