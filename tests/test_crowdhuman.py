"""Tests of evaluation.crowdhuman against an independent, literal reference and hand-computed cases.

The reference below follows the structure of the CrowdDet evaluator step by step: a dict of
images filled from the ground-truth lines and then from the detection lines (clipping both after
each detection line), Python loops over every (detection, ground truth) pair with CrowdDet's
Caltech loop and its `break`, a concatenation over images followed by one stable sort, AP and MR
accumulated item by item with `_find_gt`, and JI per image and threshold with networkx's
max_weight_matching (van Rantwijk's blossom, maxcardinality=False) on the edges IoU > 0.5. It
shares no code with the module under test.
"""

from __future__ import annotations

import copy
import json
import math
import os
import random
import subprocess
import sys
import warnings

import networkx as nx
import numpy as np
import pytest

from evaluation import crowdhuman as ch

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CALTECH_2 = [0.0100, 0.0178, 0.03160, 0.0562, 0.1000, 0.1778, 0.3162, 0.5623, 1.000]


# ----------------------------------------------------------------------------------------------
# Independent reference (CrowdDet, body mode), Python floats and loops.


def _ref_tag(b):
    tag = ["background", "person"].index(b["tag"]) if b["tag"] in ("background", "person") else -1
    if "extra" in b and "ignore" in b["extra"] and b["extra"]["ignore"] != 0:
        tag = -1
    return tag


def _ref_clip(rows, w, h):
    for r in rows:
        r[0] = min(max(r[0], 0), w - 1)
        r[1] = min(max(r[1], 0), h - 1)
        r[2] = max(min(r[2], w), 0)
        r[3] = max(min(r[3], h), 0)


def _ref_inter(d, g):
    iw = min(d[2], g[2]) - max(d[0], g[0])
    ih = min(d[3], g[3]) - max(d[1], g[1])
    return max(0, iw) * max(0, ih)


def _ref_iou(d, g):
    inter = _ref_inter(d, g)
    da = (d[2] - d[0]) * (d[3] - d[1])
    ga = (g[2] - g[0]) * (g[3] - g[1])
    den = da + ga - inter + 1e-6
    return inter / den if den != 0 else math.nan


def _ref_ioa(d, g, clamp=False):
    inter = _ref_inter(d, g)
    if clamp:
        da = max(d[2] - d[0], 0) * max(d[3] - d[1], 0)
    else:
        da = (d[2] - d[0]) * (d[3] - d[1])
    den = da + 1e-6
    return inter / den if den != 0 else math.nan


def _ref_images(gt_lines, dt_lines):
    """CrowdDet's Database loading: {ID: image}, gt-file order, clipping after each dt line."""
    images = {}
    for rec in gt_lines:
        gt = []
        for b in rec["gtboxes"]:
            x, y, w, h = (float(v) for v in b["fbox"])
            gt.append([x, y, x + w, y + h, _ref_tag(b)])
        images[rec["ID"]] = {
            "width": rec.get("width"),
            "height": rec.get("height"),
            "gt": gt,
            "gtNum": len(gt),
            "ignNum": sum(1 for r in gt if r[4] == -1),
            "dt": None,
        }
    for rec in dt_lines:
        im = images[rec["ID"]]
        if "width" in rec and im["width"] is None:
            im["width"] = rec["width"]
        if "height" in rec and im["height"] is None:
            im["height"] = rec["height"]
        im["dt"] = []
        for b in rec["dtboxes"]:
            x, y, w, h = (float(v) for v in b["box"])
            im["dt"].append([x, y, x + w, y + h, float(b["score"])])
        _ref_clip(im["dt"], im["width"], im["height"])
        _ref_clip(im["gt"], im["width"], im["height"])
    return images


def _ref_compare_caltech(im):
    dts = sorted(im["dt"], key=lambda r: r[-1], reverse=True)
    gts = sorted(im["gt"], key=lambda r: r[-1], reverse=True)
    taken = [0] * len(gts)
    out = []
    for dt in dts:
        maxpos, maxiou = -1, 0.5
        for j, gt in enumerate(gts):
            if taken[j] == 1:
                continue
            if gt[-1] > 0:
                ov = _ref_iou(dt, gt)
                if ov > maxiou:
                    maxiou, maxpos = ov, j
            else:
                if maxpos >= 0:
                    break
                if _ref_ioa(dt, gt) > 0.5:
                    maxpos = j
        if maxpos >= 0:
            if gts[maxpos][-1] > 0:
                taken[maxpos] = 1
                out.append((dt[-1], 1))
        else:
            out.append((dt[-1], 0))
    return out


def reference_ap_mr(gt_lines, dt_lines):
    images = _ref_images(gt_lines, dt_lines)
    items = []
    for key in images:
        items.extend(_ref_compare_caltech(images[key]))
    items.sort(key=lambda it: it[0], reverse=True)
    total_gt = sum(im["gtNum"] for im in images.values()) - sum(
        im["ignNum"] for im in images.values()
    )
    n_img = len(images)
    tp = fp = 0.0
    rec, prec, fppi, miss = [], [], [], []
    for _, label in items:
        if label == 1:
            tp += 1.0
        else:
            fp += 1.0
        fn = total_gt - tp
        rec.append(tp / (tp + fn))
        prec.append(tp / (tp + fp))
        fppi.append(fp / n_img)
        miss.append(1.0 - rec[-1])
    area = 0
    for i in range(1, len(rec)):
        area += (rec[i] - rec[i - 1]) * ((prec[i - 1] + prec[i]) / 2)

    def find_gt(lst, target):
        for idx, item in enumerate(lst):
            if item >= target:
                return idx
        return len(lst) - 1

    score = []
    for ref in CALTECH_2:
        idx = find_gt(fppi, ref)
        if idx >= 0:
            score.append(miss[idx])
    with np.errstate(divide="ignore"):
        mr = float(np.exp(np.log(np.array(score)).mean()))
    return float(area), mr


