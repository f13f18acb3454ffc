"""Crowd error analysis, NMS sweep, VOC-style AP, consistency (AIC), curves and the eval report."""

from __future__ import annotations

import json
import os
import random

import numpy as np
import pytest
from PIL import Image

from evaluation import (
    analysis,
    consistency,
    crowd_analysis,
    miss_rate,
    overlaps,
    plot_curves,
    voc_ap,
)


def _gt(anns, num_images=1):
    return {"images": [{"id": i} for i in range(1, num_images + 1)],
            "categories": [{"id": 1}], "annotations": anns}


def _ann(ann_id, box, image_id=1, ignore=0, vis=1.0):
    return {"id": ann_id, "image_id": image_id, "category_id": 1, "bbox": list(box),
            "height": box[3], "vis_ratio": vis, "ignore": ignore}


def _det(box, score, image_id=1):
    return {"image_id": image_id, "category_id": 1, "bbox": list(box), "score": score}


def _shift(box, dx):
    return (box[0] + dx, box[1], box[2], box[3])


A = (100.0, 100.0, 40.0, 100.0)
B = (130.0, 100.0, 40.0, 100.0)  # IoU(A, B) = 10 / 70 ~ 0.14: a crowd pair
C = (400.0, 100.0, 40.0, 100.0)  # alone


def _random_scene(rng, num_images=6):
    anns, dets, k = [], [], 1
    for img in range(1, num_images + 1):
        for _ in range(rng.integers(0, 7)):
            x, y = rng.uniform(0, 600), rng.uniform(0, 300)
            h = rng.uniform(30, 200)
            box = (x, y, 0.41 * h, h)
            ignore = int(rng.random() < 0.1)
            anns.append(_ann(k, box, img, ignore, vis=float(rng.uniform(0.3, 1.0))))
            k += 1
            for _ in range(rng.integers(0, 3)):
                j = (box[0] + rng.normal(0, 6), box[1] + rng.normal(0, 6), box[2], box[3])
                dets.append(_det(j, float(rng.random()), img))
        for _ in range(rng.integers(0, 5)):
            h = rng.uniform(30, 200)
            dets.append(_det((rng.uniform(0, 600), rng.uniform(0, 300), 0.41 * h, h),
                             float(rng.random()), img))
    return _gt(anns, num_images), dets


# ------------------------------------------------------------------------ setup_matches


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_setup_matches_reproduce_the_miss_rate_and_its_curve(seed):
    gt, dets = _random_scene(np.random.default_rng(seed))
    m = miss_rate.setup_matches(gt, dets, ["Reasonable", "All"])
    mr = miss_rate.evaluate_miss_rate(gt, dets, ["Reasonable", "All"])
    curves = miss_rate.miss_rate_curves(gt, dets, ["Reasonable", "All"])
    for name in mr:
        assert m[name].mr == mr[name]
        assert np.all(np.diff(m[name].scores) <= 0)
        fppi, mrc = plot_curves.curves_for(gt, dets, [name])[name][:2]
        np.testing.assert_array_equal(fppi, curves[name][0])
        np.testing.assert_allclose(mrc, curves[name][1], atol=1e-15)
        # Every TP points at a distinct, non-ignored ground truth of its own image.
        tp = m[name].gt_index[m[name].is_tp]
        assert len(set(tp.tolist())) == tp.size and not m[name].gt_ignored[tp].any()
        for row in np.flatnonzero(m[name].is_tp):
            g = m[name].gt_index[row]
            assert m[name].gt_image_ids[g] == m[name].image_ids[row]
            assert dets[m[name].det_index[row]]["score"] == m[name].scores[row]


# ------------------------------------------------------------------ missed detections


