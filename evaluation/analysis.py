"""Everything `--mode=eval` writes for one checkpoint beyond MR^-2 and COCO AP.

`analyse_eval_dir` computes, from the detections (and the raw pre-NMS candidates when given):
the RepLoss crowd subsets' MR^-2, the Harmonic Loss paper's VOC-style AP table and AIC on matched
detections, the crowd error analysis (missed detections, false-positive kinds, MR^-2 against the
NMS threshold), and writes the pictures; `write_index` links them from an `index.html`.

Files in the eval directory (`<workdir>/eval/<step>/`):
  mr_fppi.png              miss rate vs FPPI of every CityPersons setup (log axes)
  missed_detections.png    RepLoss Figure 2; missed_vs_score.png: Figure 3a;
  false_positive_kinds.png Figure 3b; mr_vs_nms.png: Figure 6 (needs raw detections)
  score_iou.png            Harmonic Loss Figure 5
  errors.png               sample images: true positives green, false positives blue, misses red
                           (RepLoss Figure 9), at the Reasonable operating point FPPI = 0.1
  crowd_analysis.json      the curves behind the figures; raw_detections.json: pre-NMS boxes
  index.html               all of the above with the metrics table
"""

from __future__ import annotations

import html
import os
from collections.abc import Sequence

import numpy as np

from evaluation import (
    consistency,
    crowd_analysis,
    crowd_subsets,
    miss_rate,
    plot_curves,
    visualize,
    voc_ap,
)
from evaluation.io import atomic_write_bytes, atomic_write_json

OPERATING_FPPI = 0.1


def operating_score(match: miss_rate.SetupMatch, fppi: float = OPERATING_FPPI) -> float:
    """The score threshold at which the ranking reaches `fppi` false positives per image (the
    score of the last detection before the next false positive); 0 if it never does."""
    n = int(np.floor(fppi * match.num_images))
    k = crowd_analysis.prefix_before_false_positive(match.is_tp, n)
    return float(match.scores[k - 1]) if 0 < k < match.scores.size else 0.0


def _xywh_to_xyxy(b: np.ndarray) -> np.ndarray:
    b = np.asarray(b, np.float64).reshape(-1, 4).copy()
    b[:, 2:] += b[:, :2]
    return b


def error_panels(match: miss_rate.SetupMatch, images: Sequence[tuple], threshold: float) -> list:
    """Error pictures (see `visualize.draw_errors`) of (image id, image) pairs at `threshold`."""
    found = match.gt_matched_score() >= threshold
    keep = match.scores >= threshold
    det_img = np.asarray(match.image_ids, dtype=object)
    gt_img = np.asarray(match.gt_image_ids, dtype=object)
    panels = []
    for image_id, image in images:
        d = keep & (det_img == image_id)
        g = gt_img == image_id
        panels.append(visualize.draw_errors(
            image,
            tp_boxes=_xywh_to_xyxy(match.det_boxes[d & match.is_tp]),
            fp_boxes=_xywh_to_xyxy(match.det_boxes[d & ~match.is_tp]),
            fp_scores=match.scores[d & ~match.is_tp],
            missed_boxes=_xywh_to_xyxy(match.gt_boxes[g & ~match.gt_ignored & ~found]),
            ignore_boxes=_xywh_to_xyxy(match.gt_boxes[g & match.gt_ignored]),
        ))
    return panels


def analyse_eval_dir(gt: dict, dets: list[dict], raw: list[dict] | None, out_dir: str,
                     step: int, metrics: dict | None = None, images: Sequence[tuple] = (),
                     max_detections: int | None = 100) -> dict:
    """Computes the extra metrics, writes the JSON and PNG files into `out_dir`; returns the
    metrics to merge into metrics.json."""
    os.makedirs(out_dir, exist_ok=True)
    out: dict = {}
    out["crowd_subsets"] = crowd_subsets.evaluate_crowd_subsets(gt, dets)
    out["voc"] = voc_ap.voc_ap(gt, dets)
    out["consistency"] = consistency.summary(gt, dets)
    consistency.plot_score_iou(*consistency.detection_ious(gt, dets),
                               os.path.join(out_dir, "score_iou.png"), title=f"step {step}")
    if raw is not None:
        atomic_write_json(raw, os.path.join(out_dir, "raw_detections.json"), indent=None)
    report = crowd_analysis.write_report(gt, dets, out_dir, raw, name=f"step {step}",
                                         max_detections=max_detections)
    out["crowd_analysis"] = {
        "missed": report["missed"], "shares": report["shares"],
        "false_positives": report["false_positives"]["totals"],
        **({"mr_vs_nms": report["mr_vs_nms"]} if "mr_vs_nms" in report else {}),
    }
    curves = plot_curves.curves_for(gt, dets, list(miss_rate.SETUPS))
    plot_curves.plot_mr_fppi(curves, os.path.join(out_dir, "mr_fppi.png"),
                             title=f"step {step}: CityPersons setups")
    if images:
        match = miss_rate.setup_matches(gt, dets, "Reasonable")["Reasonable"]
        t = operating_score(match)
        out["error_picture_score_threshold"] = t
        panels = error_panels(match, images, t)
        h, w = images[0][1].shape[:2]
        visualize.save_grid(panels, os.path.join(out_dir, "errors.png"), ncols=1 if w > h else 2)
    return out


