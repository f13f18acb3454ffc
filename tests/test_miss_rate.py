"""Tests of evaluation.miss_rate against an independent, literal reference and hand-computed cases.

The reference below is written the way the official CityPersons script is structured: COCO-style
loading (id index where the last annotation of an id wins, detection ids from file positions),
per-setup re-preparation of the ground truth, per-image Python loops over detections and ground
truths, accumulation over all images and the FPPI lookup with Python negative indexing. It shares
no code with the module under test.
"""

from __future__ import annotations

import bisect
import copy
import json
import math
import os
import random
import subprocess
import sys
import warnings
from collections import defaultdict

import numpy as np
import pytest

from evaluation import miss_rate as mr

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ALL = list(mr.SETUPS)
POINTS = [0.0100, 0.0178, 0.0316, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.0000]


# ----------------------------------------------------------------------------------------------
# Independent reference.


def _ref_overlap(d, g, crowd):
    """Official-style overlap of two [x, y, w, h] boxes in Python floats."""
    dx1, dy1, dx2, dy2 = d[0], d[1], d[0] + d[2], d[1] + d[3]
    gx1, gy1, gx2, gy2 = g[0], g[1], g[0] + g[2], g[1] + g[3]
    w = min(dx2, gx2) - max(dx1, gx1)
    if w <= 0:
        return 0.0
    h = min(dy2, gy2) - max(dy1, gy1)
    if h <= 0:
        return 0.0
    inter = w * h
    d_area = d[2] * d[3]
    union = d_area if crowd else d_area + g[2] * g[3] - inter
    return float(inter) / union


def reference_mr(gt, dets, ranges, stats=None):
    """MR^-2 for one setup, computed literally. `stats` (a dict) collects quirk counters."""
    (h_lo, h_hi), (v_lo, v_hi) = ranges
    # --- loading, COCO style ---
    img_ids = sorted({im["id"] for im in gt["images"]})
    cat_ids = sorted({c["id"] for c in gt["categories"]})
    index = {}
    img_to_anns = defaultdict(list)
    for a in gt["annotations"]:
        index[a["id"]] = a
        img_to_anns[a["image_id"]].append(a)
    results = []
    for pos, d in enumerate(dets):
        assert d["image_id"] in img_ids
        r = dict(d)
        r["id"] = pos + 1
        r["height"] = d["bbox"][3]
        results.append(r)
    # --- per-setup preparation ---
    listed = [
        index[a["id"]]
        for i in img_ids
        for a in img_to_anns.get(i, [])
        if a["category_id"] in cat_ids
    ]
    gts = copy.deepcopy(listed)
    for g in gts:
        flag = g.get("ignore", 0)
        out = g["height"] < h_lo or g["height"] > h_hi or g["vis_ratio"] < v_lo
        out = out or g["vis_ratio"] > v_hi
        g["ignore"] = 1 if out else flag
    gt_by = defaultdict(list)
    dt_by = defaultdict(list)
    for g in gts:
        gt_by[g["image_id"], g["category_id"]].append(g)
    for d in results:
        if d["category_id"] in cat_ids:
            dt_by[d["image_id"], d["category_id"]].append(d)
    if 1 not in cat_ids:
        return -1.0
    # --- per image ---
    per_image = []
    for i in img_ids:
        g_list = gt_by[i, 1]
        d_list = dt_by[i, 1]
        if not g_list and not d_list:
            continue
        g_list = sorted(g_list, key=lambda g: 1 if g["ignore"] else 0)  # stable
        g_ign = [1 if g["ignore"] else 0 for g in g_list]
        d_list = sorted(d_list, key=lambda d: -d["score"])[:1000]  # stable
        d_list = [d for d in d_list if h_lo / 1.25 <= d["height"] < h_hi * 1.25]
        g_taken = [0] * len(g_list)
        d_match = [0] * len(d_list)
        d_ign = [0] * len(d_list)
        for di, d in enumerate(d_list):
            best = min(0.5, 1 - 1e-10)
            best_g = -1
            found = False
            for gi, g in enumerate(g_list):
                if g_taken[gi] > 0:
                    continue
                if found and g_ign[gi] == 1:
                    break
                ov = _ref_overlap(d["bbox"], g["bbox"], int(g["ignore"]))
                if ov < best:
                    continue
                best, best_g, found = ov, gi, True
            if best_g < 0:
                continue
            d_ign[di] = g_ign[best_g]
            d_match[di] = g_list[best_g]["id"]
            if g_ign[best_g] == 0:
                g_taken[best_g] = d["id"]
        per_image.append(([d["score"] for d in d_list], d_match, d_ign, g_ign))
    # --- accumulation ---
    scores, match, ign, n_pos = [], [], [], 0
    for s, m, ig, g_ign in per_image:
        scores += s
        match += m
        ign += ig
        n_pos += g_ign.count(0)
    if n_pos == 0:
        return -1.0
    order = sorted(range(len(scores)), key=lambda k: -scores[k])  # stable
    tp = fp = 0
    fppi, recall = [], []
    for k in order:
        if ign[k]:
            continue
        if match[k] != 0:
            tp += 1
        else:
            fp += 1
        fppi.append(fp / len(img_ids))
        recall.append(tp / n_pos)
    q = [0.0] * 9
    try:
        for r, p in enumerate(POINTS):
            idx = bisect.bisect_right(fppi, p) - 1
            if stats is not None and idx == -1:
                stats["negative_index"] = stats.get("negative_index", 0) + 1
            q[r] = recall[idx]  # Python negative indexing on purpose
    except IndexError:
        pass
    if any(v == 1.0 for v in q):
        return 0.0
    return math.exp(sum(math.log(1 - v) for v in q) / 9)