def _ref_ji_image(dt, gt, thr):
    dt = [r[:4] for r in dt if r[4] > thr]
    valid = [r[:4] for r in gt if r[4] != -1]
    ign = [r[:4] for r in gt if r[4] == -1]
    graph = nx.Graph()
    for i, d in enumerate(dt):
        for j, g in enumerate(valid):
            v = _ref_iou(d, g)
            if v > 0.5:
                graph.add_edge(("d", i), ("g", j), weight=v)
    mates = nx.max_weight_matching(graph, maxcardinality=False)
    pairs = [(a[1], b[1]) if a[0] == "d" else (b[1], a[1]) for a, b in mates]
    md = {i for i, _ in pairs}
    mg = {j for _, j in pairs}
    ign_dt = sum(
        1
        for i, d in enumerate(dt)
        if i not in md and ign and max(_ref_ioa(d, g, True) for g in ign) > 0.5
    )
    ign_gt = sum(
        1
        for j, g in enumerate(valid)
        if j not in mg and ign and max(_ref_ioa(g, q, True) for q in ign) > 0.5
    )
    k = len(pairs)
    m = len(valid) - ign_gt
    n = len(dt) - ign_dt
    return k / (m + n - k + 1e-6), k, m, n


def reference_ji(gt_lines, dt_lines):
    """CrowdDet's compute_JI over the dump lines, gt taken (unrounded) from the odgt."""
    gt_by_id = {rec["ID"]: rec for rec in gt_lines}
    means = []
    for i in range(10):
        thr = 1e-1 * i
        ratios, counted = [], 0
        for rec in dt_lines:
            w, h = rec["width"], rec["height"]
            gt = []
            for b in gt_by_id[rec["ID"]]["gtboxes"]:
                x, y, bw, bh = (float(v) for v in b["fbox"])
                gt.append([x, y, x + bw, y + bh, _ref_tag(b)])
            dt = []
            for b in rec["dtboxes"]:
                x, y, bw, bh = (float(v) for v in b["box"])
                dt.append([x, y, x + bw, y + bh, float(b["score"])])
            _ref_clip(gt, w, h)
            _ref_clip(dt, w, h)
            ratio, _, m, n = _ref_ji_image(dt, gt, thr)
            ratios.append(ratio)
            counted += 1 if (n != 0 or m != 0) else 0
        with np.errstate(divide="ignore", invalid="ignore"):
            means.append(np.sum(ratios) / np.float64(counted))
    return float(max(means))


# ----------------------------------------------------------------------------------------------
# Random crowded scenes.


