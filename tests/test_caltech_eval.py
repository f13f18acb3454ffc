"""Tests for evaluation/caltech.py: hand-computed cases, a literal loop-by-loop re-implementation
of the MATLAB code (dbEval loadGt/loadDt/evalAlgs + bbGt bbLoad/evalRes/compRoc) compared on
random crowded scenes, invariance properties and the CLI."""

from __future__ import annotations

import copy
import json
import math
import random

import numpy as np
import pytest

from evaluation import caltech
from evaluation.caltech import caltech_curve, evaluate_caltech, log_average_miss_rate

# ----------------------------------------------------------------------------------------------
# Helpers.


def make_gt(num_images, anns):
    """anns: list of (image_id, bbox, dict of extra fields)."""
    out = []
    for k, (img, bbox, extra) in enumerate(anns, start=1):
        a = {
            "id": k,
            "image_id": img,
            "category_id": 1,
            "bbox": list(bbox),
            "height": bbox[3],
            "vis_ratio": 1.0,
        }
        a.update(extra)
        out.append(a)
    return {
        "images": [{"id": i, "width": 640, "height": 480} for i in range(num_images)],
        "categories": [{"id": 1, "name": "person"}],
        "annotations": out,
    }


def det(img, bbox, score):
    return {"image_id": img, "category_id": 1, "bbox": list(bbox), "score": score}


def mr(gt, dets, key="Reasonable@0.5", **kw):
    return evaluate_caltech(gt, dets, **kw)[key]


# ----------------------------------------------------------------------------------------------
# Literal re-implementation of the MATLAB code, loops only (see the module docstring's items).

LBLS = ("person", "person?", "people", "ignore")


def naive_evaluate(gt, dets, setup, thr, protocol="new", floor=0.0):
    (h_lo, h_hi), (v_lo, v_hi) = setup
    if protocol == "new":
        ilbls, resize_dt, half_open = ("ignore",), False, False
    else:
        ilbls, resize_dt, half_open = ("person?", "people", "ignore"), True, True

    def resize(bb):  # bbApply('resize', bb, 1, 0, .41)
        bb = list(bb)
        d = (1 - 1) * bb[3]
        bb[1] = bb[1] - d / 2
        bb[3] = bb[3] + d
        d = bb[3] * 0.41 - bb[2]
        bb[0] = bb[0] - d / 2
        bb[2] = bb[2] + d
        return bb

    gts, dts = [], []
    for im in gt["images"]:
        # bbLoad: label filter, then ignore flags, then reshape non-ignored boxes.
        objs = []
        for a in gt["annotations"]:
            if a["image_id"] != im["id"] or a["category_id"] != 1:
                continue
            lbl = a.get("label", "person")
            if lbl not in LBLS and lbl not in ilbls:
                continue
            x, y, w, h = a["bbox"]
            ign = bool(a.get("ignore", 0))
            ign = ign or lbl in ilbls
            ign = ign or x < 5 or x > 635
            ign = ign or x + w < 5 or x + w > 635
            ign = ign or y < 5 or y > 475
            ign = ign or y + h < 5 or y + h > 475
            if half_open:
                ign = ign or not (h >= h_lo and h < h_hi)
            else:
                ign = ign or h < h_lo or h > h_hi
            v = a["vis_ratio"]
            ign = ign or v < v_lo or v > v_hi
            objs.append([x, y, w, h, 1 if ign else 0])
        for o in objs:
            if o[4] != 1:
                o[:4] = resize(o[:4])
        gts.append(objs)
        # loadDt + evalAlgs' height filter hr.*[1/filter filter].
        lo, hi = h_lo * (1 / 1.25), h_hi * 1.25
        ds = []
        for d in dets:
            if d["image_id"] != im["id"] or d["category_id"] != 1:
                continue
            bb = list(d["bbox"])
            if resize_dt:
                bb = resize(bb)
            if bb[3] >= lo and bb[3] < hi:
                ds.append(bb + [d["score"]])
        dts.append(ds)

    def comp_oa(dt, g, ig):
        w = min(dt[2] + dt[0], g[2] + g[0]) - max(dt[0], g[0])
        if w <= 0:
            return 0.0
        h = min(dt[3] + dt[1], g[3] + g[1]) - max(dt[1], g[1])
        if h <= 0:
            return 0.0
        i = w * h
        u = dt[2] * dt[3] if ig else dt[2] * dt[3] + g[2] * g[3] - i
        return i / u

    gtr, dtr = [], []
    for g0, d0 in zip(gts, dts, strict=True):
        d0 = sorted(d0, key=lambda r: -r[4])  # stable, like MATLAB's sort
        g0 = sorted(g0, key=lambda r: r[4])
        g1 = [r[:4] + [-r[4]] for r in g0]
        d1 = [r + [0] for r in d0]
        for d in range(len(d1)):
            bst_oa, bstg, bstm = thr, -1, 0
            for g in range(len(g1)):
                m = g1[g][4]
                if m == 1:
                    continue
                if bstm != 0 and m == -1:
                    break
                oa = comp_oa(d1[d][:4], g1[g][:4], m == -1)
                if oa < bst_oa:
                    continue
                bst_oa, bstg = oa, g
                bstm = 1 if m == 0 else -1
            if bstm == -1:
                d1[d][5] = -1
            elif bstm == 1:
                g1[bstg][4] = 1
                d1[d][5] = 1
        gtr.append(g1)
        dtr.append(d1)

    # compRoc
    n_img = len(gtr)
    all_g = [r for rows in gtr for r in rows if r[4] != -1]
    all_d = [r for rows in dtr for r in rows if r[5] != -1]
    np_ = len(all_g)
    if np_ == 0:
        return None
    refs = {
        "MR-2": [10.0 ** (k / 4) for k in range(-8, 1)],
        "MR-4": [10.0 ** (k / 4) for k in range(-16, 1)],
    }
    all_d = sorted(all_d, key=lambda r: -r[4])
    xs, ys, tp, fp = [], [], 0, 0
    for r in all_d:
        if r[5] == 1:
            tp += 1
        else:
            fp += 1
        xs.append(fp / n_img)
        ys.append(tp / np_)
    out = {"fppi": xs, "recall": ys}
    for name, ref in refs.items():
        if not all_d:
            sampled = [0.0] * len(ref)
        else:
            xs1, ys1 = [-math.inf] + xs, [0.0] + ys
            sampled = []
            for r in ref:
                j = [k for k in range(len(xs1)) if xs1[k] <= r]
                sampled.append(ys1[j[-1]])
        total = 0.0
        for s in sampled:
            miss = max(floor, 1 - s)
            total += math.log(miss) if miss > 0 else -math.inf
        out[name] = math.exp(total / len(sampled))
    return out