# ----------------------------------------------------------------------------------------------
# Random crowded scenes.


def make_scene(
    rng,
    num_images,
    max_gt=8,
    max_det=14,
    int_boxes=False,
    dup_ids=False,
    zero_ids=False,
    odd_ignore=False,
    good_detector=False,
):
    ids = list(range(3, 3 * num_images + 3, 3))
    rng.shuffle(ids)
    images = [{"id": i} for i in ids]
    anns, dets = [], []
    next_id = 1
    for im in images:
        boxes = []
        n_gt = rng.randint(0, max_gt) if rng.random() > 0.2 else 0
        for _ in range(n_gt):
            if rng.random() < 0.3:
                h = rng.choice([20.0, 40.0, 50.0, 75.0, 93.75])
            else:
                h = rng.uniform(15, 130)
            x, y, w = rng.uniform(0, 250), rng.uniform(0, 150), 0.41 * h
            if int_boxes:
                x, y, w, h = int(x), int(y), max(1, int(w)), max(1, int(h))
            a = {
                "id": next_id,
                "image_id": im["id"],
                "category_id": 1,
                "bbox": [x, y, w, h],
                "height": h if rng.random() < 0.85 else rng.uniform(10, 130),
                "vis_ratio": rng.choice([rng.random(), 0.2, 0.65, 0.9, 1.0]),
            }
            if rng.random() < 0.9:
                a["ignore"] = int(rng.random() < 0.2)
            if odd_ignore and rng.random() < 0.3:
                a["ignore"] = rng.choice([True, False, 0.5, 2])
            if zero_ids and rng.random() < 0.15:
                a["id"] = 0
            if dup_ids and rng.random() < 0.15:
                a["id"] = rng.randint(0, next_id)
            anns.append(a)
            boxes.append((x, y, w, h))
            next_id += 1
        if rng.random() < 0.3:  # another category, ignored by the metric
            anns.append(
                {
                    "id": next_id,
                    "image_id": im["id"],
                    "category_id": 2,
                    "bbox": [0, 0, 9, 9],
                    "height": 9,
                    "vis_ratio": 1.0,
                }
            )
            next_id += 1
        n_det = rng.randint(0, max_det) if rng.random() > 0.15 else 0
        for _ in range(n_det):
            if boxes and rng.random() < 0.7:  # near a ground truth or an ignore region
                x, y, w, h = rng.choice(boxes)
                s = rng.uniform(0.85, 1.15)
                x, y, w, h = x + rng.gauss(0, 3), y + rng.gauss(0, 3), w * s, h * s
                score = rng.uniform(0.5, 1.0) if good_detector else rng.random()
            else:
                h = rng.uniform(10, 130)
                x, y, w = rng.uniform(0, 250), rng.uniform(0, 150), 0.41 * h
                score = rng.uniform(0, 0.6) if good_detector else rng.random()
            if rng.random() < 0.1:  # right on the expanded height filter edges
                h = rng.choice([40.0, 39.99, 93.75, 93.76, 16.0, 25.0])
            if int_boxes:
                x, y, w, h = int(x), int(y), int(w), int(h)
            if rng.random() < 0.5:
                score = round(score, 1)  # ties within and across images
            dets.append(
                {
                    "image_id": im["id"],
                    "category_id": 1 if rng.random() > 0.05 else 3,
                    "bbox": [x, y, w, h],
                    "score": score,
                }
            )
    rng.shuffle(dets)
    gt = {
        "images": images,
        "categories": [{"id": 1, "name": "pedestrian"}, {"id": 2, "name": "rider"}],
        "annotations": anns,
    }
    return gt, dets


