"""Tests of evaluation.person_search: hand-computed cases and an independent literal reference.

The reference at the top of this file follows the written protocol step by step with Python
loops over images and detections, numpy scalars for the IoU (so Python's min / max and numpy's
scalar promotion decide the dtypes, as in the papers' code) and a literal threshold loop for the
average precision. It shares no code with the module under test. Tie rule used on both sides:
descending similarity, then position in the query's gallery sequence, then detection index.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from evaluation import person_search as ps

TOPK = (1, 5, 10)


# ----------------------------------------------------------------------------------------------
# Independent literal reference.


def ref_iou(a, b):
    """IoU of two x1y1x2y2 boxes given as numpy scalars (first argument wins min / max ties)."""
    left = max(a[0], b[0])
    top = max(a[1], b[1])
    right = min(a[2], b[2])
    bottom = min(a[3], b[3])
    inter = max(0, right - left) * max(0, bottom - top)
    area_a = (a[2] - a[0]) * (a[3] - a[1])
    area_b = (b[2] - b[0]) * (b[3] - b[1])
    with np.errstate(divide="ignore", invalid="ignore"):
        return inter * 1.0 / (area_a + area_b - inter)


def ref_ap(labels, scores):
    """Step-wise AP: sum over distinct scores (high to low) of recall gain x precision."""
    n_pos = sum(1 for t in labels if t)
    ap = 0.0
    prev_recall = 0.0
    for s in sorted({float(x) for x in scores}, reverse=True):
        tp = sum(1 for t, x in zip(labels, scores) if t and float(x) >= s)
        fp = sum(1 for t, x in zip(labels, scores) if not t and float(x) >= s)
        recall = tp / n_pos
        ap += (recall - prev_recall) * (tp / (tp + fp))
        prev_recall = recall
    return ap


def _kept_map(gallery, det_thresh):
    out = {}
    for g in gallery:
        if len(g.boxes) == 0:
            continue
        rows = [j for j in range(len(g.scores)) if g.scores[j] >= det_thresh]
        if rows:
            out[g.name] = (g.boxes[rows], g.features[rows])
    return out


def _label_image(boxes, sim, gt, thresh):
    """Labels of one positive image and whether it produced the true positive."""
    labels = [0] * len(sim)
    order = sorted(range(len(sim)), key=lambda j: (-sim[j], j))
    for j in order:
        if ref_iou(boxes[j], gt) >= thresh:
            labels[j] = 1
            return labels, 1
    return labels, 0


def _finish(entries, count_gt, count_tp):
    """entries: (sim, label) in gallery order -> (ap, hits)."""
    assert count_tp <= count_gt
    if count_tp == 0:
        ap = 0.0
    else:
        ap = ref_ap([e[1] for e in entries], [e[0] for e in entries]) * count_tp / count_gt
    ranking = sorted(range(len(entries)), key=lambda i: (-entries[i][0], i))
    hits = [any(entries[i][1] for i in ranking[:k]) for k in TOPK]
    return ap, hits


def ref_cuhk(gallery, queries, det_thresh=0.5, full=False):
    kept = _kept_map(gallery, det_thresh)
    aps, hits = [], []
    for q in queries:
        count_gt = count_tp = 0
        entries = []
        done = set()
        for name, box in q.gallery:
            if box is not None:
                count_gt += 1
            if name not in kept or name in done:
                continue
            done.add(name)
            boxes, feats = kept[name]
            sim = feats.dot(q.feature)
            labels = [0] * len(sim)
            if box is not None:
                x, y, w, h = box
                gt = np.array([x, y, x + w, y + h], dtype=np.int32)
                thresh = min(0.5, (w * h * 1.0) / ((w + 10) * (h + 10)))
                labels, tp = _label_image(boxes, sim, gt, thresh)
                count_tp += tp
            entries.extend(zip(sim.tolist(), labels))
        if full:
            listed = {name for name, _ in q.gallery}
            for g in gallery:
                if g.name == q.image or g.name in listed or g.name not in kept:
                    continue
                boxes, feats = kept[g.name]
                entries.extend((s, 0) for s in feats.dot(q.feature).tolist())
        ap, h = _finish(entries, count_gt, count_tp)
        aps.append(ap)
        hits.append(h)
    return aps, hits


def ref_prw(frames, gallery, queries, det_thresh=0.5, cross=False):
    """Per query (ap, hits) or None when the person occurs in no gallery frame."""
    kept = _kept_map(gallery, det_thresh)
    out = []
    for q in queries:
        q_cam = ps.cam_id_from_prw_name(q.image)
        occurrences = {}
        for f in frames:
            if q.pid in f.pids and f.name != q.image:
                occurrences[f.name] = f.boxes[f.pids == q.pid].ravel().astype(np.int32)
        count_gt = count_tp = 0
        entries = []
        for f in frames:
            if f.name == q.image:
                continue
            if cross and ps.cam_id_from_prw_name(f.name) == q_cam:
                continue
            if f.name in occurrences:
                count_gt += 1
            if f.name not in kept:
                continue
            boxes, feats = kept[f.name]
            sim = feats.dot(q.feature)
            labels = [0] * len(sim)
            if f.name in occurrences:
                gt = occurrences[f.name]
                w, h = gt[2] - gt[0], gt[3] - gt[1]
                thresh = min(0.5, (w * h * 1.0) / ((w + 10) * (h + 10)))
                labels, tp = _label_image(boxes, sim, gt, thresh)
                count_tp += tp
            entries.extend(zip(sim.tolist(), labels))
        out.append(None if count_gt == 0 else _finish(entries, count_gt, count_tp))
    return out


def ref_detection(images, dets, det_thresh=0.01, iou_thresh=0.5, labeled_only=False):
    by_name = {d.name: d for d in dets}
    labels, scores = [], []
    count_gt = count_tp = 0
    for im in images:
        gt = im.boxes.astype(np.int32)
        if labeled_only:
            rows = [i for i in range(len(im.pids)) if im.pids[i] != 5555]
            if not rows:
                continue
            gt = gt[rows]
        num_gt = len(gt)
        d = by_name.get(im.name)
        rows = [] if d is None else [j for j in range(len(d.scores)) if d.scores[j] >= det_thresh]
        if not rows:
            count_gt += num_gt
            continue
        boxes = d.boxes[rows]
        if num_gt == 0:  # the module's documented fix: all false positives
            labels.extend([False] * len(rows))
            scores.extend(d.scores[rows].tolist())
            continue
        ious = np.zeros((num_gt, len(rows)), dtype=np.float32)
        for i in range(num_gt):
            for j in range(len(rows)):
                ious[i, j] = ref_iou(gt[i], boxes[j])
        tf = ious >= iou_thresh
        for j in range(len(rows)):
            best = int(np.argmax(ious[:, j]))
            for i in range(num_gt):
                if i != best:
                    tf[i, j] = False
        for i in range(num_gt):
            best = int(np.argmax(ious[i, :]))
            for j in range(len(rows)):
                if j != best:
                    tf[i, j] = False
        for j in range(len(rows)):
            labels.append(bool(tf[:, j].any()))
            scores.append(float(d.scores[rows[j]]))
        count_tp += int(tf.sum())
        count_gt += num_gt
    recall = count_tp / count_gt
    ap = ref_ap(labels, scores) * recall if count_tp else 0.0
    return recall, ap


# ----------------------------------------------------------------------------------------------
# Helpers for hand-made galleries: 2-D features with query [1, 0] make sim = the first entry.

Q = np.array([1.0, 0.0], dtype=np.float32)
FAR = [500.0, 500.0, 540.0, 580.0]  # overlaps nothing in these tests


def dets(name, rows):
    """rows: (x1, y1, x2, y2, score, sim) -> GalleryDetections whose similarity to Q is `sim`."""
    if not rows:
        return ps.GalleryDetections(name, np.zeros((0, 4)), np.zeros(0), np.zeros((0, 2)))
    arr = np.array(rows, dtype=np.float64)
    feats = np.stack([arr[:, 5], np.zeros(len(rows))], axis=1)
    return ps.GalleryDetections(name, arr[:, :4], arr[:, 4], feats)


def xyxy(xywh):
    x, y, w, h = xywh
    return [x, y, x + w, y + h]


def cuhk(gallery, protocol, full=False, image="query.jpg", det_thresh=0.5):
    query = ps.CuhkQuery(image, Q, tuple(protocol))
    return ps.eval_search_cuhk(gallery, [query], det_thresh=det_thresh, full_gallery=full)


def tops(res):
    return [res["top1"], res["top5"], res["top10"]]


GA, GB = (10, 10, 40, 80), (100, 20, 40, 80)  # ground truth x, y, w, h


# ----------------------------------------------------------------------------------------------
# Hand-computed CUHK-SYSU cases.


def test_cuhk_two_positives_and_a_distractor():
    gallery = [
        dets("A", [xyxy(GA) + [0.9, 0.9], FAR + [0.9, 0.3]]),  # TP sim 0.9
        dets("B", [xyxy(GB) + [0.9, 0.6], FAR + [0.9, 0.7]]),  # TP sim 0.6
        dets("C", [FAR + [0.9, 0.8], FAR + [0.9, 0.2]]),
    ]
    res = cuhk(gallery, [("A", GA), ("B", GB), ("C", None)])
    # Ranking 0.9 T, 0.8, 0.7, 0.6 T, 0.3, 0.2. Thresholds with a recall step: 0.9 (P 1/1,
    # R 1/2) and 0.6 (P 2/4, R 2/2): AP = 0.5 * 1 + 0.5 * 0.5 = 0.75; recall factor 2/2.
    assert res["mAP"] == pytest.approx(0.75, abs=1e-12)
    assert tops(res) == [1.0, 1.0, 1.0]
    assert res["count_tp"].tolist() == [2] and res["count_gt"].tolist() == [2]


def test_cuhk_recall_factor_counts_positives_without_detections():
    gallery = [
        dets("A", [xyxy(GA) + [0.9, 0.9], FAR + [0.9, 0.3]]),
        dets("B", [xyxy(GB) + [0.9, 0.6], FAR + [0.9, 0.7]]),
        dets("C", [FAR + [0.9, 0.8], FAR + [0.9, 0.2]]),
        dets("D", [xyxy(GA) + [0.4, 0.99]]),  # positive, but its only detection scores < 0.5
    ]
    # "E" is a positive protocol image with no detection entry at all.
    res = cuhk(gallery, [("A", GA), ("B", GB), ("C", None), ("D", GA), ("E", GB)])
    # Same ranking as above (AP 0.75 over what was retrieved), count_tp 2, count_gt 4:
    # AP = 0.75 * 2 / 4 = 0.375.
    assert res["per_query_ap"][0] == pytest.approx(0.375, abs=1e-12)
    assert res["count_tp"].tolist() == [2] and res["count_gt"].tolist() == [4]


def test_cuhk_true_positive_at_rank_six():
    negatives = [FAR + [0.9, s] for s in (0.95, 0.85, 0.75, 0.65, 0.55)]
    gallery = [dets("N", negatives), dets("A", [xyxy(GA) + [0.9, 0.5]])]
    res = cuhk(gallery, [("N", None), ("A", GA)])
    # The TP is 6th: top-1 and top-5 miss, top-10 hits; AP = precision 1/6 at recall 1.
    assert tops(res) == [0.0, 0.0, 1.0]
    assert res["mAP"] == pytest.approx(1 / 6, abs=1e-12)


def test_cuhk_one_true_positive_per_image():
    shifted = [12.0, 10.0, 52.0, 90.0]  # IoU with GA = 38*80 / (42*80) = 0.905
    gallery = [
        dets("A", [xyxy(GA) + [0.9, 0.7], shifted + [0.9, 0.9]]),
        dets("C", [FAR + [0.9, 0.8]]),
    ]
    res = cuhk(gallery, [("A", GA), ("C", None)])
    # Both detections of A overlap the person; only the higher-similarity one (0.9) is the TP,
    # the exact box (0.7) is a negative: ranking 0.9 T, 0.8, 0.7 -> AP 1, count_tp 1.
    # (Were the 0.7 box the TP, AP would be 1/3.)
    assert res["mAP"] == pytest.approx(1.0, abs=1e-12)
    assert res["count_tp"].tolist() == [1]
    # If the higher-similarity detection misses the person, the lower one is the TP:
    gallery[0] = dets("A", [xyxy(GA) + [0.9, 0.7], FAR + [0.9, 0.9]])
    res = cuhk(gallery, [("A", GA), ("C", None)])
    # Ranking 0.9, 0.8, 0.7 T -> AP = 1/3.
    assert res["mAP"] == pytest.approx(1 / 3, abs=1e-12)


def test_adaptive_threshold_values():
    # 20 x 40: 800 / (30 * 50) = 0.5333 -> capped at 0.5; 10 x 20: 200 / (20 * 30) = 1/3.
    assert ps.adaptive_iou_threshold(20, 40) == 0.5
    assert ps.adaptive_iou_threshold(10, 20) == 200 / 600
    assert ps.adaptive_iou_threshold(100, 300) == 0.5


@pytest.mark.parametrize(
    ("gt", "hit_box", "miss_box"),
    [
        # 10 x 20 person, threshold 1/3. [0, 0, 10, 60]: inter 200, union 600 -> exactly 1/3.
        # [0, 0, 10, 61]: 200 / 610 < 1/3.
        ((0, 0, 10, 20), [0.0, 0.0, 10.0, 60.0], [0.0, 0.0, 10.0, 61.0]),
        # 20 x 40 person, threshold capped at 0.5 (uncapped 0.533 would reject the first box).
        # [0, 0, 20, 80]: inter 800, union 1600 -> exactly 0.5; [0, 0, 20, 81]: 800 / 1620.
        ((0, 0, 20, 40), [0.0, 0.0, 20.0, 80.0], [0.0, 0.0, 20.0, 81.0]),
    ],
)
def test_adaptive_threshold_is_inclusive(gt, hit_box, miss_box):
    for box, expected in ((hit_box, 1), (miss_box, 0)):
        res = cuhk([dets("A", [box + [0.9, 0.9]])], [("A", gt)])
        assert res["count_tp"].tolist() == [expected]
        assert res["mAP"] == float(expected)


def test_score_threshold_is_inclusive_in_float32():
    res = cuhk([dets("A", [xyxy(GA) + [0.5, 0.9]])], [("A", GA)])
    assert res["mAP"] == 1.0  # score 0.5 >= det_thresh 0.5
    below = float(np.nextafter(np.float32(0.5), np.float32(0)))
    res = cuhk([dets("A", [xyxy(GA) + [below, 0.9]])], [("A", GA)])
    assert res["mAP"] == 0.0 and res["count_gt"].tolist() == [1]
    # float32(0.01) = 0.0099999998 is below the float64 0.01 but kept: the reference compares
    # float32 scores with the threshold in float32 (so do we, even for a float64 threshold).
    for thresh in (0.01, np.float64(0.01)):
        res = cuhk([dets("A", [xyxy(GA) + [0.01, 0.9]])], [("A", GA)], det_thresh=thresh)
        assert res["mAP"] == 1.0


def test_cuhk_protocol_list_is_used_as_given():
    gallery = [
        dets("A", [xyxy(GA) + [0.9, 0.6]]),
        dets("C", [FAR + [0.9, 0.8]]),
        dets("D", [FAR + [0.9, 0.7]]),
    ]
    small = cuhk(gallery, [("A", GA)])  # only A is ranked: AP 1
    large = cuhk(gallery, [("A", GA), ("C", None), ("D", None)])  # 0.8, 0.7, 0.6 T: AP 1/3
    assert small["mAP"] == 1.0
    assert large["mAP"] == pytest.approx(1 / 3, abs=1e-12)
    assert tops(large) == [0.0, 1.0, 1.0]
    assert ps.cuhk_protocol_name(100) == ("TestG100", False)
    assert ps.cuhk_protocol_name(-1) == ("TestG50", True)
    with pytest.raises(ValueError, match="gallery size"):
        ps.cuhk_protocol_name(200)


def test_cuhk_full_gallery():
    pool = [
        dets("query.jpg", [FAR + [0.9, 0.99]]),  # the query's own image
        dets("A", [xyxy(GA) + [0.9, 0.9], FAR + [0.9, 0.3]]),
        dets("C", [FAR + [0.9, 0.8]]),
        dets("E", [FAR + [0.9, 0.95], FAR + [0.9, 0.1]]),  # not in the protocol list
    ]
    protocol = [("A", GA), ("C", None)]
    # Protocol gallery only: 0.9 T, 0.8, 0.3 -> AP 1, top-1 hit.
    res = cuhk(pool, protocol)
    assert res["mAP"] == 1.0 and tops(res) == [1.0, 1.0, 1.0]
    # Full gallery: E's detections join as negatives: 0.95, 0.9 T, 0.8, 0.3, 0.1 -> AP 1/2.
    # (Ranking the query image too would give 1/3; adding A again as negatives would tie a
    # negative with the TP at 0.9 and give 1/3 as well.)
    res = cuhk(pool, protocol, full=True)
    assert res["mAP"] == pytest.approx(0.5, abs=1e-12)
    assert tops(res) == [0.0, 1.0, 1.0]


def test_cuhk_tie_rule():
    gallery = [dets("A", [xyxy(GA) + [0.9, 0.5]]), dets("C", [FAR + [0.9, 0.5]])]
    # A negative and the TP share sim 0.5: one threshold, P = 1/2 -> AP 0.5 in both orders;
    # top-1 follows the documented rule (earlier gallery position first).
    first_neg = cuhk(gallery, [("C", None), ("A", GA)])
    first_pos = cuhk(gallery, [("A", GA), ("C", None)])
    assert first_neg["mAP"] == first_pos["mAP"] == 0.5
    assert first_neg["top1"] == 0.0 and first_pos["top1"] == 1.0


def test_cuhk_no_true_positive_counts_as_zero_and_empty_list_raises():
    gallery = [dets("A", [FAR + [0.9, 0.9]])]
    good = ps.CuhkQuery("q1.jpg", Q, (("A", GA),))
    bad = ps.CuhkQuery("q2.jpg", Q, (("B", GB),))  # positive image without detections
    res = ps.eval_search_cuhk(
        gallery + [dets("B", [])], [good, bad, ps.CuhkQuery("q3", Q, (("A", xyxy(FAR)),))]
    )
    # Query 3's person box is [500, 500, 540, 580] as x, y, w, h: no overlap either.
    assert res["per_query_ap"].tolist() == [0.0, 0.0, 0.0] and res["mAP"] == 0.0
    with pytest.raises(ValueError, match="no image with the query person"):
        ps.eval_search_cuhk(gallery, [ps.CuhkQuery("q", Q, (("A", None),))])


def test_cuhk_duplicate_protocol_entry_ranked_once_counted_twice():
    gallery = [dets("A", [xyxy(GA) + [0.9, 0.9]])]
    res = cuhk(gallery, [("A", GA), ("A", GA)])
    # Ranked once (AP 1 over the ranking), count_gt 2: AP = 1 * 1/2.
    assert res["mAP"] == 0.5 and res["count_gt"].tolist() == [2]


# ----------------------------------------------------------------------------------------------
# Hand-computed PRW cases.

QF = "c1s1_000001.jpg"
BOX7, BOX8, BOX9 = [10, 10, 50, 90], [100, 20, 140, 100], [200, 20, 240, 100]


def frame(name, people):
    boxes = [b for _, b in people]
    return ps.GroundTruthImage(name, np.array(boxes).reshape(-1, 4), [p for p, _ in people])


def prw_world():
    frames = [
        frame(QF, [(7, BOX7), (8, BOX8)]),
        frame("c1s1_000002.jpg", [(7, BOX7)]),
        frame("c2s1_000003.jpg", [(7, BOX7)]),
        frame("c2s1_000004.jpg", [(8, BOX8)]),
        frame("c1s1_000005.jpg", [(9, BOX9)]),
        frame("c1s1_000006.jpg", [(9, BOX9)]),  # no detections
    ]
    gallery = [
        dets(QF, [BOX7 + [0.9, 0.99]]),
        dets("c1s1_000002.jpg", [BOX7 + [0.9, 0.9]]),
        dets("c2s1_000003.jpg", [BOX7 + [0.9, 0.6]]),
        dets("c2s1_000004.jpg", [BOX8 + [0.9, 0.8]]),
        dets("c1s1_000005.jpg", [BOX9 + [0.9, 0.7]]),
    ]
    return frames, gallery


def test_prw_excludes_query_frame_keeps_same_camera():
    frames, gallery = prw_world()
    res = ps.eval_search_prw(frames, gallery, [ps.PrwQuery(QF, 7, Q)])
    # Gallery = frames 2-5 (frame 2 shares camera 1). Ranking 0.9 T, 0.8, 0.7, 0.6 T; count_gt 2:
    # AP = 0.5 * 1 + 0.5 * 2/4 = 0.75. (The query frame's 0.99 detection is not ranked.)
    assert res["mAP"] == pytest.approx(0.75, abs=1e-12)
    assert tops(res) == [1.0, 1.0, 1.0] and res["count_gt"].tolist() == [2]


def test_prw_cross_camera_excludes_same_camera_frames():
    frames, gallery = prw_world()
    res = ps.eval_search_prw(frames, gallery, [ps.PrwQuery(QF, 7, Q)], cross_camera=True)
    # Gallery = frames 3 and 4 (camera 2): 0.8, 0.6 T; count_gt 1 -> AP 1/2, top-1 miss.
    assert res["mAP"] == pytest.approx(0.5, abs=1e-12)
    assert tops(res) == [0.0, 1.0, 1.0] and res["count_gt"].tolist() == [1]


def test_prw_query_without_gallery_occurrence():
    frames, gallery = prw_world()
    queries = [ps.PrwQuery(QF, 7, Q), ps.PrwQuery("c1s1_000005.jpg", 9, Q)]
    # Default mode: pid 9 also occurs in frame 6 (camera 1, no detections): count_gt 1,
    # count_tp 0 -> AP 0; mAP = (0.75 + 0) / 2.
    res = ps.eval_search_prw(frames, gallery, queries)
    assert res["per_query_ap"].tolist() == pytest.approx([0.75, 0.0], abs=1e-12)
    assert res["mAP"] == pytest.approx(0.375, abs=1e-12) and res["num_excluded"] == 0
    # Cross-camera: query 2 (camera 1) keeps only camera-2 frames, where pid 9 never occurs:
    # count_gt 0, so it is excluded with a warning and mAP / top-k are query 1's alone.
    with pytest.warns(UserWarning, match="1 of 2 PRW queries"):
        res = ps.eval_search_prw(frames, gallery, queries, cross_camera=True)
    assert res["valid"].tolist() == [True, False] and res["num_excluded"] == 1
    assert np.isnan(res["per_query_ap"][1]) and res["count_gt"].tolist() == [1, 0]
    assert res["mAP"] == pytest.approx(0.5, abs=1e-12)
    assert tops(res) == [0.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="occurs in no gallery frame"):
        ps.eval_search_prw(frames, gallery, queries, cross_camera=True, on_empty_gt="raise")
    with pytest.raises(ValueError, match="nothing to evaluate"):
        ps.eval_search_prw(frames, gallery, queries[1:], cross_camera=True)


def test_prw_first_box_of_a_repeated_pid():
    frames = [frame(QF, [(7, BOX7)]), frame("c2s1_000002.jpg", [(7, BOX8), (7, BOX9)])]
    query = [ps.PrwQuery(QF, 7, Q)]
    # Only the first box of pid 7 in frame 2 (BOX8) is its ground truth.
    on_second = [dets("c2s1_000002.jpg", [BOX9 + [0.9, 0.9]])]
    on_first = [dets("c2s1_000002.jpg", [BOX8 + [0.9, 0.9]])]
    assert ps.eval_search_prw(frames, on_second, query)["mAP"] == 0.0
    assert ps.eval_search_prw(frames, on_first, query)["mAP"] == 1.0


def test_prw_helpers():
    assert ps.cam_id_from_prw_name("c3s2_012345.jpg") == 3
    assert ps.cam_id_from_prw_name("frames/c6s1_000100.jpg") == 6
    with pytest.raises(ValueError):
        ps.cam_id_from_prw_name("s2_012345.jpg")
    # Gallery: clip x, y, w, h at 0 first (x -5 -> 0, width kept), then add, then truncate:
    # [1.5, 2.7, 10.6, 20.2] -> x2 = 12.1 -> 12, y2 = 22.9 -> 22.
    got = ps.prw_gallery_boxes([[-5, 10, 20, 30], [1.5, 2.7, 10.6, 20.2]])
    assert got.dtype == np.int32
    assert got.tolist() == [[0, 10, 20, 40], [1, 2, 12, 22]]
    # Query: convert, truncate toward 0, then clip: [-3.5, 4.2, 6.5, 25.1] -> [-3, 4, 6, 25]
    # -> [0, 4, 6, 25] (clipping first would give x2 = 10).
    assert ps.prw_query_box(-3.5, 4.2, 10.0, 20.9).tolist() == [0, 4, 6, 25]


# ----------------------------------------------------------------------------------------------
# Detection evaluation.


def test_detection_mutual_best_matching():
    # All boxes span y 0..100. G1 = x 0..100, G2 = x 40..140; D1 = x 20..120, D2 = x 40..200.
    # IoU(D1, G1) = 80/120 = IoU(D1, G2); IoU(D2, G2) = 100/160 = 0.625; IoU(D2, G1) = 60/200.
    # D1's best ground truth is G1 (first index on the tie); G2's best detection is D1 (0.667 >
    # 0.625) so D2 cannot take G2 although it overlaps it by 0.625: one TP, recall 1/2,
    # ranking D1 0.9 T, D2 0.8 F -> AP = 1 * 1/2.
    images = [ps.GroundTruthImage("a", [[0, 0, 100, 100], [40, 0, 140, 100]], [1, 2])]
    d = [ps.GalleryDetections("a", [[20, 0, 120, 100], [40, 0, 200, 100]], [0.9, 0.8])]
    res = ps.eval_detection(images, d)
    assert res["recall"] == 0.5 and res["ap"] == 0.5
    assert (res["count_tp"], res["count_gt"], res["num_detections"]) == (1, 2, 2)


def test_detection_thresholds_and_labeled_only():
    images = [
        ps.GroundTruthImage("a", [[0, 0, 100, 100], [200, 0, 300, 100]], [1, 5555]),
        ps.GroundTruthImage("b", [[0, 0, 100, 100]], [5555]),
        ps.GroundTruthImage("c", [[0, 0, 10, 10]], [3]),
    ]
    d = [
        ps.GalleryDetections("a", [[0, 0, 100, 100], [200, 0, 300, 100]], [0.9, 0.8]),
        ps.GalleryDetections("b", [[0, 0, 100, 100]], [0.95]),
        # float32(0.01) < 0.01 in float64, but numpy compares float32 scores in float32.
        ps.GalleryDetections("c", [[0, 0, 10, 10]], [np.float32(0.01)]),
    ]
    res = ps.eval_detection(images, d)
    # All people: every detection matches its own box: recall 4/4, AP 1.
    assert res["recall"] == 1.0 and res["ap"] == 1.0 and res["num_detections"] == 4
    res = ps.eval_detection(images, d, labeled_only=True)
    # Image b is skipped; in a the unlabeled person's detection (0.8) is a FP:
    # ranking 0.9 T, 0.8 F, 0.01 T -> thresholds 0.9 (P 1, R 1/2), 0.01 (P 2/3, R 1):
    # AP = 0.5 + 0.5 * 2/3 = 5/6, recall 2/2.
    assert res["recall"] == 1.0 and res["ap"] == pytest.approx(5 / 6, abs=1e-12)
    res = ps.eval_detection(images, d, det_thresh=0.5)
    # c's detection is dropped: recall 3/4, AP over 0.95 T, 0.9 T, 0.8 T = 1 -> 0.75.
    assert res["recall"] == 0.75 and res["ap"] == 0.75


# ----------------------------------------------------------------------------------------------
# average_precision.


def test_average_precision_groups_ties():
    # Scores 0.5 (pos), 0.5 (neg), 0.3 (pos), 0.2 (neg). Thresholds: 0.5 -> P 1/2, R 1/2;
    # 0.3 -> P 2/3, R 1. AP = 0.25 + 1/3 = 7/12, whatever the order of the tied pair.
    assert ps.average_precision([1, 0, 1, 0], [0.5, 0.5, 0.3, 0.2]) == pytest.approx(7 / 12)
    assert ps.average_precision([0, 1, 1, 0], [0.5, 0.5, 0.3, 0.2]) == pytest.approx(7 / 12)
    assert ps.average_precision([0, 0], [0.5, 0.4]) == 0.0
    with pytest.raises(ValueError):
        ps.average_precision([], [])


@pytest.mark.parametrize("seed", range(5))
def test_average_precision_matches_literal_formula(seed):
    rng = np.random.default_rng(seed)
    for _ in range(60):
        n = int(rng.integers(1, 30))
        labels = rng.random(n) < 0.4
        if not labels.any():
            labels[rng.integers(n)] = True
        dtype = np.float32 if rng.random() < 0.5 else np.float64
        scores = (rng.integers(0, 6, n) / 5).astype(dtype)  # many ties
        got = ps.average_precision(labels.astype(np.int32), scores)
        assert got == pytest.approx(ref_ap(labels.tolist(), scores.tolist()), abs=1e-12)


# ----------------------------------------------------------------------------------------------
# Bit-exact IoU and random comparisons with the literal reference.


def _random_pairs(rng, n):
    """Integer ground truth and float32 detections near it, 30% of coordinates equal to it."""
    gt = rng.integers(0, 60, (n, 2))
    gt = np.concatenate([gt, gt + rng.integers(1, 50, (n, 2))], axis=1).astype(np.int32)
    det = gt + rng.normal(0, 4, (n, 4))
    det = np.where(rng.random((n, 4)) < 0.3, gt, det)  # min / max ties between the two boxes
    return det.astype(np.float32), gt


def test_reference_iou_is_bit_exact():
    rng = np.random.default_rng(0)
    det, gt = _random_pairs(rng, 3000)
    for det_first in (True, False):
        got = np.array(
            [ps._reference_iou(d[None], g[None], det_first)[0, 0] for d, g in zip(det, gt)]
        )
        want = np.array(
            [float(ref_iou(d, g) if det_first else ref_iou(g, d)) for d, g in zip(det, gt)]
        )
        np.testing.assert_array_equal(got, want)
    # The float32 steps matter: plain float64 arithmetic differs in the last bit somewhere.
    d64, g64 = det.astype(np.float64), gt.astype(np.float64)
    iw = np.clip(np.minimum(d64[:, 2], g64[:, 2]) - np.maximum(d64[:, 0], g64[:, 0]), 0, None)
    ih = np.clip(np.minimum(d64[:, 3], g64[:, 3]) - np.maximum(d64[:, 1], g64[:, 1]), 0, None)
    area_d = (d64[:, 2] - d64[:, 0]) * (d64[:, 3] - d64[:, 1])
    area_g = (g64[:, 2] - g64[:, 0]) * (g64[:, 3] - g64[:, 1])
    plain = iw * ih / (area_d + area_g - iw * ih)
    assert (plain != want).any()
    # Matrix form (ground truth x detections) equals the pairwise values.
    m = ps._reference_iou(det[:40], gt[:7].astype(np.int64), det_first=False)
    pair = [[float(ref_iou(g, d)) for d in det[:40]] for g in gt[:7]]
    np.testing.assert_array_equal(m, np.array(pair))


def random_world(rng, n_images=14, n_pids=6, dim=3, quantized=False):
    """Images with people (integer boxes), jittered / exact / stray detections, features."""
    images, gallery = [], []
    for i in range(n_images):
        cam = int(rng.integers(1, 4))
        name = f"c{cam}s1_{i:06d}.jpg"
        n_people = int(rng.integers(0, 4))
        pids = rng.choice(n_pids, size=n_people, replace=n_people > n_pids) + 1
        if rng.random() < 0.2 and n_people:
            pids[-1] = 5555
        xy = rng.integers(0, 300, (n_people, 2))
        wh = rng.integers(4, 70, (n_people, 2))
        boxes = np.concatenate([xy, xy + wh], axis=1)
        rows = []
        for b in boxes:
            for _ in range(int(rng.integers(0, 3))):
                kind = rng.random()
                if kind < 0.3:
                    rows.append(b.astype(np.float64))
                elif kind < 0.6:
                    rows.append(b + np.round(rng.normal(0, 3, 4)) / 2)
                else:
                    rows.append(b + rng.normal(0, 0.15 * (b[2] - b[0]) + 1, 4))
        for _ in range(int(rng.integers(0, 3))):
            p = rng.uniform(0, 300, 2)
            rows.append(np.r_[p, p + rng.uniform(5, 60, 2)])
        k = len(rows)
        det_boxes = np.array(rows, dtype=np.float32).reshape(k, 4)
        scores = (rng.integers(0, 9, k) / 8.0).astype(np.float32)  # ties with 0.5 included
        if quantized:
            feats = rng.integers(-2, 3, (k, dim)).astype(np.float32)
        else:
            feats = rng.normal(size=(k, dim)).astype(np.float32)
        images.append(ps.GroundTruthImage(name, boxes.reshape(-1, 4), pids))
        gallery.append(ps.GalleryDetections(name, det_boxes, scores, feats))
    return images, gallery


def _query_feature(rng, dim, quantized):
    if quantized:
        return rng.integers(-2, 3, dim).astype(np.float32)
    return rng.normal(size=dim).astype(np.float32)


def random_cuhk_queries(rng, images, dim, quantized, n_queries=6):
    queries = []
    names = [im.name for im in images]
    for _ in range(n_queries):
        pid = int(rng.integers(1, 7))
        holders = [im for im in images if pid in im.pids.tolist()]
        if len(holders) < 2:
            continue
        query_image = holders[0].name
        protocol = []
        for im in holders[1:]:
            x1, y1, x2, y2 = im.boxes[im.pids.tolist().index(pid)].tolist()
            protocol.append((im.name, (x1, y1, x2 - x1, y2 - y1)))
        others = [n for n in names if n not in {h.name for h in holders}]
        chosen = rng.choice(
            len(others), size=min(len(others), int(rng.integers(0, 6))), replace=False
        )
        protocol += [(others[j], None) for j in chosen]
        if rng.random() < 0.3:
            protocol.append(("missing.jpg", (5, 5, 20, 40)))  # positive, never detected
        order = rng.permutation(len(protocol))
        protocol = [protocol[j] for j in order]
        queries.append(ps.CuhkQuery(query_image, _query_feature(rng, dim, quantized), protocol))
    return queries


def _compare(res, ref_aps, ref_hits):
    ref_aps = np.array(ref_aps)
    ref_hits = np.array(ref_hits, dtype=bool)
    np.testing.assert_allclose(res["per_query_ap"], ref_aps, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(res["per_query_hits"], ref_hits)
    assert abs(res["mAP"] - ref_aps.mean()) <= 1e-12
    for i, k in enumerate(TOPK):
        assert abs(res[f"top{k}"] - ref_hits[:, i].mean()) <= 1e-12


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("full", [False, True])
def test_cuhk_matches_reference_on_random_galleries(seed, full):
    rng = np.random.default_rng(100 + seed)
    quantized = seed % 2 == 1
    images, gallery = random_world(rng, quantized=quantized)
    queries = random_cuhk_queries(rng, images, 3, quantized)
    if not queries:
        pytest.skip("no pid with two occurrences")
    res = ps.eval_search_cuhk(gallery, queries, full_gallery=full)
    _compare(res, *ref_cuhk(gallery, queries, full=full))


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("cross", [False, True])
def test_prw_matches_reference_on_random_galleries(seed, cross):
    rng = np.random.default_rng(200 + seed)
    quantized = seed % 2 == 0
    images, gallery = random_world(rng, quantized=quantized)
    queries = []
    for _ in range(8):
        holders = [im for im in images if (im.pids < 5555).any()]
        im = holders[int(rng.integers(len(holders)))]
        pid = int(rng.choice(im.pids[im.pids < 5555]))
        queries.append(ps.PrwQuery(im.name, pid, _query_feature(rng, 3, quantized)))
    ref = ref_prw(images, gallery, queries, cross=cross)
    valid = [r is not None for r in ref]
    if not any(valid):
        pytest.skip("no query has a gallery occurrence")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        res = ps.eval_search_prw(images, gallery, queries, cross_camera=cross)
    assert res["valid"].tolist() == valid
    kept = [r for r in ref if r is not None]
    sub = dict(res)
    sub["per_query_ap"] = res["per_query_ap"][res["valid"]]
    sub["per_query_hits"] = res["per_query_hits"][res["valid"]]
    _compare(sub, [r[0] for r in kept], [r[1] for r in kept])


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("labeled_only", [False, True])
def test_detection_matches_reference_on_random_galleries(seed, labeled_only):
    rng = np.random.default_rng(300 + seed)
    images, gallery = random_world(rng, n_images=20)
    for thresh in (0.01, 0.5):
        res = ps.eval_detection(images, gallery, det_thresh=thresh, labeled_only=labeled_only)
        recall, ap = ref_detection(images, gallery, det_thresh=thresh, labeled_only=labeled_only)
        assert res["recall"] == pytest.approx(recall, abs=1e-12)
        assert res["ap"] == pytest.approx(ap, abs=1e-12)


def test_input_validation():
    with pytest.raises(ValueError, match="scores"):
        ps.GalleryDetections("a", np.zeros((2, 4)), np.zeros(3), np.zeros((2, 2)))
    with pytest.raises(ValueError, match="finite"):
        ps.GalleryDetections("a", [[0, 0, np.nan, 1]], [0.9], [[1.0, 0.0]])
    g = ps.GalleryDetections("a", np.zeros((2, 4)), np.ones(2), np.ones((2, 3, 1, 1)))
    assert g.features.shape == (2, 3) and g.features.dtype == np.float32
    with pytest.raises(ValueError, match="twice"):
        ps.eval_search_cuhk([g, g], [ps.CuhkQuery("q", np.ones(3), (("a", (0, 0, 5, 5)),))])
    with pytest.raises(ValueError, match="feature size"):
        ps.eval_search_cuhk([g], [ps.CuhkQuery("q", np.ones(4), (("a", (0, 0, 5, 5)),))])
    # Empty .mat boxes mean "not in this image"; float boxes are truncated like astype(int32).
    q = ps.CuhkQuery("q", np.ones(3), (("a", np.zeros((0,))), ("b", [1.7, 2.2, 10.9, 20.5])))
    assert q.gallery == (("a", None), ("b", (1, 2, 10, 20)))


def test_cli_on_results_npz_and_protocol_json(tmp_path, capsys):
    import json

    # The hand case of test_cuhk_two_positives_and_a_distractor, through files: AP 0.75.
    x = lambda b: [b[0], b[1], b[0] + b[2], b[1] + b[3]]  # noqa: E731
    far = [300, 300, 340, 380]
    boxes = [x(GA), far, x(GB), far, far, far]
    sims = [0.9, 0.3, 0.6, 0.7, 0.8, 0.2]
    np.savez(tmp_path / "r.npz", gallery_names=np.array(["A", "B", "C"]),
             det_counts=np.array([2, 2, 2]), boxes=np.array(boxes, np.float32),
             scores=np.full(6, 0.9, np.float32),
             features=np.array([[s, 0.0] for s in sims], np.float32),
             query_features=np.array([[1.0, 0.0]], np.float32))
    (tmp_path / "p.json").write_text(json.dumps({"dataset": "cuhk_sysu", "queries": [
        {"image": "q.jpg", "gallery": [["A", list(GA)], ["B", list(GB)], ["C", None]]}]}))
    args = ["--results", str(tmp_path / "r.npz"), "--protocol", str(tmp_path / "p.json")]
    assert ps.main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mAP"] == pytest.approx(0.75, abs=1e-12) and out["top1"] == 1.0
    # PRW: the same detections on frames c1s1_A.jpg..., person 7 in A and B; query from c2s1.
    np.savez(tmp_path / "r2.npz", gallery_names=np.array(["c1s1_A.jpg", "c1s1_B.jpg",
                                                          "c1s1_C.jpg"]),
             det_counts=np.array([2, 2, 2]), boxes=np.array(boxes, np.float32),
             scores=np.full(6, 0.9, np.float32),
             features=np.array([[s, 0.0] for s in sims], np.float32),
             query_features=np.array([[1.0, 0.0]], np.float32))
    (tmp_path / "p2.json").write_text(json.dumps({"dataset": "prw", "frames": [
        {"name": "c1s1_A.jpg", "boxes": [x(GA)], "pids": [7]},
        {"name": "c1s1_B.jpg", "boxes": [x(GB)], "pids": [7]},
        {"name": "c1s1_C.jpg", "boxes": [far], "pids": [3]}],
        "queries": [{"image": "c2s1_Q.jpg", "pid": 7}]}))
    assert ps.main(["--results", str(tmp_path / "r2.npz"), "--protocol",
                    str(tmp_path / "p2.json")]) == 0
    assert json.loads(capsys.readouterr().out)["mAP"] == pytest.approx(0.75, abs=1e-12)
    (tmp_path / "bad.json").write_text(json.dumps({"dataset": "market"}))
    assert ps.main(["--results", str(tmp_path / "r.npz"), "--protocol",
                    str(tmp_path / "bad.json")]) == 2
    assert "cuhk_sysu" in capsys.readouterr().err
