"""RepLoss crowd subsets (reasonable-occ, reasonable-crowd) on hand-made scenes."""

from __future__ import annotations

import json

import pytest

from evaluation import crowd_subsets


def _ann(ann_id, box, vis, ignore=0):
    return {"id": ann_id, "image_id": 1, "category_id": 1, "bbox": list(box), "height": box[3],
            "vis_ratio": vis, "ignore": ignore}


def _det(box, score):
    return {"image_id": 1, "category_id": 1, "bbox": list(box), "score": score}


A = (100.0, 100.0, 41.0, 100.0)
B = (125.0, 100.0, 41.0, 100.0)  # IoU with A = 16*100 / (2*4100 - 1600) = 0.24
C = (400.0, 100.0, 41.0, 100.0)  # alone
D = (80.0, 100.0, 41.0, 100.0)  # overlaps A, fully visible (not occluded)
G = (600.0, 90.0, 120.0, 120.0)  # an ignore region (group)
H = (640.0, 100.0, 41.0, 100.0)  # inside the group, overlapping it only


def _scene():
    return {
        "images": [{"id": 1}],
        "categories": [{"id": 1}],
        "annotations": [
            _ann(1, A, 0.8), _ann(2, B, 0.7), _ann(3, C, 0.8), _ann(4, D, 1.0),
            _ann(5, G, 1.0, ignore=1), _ann(6, H, 0.8),
        ],
    }


def test_crowd_ids_need_another_annotated_pedestrian():
    ids = crowd_subsets.crowd_annotation_ids(_scene())
    # H overlaps only the ignore region G, which is not a pedestrian: not a crowd member.
    assert ids == {1, 2, 4}
    assert crowd_subsets.crowd_annotation_ids(_scene(), iou_threshold=0.3) == {1, 4}


def test_subset_miss_rates_by_hand():
    dets = [_det(A, 0.9), _det(C, 0.8), _det((300.0, 300.0, 41.0, 100.0), 0.7)]
    mr = crowd_subsets.evaluate_crowd_subsets(_scene(), dets)
    # reasonable-occ positives: A, B, C, H (D is fully visible, so ignored). A and C are found
    # before the one false positive, and the curve ends there at FPPI 1: recall 2/4 at every
    # reference point, MR = 0.5.
    assert mr["Reasonable_occ"] == pytest.approx(0.5)
    # reasonable-crowd positives: A, B. The detection on C now hits an ignored pedestrian (neither
    # true nor false positive): recall 1/2 at every reference point, MR 0.5.
    assert mr["Reasonable_crowd"] == pytest.approx(0.5)
    # Detecting B too brings reasonable-crowd to full recall before any false positive.
    mr2 = crowd_subsets.evaluate_crowd_subsets(_scene(), dets + [_det(B, 0.85)])
    assert mr2["Reasonable_crowd"] == pytest.approx(0.0)
    assert mr2["Reasonable_occ"] == pytest.approx(0.25)


def test_restrict_keeps_everything_when_all_ids_kept_and_copies():
    gt = _scene()
    same = crowd_subsets.restrict_ground_truth(gt, {a["id"] for a in gt["annotations"]})
    assert same["annotations"] == gt["annotations"]
    none = crowd_subsets.restrict_ground_truth(gt, set())
    assert all(a["ignore"] == 1 for a in none["annotations"])
    assert gt["annotations"][0]["ignore"] == 0  # the input is not modified


def test_cli_prints_json_and_reports_bad_files(tmp_path, capsys):
    gt_path, det_path = tmp_path / "gt.json", tmp_path / "dets.json"
    gt_path.write_text(json.dumps(_scene()))
    det_path.write_text(json.dumps([_det(A, 0.9)]))
    assert crowd_subsets.main(["--gt", str(gt_path), "--dets", str(det_path)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out) == {"Reasonable_occ", "Reasonable_crowd"}
    assert crowd_subsets.main(["--gt", str(tmp_path / "missing.json"), "--dets",
                               str(det_path)]) == 2
    assert "missing.json" in capsys.readouterr().err


def test_ground_truth_rep_iog_by_hand():
    # A (41x100) and B overlap by 16x100: IoG(A, B) = 1600 / 4100; D overlaps A by 21x100 and has
    # a larger IoU with A than B has, so D is A's repulsion ground truth: IoG(A, D) = 2100 / 4100.
    # B's G_Rep is A (IoG 1600/4100), D's is A (2100/4100). C and H overlap no pedestrian.
    v = sorted(crowd_subsets.ground_truth_rep_iog(_scene()).tolist())
    assert v == pytest.approx(sorted([2100 / 4100, 1600 / 4100, 2100 / 4100]))
    s = crowd_subsets.rep_iog_summary(_scene())
    assert s["count"] == 3 and s["fraction_above_0.5"] == pytest.approx(2 / 3)
    assert crowd_subsets.rep_iog_summary({"annotations": []}) == {"count": 0}