def _assert_matches_reference(gt, dets, stats=None):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = mr.evaluate_miss_rate(gt, dets)
    assert list(got) == ALL
    for name, ranges in mr.SETUPS.items():
        want = reference_mr(gt, dets, ranges, stats)
        assert abs(got[name] - want) <= 1e-9, (name, got[name], want)
    return got


CASES = [
    # (seed, num_images, options)
    (0, 3, {}),
    (1, 8, {"int_boxes": True}),
    (2, 20, {"zero_ids": True}),
    (3, 40, {"dup_ids": True}),
    (4, 60, {"odd_ignore": True}),
    (5, 30, {"good_detector": True}),
    (6, 90, {"good_detector": True, "max_det": 6}),
    (7, 1, {"max_gt": 25, "max_det": 60}),
    (8, 120, {"max_det": 6}),
    (9, 150, {"good_detector": True, "max_det": 5, "int_boxes": True}),
]


def test_random_crowded_scenes_match_reference():
    stats = {}
    values = []
    for seed, num_images, opts in CASES:
        gt, dets = make_scene(random.Random(seed), num_images, **opts)
        values += list(_assert_matches_reference(gt, dets, stats).values())
    # The cases are not degenerate: real miss rates, perfect and empty setups, and the
    # negative-index FPPI lookup all occur.
    assert sum(0.0 < v < 1.0 for v in values) > len(values) // 2
    assert stats.get("negative_index", 0) > 0


@pytest.mark.parametrize("seed", range(10, 22))
def test_more_random_scenes_match_reference(seed):
    rng = random.Random(seed)
    opts = {
        "int_boxes": seed % 3 == 0,
        "zero_ids": seed % 4 == 1,
        "dup_ids": seed % 5 == 2,
        "good_detector": seed % 2 == 0,
    }
    gt, dets = make_scene(rng, rng.choice([2, 5, 15, 50, 110]), **opts)
    _assert_matches_reference(gt, dets)


def test_more_than_max_dets_in_one_image_matches_reference():
    rng = random.Random(99)
    gt, dets = make_scene(rng, 4, max_gt=20, max_det=10, good_detector=True)
    first = gt["images"][0]["id"]
    for _ in range(1100):  # cut to the 1000 best BEFORE the height filter
        h = rng.uniform(10, 130)
        dets.append(
            {
                "image_id": first,
                "category_id": 1,
                "bbox": [rng.uniform(0, 250), rng.uniform(0, 150), 0.41 * h, h],
                "score": round(rng.random(), 2),
            }
        )
    _assert_matches_reference(gt, dets)


# ----------------------------------------------------------------------------------------------
# Hand-computed cases.


def _gt(anns, num_images=1, categories=(1,)):
    return {
        "images": [{"id": i} for i in range(1, num_images + 1)],
        "categories": [{"id": c} for c in categories],
        "annotations": anns,
    }


def _ann(ann_id, box, image_id=1, ignore=0, vis=1.0, height=None):
    return {
        "id": ann_id,
        "image_id": image_id,
        "category_id": 1,
        "bbox": list(box),
        "height": box[3] if height is None else height,
        "vis_ratio": vis,
        "ignore": ignore,
    }