def random_scene(seed, num_images=12, integer=False, ties=False, informative=False):
    """Crowded scenes: every label, heights and visibilities around the thresholds, boxes near
    and beyond the frame bounds, jittered and duplicated detections, random false positives."""
    rng = random.Random(seed)
    anns, dets = [], []

    def num(v):
        return float(round(v)) if integer else v

    for img in range(num_images):
        n = rng.choice([0, 1, 3, 6, 10])
        for _ in range(n):
            h = rng.choice([rng.uniform(15, 45), rng.uniform(45, 60), rng.uniform(60, 250), 50.0])
            w = h * rng.uniform(0.25, 0.6)
            x = rng.uniform(-20, 660 - w)
            y = rng.uniform(-10, 490 - h)
            if rng.random() < 0.15:  # a small cluster: crowds make the greedy order matter
                x, y = min(max(x, 200), 400), 150
            extra = {
                "vis_ratio": rng.choice([1.0, 1.0, 0.65, 0.7, 0.5, 0.2, 0.1, 0.0]),
                "label": rng.choice(
                    ["person"] * 6 + ["people", "person?", "ignore", "person-fa", None]
                ),
            }
            if extra["label"] is None:
                del extra["label"]
            if rng.random() < 0.1:
                extra["ignore"] = 1
            if rng.random() < 0.1:
                extra["category_id"] = 2
            box = [num(x), num(y), num(w), num(h)]
            anns.append((img, box, extra))
            for _ in range(rng.choice([0, 1, 1, 2, 3])):
                jit = [rng.gauss(0, 0.08 * h) for _ in range(4)]
                bw = max(1.0, 0.41 * h + jit[2]) if rng.random() < 0.6 else w + jit[2]
                dbox = [num(x + jit[0]), num(y + jit[1]), num(bw), num(max(1.0, h + jit[3]))]
                dets.append((img, dbox, True))
        for _ in range(rng.choice([0, 2, 8])):
            h = rng.uniform(10, 200)
            box = [num(rng.uniform(-30, 620)), num(rng.uniform(-20, 460)), num(0.41 * h), num(h)]
            dets.append((img, box, False))
    gt = make_gt(num_images, anns)
    out = []
    for img, box, near_person in dets:
        if ties:
            s = rng.choice([0.1, 0.5, 0.9])
        elif informative:  # detections near a person score higher: MRs away from 0 and 1
            s = rng.uniform(0.3, 1.0) if near_person else rng.uniform(0.0, 0.7)
        else:
            s = rng.random()
        d = det(img, box, s)
        if rng.random() < 0.05:
            d["category_id"] = 3
        out.append(d)
    return gt, out