def test_missed_at_false_positive_budgets_and_against_the_score():
    # Image 1: a crowd pair A, B (both 20% occluded: in reasonable-occ and reasonable-crowd) and a
    # lone fully visible C. Ranking: FP 0.95, TP(A) 0.9, FP 0.8, TP(C) 0.7, TP(B) 0.4.
    gt = _gt([_ann(1, A, vis=0.8), _ann(2, B, vis=0.8), _ann(3, C)])
    dets = [_det((700, 300, 40, 100), 0.95), _det(A, 0.9), _det((800, 300, 40, 100), 0.8),
            _det(C, 0.7), _det(B, 0.4)]
    m = miss_rate.setup_matches(gt, dets, "Reasonable")["Reasonable"]
    masks = crowd_analysis.subset_masks(gt, m)
    assert [int(v.sum()) for v in masks.values()] == [3, 2, 2]
    got = crowd_analysis.missed_at_false_positives(m, masks, fp_counts=(0, 1, 2))
    # 0 FPs: the prefix ends before the first FP -> nothing found, all missed.
    assert got["Reasonable"]["missed@0"] == 3 and got["Reasonable_crowd"]["missed@0"] == 2
    # 1 FP: prefix [FP, A] -> B, C missed; crowd subset misses B only.
    assert got["Reasonable"]["missed@1"] == 2 and got["Reasonable_crowd"]["missed@1"] == 1
    # 2 FPs: everything (only two FPs exist) -> nothing missed.
    assert got["Reasonable"]["missed@2"] == 0
    _, missed = crowd_analysis.missed_vs_score(m, masks["Reasonable_crowd"],
                                               [0.0, 0.4, 0.41, 0.9, 0.91])
    # Crowd subset = {A (found at 0.9), B (found at 0.4)}.
    assert missed.tolist() == [0, 0, 1, 1, 2]


def test_false_positive_kinds_by_overlap_count():
    gt = _gt([_ann(1, A), _ann(2, B), _ann(3, C), _ann(4, (600, 100, 100, 100), ignore=1)])
    between = (115.0, 100.0, 40.0, 100.0)  # IoU 25/55 with A and with B: a crowd error
    near_c = (420.0, 100.0, 40.0, 100.0)  # IoU 20/60 with C only: a localisation error
    # Then a background error; the last box lies in the ignore region: absorbed, not counted.
    dets = [_det(A, 0.99), _det(between, 0.9), _det(near_c, 0.8), _det((50, 400, 40, 100), 0.7),
            _det((600, 100, 40, 100), 0.6)]
    m = miss_rate.setup_matches(gt, dets, "Reasonable")["Reasonable"]
    kinds = crowd_analysis.false_positive_kinds(gt, m)
    assert kinds.tolist() == [2, 1, 0]
    props = crowd_analysis.false_positive_proportions(kinds)
    np.testing.assert_allclose(props["crowd"], [1, 1 / 2, 1 / 3])
    np.testing.assert_allclose(props["localization"], [0, 1 / 2, 1 / 3])
    np.testing.assert_allclose(props["background"], [0, 0, 1 / 3])


# --------------------------------------------------------------------------- NMS sweep


def _naive_nms(boxes, scores, t, limit):
    order = sorted(range(len(scores)), key=lambda i: -scores[i])  # stable on ties
    keep = []
    for i in order:
        if len(keep) >= limit:
            break
        ok = True
        for j in keep:
            iou = overlaps.iou_matrix_xywh(boxes[i:i + 1], boxes[j:j + 1])[0, 0]
            if iou > t:
                ok = False
                break
        if ok:
            keep.append(i)
    return keep


@pytest.mark.parametrize("seed", [0, 1])
def test_host_nms_equals_a_naive_loop(seed):
    rng = np.random.default_rng(seed)
    boxes = np.column_stack([rng.uniform(0, 100, 60), rng.uniform(0, 50, 60),
                             rng.uniform(5, 40, 60), rng.uniform(10, 80, 60)])
    scores = np.round(rng.random(60), 1)  # many ties
    for t in (0.3, 0.5, 0.7):
        for limit in (5, 100):
            got = crowd_analysis.nms_xywh(boxes, scores, t, limit).tolist()
            assert got == _naive_nms(boxes, scores, t, limit)