def _det(box, score, image_id=1):
    return {"image_id": image_id, "category_id": 1, "bbox": list(box), "score": score}


PED = (100.0, 100.0, 41.0, 100.0)  # a 100 px tall fully visible pedestrian


def test_one_perfect_detection():
    # One gt, one det on it: tp = [1], fppi = [0], every lookup gives recall 1 -> log(0) -> MR 0.
    # The gt (height 100, visibility 1) is outside Reasonable_small / occ=heavy / Partial / Heavy,
    # so those setups have no positive ground truth -> -1.
    got = mr.evaluate_miss_rate(_gt([_ann(1, PED)]), [_det(PED, 0.9)])
    assert got == {
        "Reasonable": 0.0,
        "Reasonable_small": -1.0,
        "Reasonable_occ=heavy": -1.0,
        "All": 0.0,
        "Bare": 0.0,
        "Partial": -1.0,
        "Heavy": -1.0,
    }


def test_no_detection_is_miss_rate_one():
    # Recall 0 everywhere: exp(mean(log(1))) = 1.
    got = mr.evaluate_miss_rate(_gt([_ann(1, PED)]), [])
    assert got["Reasonable"] == 1.0 and got["All"] == 1.0 and got["Heavy"] == -1.0


def test_detection_on_ignore_region_changes_nothing():
    # 100 images (I0 = 100, one FP = 0.01 FPPI); image 1 holds three pedestrians (ids 1-3, far
    # apart) and one ignore region. Detections: D1 (0.95) inside the ignore region, D2 (0.9) on
    # gt 1, D3 (0.85) a false positive in the void, D4 (0.5) on gt 2; gt 3 is never found.
    # With the region D1 is absorbed: counted TP, FP, TP -> fppi [0, .01, .01], recall
    # [1/3, 1/3, 2/3]; every point >= 0.01 takes index 2 -> recall 2/3 -> MR = 1/3.
    g1, g2, g3 = (0, 0, 41, 100), (200, 0, 41, 100), (400, 0, 41, 100)
    region = (600, 0, 300, 150)
    in_region = (700, 20, 41, 100)
    anns = [_ann(1, g1), _ann(2, g2), _ann(3, g3), _ann(4, region, ignore=1)]
    dets = [_det(in_region, 0.95), _det(g1, 0.9), _det((1500, 500, 41, 100), 0.85), _det(g2, 0.5)]
    with_region = mr.evaluate_miss_rate(_gt(anns, num_images=100), dets, ["Reasonable"])
    without_d1 = mr.evaluate_miss_rate(_gt(anns, num_images=100), dets[1:], ["Reasonable"])
    assert with_region["Reasonable"] == pytest.approx(1 / 3, abs=1e-12)
    assert without_d1 == with_region
    # Without the region D1 is a false positive: fppi [.01, .01, .02, .02], recall
    # [0, 1/3, 1/3, 2/3]; points 0.01 and 0.0178 take index 1 (1/3), the other seven 2/3.
    no_region = mr.evaluate_miss_rate(_gt(anns[:3], num_images=100), dets, ["Reasonable"])
    want = math.exp((2 * math.log(2 / 3) + 7 * math.log(1 / 3)) / 9)
    assert no_region["Reasonable"] == pytest.approx(want, abs=1e-12)


def test_fractional_ignore_flag_is_ignored_but_overlapped_with_iou():
    # Same scene as above, region flagged `ignore: 0.5`: truthy -> ignored, but int(0.5) == 0 ->
    # IoU instead of IoA. D1 has IoU 4100 / 45000 < 0.5 with the region, so it is not absorbed
    # and counts as a false positive: the "no region" value.
    g1, g2, g3 = (0, 0, 41, 100), (200, 0, 41, 100), (400, 0, 41, 100)
    anns = [_ann(1, g1), _ann(2, g2), _ann(3, g3), _ann(4, (600, 0, 300, 150), ignore=0.5)]
    dets = [
        _det((700, 20, 41, 100), 0.95),
        _det(g1, 0.9),
        _det((1500, 500, 41, 100), 0.85),
        _det(g2, 0.5),
    ]
    got = mr.evaluate_miss_rate(_gt(anns, num_images=100), dets, ["Reasonable"])
    want = math.exp((2 * math.log(2 / 3) + 7 * math.log(1 / 3)) / 9)
    assert got["Reasonable"] == pytest.approx(want, abs=1e-12)