# ----------------------------------------------------------------------------------------------
# Hand-computed cases.


def test_reference_vectors():
    # 10.^(-2:.25:0): 9 points; 10.^(-4:.25:0): 17 points, both ending at FPPI 1.
    assert caltech.MR2_REFERENCE.shape == (9,)
    assert caltech.MR4_REFERENCE.shape == (17,)
    assert caltech.MR2_REFERENCE[0] == 0.01 and caltech.MR2_REFERENCE[-1] == 1.0
    assert caltech.MR4_REFERENCE[0] == 1e-4 and caltech.MR4_REFERENCE[4] == 1e-3
    np.testing.assert_allclose(caltech.MR4_REFERENCE[8:], caltech.MR2_REFERENCE, rtol=0)


def test_squarify_changes_width_around_centre():
    # gt [100, 100, 20, 100]: d = 100*0.41 - 20 = 21 -> x = 100 - 10.5 = 89.5, w = 41.
    gt = make_gt(1, [(0, [100, 100, 20, 100], {})])
    # The reshaped box itself: IoU 1 -> a true positive, MR 0 (recall 1 at every reference).
    assert mr(gt, [det(0, [89.5, 100, 41, 100], 0.9)]) == {"MR-2": 0.0, "MR-4": 0.0}
    # The box as annotated: inter = 20*100 = 2000, union = 2000 + 4100 - 2000 = 4100,
    # IoU = 0.4878 < 0.5 -> a false positive, the person is missed: MR 1.
    assert mr(gt, [det(0, [100, 100, 20, 100], 0.9)]) == {"MR-2": 1.0, "MR-4": 1.0}
    # The "original" protocol reshapes the detection as well: [89.5, 100, 41, 100] -> TP.
    assert mr(gt, [det(0, [100, 100, 20, 100], 0.9)], protocol="original")["MR-2"] == 0.0


def test_iou_05_but_not_075():
    # gt [100, 100, 41, 100] is already at aspect 0.41 (d = 41 - 41 = 0). The detection is
    # shifted down by 30: inter = 41*70 = 2870, union = 4100 + 4100 - 2870 = 5330,
    # IoU = 0.5385: a TP at 0.5 (MR 0), a FP at 0.75 (MR 1).
    gt = make_gt(1, [(0, [100, 100, 41, 100], {})])
    res = evaluate_caltech(gt, [det(0, [100, 130, 41, 100], 0.9)])
    assert res == {
        "Reasonable@0.5": {"MR-2": 0.0, "MR-4": 0.0},
        "Reasonable@0.75": {"MR-2": 1.0, "MR-4": 1.0},
    }


def test_threshold_comparison_is_inclusive():
    # Detection [100, 100, 41, 50] inside gt [100, 100, 41, 100]: inter = 2050, union = 4100,
    # IoU = 0.5 exactly; evalRes rejects only oa < thr, so it matches at 0.5.
    gt = make_gt(1, [(0, [100, 100, 41, 100], {})])
    assert mr(gt, [det(0, [100, 100, 41, 50], 0.9)])["MR-2"] == 0.0