def random_scene(seed, n_images=12):
    """Ground truth and a detection dump with the hard cases (see the module docstring)."""
    rng = random.Random(seed)
    gt_lines, dt_lines = [], []
    for k in range(n_images):
        W, H = rng.randint(200, 500), rng.randint(150, 400)
        boxes = []
        for _ in range(rng.randint(0, 18)):
            h = rng.randint(8, H)
            w = max(1, int(h * rng.uniform(0.3, 0.6)))
            if boxes and rng.random() < 0.5:  # crowd: next to an existing person
                bx, by, bw, bh = boxes[-1]["fbox"]
                x, y = bx + rng.randint(-bw // 2, bw // 2), by + rng.randint(-bh // 4, bh // 4)
            else:
                x, y = rng.randint(-w // 3, W - w // 2), rng.randint(-h // 4, H - h // 2)
            b = {"tag": "person", "fbox": [x, y, w, h], "vbox": [x, y, w, h]}
            if rng.random() < 0.7:
                b["hbox"] = [x + w // 4, y, w // 2, h // 6]
            r = rng.random()
            if r < 0.1:
                b["extra"] = {"ignore": 1, "box_id": 0}
            elif r < 0.6:
                b["extra"] = {"ignore": 0, "box_id": 1}
            if rng.random() < 0.03:
                b["tag"] = "background"
            boxes.append(b)
        for _ in range(rng.randint(0, 3)):
            w, h = rng.randint(20, W), rng.randint(20, H)
            boxes.append(
                {
                    "tag": "mask",
                    "fbox": [rng.randint(-20, W - 10), rng.randint(-20, H - 10), w, h],
                    "extra": {"ignore": 1},
                }
            )
        if not boxes:  # CrowdDet cannot load an empty gtboxes list
            boxes.append({"tag": "mask", "fbox": [0, 0, 30, 30], "extra": {"ignore": 1}})
        rng.shuffle(boxes)
        gt_lines.append({"ID": f"img{k:03d}", "gtboxes": boxes})

        dts = []

        def score():
            return round(rng.random(), 2) if rng.random() < 0.5 else rng.random()

        if rng.random() < 0.1:
            pass  # an image without any detection (empty dtboxes)
        else:
            for b in boxes:
                x, y, w, h = b["fbox"]
                for _ in range(rng.choice([0, 1, 1, 1, 2, 3])):
                    j = [rng.gauss(0, 0.08) for _ in range(4)]
                    box = [x + j[0] * w, y + j[1] * h, w * (1 + j[2]), h * (1 + j[3])]
                    dts.append({"box": [round(v, 1) for v in box], "score": score(), "tag": 1})
                if rng.random() < 0.15:  # exact duplicate
                    dts.append({"box": [x, y, w, h], "score": score(), "tag": 1})
            for _ in range(rng.randint(0, 12)):  # false positives anywhere, some off-image
                w, h = rng.uniform(0, 120), rng.uniform(0, 200)
                box = [rng.uniform(-50, W + 20), rng.uniform(-50, H + 20), w, h]
                if rng.random() < 0.1:
                    box[2] = 0.0  # zero area
                dts.append({"box": [round(v, 1) for v in box], "score": score(), "tag": 1})
            for _ in range(rng.randint(0, 3)):  # inside the first ignore region, if any
                ig = [b for b in boxes if _ref_tag(b) == -1]
                if ig:
                    x, y, w, h = ig[0]["fbox"]
                    dts.append(
                        {"box": [x + w * 0.2, y + h * 0.2, w * 0.5, h * 0.5], "score": score()}
                    )
            if dts and rng.random() < 0.3:  # a tie with an existing score
                dts.append(copy.deepcopy(rng.choice(dts)))
            rng.shuffle(dts)
        dt_lines.append({"ID": f"img{k:03d}", "height": H, "width": W, "dtboxes": dts})
    rng.shuffle(dt_lines)
    return gt_lines, dt_lines


def _write_lines(path, records):
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
    return str(path)


def _quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def _assert_matches_reference(gt_lines, dt_lines):
    ours = _quiet(ch.evaluate, gt_lines, dt_lines)
    ap, mr = reference_ap_mr(gt_lines, dt_lines)
    ji = reference_ji(gt_lines, dt_lines)
    assert ours["AP"] == pytest.approx(ap, abs=1e-9, rel=0)
    if math.isnan(mr):
        assert math.isnan(ours["MR"])
    else:
        assert ours["MR"] == pytest.approx(mr, abs=1e-9, rel=0)
    assert ours["JI"] == pytest.approx(ji, abs=1e-12, rel=0)
    return ours


# ----------------------------------------------------------------------------------------------
# Agreement with the reference.


@pytest.mark.parametrize("seed", range(8))
def test_random_crowded_scenes_match_reference(seed):
    gt_lines, dt_lines = random_scene(seed)
    ours = _assert_matches_reference(gt_lines, dt_lines)
    assert 0 < ours["AP"] < 1 and 0 <= ours["JI"] <= 1


def test_dense_crowd_many_conflicts_matches_reference():
    """Few images, many overlapping persons and duplicates: general JI components."""
    gt_lines, dt_lines = random_scene(101, n_images=3)
    rng = random.Random(7)
    for rec in dt_lines:
        extra = []
        for d in rec["dtboxes"]:
            x, y, w, h = d["box"]
            for _ in range(2):
                extra.append(
                    {
                        "box": [x + rng.uniform(-4, 4), y + rng.uniform(-4, 4), w, h],
                        "score": rng.random(),
                    }
                )
        rec["dtboxes"] += extra
    _assert_matches_reference(gt_lines, dt_lines)


def test_max_weight_matching_agrees_with_networkx():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n, k = rng.integers(1, 9, size=2)
        iou = np.where(rng.random((n, k)) < 0.5, rng.uniform(0.5, 1.0, (n, k)), 0.0)
        rows, cols = ch.max_weight_matching(iou)
        graph = nx.Graph()
        for i, j in zip(*np.nonzero(iou > 0.5)):
            graph.add_edge(("d", int(i)), ("g", int(j)), weight=float(iou[i, j]))
        mates = nx.max_weight_matching(graph, maxcardinality=False)
        nx_weight = sum(graph[a][b]["weight"] for a, b in mates)
        assert len(set(rows.tolist())) == rows.size and len(set(cols.tolist())) == cols.size
        assert (iou[rows, cols] > 0.5).all()
        assert iou[rows, cols].sum() == pytest.approx(nx_weight, abs=1e-12)
        assert rows.size == len(mates)


def test_component_matchers_agree_with_networkx():
    """The per-component solvers (permutations up to 5 x 5, linear_sum_assignment beyond), for
    every threshold's kept prefix of detections, against networkx's blossom."""
    rng = np.random.default_rng(1)
    comp, d, g, w = [], [], [], []
    n_det = n_gt = 0
    for c in range(60):
        nd, ng = rng.integers(2, 9, size=2)
        dense = rng.random((nd, ng)) < rng.uniform(0.3, 0.9)
        dense[np.arange(nd), rng.integers(0, ng, nd)] = True  # no isolated row
        for i, j in zip(*np.nonzero(dense)):
            comp.append(c)
            d.append(n_det + i)
            g.append(n_gt + j)
            w.append(rng.uniform(0.5, 1.0))
        n_det += nd
        n_gt += ng
    comp, d, g, w = (np.array(x) for x in (comp, d, g, w))
    score = np.sort(rng.random(n_det))[::-1]  # detections by descending score, as in a scene
    kept = score[None, :] > np.array(ch.JI_SCORE_THRESHOLDS)[:, None]
    t, md, mg = ch._general_matches(comp, d, g, w, kept)
    weight = dict(zip(zip(d.tolist(), g.tolist()), w.tolist()))
    for c in range(60):
        for ti in range(kept.shape[0]):
            graph = nx.Graph()
            for e in np.flatnonzero((comp == c) & kept[ti, d]):
                graph.add_edge(("d", int(d[e])), ("g", int(g[e])), weight=float(w[e]))
            mates = nx.max_weight_matching(graph, maxcardinality=False)
            ours = [(a, b) for tt, a, b in zip(t, md, mg) if tt == ti and comp[d == a][0] == c]
            assert len({a for a, _ in ours}) == len(ours) == len({b for _, b in ours})
            assert all(kept[ti, a] for a, _ in ours)
            assert len(ours) == len(mates)
            expected = sum(graph[a][b]["weight"] for a, b in mates)
            assert sum(weight[p] for p in ours) == pytest.approx(expected, abs=1e-12)


@pytest.mark.parametrize("grid_share", [0.5, 1.0])
def test_intersecting_pairs_equal_brute_force(grid_share):
    rng = np.random.default_rng(2)
    n_img = 6
    a_img = np.sort(rng.integers(0, n_img, 600))
    b_img = np.sort(rng.integers(0, n_img, 300))

    def boxes(n):
        # Some on a coarse half-pixel grid with few widths: many boxes exactly touching, or
        # overlapping by a sliver, at the edges of the search windows.
        x1, y1 = rng.uniform(-50, 150, n), rng.uniform(-50, 150, n)
        w, h = rng.uniform(-5, 120, n), rng.uniform(-5, 120, n)  # inverted and zero-size too
        grid = rng.random(n) < grid_share
        x1[grid] = rng.integers(-40, 200, grid.sum()) / 2
        w[grid] = rng.choice([0.0, 0.5, 10.0, 20.0, -1.0], grid.sum())
        w[rng.random(n) < 0.1] = 0.0
        return np.stack([x1, y1, x1 + w, y1 + h], 1)

    a, b = boxes(a_img.size), boxes(b_img.size)
    pairs = ch._intersecting_pairs(a_img, a, b_img, b, n_img)
    iou, ioa = ch.box_overlaps(a, b)
    same = a_img[:, None] == b_img[None, :]
    iw = np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0])
    ih = np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1])
    ia, jb = np.nonzero(same & (iw > 0) & (ih > 0))
    got = sorted(zip(pairs.a.tolist(), pairs.b.tolist()))
    assert got == sorted(zip(ia.tolist(), jb.tolist()))
    np.testing.assert_array_equal(pairs.iou, iou[pairs.a, pairs.b])  # bit for bit
    np.testing.assert_array_equal(pairs.ioa, ioa[pairs.a, pairs.b])