def test_max_dets_cut_comes_before_the_height_filter_and_keeps_file_order_on_ties():
    # One image, one gt. 1000 detections score above the true positive: only the first 1000 of
    # an image count, so the TP is cut -> recall 0 -> MR 1 ...
    far = [_det((1000.0 + k, 500.0, 41.0, 100.0), 0.9) for k in range(1000)]
    gt = _gt([_ann(1, PED)])
    assert mr.evaluate_miss_rate(gt, far + [_det(PED, 0.5)], "All") == {"All": 1.0}
    # ... even when those 1000 are all removed by the height filter afterwards (10 px < 20 / 1.25)
    tiny = [_det((1000.0 + k, 500.0, 4.0, 10.0), 0.9) for k in range(1000)]
    assert mr.evaluate_miss_rate(gt, tiny + [_det(PED, 0.5)], "All") == {"All": 1.0}
    # With 999 the TP survives: FPs at fppi 1..999 then the TP at 999; every point < 1 gives
    # index -1 -> final recall 1 -> MR 0.
    assert mr.evaluate_miss_rate(gt, far[1:] + [_det(PED, 0.5)], "All") == {"All": 0.0}
    # Equal scores: the stable sort keeps file order, so the TP survives only if listed early.
    tied = [{**d, "score": 0.5} for d in far]
    assert mr.evaluate_miss_rate(gt, tied + [_det(PED, 0.5)], "All") == {"All": 1.0}
    assert mr.evaluate_miss_rate(gt, [_det(PED, 0.5)] + tied, "All") == {"All": 0.0}


def test_negative_index_takes_final_recall():
    # One image (I0 = 1), two gts; a FP (0.9) then a TP (0.8): fppi [1, 1], recall [0, .5].
    # Points < 1 give searchsorted(...) - 1 = -1 -> recall[-1] = 0.5; point 1 gives index 1 ->
    # 0.5. MR = 0.5 (without the quirk it would be 0.5 ** (1 / 9) = 0.926).
    anns = [_ann(1, (0, 0, 41, 100)), _ann(2, (300, 0, 41, 100))]
    dets = [_det((600, 0, 41, 100), 0.9), _det((0, 0, 41, 100), 0.8)]
    assert mr.evaluate_miss_rate(_gt(anns), dets, ["Reasonable"])["Reasonable"] == 0.5


def test_ground_truth_id_zero_makes_a_false_positive():
    # The matched id is recorded and the TP test is "id != 0": the det is an FP, recall stays 0.
    assert mr.evaluate_miss_rate(_gt([_ann(7, PED)]), [_det(PED, 0.9)], "All") == {"All": 0.0}
    with pytest.warns(UserWarning, match="id 0"):
        got = mr.evaluate_miss_rate(_gt([_ann(0, PED)]), [_det(PED, 0.9)], "All")
    assert got == {"All": 1.0}


def test_equal_iou_goes_to_the_later_ground_truth():
    # Two identical gts, one perfect det: the scan replaces the best on equality, so the LATER gt
    # takes the det. Later gt id 0 -> FP, recall 0 -> MR 1; order swapped -> TP on id 5,
    # recall 1/2 at every point (fppi 0) -> MR 0.5.
    a5, a0 = _ann(5, PED), _ann(0, PED)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert mr.evaluate_miss_rate(_gt([a5, a0]), [_det(PED, 1.0)], "All")["All"] == 1.0
        assert mr.evaluate_miss_rate(_gt([a0, a5]), [_det(PED, 1.0)], "All")["All"] == 0.5