def test_detection_height_filter_with_expansion():
    # Reasonable keeps detections with 50/1.25 = 40 <= h < inf. Ten images: FPPI step 0.1.
    gt = make_gt(10, [(0, [100, 100, 41, 100], {})])
    dets = [
        det(0, [100, 100, 41, 100], 0.5),  # TP
        det(3, [300, 100, 16.4, 40], 0.9),  # h = 40: counted, a false positive
        det(3, [400, 100, 16.4, 39.9], 0.99),  # h = 39.9: dropped before matching
    ]
    c = caltech_curve(gt, dets)
    # score order 0.9 (FP, fppi 0.1, recall 0) then 0.5 (TP, fppi 0.1, recall 1).
    np.testing.assert_array_equal(c.scores, [0.9, 0.5])
    np.testing.assert_array_equal(c.fppi, [0.1, 0.1])
    np.testing.assert_array_equal(c.miss_rate, [1.0, 0.0])
    assert (c.num_images, c.num_positives) == (10, 1)
    # 'All' (hr [20 inf]) keeps h >= 16: the h = 39.9 detection is counted too.
    c_all = caltech_curve(gt, dets, setup="All")
    np.testing.assert_array_equal(c_all.scores, [0.99, 0.9, 0.5])


def test_finite_height_range_ends():
    # Custom setup h in [30, 80]: ground truth h = 80 is kept by bbLoad (inclusive) but
    # ignored by the original .vbb filter (h < 80); detections need 30*0.8 = 24 <= h < 100.
    medium = {"Medium": ((30.0, 80.0), (0.65, math.inf))}
    gt = make_gt(10, [(0, [100, 100, 32.8, 80], {})])
    assert caltech_curve(gt, [], setup=medium).num_positives == 1
    assert caltech_curve(gt, [], setup=medium, protocol="original").num_positives == 0
    dets = [
        det(1, [100, 100, 41, 100], 0.9),  # h = 100 = 80*1.25: dropped
        det(1, [300, 100, 41, 99.9], 0.8),  # counted FP
        det(1, [400, 100, 10, 24], 0.7),  # h = 24: counted FP
        det(1, [500, 100, 10, 23.9], 0.6),  # dropped
    ]
    np.testing.assert_array_equal(caltech_curve(gt, dets, setup=medium).scores, [0.8, 0.7])


def test_ground_truth_height_and_visibility_bounds_inclusive():
    # h = 50 and vis = 0.65 are inside Reasonable ([50 inf] x [.65 inf], inclusive both ends);
    # h = 49.9 or vis = 0.64 are ignore regions.
    gt = make_gt(
        1,
        [
            (0, [10, 10, 20.5, 50], {}),
            (0, [100, 10, 20.5, 50], {"vis_ratio": 0.65}),
            (0, [200, 10, 20.5, 49.9], {}),
            (0, [300, 10, 20.5, 50], {"vis_ratio": 0.64}),
        ],
    )
    assert caltech_curve(gt, []).num_positives == 2
    # Occ=heavy ([.2 .65]) keeps the h >= 50 boxes with vis 0.65 and 0.64, not those with 1.0.
    assert caltech_curve(gt, [], setup="Occ=heavy").num_positives == 2


def test_bounds_mark_ignore_and_keep_annotated_shape():
    # x2 = 630 + 41 = 671 > 635 -> ignored; ignored boxes are not reshaped. Detection
    # [640, 120, 20, 50] lies inside it: IoA = 1000/1000 = 1 -> absorbed, nothing counted.
    gt = make_gt(
        2,
        [
            (0, [630, 100, 41, 100], {}),
            (1, [100, 100, 41, 100], {}),
            # a wide ignore region 100 px wide; reshaping it would make it 41 px wide around
            # x = 350, i.e. [329.5, 370.5], and the detection below would barely touch it.
            (1, [300, 200, 100, 100], {"label": "ignore"}),
        ],
    )
    dets = [
        det(0, [640, 120, 20, 50], 0.9),  # absorbed by the out-of-bounds box
        det(1, [370, 220, 30, 60], 0.8),  # inside the 'ignore' region: IoA 1 -> absorbed
        det(1, [100, 100, 41, 100], 0.7),  # TP
    ]
    c = caltech_curve(gt, dets)
    np.testing.assert_array_equal(c.scores, [0.7])
    np.testing.assert_array_equal(c.miss_rate, [0.0])
    assert c.num_positives == 1


def test_ignore_regions_absorb_by_ioa_with_the_threshold():
    # 'ignore' region [300, 100, 100, 100]; detection [350, 100, 100, 100] covers half of it:
    # IoA = 50*100 / (100*100) = 0.5 -> absorbed at 0.5, a false positive at 0.75.
    gt = make_gt(1, [(0, [300, 100, 100, 100], {"label": "ignore"}), (0, [50, 50, 41, 100], {})])
    dets = [det(0, [350, 100, 100, 100], 0.9), det(0, [50, 50, 41, 100], 0.5)]
    c5 = caltech_curve(gt, dets, iou_threshold=0.5)
    c75 = caltech_curve(gt, dets, iou_threshold=0.75)
    np.testing.assert_array_equal(c5.scores, [0.5])
    np.testing.assert_array_equal(c75.scores, [0.9, 0.5])
    np.testing.assert_array_equal(c75.fppi, [1.0, 1.0])