def test_host_nms_matches_the_detector_nms():
    """The sweep's NMS at the detector's threshold reproduces the device post-processing."""
    import jax
    import jax.numpy as jnp

    from detectors.ops import postprocess

    rng = np.random.default_rng(0)
    n, image_size = 300, (128, 256)
    centers = rng.uniform([0, 0], [256, 128], (n, 2))
    wh = rng.uniform(8, 60, (n, 2))
    anchors = np.concatenate([centers - wh / 2, centers + wh / 2], 1).astype(np.float32)
    logits = rng.normal(-1, 2, (n, 1)).astype(np.float32)
    deltas = rng.normal(0, 0.2, (n, 4)).astype(np.float32)
    kw = dict(anchors=jnp.asarray(anchors), level_sizes=[n], image_size=image_size,
              score_threshold=0.05, pre_nms_topk=200)
    final = jax.device_get(postprocess.generate_detections(
        logits, deltas, nms_iou=0.5, max_detections=50, **kw))
    raw = jax.device_get(postprocess.raw_detections(logits, deltas, max_detections=200, **kw))

    def records(out):
        b = np.asarray(out["boxes"], np.float64)[out["valid"]]
        return [_det((x1, y1, x2 - x1, y2 - y1), float(s))
                for (x1, y1, x2, y2), s in zip(b, out["scores"][out["valid"]])]

    assert 0 < len(records(final)) <= 50 and len(records(raw)) > len(records(final))
    host = crowd_analysis.apply_nms(records(raw), 0.5, max_detections=50)
    key = lambda d: tuple(np.round(d["bbox"], 3)) + (round(d["score"], 6),)
    assert sorted(map(key, host)) == sorted(map(key, records(final)))


def test_nms_sweep_runs_every_threshold_and_duplicates_hurt_at_high_thresholds():
    gt = _gt([_ann(1, A), _ann(2, C)])
    raw = [_det(A, 0.9), _det(_shift(A, 3), 0.8), _det(C, 0.7), _det(_shift(C, 2), 0.6)]
    sweep = crowd_analysis.nms_sweep(gt, raw, thresholds=(0.5, 0.95))["Reasonable"]
    # At 0.5 the shifted copies are suppressed: MR 0. At 0.95 they survive as false positives
    # after both true positives (one image: FPPI 1, 2 > every reference point) -> still MR 0.
    assert sweep == {"0.5": 0.0, "0.95": 0.0}
    raw[1]["score"] = 0.95  # now a duplicate outranks its own pedestrian's best box
    sweep = crowd_analysis.nms_sweep(gt, raw, thresholds=(0.5, 0.95))["Reasonable"]
    assert sweep["0.5"] == 0.0 and sweep["0.95"] == 0.0  # the copy itself matches A


# ----------------------------------------------------------------------- VOC-style AP


def test_voc07_eleven_point_ap_by_hand():
    gt = _gt([_ann(1, A), _ann(2, C), _ann(3, (600, 100, 40, 100), ignore=1)])
    # Ranking: TP(A) 0.9, duplicate of A 0.8 (FP), on the difficult box 0.75 (uncounted),
    # background 0.7 (FP), TP(C) 0.6.
    dets = [_det(A, 0.9), _det(_shift(A, 1), 0.8), _det((600, 100, 40, 100), 0.75),
            _det((50, 400, 40, 100), 0.7), _det(C, 0.6)]
    got = voc_ap.voc_ap(gt, dets)
    # recall/precision after each counted detection: (.5, 1), (.5, .5), (.5, 1/3), (1, .5).
    # 11-point: recall >= 0..0.5 (6 points) max precision 1; 0.6..1.0 (5 points) 0.5.
    assert got["AP50"] == pytest.approx((6 * 1.0 + 5 * 0.5) / 11, abs=1e-12)
    # Shifted by 1 px, the duplicate has IoU 39/41 ~ 0.95 with A: still a duplicate at 0.9.
    assert got["AP90"] == got["AP50"]
    # VOC 2010+: area under the envelope = 0.5 * 1 + 0.5 * 0.5.
    assert voc_ap.voc_ap(gt, dets, use_07_metric=False)["AP50"] == pytest.approx(0.75)


