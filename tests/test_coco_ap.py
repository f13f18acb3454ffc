"""Tests of evaluation.coco_ap (pycocotools glue) with hand-computed COCO APs."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys

import pytest

from evaluation.coco_ap import coco_ap, to_pycocotools_gt

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _gt(anns, num_images=2):
    return {
        "images": [{"id": i} for i in range(1, num_images + 1)],
        "categories": [{"id": 1, "name": "pedestrian"}],
        "annotations": [
            {
                "id": k + 1,
                "image_id": img,
                "category_id": 1,
                "bbox": list(box),
                "height": box[3],
                "vis_ratio": 1.0,
                "ignore": ig,
            }
            for k, (img, box, ig) in enumerate(anns)
        ],
    }


def _det(img, box, score, cat=1):
    return {"image_id": img, "category_id": cat, "bbox": list(box), "score": score}


A = (10.0, 10.0, 41.0, 100.0)
B = (200.0, 10.0, 41.0, 100.0)
C = (50.0, 20.0, 41.0, 100.0)


def test_perfect_detector_is_one():
    gt = _gt([(1, A, 0), (1, B, 0), (2, C, 0)])
    dets = [_det(1, A, 0.9), _det(1, B, 0.8), _det(2, C, 0.7)]
    # All three boxes are 41 x 100 = 4100 px^2: COCO "medium"; no small or large ground truth.
    assert coco_ap(gt, dets) == {
        "AP": 1.0, "AP50": 1.0, "AP75": 1.0, "APs": -1.0, "APm": 1.0, "APl": -1.0
    }


def test_size_split_follows_coco_area_ranges():
    small, large = (5.0, 5.0, 10.0, 25.0), (300.0, 5.0, 100.0, 250.0)  # 250 and 25000 px^2
    gt = _gt([(1, small, 0), (1, large, 0), (2, A, 0)])
    got = coco_ap(gt, [_det(1, small, 0.9), _det(2, A, 0.8)])
    assert got["APs"] == pytest.approx(1.0) and got["APm"] == pytest.approx(1.0)
    assert got["APl"] == 0.0


def test_half_recall_is_51_over_101():
    # Precision 1 up to recall 0.5, nothing after: 51 of COCO's 101 recall points (0, .01, ...,
    # .50) have precision 1 -> AP = 51 / 101 at every IoU threshold.
    gt = _gt([(1, A, 0), (1, B, 0)])
    got = coco_ap(gt, [_det(1, A, 0.9)])
    for key in ("AP", "AP50", "AP75"):
        assert got[key] == pytest.approx(51 / 101, abs=1e-12)


def test_loose_box_counts_at_50_not_75():
    # IoU = (100 * 62) / (100 * 100) = 0.62: a TP at thresholds .50, .55, .60 only -> AP = 3/10.
    gt = _gt([(1, (0.0, 0.0, 100.0, 100.0), 0)])
    got = coco_ap(gt, [_det(1, (0.0, 0.0, 100.0, 62.0), 0.9)])
    # (pycocotools' precision is tp / (tp + fp + eps), hence approx.)
    assert got["AP50"] == pytest.approx(1.0, abs=1e-12) and got["AP75"] == 0.0
    assert got["AP"] == pytest.approx(0.3, abs=1e-12)


def test_ignored_ground_truth_is_a_crowd_region():
    region = (400.0, 0.0, 300.0, 150.0)
    inside = (500.0, 20.0, 41.0, 100.0)
    dets = [_det(1, inside, 0.99), _det(1, A, 0.9), _det(2, C, 0.8)]
    # The top-scored detection falls in the ignore region: absorbed, AP stays perfect.
    assert coco_ap(_gt([(1, A, 0), (2, C, 0), (1, region, 1)]), dets)["AP"] == 1.0
    # Without the region it is a false positive ranked first: AP drops.
    assert coco_ap(_gt([(1, A, 0), (2, C, 0)]), dets)["AP"] < 0.9
    converted = to_pycocotools_gt(_gt([(1, A, 0), (1, region, 1)]))
    assert [a["iscrowd"] for a in converted["annotations"]] == [0, 1]
    assert converted["annotations"][1]["area"] == 300.0 * 150.0


def test_empty_detections_other_categories_and_no_positive_ground_truth():
    gt = _gt([(1, A, 0)])
    zeros = dict.fromkeys(("AP", "AP50", "AP75", "APs", "APm", "APl"), 0.0)
    assert coco_ap(gt, []) == zeros
    assert coco_ap(gt, [_det(1, A, 0.9, cat=2)]) == zeros
    assert coco_ap(gt, [_det(1, A, 0.9), _det(1, B, 0.95, cat=2)])["AP"] == pytest.approx(1.0)
    only_ignored = _gt([(1, A, 1)])
    assert set(coco_ap(only_ignored, [_det(1, A, 0.9)]).values()) == {-1.0}


def test_inputs_are_not_mutated():
    gt = _gt([(1, A, 0), (1, B, 1)])
    dets = [_det(1, A, 0.9), _det(2, C, 0.5)]
    gt0, dets0 = copy.deepcopy(gt), copy.deepcopy(dets)
    coco_ap(gt, dets)
    assert gt == gt0 and dets == dets0


def test_bad_input_is_named():
    gt = _gt([(1, A, 0)])
    with pytest.raises(ValueError, match="not in the ground truth: 9"):
        coco_ap(gt, [_det(9, A, 0.9)])
    with pytest.raises(ValueError, match="record 1 has no 'score'"):
        coco_ap(gt, [_det(1, A, 0.9), {"image_id": 1, "category_id": 1, "bbox": list(A)}])


def _cli(*args):
    return subprocess.run(
        [sys.executable, "-m", "evaluation.coco_ap", *args],
        check=False,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli(tmp_path):
    gt = _gt([(1, A, 0), (1, B, 0)])
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps([_det(1, A, 0.9)]))
    out = tmp_path / "ap.json"
    proc = _cli(
        "--gt", str(tmp_path / "gt.json"), "--dets", str(tmp_path / "dets.json"), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)
    assert printed["AP50"] == pytest.approx(51 / 101) and json.loads(out.read_text()) == printed
    (tmp_path / "bad.json").write_text("[{]")
    proc = _cli("--gt", str(tmp_path / "gt.json"), "--dets", str(tmp_path / "bad.json"))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error:") and "not valid JSON" in proc.stderr