def test_ignored_gt_absorbs_several_and_positive_gt_matches_once():
    gt = make_gt(
        1,
        [
            (0, [100, 100, 41, 100], {}),
            (0, [300, 100, 60, 30], {}),  # h = 30 < 50: ignored (too small)
            (0, [400, 100, 41, 100], {"vis_ratio": 0.3}),  # too occluded: ignored
        ],
    )
    dets = [
        det(0, [100, 100, 41, 100], 0.9),  # TP
        det(0, [101, 100, 41, 100], 0.8),  # same person again: its gt is taken -> FP
        # two detections on the small box [300, 100, 60, 30] (h = 40 passes the detection
        # filter): inter = 40*30 = 1200, IoA = 1200/1600 = 0.75 >= 0.5 -> both absorbed.
        det(0, [300, 95, 40, 40], 0.7),
        det(0, [320, 95, 40, 40], 0.6),
        det(0, [410, 120, 20, 50], 0.65),  # inside the occluded box -> absorbed
    ]
    c = caltech_curve(gt, dets)
    np.testing.assert_array_equal(c.scores, [0.9, 0.8])
    np.testing.assert_array_equal(c.miss_rate, [0.0, 0.0])
    np.testing.assert_array_equal(c.fppi, [0.0, 1.0])


def test_non_ignored_match_is_preferred_over_ignore_region():
    # The detection overlaps a person (IoU 1) and lies inside an 'ignore' region (IoA 1): the
    # person wins, it is a TP.
    gt = make_gt(
        1,
        [(0, [100, 100, 200, 200], {"label": "ignore"}), (0, [150, 150, 41, 100], {})],
    )
    c = caltech_curve(gt, [det(0, [150, 150, 41, 100], 0.9)])
    np.testing.assert_array_equal(c.miss_rate, [0.0])


def test_labels_new_versus_original_protocol():
    # New annotations: only 'ignore' is an ignore label; 'people' and 'person?' are evaluated
    # like 'person'; 'person-fa' is not loaded at all. Original: only 'person' is evaluated.
    gt = make_gt(
        1,
        [
            (0, [100, 100, 41, 100], {"label": "people"}),
            (0, [200, 100, 41, 100], {"label": "person?"}),
            (0, [300, 100, 41, 100], {"label": "person-fa"}),
            (0, [400, 100, 41, 100], {}),  # no label: 'person'
        ],
    )
    dets = [
        det(0, [x, 100, 41, 100], s) for x, s in ((100, 0.8), (200, 0.7), (300, 0.6), (400, 0.5))
    ]
    new = caltech_curve(gt, dets)
    assert new.num_positives == 3
    # TP, TP, FP (person-fa is no region at all), TP
    np.testing.assert_allclose(new.miss_rate, [2 / 3, 1 / 3, 1 / 3, 0.0], rtol=0, atol=1e-15)
    np.testing.assert_array_equal(new.fppi, [0, 0, 1, 1])
    orig = caltech_curve(gt, dets, protocol="original")
    assert orig.num_positives == 1
    # 'people' and 'person?' absorb their detections; person-fa's is a FP.
    np.testing.assert_array_equal(orig.scores, [0.6, 0.5])
    np.testing.assert_array_equal(orig.miss_rate, [1.0, 0.0])


def test_file_ignore_flag():
    gt = make_gt(1, [(0, [100, 100, 41, 100], {"ignore": 1})])
    assert caltech_curve(gt, []).num_positives == 0
    assert mr(gt, [det(0, [100, 100, 41, 100], 0.9)]) == {"MR-2": None, "MR-4": None}