def test_voc_ap_thresholds_are_strict_and_plus_one_changes_iou():
    gt = _gt([_ann(1, (0, 0, 10, 10))])
    half = _det((0, 0, 10, 20), 0.9)  # IoU exactly 100 / 200 = 0.5: not > 0.5
    assert voc_ap.voc_ap(gt, [half])["AP50"] == 0.0
    # With the devkit's +1: 121 / (121 + 231 - 121) = 121 / 231 > 0.5.
    assert voc_ap.voc_ap(gt, [half], plus_one=True)["AP50"] == pytest.approx(1.0)
    assert voc_ap.voc_ap(_gt([_ann(1, A, ignore=1)]), [half]) == {
        "AP": -1.0, "AP50": -1.0, "AP60": -1.0, "AP70": -1.0, "AP80": -1.0, "AP90": -1.0}


def test_voc_ap_perfect_detector_and_order_invariance():
    rng = np.random.default_rng(3)
    gt, dets = _random_scene(rng)
    perfect = [_det(a["bbox"], 0.5 + 0.001 * k, a["image_id"])
               for k, a in enumerate(gt["annotations"]) if not a["ignore"]]
    assert all(v == pytest.approx(1.0) for v in voc_ap.voc_ap(gt, perfect).values())
    for d in dets:  # distinct scores so that order cannot matter
        d["score"] += 1e-9 * random.Random(id(d)).random()
    shuffled = list(dets)
    random.Random(0).shuffle(shuffled)
    assert voc_ap.voc_ap(gt, shuffled) == voc_ap.voc_ap(gt, dets)


# ------------------------------------------------------------------------ consistency


def test_matched_aic_and_detection_ious_by_hand():
    gt = _gt([_ann(1, A), _ann(2, C), _ann(3, (600, 100, 40, 100), ignore=1)])
    a_shift = _shift(A, 5)  # IoU 35 / 45 = 7 / 9 with A
    dets = [_det(a_shift, 0.95), _det(C, 0.55), _det((50, 400, 40, 100), 0.35),
            _det((600, 100, 40, 100), 0.25)]
    s = consistency.summary(gt, dets)
    # Matched: |0.95 - 7/9| and |0.55 - 1.0|, averaged.
    assert s["AIC_matched"] == pytest.approx((0.95 - 7 / 9 + 0.45) / 2) and s["num_matched"] == 2
    scores, ious = consistency.detection_ious(gt, dets)
    np.testing.assert_allclose(ious, [7 / 9, 1.0, 0.0, 0.0])  # ignore regions are not people
    h = consistency.score_iou_histogram(scores, ious, bins=10)  # rows IoU, columns score
    assert h.sum() == 4 and h[7, 9] == h[9, 5] == h[0, 3] == h[0, 2] == 1
    assert consistency.summary(gt, [])["AIC_matched"] is None


# ------------------------------------------------------------------ files and pictures


