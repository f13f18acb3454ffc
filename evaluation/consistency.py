"""Score / localisation consistency of detections (Harmonic Loss paper, eq. 14 and Figure 5).

* `detection_ious`: for every detection, the IoU of its box with the best-overlapping annotated
  pedestrian (`ignore == 0`) of its image, 0 where there is none.
* `matched_aic`: AIC (eq. 14), the mean |P_i - IoU_i| over detections matched to a ground truth.
  The paper measures it on training positives; on detections, "matched" means the true
  positives of the official CityPersons matching of a setup (Reasonable by default) and IoU_i
  their IoU with the pedestrian they matched.
* `score_iou_histogram` / `plot_score_iou`: the joint histogram of (IoU, score) over all
  detections (Figure 5). The paper's red "indicator curve" is not defined in its text, so the plot
  draws the diagonal score = IoU (perfect consistency) instead.

    python -m evaluation.consistency --gt GT.json --dets DETS.json [--png out.png]
prints {"AIC_matched": .., "num_matched": .., "mean_iou": .., "pearson_score_iou": ..}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence

import numpy as np

from evaluation import miss_rate, overlaps
from evaluation.io import load_detections, load_ground_truth


def _iou_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise IoU of [N, 4] xywh boxes a and b, float64, 0 for an empty union."""
    x1, y1 = np.maximum(a[:, 0], b[:, 0]), np.maximum(a[:, 1], b[:, 1])
    x2 = np.minimum(a[:, 0] + a[:, 2], b[:, 0] + b[:, 2])
    y2 = np.minimum(a[:, 1] + a[:, 3], b[:, 1] + b[:, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    union = a[:, 2] * a[:, 3] + b[:, 2] * b[:, 3] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def detection_ious(gt: dict, dets: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """([N] scores, [N] best IoU with an annotated pedestrian) over category-1 detections."""
    people = [a for a in gt.get("annotations", [])
              if a["category_id"] == miss_rate.PERSON_CATEGORY_ID and not a.get("ignore", 0)]
    persons = [d for d in dets if d["category_id"] == miss_rate.PERSON_CATEGORY_ID]
    ious, _ = overlaps.best_ious(
        [d["image_id"] for d in persons],
        np.array([d["bbox"] for d in persons], np.float64).reshape(-1, 4),
        [a["image_id"] for a in people],
        np.array([a["bbox"] for a in people], np.float64).reshape(-1, 4),
    )
    return np.array([float(d["score"]) for d in persons], np.float64), ious


def matched_aic(match: miss_rate.SetupMatch) -> tuple[float | None, int]:
    """(AIC over the true positives of `match`, their number); AIC is None without any."""
    tp = match.is_tp
    if not tp.any():
        return None, 0
    iou = _iou_rows(match.det_boxes[tp], match.gt_boxes[match.gt_index[tp]])
    return float(np.mean(np.abs(match.scores[tp] - iou))), int(tp.sum())


def summary(gt: dict, dets: list[dict], setup: str = "Reasonable") -> dict:
    """AIC on matched detections plus simple statistics of the (score, IoU) cloud."""
    match = miss_rate.setup_matches(gt, dets, setup)[setup]
    aic, n = matched_aic(match)
    scores, ious = detection_ious(gt, dets)
    pearson = (float(np.corrcoef(scores, ious)[0, 1])
               if scores.size > 1 and scores.std() > 0 and ious.std() > 0 else None)
    # None (JSON null), not nan, where a value is undefined: metrics files are strict JSON.
    return {"setup": setup, "AIC_matched": aic, "num_matched": n,
            "num_detections": int(scores.size),
            "mean_iou": float(ious.mean()) if ious.size else None,
            "pearson_score_iou": pearson}


def score_iou_histogram(scores: np.ndarray, ious: np.ndarray, bins: int = 20):
    """[bins, bins] counts over IoU (rows, [0, 1]) and score (columns, [0, 1])."""
    h, _, _ = np.histogram2d(ious, scores, bins=bins, range=[[0, 1], [0, 1]])
    return h.astype(np.int64)


def plot_score_iou(scores: np.ndarray, ious: np.ndarray, path: str, title: str = "") -> None:
    """Figure 5: 2-D histogram of IoU (x) against classification score (y), log colour scale."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import LogNorm

    fig, ax = plt.subplots(figsize=(5, 4.2))
    h = score_iou_histogram(scores, ious, bins=40)
    im = ax.imshow(np.ma.masked_equal(h.T, 0), origin="lower", extent=(0, 1, 0, 1),
                   aspect="auto", norm=LogNorm(vmin=1, vmax=max(int(h.max()), 2)), cmap="viridis")
    fig.colorbar(im, ax=ax, label="detections")
    ax.plot([0, 1], [0, 1], "r--", lw=1, label="score = IoU")
    ax.set_xlabel("IoU with the best-overlapping pedestrian")
    ax.set_ylabel("classification score")
    ax.set_title(title or f"{scores.size} detections")
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m evaluation.consistency",
        description="AIC (Harmonic Loss eq. 14) on matched detections and the score-vs-IoU "
        "histogram of all detections (its Figure 5).",
    )
    p.add_argument("--gt", required=True, help="ground truth, CityPersons evaluation JSON")
    p.add_argument("--dets", required=True, help="detections JSON list")
    p.add_argument("--setup", default="Reasonable", help="setup whose matching defines "
                   "'matched' (default Reasonable)")
    p.add_argument("--png", help="write the histogram PNG here")
    args = p.parse_args(argv)
    try:
        gt, dets = load_ground_truth(args.gt), load_detections(args.dets)
        result = summary(gt, dets, args.setup)
        if args.png:
            plot_score_iou(*detection_ious(gt, dets), args.png)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