def test_edges_no_detection_all_false_positives_perfect():
    gt = make_gt(5, [(0, [100, 100, 41, 100], {}), (2, [200, 100, 41, 100], {})])
    # No detection: compRoc returns ref*0 -> recall 0 everywhere -> MR exp(mean(log 1)) = 1.
    assert mr(gt, []) == {"MR-2": 1.0, "MR-4": 1.0}
    # Only false positives: recall stays 0 -> MR 1.
    assert mr(gt, [det(1, [100, 100, 41, 100], 0.9)]) == {"MR-2": 1.0, "MR-4": 1.0}
    # Perfect: recall 1 at every reference -> log(0) = -inf -> dbEval's MR is exactly 0 ...
    perfect = [det(0, [100, 100, 41, 100], 0.9), det(2, [200, 100, 41, 100], 0.8)]
    assert mr(gt, perfect) == {"MR-2": 0.0, "MR-4": 0.0}
    # ... and acfTest's floor gives exp(mean(log(1e-10))) = 1e-10.
    floored = mr(gt, perfect, mr_floor=1e-10)
    assert floored["MR-2"] == pytest.approx(1e-10, rel=1e-12)
    assert floored["MR-4"] == pytest.approx(1e-10, rel=1e-12)


def test_reference_below_first_false_positive_reads_recall_zero():
    # Ten images, two persons; the best detection is a FP (fppi 0.1), the next finds one
    # person: fppi [0.1, 0.1], recall [0, 0.5]. References < 0.1 find only the -inf sentinel
    # (recall 0), references >= 0.1 read 0.5 (10**-1 == 0.1: the comparison is <=).
    # MR^-2: 4 of 9 points below 0.1 -> exp(5*log(0.5)/9) = 0.5**(5/9).
    # MR^-4: 12 of 17 points below 0.1 -> 0.5**(5/17).
    gt = make_gt(10, [(0, [100, 100, 41, 100], {}), (1, [100, 100, 41, 100], {})])
    dets = [det(5, [100, 100, 41, 100], 0.9), det(0, [100, 100, 41, 100], 0.8)]
    got = mr(gt, dets)
    assert got["MR-2"] == pytest.approx(0.5 ** (5 / 9), rel=1e-14)
    assert got["MR-4"] == pytest.approx(0.5 ** (5 / 17), rel=1e-14)
    # Floor 1e-10 changes nothing here (no sampled miss rate is 0).
    assert mr(gt, dets, mr_floor=1e-10) == got


def test_fppi_equal_to_reference_is_included():
    # 100 images, 3 persons: TP (fppi 0), FP (fppi 0.01), TP (fppi 0.01): at reference 0.01
    # the LAST point with fppi <= 0.01 is taken, recall 2/3, so every reference reads 2/3
    # and MR^-2 = 1/3 (a strict < would read 1/3 at 0.01).
    gt = make_gt(100, [(i, [100, 100, 41, 100], {}) for i in range(3)])
    dets = [
        det(0, [100, 100, 41, 100], 0.9),
        det(50, [100, 100, 41, 100], 0.8),
        det(1, [100, 100, 41, 100], 0.7),
    ]
    assert mr(gt, dets)["MR-2"] == pytest.approx(1 / 3, rel=1e-14)
    c = caltech_curve(gt, dets)
    assert log_average_miss_rate(c.fppi, 1 - c.miss_rate, np.array([0.01])) == pytest.approx(
        1 / 3, rel=1e-14
    )


def test_score_ties_keep_image_then_input_order():
    # Equal scores: MATLAB's stable sorts keep image order, then input order within an image.
    gt = make_gt(2, [(0, [100, 100, 41, 100], {}), (1, [100, 100, 41, 100], {})])
    dets = [det(1, [100, 100, 41, 100], 0.5), det(0, [300, 100, 41, 100], 0.5)]
    c = caltech_curve(gt, dets)
    # image 0's FP comes first although it is second in the file.
    np.testing.assert_array_equal(c.fppi, [0.5, 0.5])
    np.testing.assert_array_equal(c.miss_rate, [1.0, 0.5])