def test_eval_report_writes_every_file_and_a_valid_index(tmp_path):
    gt, dets = _random_scene(np.random.default_rng(4), num_images=3)
    raw = dets + [_det(_shift(d["bbox"], 2), d["score"] * 0.9, d["image_id"]) for d in dets]
    images = [(i, np.full((400, 800, 3), 80, np.uint8)) for i in (1, 2)]
    metrics = {"step": 7, "miss_rate": miss_rate.evaluate_miss_rate(gt, dets)}
    metrics.update(analysis.analyse_eval_dir(gt, dets, raw, str(tmp_path), 7, metrics, images))
    json.dumps(metrics, allow_nan=False)  # strict JSON: no nan anywhere
    analysis.write_index(str(tmp_path), metrics)
    for name in ("mr_fppi.png", "missed_detections.png", "missed_vs_score.png",
                 "false_positive_kinds.png", "mr_vs_nms.png", "score_iou.png", "errors.png"):
        with Image.open(tmp_path / name) as im:  # renders and decodes
            assert im.size[0] > 100 and im.size[1] > 100
    page = (tmp_path / "index.html").read_text()
    assert "mr_vs_nms.png" in page and "MR^-2 Reasonable" in page and "VOC07 AP50" in page
    assert set(json.loads((tmp_path / "crowd_analysis.json").read_text())) >= {
        "missed", "false_positives", "missed_vs_score", "mr_vs_nms"}
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]


def test_error_picture_colours():
    gt = _gt([_ann(1, A), _ann(2, C)])
    dets = [_det(A, 0.9), _det((300, 300, 40, 100), 0.8)]  # TP on A, FP; C missed
    m = miss_rate.setup_matches(gt, dets, "Reasonable")["Reasonable"]
    (panel,) = analysis.error_panels(m, [(1, np.zeros((500, 600, 3), np.uint8))], 0.5)
    from evaluation import visualize

    assert tuple(panel[150, 100]) == visualize.TP_COLOR  # left edge of A
    assert tuple(panel[350, 300]) == visualize.FP_COLOR  # left edge of the FP
    assert tuple(panel[150, 400]) == visualize.MISS_COLOR  # left edge of C


def test_cli_tools_print_json_and_fail_cleanly(tmp_path, capsys):
    gt, dets = _random_scene(np.random.default_rng(5), num_images=2)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "d.json").write_text(json.dumps(dets))
    g, d = str(tmp_path / "gt.json"), str(tmp_path / "d.json")
    assert crowd_analysis.main(["--gt", g, "--dets", d, "--raw", d, "--out",
                                str(tmp_path / "ca")]) == 0
    assert "mr_vs_nms" in json.loads(capsys.readouterr().out)
    assert voc_ap.main(["--gt", g, "--dets", d]) == 0
    assert set(json.loads(capsys.readouterr().out)) == {"AP", "AP50", "AP60", "AP70", "AP80",
                                                        "AP90"}
    assert consistency.main(["--gt", g, "--dets", d, "--png", str(tmp_path / "h.png")]) == 0
    assert "AIC_matched" in json.loads(capsys.readouterr().out)
    run = tmp_path / "run" / "eval"
    (run / "5").mkdir(parents=True)
    (run / "gt_val_all.json").write_text(json.dumps(gt))
    (run / "5" / "detections.json").write_text(json.dumps(dets))
    assert plot_curves.main([f"mine={tmp_path / 'run'}", "--out", str(tmp_path / "c.png")]) == 0
    assert "mine: MR^-2 Reasonable" in capsys.readouterr().out
    assert plot_curves.main([str(tmp_path), "--out", str(tmp_path / "x.png")]) == 2
    assert "no eval/<step>" in capsys.readouterr().err
    assert voc_ap.main(["--gt", str(tmp_path / "missing.json"), "--dets", d]) == 2


def test_analysis_cli_writes_metrics_figures_and_index(tmp_path, capsys):
    gt, dets = _random_scene(np.random.default_rng(6), num_images=2)
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "d.json").write_text(json.dumps(dets))
    out = tmp_path / "report"
    assert analysis.main(["--gt", str(tmp_path / "gt.json"), "--dets", str(tmp_path / "d.json"),
                          "--raw", str(tmp_path / "d.json"), "--out", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["index"].endswith("index.html")
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"miss_rate", "coco", "voc", "crowd_analysis"} <= set(metrics)
    assert (out / "mr_vs_nms.png").exists() and not (out / "errors.png").exists()