# ----------------------------------------------------------------------------------------------
# Hand-computed cases.


def _person(x, y, w, h, **extra):
    b = {"tag": "person", "fbox": [x, y, w, h]}
    if extra:
        b["extra"] = extra
    return b


def _det(x, y, w, h, score):
    return {"box": [x, y, w, h], "score": score, "tag": 1}


def test_two_images_by_hand():
    # Image a (300 x 200): persons P1 [10,10,40,100], P2 [100,10,40,100], a mask [200,0,100,100].
    #   detections by score: 0.99 in the mask (IoA 1 -> dropped), 0.95 on P1 (IoU 3900/4100,
    #   TP), 0.30 exactly on P2 (TP).
    # Image b: person P3 [10,10,40,100]; 0.90 exactly on it (TP), 0.80 elsewhere (FP).
    # Global order: 0.95 TP, 0.90 TP, 0.80 FP, 0.30 TP; G = 3, N_img = 2.
    #   recall 1/3, 2/3, 2/3, 1; precision 1, 1, 2/3, 3/4.
    #   AP = (1/3)(1+1)/2 + 0 + (1/3)(2/3+3/4)/2 = 1/3 + 17/72 = 41/72.
    #   fppi 0, 0, .5, .5: points <= 0.5 take the first item with fppi >= point (index 2, miss
    #   1/3); 0.5623 and 1.0 are never reached and take the LAST item (miss 0), so MR = 0.
    # JI at threshold 0: a: k=2, m=2, n=3-1 (the dropped one lies in the mask) -> 2/(2+1e-6);
    #   b: k=1, m=1, n=2 -> 1/(2+1e-6); mean over 2 images. Later thresholds only lose.
    gt = [
        {
            "ID": "a",
            "gtboxes": [
                _person(10, 10, 40, 100, ignore=0),
                _person(100, 10, 40, 100),
                {"tag": "mask", "fbox": [200, 0, 100, 100], "extra": {"ignore": 1}},
            ],
        },
        {"ID": "b", "gtboxes": [_person(10, 10, 40, 100)]},
    ]
    dt = [
        {"ID": "b", "width": 300, "height": 200,
         "dtboxes": [_det(10, 10, 40, 100, 0.9), _det(150, 10, 40, 100, 0.8)]},
        {"ID": "a", "width": 300, "height": 200,
         "dtboxes": [_det(11, 10, 40, 100, 0.95), _det(210, 10, 40, 50, 0.99),
                     _det(100, 10, 40, 100, 0.3)]},
    ]  # fmt: skip
    out = ch.evaluate(gt, dt)
    assert out["AP"] == pytest.approx(41 / 72, abs=1e-15)
    assert out["MR"] == 0.0
    assert out["JI"] == pytest.approx((2 / (2 + 1e-6) + 1 / (2 + 1e-6)) / 2, abs=1e-15)
    _assert_matches_reference(gt, dt)


def test_asymmetric_clipping():
    # x1 is clipped to W - 1 but x2 to W: a box wholly right of the image becomes a 1-px strip.
    clipped = ch.clip_boxes(np.array([[150.0, -5, 180, 20], [-50, 0, -10, 20]]), 100, 50)
    np.testing.assert_array_equal(clipped, [[99, 0, 100, 20], [0, 0, 0, 20]])
    # So a detection entirely right of the image matches a person sticking out on the right
    # (both become [99, 0, 100, 40]) while its mirror image on the left is a zero-area FP.
    gt = [
        {"ID": "r", "gtboxes": [_person(99, 0, 5, 40)]},
        {"ID": "l", "gtboxes": [_person(-4, 0, 5, 40)]},
    ]
    dt = [{"ID": "r", "width": 100, "height": 50, "dtboxes": [_det(150, 0, 10, 40, 0.9)]},
          {"ID": "l", "width": 100, "height": 50, "dtboxes": [_det(-50, 0, 10, 40, 0.8)]}]  # fmt: skip
    out = ch.evaluate(gt, dt)
    # 0.9 TP (recall 1/2, precision 1), 0.8 FP (1/2, 1/2): AP = 0.
    assert out["AP"] == 0.0
    assert out["JI"] == pytest.approx((1 / (1 + 1e-6) + 0) / 2, abs=1e-15)
    # The ground truth is clipped too: a person half outside matches the detection of its
    # visible half only after clipping (unclipped IoU would be 400 / 800 = 0.5, not > 0.5).
    gt = [{"ID": "c", "gtboxes": [_person(90, 0, 20, 40)]}]
    dt = [{"ID": "c", "width": 100, "height": 50, "dtboxes": [_det(90, 0, 10, 40, 0.9)]}]
    assert ch.evaluate(gt, dt)["MR"] == 0.0
    _assert_matches_reference(gt, dt)