# ----------------------------------------------------------------------------------------------
# Against the literal re-implementation.


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("protocol", ["new", "original"])
def test_matches_literal_reimplementation(seed, protocol):
    gt, dets = random_scene(
        seed,
        num_images=12 if seed < 4 else 60,
        integer=seed % 2 == 1,
        ties=seed % 3 == 2,
        informative=seed >= 4,
    )
    # The three named setups plus one with a finite height range (tests both ends of the
    # ground-truth and detection height filters).
    setups = dict(caltech.SETUPS, Medium=((30.0, 80.0), (0.65, math.inf)))
    got = evaluate_caltech(gt, dets, setups=setups, protocol=protocol)
    checked = 0
    for name, spec in setups.items():
        for thr in (0.5, 0.75):
            key = f"{name}@{thr:g}"
            ref = naive_evaluate(gt, dets, spec, thr, protocol)
            if ref is None:
                assert got[key] == {"MR-2": None, "MR-4": None}
                continue
            for m in ("MR-2", "MR-4"):
                assert got[key][m] == pytest.approx(ref[m], abs=1e-12, rel=1e-12), (key, m)
            c = caltech_curve(gt, dets, setup={name: spec}, iou_threshold=thr, protocol=protocol)
            np.testing.assert_allclose(c.fppi, ref["fppi"], rtol=0, atol=1e-12)
            np.testing.assert_allclose(1 - c.miss_rate, ref["recall"], rtol=0, atol=1e-12)
            checked += 1
    assert checked >= 4


def test_matches_literal_reimplementation_with_floor():
    gt, dets = random_scene(11)
    got = evaluate_caltech(gt, dets, mr_floor=1e-10)
    ref = naive_evaluate(gt, dets, caltech.SETUPS["Reasonable"], 0.5, floor=1e-10)
    assert got["Reasonable@0.5"]["MR-2"] == pytest.approx(ref["MR-2"], abs=1e-12)
    assert got["Reasonable@0.5"]["MR-4"] == pytest.approx(ref["MR-4"], abs=1e-12)


def test_many_pairs_are_chunked(monkeypatch):
    # Force tiny chunks so the chunked overlap path is exercised; results must not change.
    gt, dets = random_scene(3, num_images=6)
    want = evaluate_caltech(gt, dets, setups=None)
    monkeypatch.setattr(caltech, "_PAIR_CHUNK", 3)
    assert evaluate_caltech(gt, dets, setups=None) == want


# ----------------------------------------------------------------------------------------------
# Properties.


@pytest.mark.parametrize("seed", range(3))
def test_shuffling_images_annotations_and_detections_changes_nothing(seed):
    gt, dets = random_scene(100 + seed)  # continuous random scores: distinct
    want = evaluate_caltech(gt, dets, setups=None)
    rng = random.Random(seed)
    gt2 = copy.deepcopy(gt)
    rng.shuffle(gt2["images"])
    rng.shuffle(gt2["annotations"])
    dets2 = copy.deepcopy(dets)
    rng.shuffle(dets2)
    got = evaluate_caltech(gt2, dets2, setups=None)
    for key in want:
        for m in ("MR-2", "MR-4"):
            if want[key][m] is None:
                assert got[key][m] is None
            else:
                assert got[key][m] == pytest.approx(want[key][m], abs=1e-12)


def _iou(a, b):
    iw = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    ih = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if iw <= 0 or ih <= 0:
        return 0.0
    return iw * ih / (a[2] * a[3] + b[2] * b[3] - iw * ih)


@pytest.mark.parametrize("seed", range(3))
def test_detections_inside_ignore_regions_change_nothing(seed):
    gt, dets = random_scene(200 + seed)
    rng = random.Random(seed)
    # Add one 'ignore' region per image and detections strictly inside it that overlap no
    # annotation (resized or not) by more than IoU 0.3, so no person can claim them.
    for img in range(len(gt["images"])):
        region = [rng.uniform(50, 400), rng.uniform(50, 250), 150.0, 180.0]
        gt["annotations"].append(
            {
                "id": 10_000 + img,
                "image_id": img,
                "category_id": 1,
                "bbox": region,
                "height": 180.0,
                "vis_ratio": 1.0,
                "label": "ignore",
            }
        )
    want = evaluate_caltech(gt, dets, setups=None, protocol="new")
    others = [a["bbox"] for a in gt["annotations"] if a.get("label") != "ignore"]
    added = []
    for a in gt["annotations"]:
        if a["id"] < 10_000:  # only the regions added above (the scene has small ones too)
            continue
        x, y, w, h = a["bbox"]
        for _ in range(5):
            bh = rng.uniform(45, 150)
            bw = rng.uniform(10, 60)
            box = [x + rng.uniform(0, w - bw), y + rng.uniform(0, h - bh), bw, bh]
            wide = [[b[0] + (b[2] - 0.41 * b[3]) / 2, b[1], 0.41 * b[3], b[3]] for b in others]
            if all(_iou(box, b) < 0.3 for b in others + wide):
                added.append(det(a["image_id"], box, rng.random()))
    assert added
    got = evaluate_caltech(gt, dets + added, setups=None, protocol="new")
    assert got == want