def test_expanded_height_filter_edges():
    # Reasonable keeps detections with 50 / 1.25 = 40 <= h < 1e10 * 1.25. A 40 px tall det inside
    # a 50 px gt has IoU 0.8 -> TP -> MR 0; at 39.99 px it is filtered out -> MR 1.
    gt = _gt([_ann(1, (0, 0, 20.5, 50))])
    assert mr.evaluate_miss_rate(gt, [_det((0, 0, 20.5, 40), 0.9)], "Reasonable") == {
        "Reasonable": 0.0
    }
    assert mr.evaluate_miss_rate(gt, [_det((0, 0, 20.5, 39.99), 0.9)], "Reasonable") == {
        "Reasonable": 1.0
    }
    # Reasonable_small [50, 75]: upper edge 75 * 1.25 = 93.75 is exclusive.
    small = _gt([_ann(1, (0, 0, 30.75, 75))])
    assert (
        mr.evaluate_miss_rate(small, [_det((0, 0, 30.75, 93.74), 0.9)], "Reasonable_small")[
            "Reasonable_small"
        ]
        == 0.0
    )
    assert (
        mr.evaluate_miss_rate(small, [_det((0, 0, 30.75, 93.75), 0.9)], "Reasonable_small")[
            "Reasonable_small"
        ]
        == 1.0
    )


def test_setup_ranges_use_annotation_height_and_visibility_inclusively():
    # Box 100 px tall but annotated height 60, visibility exactly 0.65. By the annotation fields
    # the gt is a positive of Reasonable_small ([50, 75] x [0.65, 1e10]): the 100 px det is cut
    # by that setup's detection filter (100 >= 75 * 1.25) so the positive is missed -> MR 1, not
    # -1. Both visibility bounds are inclusive: 0.65 is in occ=heavy [0.2, 0.65], Partial
    # [0.65, 0.9] and Heavy [0, 0.65] (det kept, MR 0) but not in Bare [0.9, 1e10] (-1).
    ann = _ann(1, PED, height=60.0, vis=0.65)
    got = mr.evaluate_miss_rate(_gt([ann]), [_det(PED, 0.9)])
    assert got == {
        "Reasonable": 0.0,
        "Reasonable_small": 1.0,
        "Reasonable_occ=heavy": 0.0,
        "All": 0.0,
        "Bare": -1.0,
        "Partial": 0.0,
        "Heavy": 0.0,
    }