def test_threshold_is_strict_at_exactly_half():
    # Areas of 2**33 and 2**34 absorb the +1e-6 exactly, so the IoU is exactly 0.5.
    s = 2**16
    gt = [{"ID": "x", "gtboxes": [_person(0, 0, s, 2 * s)]}]
    exact = [{"ID": "x", "width": s, "height": 4 * s, "dtboxes": [_det(0, 0, s, 4 * s, 0.9)]}]
    iou, _ = ch.box_overlaps(np.array([[0, 0, s, 4 * s]]), np.array([[0, 0, s, 2 * s]]))
    assert iou[0, 0] == 0.5
    out = ch.evaluate(gt, exact)
    assert out["JI"] == 0.0  # no edge: k = 0
    assert out["MR"] == 1.0  # a single FP: miss rate 1 everywhere
    above = copy.deepcopy(exact)
    above[0]["dtboxes"][0]["box"][3] = 4 * s - 2
    assert ch.evaluate(gt, above)["MR"] == 0.0
    # Same for an ignore region: IoA exactly 0.5 does not absorb the detection (it is an FP).
    gt = [{"ID": "x", "gtboxes": [_person(0, 0, 10, 10),
                                  {"tag": "mask", "fbox": [0, 0, s, 2 * s]}]}]  # fmt: skip
    with pytest.warns(UserWarning, match="no image has ground truth or detections"):
        out = ch.evaluate(gt, exact)  # (the person lies in the region: m = 0; n = 0 at 0.9)
    assert out["MR"] == 1.0  # the detection still counts as an FP


def test_equal_iou_goes_to_the_first_ground_truth():
    # d1 (x 2..12) has IoU 80/120 with both A (x 0..10) and B (x 4..14): it takes A, the first
    # valid person in file order (the mask listed before them sorts after them). d2 (x 0..9
    # after clipping) overlaps only A, already taken: FP. G = 2: r .5, .5; p 1, .5 -> AP 0.
    # (Taking the last tied person instead would give two TPs and AP 0.5.)
    gt = [{"ID": "tie", "gtboxes": [{"tag": "mask", "fbox": [50, 50, 20, 20]},
                                    _person(0, 0, 10, 10), _person(4, 0, 10, 10)]}]  # fmt: skip
    dt = [{"ID": "tie", "width": 100, "height": 100,
           "dtboxes": [_det(-1, 0, 10, 10, 0.8), _det(2, 0, 10, 10, 0.9)]}]  # fmt: skip
    out = ch.evaluate(gt, dt)
    assert out["AP"] == 0.0
    _assert_matches_reference(gt, dt)


def test_one_detection_on_the_last_of_many_persons():
    # More persons than overlapping pairs (a regression: the matched-flags array must be sized
    # by the ground truth). 20 persons, one found: miss rate 19/20 at every point.
    gt = [{"ID": 1, "gtboxes": [_person(10 * i, 0, 5, 5) for i in range(20)]}]
    dt = [{"ID": 1, "width": 300, "height": 300, "dtboxes": [_det(190, 0, 5, 5, 0.5)]}]
    out = ch.evaluate(gt, dt)
    assert out == {"AP": 0.0, "MR": pytest.approx(0.95, abs=1e-15), "JI": 1 / (20 + 1e-6)}


def test_max_weight_not_max_cardinality():
    # Spec 8.1: three persons 100 px wide shifted by 30 px; d0 and d1 are 1 px off g1 and g2,
    # d2 overlaps g2 by 70 px. IoUs [[.527, .98, .55], [.242, .527, .98], [.053, .25, .538]].
    # Max weight takes {d0-g1, d1-g2} (1.96 > 1.59): k = 2, where max cardinality gives 3.
    gt = [{"ID": "row", "gtboxes": [_person(30 * i, 0, 100, 100) for i in range(3)]}]
    # Scores above 0.9: every threshold keeps all three (JI is a max over thresholds).
    dets = [_det(31, 0, 100, 100, 0.99), _det(61, 0, 100, 100, 0.98), _det(90, 0, 100, 100, 0.97)]
    dt = [{"ID": "row", "width": 400, "height": 200, "dtboxes": dets}]
    boxes = np.array([[d["box"][0], 0, d["box"][0] + 100, 100] for d in dets], dtype=float)
    gts = np.array([[30 * i, 0, 30 * i + 100, 100] for i in range(3)], dtype=float)
    iou, _ = ch.box_overlaps(boxes, gts)
    np.testing.assert_allclose(
        iou, [[0.527, 0.98, 0.55], [0.242, 0.527, 0.98], [0.053, 0.25, 0.538]], atol=1e-3
    )
    rows, cols = ch.max_weight_matching(iou)
    assert sorted(zip(rows.tolist(), cols.tolist())) == [(0, 1), (1, 2)]
    assert ch.evaluate(gt, dt)["JI"] == pytest.approx(2 / (3 + 3 - 2 + 1e-6), abs=1e-15)
    _assert_matches_reference(gt, dt)


def test_ji_score_threshold_is_strict():
    # A TP at 0.95 and an FP at exactly 0.9: at threshold 0.9 the FP is gone (0.9 > 0.9 is
    # false), ratio 1/(1+1e-6). With >= the best threshold would leave ratio 1/2.
    gt = [{"ID": "t", "gtboxes": [_person(0, 0, 10, 20)]}]
    dt = [{"ID": "t", "width": 100, "height": 100,
           "dtboxes": [_det(0, 0, 10, 20, 0.95), _det(50, 50, 10, 20, 0.9)]}]  # fmt: skip
    assert ch.evaluate(gt, dt)["JI"] == pytest.approx(1 / (1 + 1e-6), abs=1e-15)
    assert ch.JI_SCORE_THRESHOLDS[3] == 0.30000000000000004
    assert ch.JI_SCORE_THRESHOLDS == tuple(0.1 * i for i in range(10))