_FIGURES = (
    ("mr_fppi.png", "Miss rate vs false positives per image, every CityPersons setup"),
    ("detections.png", "Ground truth (green; ignored yellow dashed) and detections (red)"),
    ("errors.png", ("True positives (green), false positives (blue) and misses (red) at the "
                    "Reasonable operating point FPPI = 0.1 (RepLoss Figure 9)")),
    ("missed_detections.png", ("Missed pedestrians at 20 / 100 / 500 false positives "
                               "(RepLoss Figure 2)")),
    ("missed_vs_score.png", "Missed reasonable-crowd pedestrians vs score (RepLoss Figure 3a)"),
    ("false_positive_kinds.png", ("Crowd and localisation errors among the top-k false "
                                  "positives (RepLoss Figure 3b)")),
    ("mr_vs_nms.png", "MR^-2 Reasonable vs NMS threshold from raw detections (RepLoss Figure 6)"),
    ("score_iou.png", "Classification score vs IoU of every detection (Harmonic Loss Figure 5)"),
)


def _rows(metrics: dict) -> list[tuple[str, str]]:
    rows = []
    pct = lambda v: "n/a" if v is None or v < 0 else f"{100 * v:.2f}%"
    for k, v in metrics.get("miss_rate", {}).items():
        rows.append((f"MR^-2 {k}", pct(v)))
    for k, v in metrics.get("crowd_subsets", {}).items():
        rows.append((f"MR^-2 {k}", pct(v)))
    for k, v in metrics.get("coco", {}).items():
        rows.append((f"COCO {k}", pct(v)))
    for k, v in metrics.get("voc", {}).items():
        rows.append((f"VOC07 {k}", pct(v)))
    c = metrics.get("consistency", {})
    if c.get("AIC_matched") is not None:
        rows.append(("AIC on matched detections", f"{c['AIC_matched']:.4f}"))
    return rows


def write_index(out_dir: str, metrics: dict) -> None:
    """`index.html`: the metrics table and every PNG present in `out_dir`."""
    step = metrics.get("step", "?")
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>evaluation at step {html.escape(str(step))}</title>",
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "td{padding:2px 12px}img{max-width:100%;border:1px solid #ccc}</style></head><body>",
        f"<h1>Evaluation at step {html.escape(str(step))}</h1>",
        f"<p>split {html.escape(str(metrics.get('split', '')))}, "
        f"{metrics.get('num_images', '?')} images, {metrics.get('num_detections', '?')} "
        "detections. Numbers: <a href='metrics.json'>metrics.json</a>, curves: "
        "<a href='crowd_analysis.json'>crowd_analysis.json</a>.</p><table>",
    ]
    parts += [f"<tr><td>{html.escape(k)}</td><td>{html.escape(v)}</td></tr>"
              for k, v in _rows(metrics)]
    parts.append("</table>")
    for name, caption in _FIGURES:
        if os.path.exists(os.path.join(out_dir, name)):
            parts.append(f"<h3>{html.escape(caption)}</h3><img src='{name}' alt='{name}'>")
    parts.append("</body></html>")
    atomic_write_bytes("\n".join(parts).encode(), os.path.join(out_dir, "index.html"))


def main(argv: Sequence[str] | None = None) -> int:
    import argparse
    import json
    import sys

    from evaluation import coco_ap
    from evaluation.io import load_detections, load_ground_truth

    p = argparse.ArgumentParser(
        prog="python -m evaluation.analysis",
        description="Everything --mode=eval writes for one set of detections (metrics.json, the "
        "figures, index.html), from files: CityPersons MR^-2, crowd subsets, COCO and VOC-style "
        "AP, AIC, crowd error analysis, MR^-2 vs NMS threshold (with --raw). No error pictures "
        "(they need the images).",
    )
    p.add_argument("--gt", required=True, help="ground truth, CityPersons evaluation JSON")
    p.add_argument("--dets", required=True, help="detections JSON list (after NMS)")
    p.add_argument("--raw", help="raw pre-NMS detections JSON list (enables the NMS sweep)")
    p.add_argument("--out", required=True, help="directory to write into")
    p.add_argument("--step", type=int, default=0, help="label used in titles (default 0)")
    args = p.parse_args(argv)
    try:
        gt, dets = load_ground_truth(args.gt), load_detections(args.dets)
        raw = load_detections(args.raw) if args.raw else None
        metrics = {"step": args.step, "num_detections": len(dets),
                   "num_images": len(gt["images"]),
                   "miss_rate": miss_rate.evaluate_miss_rate(gt, dets),
                   "coco": coco_ap.coco_ap(gt, dets)}
        metrics.update(analyse_eval_dir(gt, dets, raw, args.out, args.step, metrics))
        atomic_write_json(metrics, os.path.join(args.out, "metrics.json"))
        write_index(args.out, metrics)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps({"miss_rate": metrics["miss_rate"], "index": os.path.join(args.out,
                                                                                "index.html")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