def test_empty_detections_give_one_for_every_setup_with_ground_truth():
    gt, _ = make_scene(random.Random(3), 30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = mr.evaluate_miss_rate(gt, [])
    for name, ranges in mr.SETUPS.items():
        want = reference_mr(gt, [], ranges)
        assert want in (1.0, -1.0)
        assert got[name] == want
    assert 1.0 in got.values()


def _separated_scene(rng, num_images):
    """Pedestrians on a grid (no two overlap), every annotation height equal to its box."""
    anns = []
    k = 1
    for i in range(1, num_images + 1):
        for slot in rng.sample(range(12), rng.randint(0, 6)):
            h = rng.uniform(18, 140)
            x, y = (slot % 6) * 200.0, (slot // 6) * 300.0
            anns.append(
                _ann(
                    k,
                    (x, y, 0.41 * h, h),
                    image_id=i,
                    ignore=int(rng.random() < 0.2),
                    vis=rng.choice([0.1, 0.3, 0.65, 0.8, 0.9, 1.0]),
                )
            )
            k += 1
    return _gt(anns, num_images=num_images)


def test_perfect_detector_is_zero_on_every_setup_with_ground_truth():
    gt = _separated_scene(random.Random(1), 40)
    rng = random.Random(2)
    dets = [_det(a["bbox"], rng.random(), a["image_id"]) for a in gt["annotations"]]
    got = mr.evaluate_miss_rate(gt, dets)
    assert set(got.values()) == {0.0}  # every setup has positives here
    # And a detector that finds nothing but false positives elsewhere is 1.
    fps = [_det((1300.0, 700.0, 41.0, 100.0), 0.5, i) for i in range(1, 41)]
    assert set(mr.evaluate_miss_rate(gt, fps).values()) == {1.0}


def test_order_of_detections_images_and_annotations_does_not_matter():
    rng = random.Random(4)
    gt, dets = make_scene(rng, 60, good_detector=True)
    for k, d in enumerate(dets):  # distinct scores: the order of ties is not tested here
        d["score"] = (k + 1) / (len(dets) + 1)
    base = mr.evaluate_miss_rate(gt, dets)
    shuffled = copy.deepcopy(dets)
    rng.shuffle(shuffled)
    assert mr.evaluate_miss_rate(gt, shuffled) == base
    gt2 = copy.deepcopy(gt)
    rng.shuffle(gt2["images"])
    rng.shuffle(gt2["annotations"])
    assert mr.evaluate_miss_rate(gt2, dets) == base


def test_other_categories_are_dropped():
    gt = _gt([_ann(1, PED)], categories=(1, 2))
    gt["annotations"].append({**_ann(2, (500, 0, 41, 100)), "category_id": 2})
    dets = [_det(PED, 0.5), {**_det((800, 0, 41, 100), 0.9), "category_id": 2}]
    assert mr.evaluate_miss_rate(gt, dets, "Reasonable") == {"Reasonable": 0.0}


def test_category_one_not_listed_gives_minus_one_with_warning():
    gt = _gt([_ann(1, PED)], categories=(2,))
    with pytest.warns(UserWarning, match="not listed"):
        got = mr.evaluate_miss_rate(gt, [_det(PED, 0.9)])
    assert set(got.values()) == {-1.0}


def test_duplicate_annotation_ids_follow_coco_index_with_warning():
    rng = random.Random(5)
    gt, dets = make_scene(rng, 10, dup_ids=True)
    with pytest.warns(UserWarning, match="not unique"):
        mr.evaluate_miss_rate(gt, dets)
    _assert_matches_reference(gt, dets)


def test_curves_are_consistent_with_the_summary():
    gt, dets = make_scene(random.Random(6), 50, good_detector=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        curves = mr.miss_rate_curves(gt, dets)
        summary = mr.evaluate_miss_rate(gt, dets)
    for name, (fppi, miss) in curves.items():
        assert fppi.shape == miss.shape
        if summary[name] == -1.0:
            assert fppi.size == 0
            continue
        assert np.all(np.diff(fppi) >= 0) and np.all(np.diff(miss) <= 0)
        if fppi.size:
            idx = np.searchsorted(fppi, POINTS, side="right") - 1
            with np.errstate(divide="ignore"):
                value = np.exp(np.mean(np.log(miss[idx])))
        else:
            value = 1.0
        assert value == pytest.approx(summary[name], abs=1e-12)


def test_setup_selection():
    gt, dets = make_scene(random.Random(7), 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        full = mr.evaluate_miss_rate(gt, dets)
        sub = mr.evaluate_miss_rate(gt, dets, setups=["All", "Reasonable"])
        custom = mr.evaluate_miss_rate(gt, dets, setups={"mine": ((50, 1e10), (0.65, 1e10))})
    assert sub == {"All": full["All"], "Reasonable": full["Reasonable"]}
    assert custom == {"mine": full["Reasonable"]}
    with pytest.raises(ValueError, match="unknown setup 'Resonable'"):
        mr.evaluate_miss_rate(gt, dets, setups=["Resonable"])


# ----------------------------------------------------------------------------------------------
# Bad input.


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1]}, "record 2 has no 'score'"),
        ({"image_id": 1, "category_id": 1, "score": 0.5}, "record 2 has no 'bbox'"),
        ({"category_id": 1, "bbox": [0, 0, 1, 1], "score": 0.5}, "record 2 has no 'image_id'"),
        ({"image_id": 1, "category_id": 1, "bbox": [0, 0, 1], "score": 0.5}, "record 2: bbox"),
        (
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, float("inf")], "score": 0.5},
            "record 2: bbox",
        ),
        ({"image_id": 1, "category_id": 1, "bbox": [0, "a", 1, 1], "score": 0.5}, "record 2: bbox"),
        (
            {"image_id": 1, "category_id": 1, "bbox": [0, 0, 1, 1], "score": float("nan")},
            "record 2: score",
        ),
        ([1, 2, 3], "record 2 is a list"),
    ],
)
def test_bad_detection_records_are_named(bad, message):
    gt = _gt([_ann(1, PED)])
    dets = [_det(PED, 0.9), _det(PED, 0.8), bad]
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace("[", r"\[")):
        mr.evaluate_miss_rate(gt, dets)