def test_ap_and_mr_functions():
    assert ch.average_precision(np.array([], bool), 5) == 0.0
    assert ch.average_precision(np.array([True]), 5) == 0.0  # no initial point
    # TP, FP, TP with G = 2: r = .5, .5, 1; p = 1, .5, 2/3 -> 0 + .5 * (.5 + 2/3) / 2.
    assert ch.average_precision(np.array([True, False, True]), 2) == pytest.approx(7 / 24)
    # _find_gt: first index with fppi >= point, else the last one. One image, G = 4:
    # FP, TP, TP: fppi 1, 1, 1 -> every point takes index 0 (miss 1) -> MR 1.
    assert ch.log_average_miss_rate(np.array([False, True, True]), 4, 1) == 1.0
    # 200 images, TP, FP, TP: fppi 0, .005, .005 -> all points take the last (miss 1/2).
    assert ch.log_average_miss_rate(np.array([True, False, True]), 4, 200) == pytest.approx(0.5)
    assert math.isnan(ch.log_average_miss_rate(np.array([], bool), 4, 1))  # mean of nothing
    with pytest.raises(ValueError, match="unknown reference"):
        ch.log_average_miss_rate(np.array([True]), 1, 1, ref="x")


def test_jaccard_index_nan_only_wins_first():
    k = np.array([[0], [1]])
    m = np.array([[0], [1]])
    n = np.array([[0], [1]])
    ji, means = ch.jaccard_index(k, m, n)
    assert math.isnan(means[0]) and math.isnan(ji)  # Python max keeps a leading NaN
    ji, _ = ch.jaccard_index(k[::-1], m[::-1], n[::-1])
    assert ji == pytest.approx(1 / (1 + 1e-6))


# ----------------------------------------------------------------------------------------------
# Properties.


def test_shuffling_lines_and_detections_changes_nothing():
    gt_lines, dt_lines = random_scene(3)
    rng = random.Random(0)
    for rec in dt_lines:  # distinct scores: the order of equal scores would matter
        for d in rec["dtboxes"]:
            d["score"] = rng.random()
    base = _quiet(ch.evaluate, gt_lines, dt_lines)
    shuffled = copy.deepcopy(dt_lines)
    rng.shuffle(shuffled)
    for rec in shuffled:
        rng.shuffle(rec["dtboxes"])
    assert _quiet(ch.evaluate, gt_lines, shuffled) == base


def test_perfect_detector():
    gt_lines, dt_lines = [], []
    G = 0
    for k in range(5):
        persons = [_person(60 * i, 10, 40, 100) for i in range(k + 1)]
        G += len(persons)
        gt_lines.append({"ID": k, "gtboxes": persons})
        dets = [_det(*p["fbox"], 0.5 + 0.01 * (k * 10 + i)) for i, p in enumerate(persons)]
        dt_lines.append({"ID": k, "width": 400, "height": 200, "dtboxes": dets})
    out = ch.evaluate(gt_lines, dt_lines)
    # Precision is 1 throughout and recall climbs by 1/G per item from 1/G: the trapezoids
    # miss the first step, so AP = (G - 1) / G = 14/15.
    assert out["AP"] == pytest.approx((G - 1) / G, abs=1e-12)
    assert out["MR"] == 0.0
    # k = m = n per image: ratio k / (k + 1e-6), just below 1.
    expected = np.mean([(k + 1) / (k + 1 + 1e-6) for k in range(5)])
    assert out["JI"] == pytest.approx(expected, abs=1e-15)
    assert out["JI"] == pytest.approx(1.0, abs=1e-5)


def test_detections_inside_ignore_regions_change_nothing():
    gt_lines, dt_lines = random_scene(5)
    base = _quiet(ch.evaluate, gt_lines, dt_lines)
    more = copy.deepcopy(dt_lines)
    by_id = {r["ID"]: r for r in gt_lines}
    rng = random.Random(1)
    added = 0
    for rec in more:
        boxes = by_id[rec["ID"]]["gtboxes"]
        persons = [b for b in boxes if _ref_tag(b) != -1]
        region = {"tag": "mask", "fbox": [1000, 1000, 80, 80], "extra": {"ignore": 1}}
        boxes.append(region)  # far from every person (images are at most 500 x 400)
        rec["width"], rec["height"] = 1200, 1200  # keep everything unclipped as before...
        assert all(b["fbox"][0] + b["fbox"][2] < 1000 for b in persons)
        for _ in range(3):
            rec["dtboxes"].append(_det(1010 + rng.uniform(0, 20), 1010, 40, 50, rng.random()))
            added += 1
    # ...which changes clipping, so compare against the same enlarged images without them.
    plain = copy.deepcopy(more)
    for rec in plain:
        rec["dtboxes"] = [d for d in rec["dtboxes"] if d["box"][0] < 1000]
    base = _quiet(ch.evaluate, gt_lines, plain)
    out = _quiet(ch.evaluate, gt_lines, more)
    assert added > 0
    assert out["AP"] == base["AP"] and out["MR"] == base["MR"]
    assert out["JI"] == base["JI"]  # unmatched and inside an ignore region: n is unchanged


# ----------------------------------------------------------------------------------------------
# Where CrowdDet crashes: our documented behaviour.


def test_empty_gtboxes_is_an_image_without_ground_truth():
    gt_lines, dt_lines = random_scene(8)
    gt_lines[2]["gtboxes"] = []
    # Same as an image whose only entry is an ignore region overlapping nothing (which CrowdDet
    # can evaluate): it adds to N_img, all its detections are FPs, and m = 0 in JI.
    equivalent = copy.deepcopy(gt_lines)
    equivalent[2]["gtboxes"] = [{"tag": "mask", "fbox": [-100, -100, 0, 0]}]
    ours = ch.evaluate(gt_lines, dt_lines)
    ap, mr = reference_ap_mr(equivalent, dt_lines)
    assert ours["AP"] == pytest.approx(ap, abs=1e-12)
    assert ours["MR"] == pytest.approx(mr, abs=1e-12)
    assert ours["JI"] == pytest.approx(reference_ji(equivalent, dt_lines), abs=1e-12)


