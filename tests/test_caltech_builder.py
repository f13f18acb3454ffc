"""Tests of the `caltech` TFDS builder on a tiny fixture in the layout and bbGt format of the
refined annotations (Zhang et al. 2016) plus extracted 640 x 480 frames.

The fixture has the awkward cases of the real files: frames without objects (header line only),
CRLF line ends, trailing spaces and a missing final newline, test files named `*.jpg.txt`,
boxes crossing the left/right border, occluded boxes with a partial visible box, with an
all-zero visible box (visibility 1 by bbLoad's rule) and with a visible box equal to the full
box (visibility 0), the file's ign flag on a 'person', and the labels 'people', 'person?',
'person-fa' and 'ignore'.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from evaluation import caltech as caltech_eval
from input_pipeline.datasets import caltech, schema

H, W = 480, 640
HEADER = "% bbGt version=3"

# lbl x y w h occ xv yv wv hv ign ang
TRAIN = {
    "set00_V000_I00002": [
        "person 100 100 41 100 0 0 0 0 0 0 0",
        "person 300 120 40 98 1 300 120 40 60 0 0",  # partly occluded: vis 0.612
        "person 200 50 30 75 1 200 50 30 75 0 0",  # occ with bbv == bb: vis 0
        "people 400 200 120 80 0 0 0 0 0 0 0",
    ],
    "set00_V000_I00005": [],  # header only
    "set05_V012_I01799": [
        "person 620 200 41 100 0 0 0 0 0 0 0",  # crosses the right border
        "person -10 300 30 70 1 0 0 0 0 0 0",  # crosses the left border; occ, bbv all zero
        "person? 500 100 35 85 0 0 0 0 0 0 0",
        "person-fa 550 350 30 70 0 0 0 0 0 0 0",
        "ignore 10 10 60 40 0 0 0 0 0 1 0",
        "person 450 300 20 50 0 0 0 0 0 1 0",  # a person flagged ign in the file
    ],
}
TEST = {
    "set06_V000_I00029": [
        "person 100 100 41 100 0 0 0 0 0 0 0",
        "person? 300 100 41 100 0 0 0 0 0 0 0",
        "people 450 150 82 100 0 0 0 0 0 0 0",
        "ignore 10 10 60 40 0 0 0 0 0 1 0",
        "person 200 300 20 50 0 0 0 0 0 1 0",
    ],
    "set06_V000_I00059": [
        "person 500 120 41 100 1 500 120 41 50 0 0",  # visibility 0.5: only in Occ=heavy
        "person 620 200 41 100 0 0 0 0 0 0 0",  # crosses the border: ignored by the bounds
        "person-fa 300 200 41 100 0 0 0 0 0 0 0",  # not loaded by dbEval at all
    ],
    "set10_V011_I01769": [],
}


def _write_text(path, lines, crlf=False, trailing=False):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    rows = [HEADER, *lines]
    if trailing:
        rows = [r + "  " for r in rows]
    sep = "\r\n" if crlf else "\n"
    text = sep.join(rows) + ("" if crlf else "\n")  # CRLF file without the final newline
    with open(path, "w", newline="") as f:
        f.write(text)


def _write_jpeg(path, seed):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    colour = tuple(int(v) for v in np.random.default_rng(seed).integers(0, 255, 3))
    Image.new("RGB", (W, H), colour).save(path, format="JPEG", quality=80)


def write_fixture(root, image_dirs=("images", "images"), anno_root=".", test_only=False):
    """Writes the fixture; image_dirs = (train frame folder, test frame folder)."""
    seed = 0
    if not test_only:
        for i, (stem, lines) in enumerate(TRAIN.items()):
            _write_text(os.path.join(root, anno_root, caltech.ANNOTATION_DIRS["train10x"],
                                     f"{stem}.txt"), lines, crlf=i == 2, trailing=i == 2)
            _write_jpeg(os.path.join(root, image_dirs[0], f"{stem}.jpg"), seed)
            seed += 1
    for i, (stem, lines) in enumerate(TEST.items()):
        _write_text(os.path.join(root, anno_root, caltech.ANNOTATION_DIRS["test"],
                                 f"{stem}.jpg.txt"), lines, trailing=i == 1)
        _write_jpeg(os.path.join(root, image_dirs[1], f"{stem}.jpg"), seed)
        seed += 1


@pytest.fixture(scope="module")
def builder(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("caltech_manual"))
    write_fixture(root)
    return caltech.build(None, str(tmp_path_factory.mktemp("tfds")), root)


def _examples(builder, split):
    import tensorflow_datasets as tfds

    exs = list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))
    return {ex["image/filename"].decode(): ex for ex in exs}


def _parse(line):
    t = line.split()
    return t[0], [float(v) for v in t[1:]]


def _expected_visibility(v):
    bb, occ, bbv = v[0:4], v[4], v[5:9]
    if occ == 0 or all(x == 0 for x in bbv):
        return bb, 1.0
    if bbv == bb:
        return bb, 0.0
    return bbv, bbv[2] * bbv[3] / (bb[2] * bb[3])


def _clipped_yxyx_pixels(b):
    x1, y1 = min(max(b[0], 0), W), min(max(b[1], 0), H)
    x2, y2 = min(max(b[0] + b[2], 0), W), min(max(b[1] + b[3], 0), H)
    return np.array([y1, x1, y2, x2])


def _check_split(builder, split, fixture):
    exs = _examples(builder, split)
    assert len(exs) == len(fixture)
    for stem, lines in fixture.items():
        ex = exs[f"images/{stem}.jpg"]
        assert ex["image"].shape == (H, W, 3)
        np.testing.assert_array_equal(ex["image/original_size"], [H, W])
        o = ex["objects"]
        assert len(o["label"]) == len(lines)
        np.testing.assert_array_equal(o["person_id"], -np.ones(len(lines)))
        for k, line in enumerate(lines):
            lbl, v = _parse(line)
            label, always = caltech.LABELS[lbl]
            assert o["label"][k] == label
            assert o["ignore"][k] == (always or v[9] != 0)
            assert o["source_label"][k].decode() == lbl
            assert o["source_ignore"][k] == (v[9] != 0)
            np.testing.assert_allclose(o["bbox"][k] * [H, W, H, W],
                                       _clipped_yxyx_pixels(v[0:4]), atol=1e-4)
            vis_box, vis = _expected_visibility(v)
            np.testing.assert_allclose(o["bbox_visible"][k] * [H, W, H, W],
                                       _clipped_yxyx_pixels(vis_box), atol=1e-4)
            assert o["vis_ratio"][k] == pytest.approx(vis, abs=1e-6)
            assert o["height"][k] == pytest.approx(v[3])
    return exs


def test_counts_values_and_ignore_logic(builder):
    assert builder.info.splits["train"].num_examples == len(TRAIN)
    assert builder.info.splits["test"].num_examples == len(TEST)
    train = _check_split(builder, "train", TRAIN)
    test = _check_split(builder, "test", TEST)
    ids = {name: int(ex["image/id"]) for name, ex in [*train.items(), *test.items()]}
    # 1-based over train then test, in frame-name order.
    assert [ids[f"images/{s}.jpg"] for s in [*TRAIN, *TEST]] == list(range(1, 7))
    o = train["images/set05_V012_I01799.jpg"]["objects"]
    # 'person' with the file's ign flag: a pedestrian, but ignored.
    assert o["label"][5] == schema.PEDESTRIAN and o["ignore"][5]
    # 'person?', 'person-fa', 'ignore' -> ignore regions; 'people' -> group.
    np.testing.assert_array_equal(o["label"][2:5], [0, 0, 0])
    assert train["images/set00_V000_I00002.jpg"]["objects"]["label"][3] == schema.GROUP


def test_export_and_perfect_detector(builder, tmp_path):
    path = tmp_path / "caltech_test_gt.json"
    gt = caltech.export_caltech_gt(builder, "test", path)
    assert json.loads(path.read_text()) == gt
    assert [im["file_name"] for im in gt["images"]] == [f"images/{s}.jpg" for s in TEST]
    assert all((im["width"], im["height"]) == (W, H) for im in gt["images"])
    rows = [(im["id"], line) for im, lines in zip(gt["images"], TEST.values()) for line in lines]
    assert len(gt["annotations"]) == len(rows)
    for a, (image_id, line) in zip(gt["annotations"], rows):
        lbl, v = _parse(line)
        assert a["image_id"] == image_id and a["category_id"] == 1
        assert a["label"] == lbl and a["ignore"] == int(v[9] != 0)
        y1, x1, y2, x2 = _clipped_yxyx_pixels(v[0:4])
        np.testing.assert_allclose(a["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=1e-4)
        assert a["vis_ratio"] == pytest.approx(_expected_visibility(v)[1], abs=1e-6)

    # A perfect detector: one box per loaded annotation, narrowed to the evaluation's aspect 0.41
    # (the evaluator reshapes non-ignored ground truth to it), score 1.
    def det(a):
        x, y, w, h = a["bbox"]
        w2 = min(w, 0.41 * h)
        return {"image_id": a["image_id"], "category_id": 1,
                "bbox": [x + (w - w2) / 2, y, w2, h], "score": 1.0}

    loaded = [a for a in gt["annotations"] if a["label"] != "person-fa"]
    dets = [det(a) for a in loaded]
    res = caltech_eval.evaluate_caltech(gt, dets, setups=None)
    assert set(res) == {f"{s}@{t}" for s in ("Reasonable", "All", "Occ=heavy")
                        for t in (0.5, 0.75)}
    for key, mrs in res.items():
        assert mrs == {"MR-2": 0.0, "MR-4": 0.0}, key
    # The refined protocol evaluates 'person?' like 'person': missing it costs recall.
    no_q = [d for d, a in zip(dets, loaded) if a["label"] != "person?"]
    res = caltech_eval.evaluate_caltech(gt, no_q, setups=["Reasonable"], iou_thresholds=[0.5])
    assert res["Reasonable@0.5"]["MR-2"] > 0


def test_alternative_layout_and_test_config(tmp_path):
    root = str(tmp_path / "manual")
    write_fixture(root, image_dirs=(None, "test/IMG"), anno_root="annotations", test_only=True)
    b = caltech.build("test", str(tmp_path / "tfds"), root)
    assert list(b.info.splits) == ["test"]
    exs = _examples(b, "test")
    assert sorted(exs) == sorted(f"test/IMG/{s}.jpg" for s in TEST)
    assert sorted(int(ex["image/id"]) for ex in exs.values()) == [1, 2, 3]


def test_missing_manual_dir(tmp_path):
    with pytest.raises(schema.ManualDirError, match="nowhere"):
        caltech.build(None, str(tmp_path / "tfds"), str(tmp_path / "nowhere"))


def test_partial_manual_dir(tmp_path):
    root = tmp_path / "manual"
    write_fixture(str(root))
    os.rename(root / "anno_test_1xnew", root / "anno_test_moved")
    with pytest.raises(schema.ManualDirError, match="anno_test_1xnew") as e:
        caltech.build("train10x", str(tmp_path / "tfds"), str(root))
    assert os.path.join(str(root), "annotations", "anno_test_1xnew") in str(e.value)
    os.rename(root / "anno_test_moved", root / "anno_test_1xnew")
    os.remove(root / "images" / "set06_V000_I00059.jpg")
    with pytest.raises(schema.ManualDirError, match="set06_V000_I00059.jpg") as e:
        caltech.build("train10x", str(tmp_path / "tfds2"), str(root))
    assert os.path.join(str(root), "images") in str(e.value)


def test_malformed_annotations(tmp_path):
    bad = tmp_path / "set00_V000_I00002.txt"
    bad.write_text(f"{HEADER}\nperson 1 2 3 4 0 0 0 0 0 0 0\nperson 1 2 3 4 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match=r"set00_V000_I00002.txt.*line 3.*11 fields"):
        caltech.parse_bbgt(str(bad))
    bad.write_text(f"{HEADER}\ncyclist 1 2 3 4 0 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match=r"line 2.*'cyclist'"):
        caltech.parse_bbgt(str(bad))
    bad.write_text(f"{HEADER}\nperson 1 2 x 4 0 0 0 0 0 0 0\n")
    with pytest.raises(ValueError, match=r"line 2.*non-numeric"):
        caltech.parse_bbgt(str(bad))
    bad.write_text("% bbGt version=7\n")
    with pytest.raises(ValueError, match=r"line 1.*header"):
        caltech.parse_bbgt(str(bad))
    # Version 2 files have no angle column; the ign column is read.
    bad.write_text("% bbGt version=2\nperson 1 2 3 4 0 0 0 0 0 1\n")
    (obj,) = caltech.parse_bbgt(str(bad))
    assert obj["ign"] == 1 and obj["ang"] == 0
    # A test-set frame in the training folder is refused, naming the file.
    root = tmp_path / "manual"
    write_fixture(str(root))
    _write_text(str(root / caltech.ANNOTATION_DIRS["train10x"] / "set07_V000_I00002.txt"), [])
    with pytest.raises(ValueError, match=r"set07_V000_I00002.txt.*not a train set"):
        caltech.build("train10x", str(tmp_path / "tfds"), str(root))