def test_detections_on_unknown_images_are_named():
    with pytest.raises(ValueError, match="not in the ground truth: 42"):
        mr.evaluate_miss_rate(_gt([_ann(1, PED)]), [_det(PED, 0.9), _det(PED, 0.9, image_id=42)])


def test_bad_ground_truth_is_named():
    ann = _ann(1, PED)
    del ann["vis_ratio"]
    with pytest.raises(ValueError, match=r"annotations\[0\]: 'vis_ratio'"):
        mr.evaluate_miss_rate(_gt([ann]), [])
    with pytest.raises(ValueError, match='"categories"'):
        mr.evaluate_miss_rate({"images": [], "annotations": []}, [])


def test_load_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.json"
    with pytest.raises(ValueError, match="detections file not found"):
        mr.load_dets(str(missing))
    broken = tmp_path / "broken.json"
    broken.write_text('[{"image_id": 1,')
    with pytest.raises(ValueError, match="broken.json.*not valid JSON"):
        mr.load_dets(str(broken))
    dets = tmp_path / "dets.json"
    dets.write_text(json.dumps([_det(PED, 0.9), {"image_id": 1, "bbox": [0, 0, 1, 1]}]))
    with pytest.raises(ValueError, match="dets.json.*record 1 has no 'category_id'"):
        mr.load_dets(str(dets))


# ----------------------------------------------------------------------------------------------
# Command line.


def _cli(*args, cwd=REPO):
    return subprocess.run(
        [sys.executable, "-m", "evaluation.miss_rate", *args],
        check=False,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli_prints_one_json_object_and_writes_out(tmp_path):
    gt, dets = make_scene(random.Random(8), 12, good_detector=True)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "dets.json").write_text(json.dumps(dets))
    out = tmp_path / "mr.json"
    proc = _cli(
        "--gt", str(tmp_path / "gt.json"), "--dets", str(tmp_path / "dets.json"), "--out", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    printed = json.loads(proc.stdout)  # exactly one JSON document
    assert list(printed) == ALL
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert printed == mr.evaluate_miss_rate(gt, dets)
    assert json.loads(out.read_text()) == printed
    proc = _cli(
        "--gt",
        str(tmp_path / "gt.json"),
        "--dets",
        str(tmp_path / "dets.json"),
        "--setups",
        "Reasonable,Heavy",
    )
    assert proc.returncode == 0 and list(json.loads(proc.stdout)) == ["Reasonable", "Heavy"]


def test_cli_bad_input_is_one_line_exit_2(tmp_path):
    (tmp_path / "gt.json").write_text(json.dumps(_gt([_ann(1, PED)])))
    (tmp_path / "dets.json").write_text(json.dumps([{"image_id": 1, "bbox": [0, 0, 1, 1]}]))
    proc = _cli("--gt", str(tmp_path / "gt.json"), "--dets", str(tmp_path / "dets.json"))
    assert proc.returncode == 2 and proc.stdout == ""
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and "record 0" in lines[0]
    proc = _cli("--gt", str(tmp_path / "missing.json"), "--dets", str(tmp_path / "dets.json"))
    assert proc.returncode == 2 and "ground truth file not found" in proc.stderr
    proc = _cli("--help")
    assert proc.returncode == 0 and "--setups" in proc.stdout


def test_atomic_json_write_keeps_the_old_file_on_failure(tmp_path):
    from evaluation.io import atomic_write_json

    path = tmp_path / "mr.json"
    atomic_write_json({"Reasonable": 0.1}, str(path))
    with pytest.raises(ValueError):  # NaN is not JSON: fails before touching the file
        atomic_write_json({"Reasonable": float("nan")}, str(path))
    with pytest.raises(TypeError):
        atomic_write_json({"Reasonable": object()}, str(path))
    assert json.loads(path.read_text()) == {"Reasonable": 0.1}
    assert os.listdir(tmp_path) == ["mr.json"]