@pytest.mark.parametrize("gt_has_size", [False, True])
def test_image_without_detection_line(gt_has_size):
    gt_lines, dt_lines = random_scene(9)
    gt_lines = copy.deepcopy(gt_lines)
    for rec in gt_lines:  # non-negative coordinates: clipping to a huge image changes nothing
        for b in rec["gtboxes"]:
            b["fbox"][0], b["fbox"][1] = abs(b["fbox"][0]), abs(b["fbox"][1])
    victim = dt_lines[4]["ID"]
    victim_gt = next(r for r in gt_lines if r["ID"] == victim)
    if gt_has_size:
        victim_gt["width"], victim_gt["height"] = 120, 90
    rest = [r for r in dt_lines if r["ID"] != victim]
    with pytest.warns(UserWarning, match=rf"1 image\(s\) .* no detection line \('{victim}'\)"):
        ours = ch.evaluate(gt_lines, rest)
    # Same as an empty detection line, clipped with the ground truth's size if it has one and
    # not at all otherwise (an image of 10**6 px clips nothing here).
    size = (120, 90) if gt_has_size else (10**6, 10**6)
    empty = rest + [{"ID": victim, "width": size[0], "height": size[1], "dtboxes": []}]
    ap, mr = reference_ap_mr(gt_lines, empty)
    assert ours["AP"] == pytest.approx(ap, abs=1e-12)
    assert ours["MR"] == pytest.approx(mr, abs=1e-12)
    assert ours["JI"] == pytest.approx(reference_ji(gt_lines, empty), abs=1e-12)


def test_unknown_detection_id_raises(tmp_path):
    gt_lines, dt_lines = random_scene(1, n_images=2)
    dt_lines.append({"ID": "stranger", "width": 10, "height": 10, "dtboxes": []})
    gt_path = _write_lines(tmp_path / "gt.odgt", gt_lines)
    dt_path = _write_lines(tmp_path / "dt.odgt", dt_lines)
    with pytest.raises(ValueError, match="'stranger'") as e:
        ch.evaluate_files(gt_path, dt_path)
    assert "gt.odgt" in str(e.value) and "dt.odgt" in str(e.value) and "line 3" in str(e.value)


def test_repeated_ids_warn_and_last_line_wins():
    gt_lines, dt_lines = random_scene(4, n_images=4)
    base = _quiet(ch.evaluate, gt_lines, dt_lines)
    # A stale detection line before the real one, and a stale ground-truth line before the
    # real one: the last line counts, the image keeps its first position.
    stale_dt = {"ID": dt_lines[0]["ID"], "width": dt_lines[0]["width"],
                "height": dt_lines[0]["height"], "dtboxes": [_det(0, 0, 5, 5, 0.999)]}  # fmt: skip
    stale_gt = {"ID": gt_lines[1]["ID"], "gtboxes": [_person(0, 0, 9, 9)]}
    with pytest.warns(UserWarning, match="repeated image ID") as rec:
        out = ch.evaluate([stale_gt] + gt_lines, [stale_dt] + dt_lines)
    assert len([w for w in rec if "repeated" in str(w.message)]) == 2
    # The ground-truth dict order changes (the repeated image moves first), which only changes
    # tie order across images; use distinct scores to compare exactly.
    assert out["AP"] == pytest.approx(base["AP"], abs=1e-12)
    assert out["JI"] == pytest.approx(base["JI"], abs=1e-12)


@pytest.mark.parametrize(
    ("gt_line", "dt_line", "message"),
    [
        ("{not json", None, r"gt.odgt', line 2: not valid JSON"),
        ('{"gtboxes": []}', None, r"gt.odgt', line 2: missing key 'ID'"),
        ('{"ID": "z", "gtboxes": [{"fbox": [0, 0, 1, 1]}]}', None, r"line 2: gtboxes\[0\]: .*'tag'"),
        ('{"ID": "z", "gtboxes": [{"tag": "person"}]}', None, r"line 2: gtboxes\[0\]: .*'fbox'"),
        ('{"ID": "z", "gtboxes": [{"tag": "person", "fbox": [0, 0, 1]}]}', None, "not 4 finite"),
        ('{"ID": "z", "gtboxes": [{"tag": "person", "fbox": [0, 0, 1, 1], "extra": 1}]}', None,
         "'extra' must be an object"),
        (None, '{"ID": "a", "width": 9, "height": 9}', r"dt.odgt', line 2: missing key 'dtboxes'"),
        (None, '{"ID": "a", "width": 9, "height": 9, "dtboxes": [{"box": [0, 0, 1, 1]}]}',
         r"line 2: dtboxes\[0\]: missing key 'score'"),
        (None, '{"ID": "a", "width": 9, "height": 9, "dtboxes": [{"score": 1}]}',
         r"line 2: dtboxes\[0\]: missing key 'box'"),
        (None, '{"ID": "a", "width": 9, "height": 9, "dtboxes": [{"box": [0, 0, 1, "x"], "score": 1}]}',
         "not 4 finite numbers"),
        (None, '{"ID": "a", "width": 9, "height": 9, "dtboxes": [{"box": [0, 0, 1, 1], "score": NaN}]}',
         "'score' nan is not a finite number"),
        (None, '{"ID": "a", "dtboxes": []}', "image 'a' has no 'width'"),
        (None, '{"ID": "a", "width": 9.5, "height": 9, "dtboxes": []}', "whole number"),
    ],
)  # fmt: skip
def test_malformed_input_names_file_line_and_key(tmp_path, gt_line, dt_line, message):
    gt_text = '{"ID": "a", "gtboxes": [{"tag": "person", "fbox": [0, 0, 5, 5]}]}\n'
    dt_text = '{"ID": "b", "width": 9, "height": 9, "dtboxes": []}\n'
    gt_text = '{"ID": "b", "gtboxes": []}\n' + (gt_line + "\n" if gt_line else gt_text)
    dt_text = dt_text + (dt_line + "\n" if dt_line else "")
    (tmp_path / "gt.odgt").write_text(gt_text)
    (tmp_path / "dt.odgt").write_text(dt_text)
    with pytest.raises(ValueError, match=message):
        _quiet(ch.evaluate_files, tmp_path / "gt.odgt", tmp_path / "dt.odgt")