# ----------------------------------------------------------------------------------------------
# Errors and the CLI.


def test_bad_input_raises_clear_errors():
    gt = make_gt(2, [(0, [100, 100, 41, 100], {})])
    with pytest.raises(ValueError, match="not in the ground truth"):
        evaluate_caltech(gt, [det(7, [0, 0, 10, 40], 0.5)])
    dup = copy.deepcopy(gt)
    dup["images"].append({"id": 1})
    with pytest.raises(ValueError, match="repeats image id"):
        evaluate_caltech(dup, [])
    lab = make_gt(1, [(0, [100, 100, 41, 100], {"label": 3})])
    with pytest.raises(ValueError, match="label"):
        evaluate_caltech(lab, [])
    orphan = make_gt(1, [(4, [100, 100, 41, 100], {})])
    with pytest.raises(ValueError, match="not in 'images'"):
        evaluate_caltech(orphan, [])
    with pytest.raises(ValueError, match="unknown setup"):
        evaluate_caltech(gt, [], setups=["Reasonable_small"])
    with pytest.raises(ValueError, match=r"\(0, 1\]"):
        evaluate_caltech(gt, [], iou_thresholds=(0.0,))
    with pytest.raises(ValueError, match="unknown protocol"):
        evaluate_caltech(gt, [], protocol="2016")
    with pytest.raises(ValueError, match="bbox"):
        evaluate_caltech(gt, [{"image_id": 0, "category_id": 1, "bbox": [1, 2], "score": 1}])


def test_non_caltech_frame_size_warns():
    gt = make_gt(1, [(0, [100, 100, 41, 100], {})])
    gt["images"][0]["width"] = 2048
    with pytest.warns(UserWarning, match="not 640x480"):
        evaluate_caltech(gt, [])


def test_custom_setup_mapping():
    gt = make_gt(1, [(0, [100, 100, 41, 100], {}), (0, [300, 100, 41, 60], {})])
    res = evaluate_caltech(gt, [], setups={"Tall": ((80, math.inf), (0.65, math.inf))})
    assert list(res) == ["Tall@0.5", "Tall@0.75"]
    assert caltech_curve(gt, [], setup={"Tall": ((80, math.inf), (0, 1))}).num_positives == 1


def test_cli_round_trip(tmp_path, capsys):
    gt, dets = random_scene(5)
    gp, dp, op = tmp_path / "gt.json", tmp_path / "dets.json", tmp_path / "out.json"
    gp.write_text(json.dumps(gt))
    dp.write_text(json.dumps(dets))
    rc = caltech.main(["--gt", str(gp), "--dets", str(dp), "--setups", "all", "--out", str(op)])
    assert rc == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(op.read_text())
    want = evaluate_caltech(gt, dets, setups=None)
    assert printed.keys() == want.keys()
    for key in want:
        for m in ("MR-2", "MR-4"):
            if want[key][m] is None:
                assert printed[key][m] is None
            else:
                assert printed[key][m] == pytest.approx(want[key][m], rel=1e-15)
    rc = caltech.main(
        ["--gt", str(gp), "--dets", str(dp), "--iou", "0.75", "--protocol", "original"]
    )
    assert rc == 0
    assert list(json.loads(capsys.readouterr().out)) == ["Reasonable@0.75"]


def test_cli_errors_and_help(tmp_path, capsys):
    gp = tmp_path / "gt.json"
    gp.write_text(json.dumps(make_gt(1, [])))
    rc = caltech.main(["--gt", str(gp), "--dets", str(tmp_path / "missing.json")])
    assert rc == 2
    assert "detections file not found" in capsys.readouterr().err
    rc = caltech.main(["--gt", str(gp), "--dets", str(gp), "--setups", "Nope"])
    assert rc == 2
    assert "unknown setup" in capsys.readouterr().err
    rc = caltech.main(["--gt", str(gp), "--dets", str(gp), "--iou", "half"])
    assert rc == 2
    assert "--iou" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        caltech.main(["--help"])
    assert e.value.code == 0
    assert "MR^-4" in capsys.readouterr().out