def test_records_api_errors_and_degenerate_sets():
    with pytest.raises(ValueError, match="holds no image"):
        ch.evaluate([], [])
    with pytest.raises(ValueError, match="detections record 0: missing key 'ID'"):
        ch.evaluate([{"ID": 1, "gtboxes": []}], [{"dtboxes": []}])
    with pytest.raises(ValueError, match="unknown metric"):
        ch.evaluate([{"ID": 1, "gtboxes": []}], [], metrics=("AP", "mAP"))
    # Only ignore regions: G = 0, recall 0/0 as in CrowdDet -> NaN, with a warning.
    gt = [{"ID": 1, "gtboxes": [{"tag": "mask", "fbox": [0, 0, 5, 5]}]}]
    dt = [{"ID": 1, "width": 9, "height": 9,
           "dtboxes": [_det(5, 5, 2, 2, 0.5), _det(6, 6, 2, 2, 0.4)]}]  # fmt: skip
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = ch.evaluate(gt, dt)
    messages = " | ".join(str(w.message) for w in caught)
    assert "AP and MR are NaN" in messages
    assert "no image has ground truth or detections" in messages  # JI at thresholds >= 0.5
    assert math.isnan(out["AP"]) and math.isnan(out["MR"]) and out["JI"] == 0.0
    # No detection at all: MR is the mean of nothing (NaN), AP 0.
    with pytest.warns(UserWarning):
        out = ch.evaluate([{"ID": 1, "gtboxes": [_person(0, 0, 5, 5)]}],
                          [{"ID": 1, "width": 9, "height": 9, "dtboxes": []}])  # fmt: skip
    assert out["AP"] == 0.0 and math.isnan(out["MR"]) and out["JI"] == 0.0
    assert _quiet(ch.evaluate, gt, dt, metrics=("JI",)) == {"JI": 0.0}


def test_image_size_sources():
    # AP/MR: the ground-truth line's size wins over the detection line's (CrowdDet keeps the
    # first it sees): clipped to W = 50 the person is [40, 50] and the detection [40, 50]
    # matches. JI reads only the dump's size (500): the person stays [40, 60], IoU 1/2, no edge.
    gt = [{"ID": "s", "width": 50, "height": 50, "gtboxes": [_person(40, 0, 20, 20)]}]
    dt = [{"ID": "s", "width": 500, "height": 500, "dtboxes": [_det(40, 0, 10, 20, 0.9)]}]
    out = ch.evaluate(gt, dt)
    assert out["MR"] == 0.0 and out["JI"] == 0.0
    ap, mr = reference_ap_mr(gt, dt)
    assert (out["AP"], out["MR"]) == (ap, mr)
    assert out["JI"] == reference_ji(gt, dt)
    # With repeated detection lines, AP/MR keep the first line's size, JI the used (last) one.
    gt_plain = [{"ID": "s", "gtboxes": [_person(40, 0, 20, 20)]}]
    dt2 = [dict(dt[0], width=50, height=50, dtboxes=[]), dt[0]]
    with pytest.warns(UserWarning, match="repeated"):
        out = ch.evaluate(gt_plain, dt2)
    assert out["MR"] == 0.0 and out["JI"] == 0.0


# ----------------------------------------------------------------------------------------------
# Command line.


def test_cli_prints_json_and_writes_out(tmp_path, capsys):
    gt_lines, dt_lines = random_scene(2, n_images=4)
    gt_path = _write_lines(tmp_path / "gt.odgt", gt_lines)
    with open(tmp_path / "dt.odgt", "w") as f:  # a dump may carry its own gtboxes and blanks
        gtboxes = [{"box": [0, 0, 1, 1], "tag": 1}]
        f.writelines(json.dumps(dict(r, gtboxes=gtboxes)) + "\n\n" for r in dt_lines)
    out_path = tmp_path / "metrics.json"
    assert ch.main(["--gt", gt_path, "--dets", str(tmp_path / "dt.odgt"),
                    "--out", str(out_path)]) == 0  # fmt: skip
    printed = json.loads(capsys.readouterr().out)
    assert list(printed) == ["AP", "MR", "JI"]
    assert printed == json.loads(out_path.read_text())
    expected = _quiet(ch.evaluate, gt_lines, dt_lines)
    assert printed == pytest.approx(expected, abs=1e-15)
    # Bad input: exit code 2 and one error line.
    assert ch.main(["--gt", gt_path, "--dets", str(tmp_path / "missing.odgt")]) == 2
    assert "error: detections file not found" in capsys.readouterr().err


def test_cli_subprocess_and_help(tmp_path):
    gt_lines, dt_lines = random_scene(0, n_images=3)
    gt_path = _write_lines(tmp_path / "gt.odgt", gt_lines)
    dt_path = _write_lines(tmp_path / "dt.odgt", dt_lines[1:])  # one image without a line
    proc = subprocess.run(
        [sys.executable, "-m", "evaluation.crowdhuman", "--gt", gt_path, "--dets", dt_path],
        cwd=REPO, capture_output=True, text=True, check=True,
    )  # fmt: skip
    result = json.loads(proc.stdout)
    assert set(result) == {"AP", "MR", "JI"}
    assert "no detection line" in proc.stderr
    with pytest.raises(SystemExit) as e:
        ch.main(["--help"])
    assert e.value.code == 0
