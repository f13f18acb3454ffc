"""Tests of the `prw` TFDS builder and protocol loaders on a tiny fixture in the official layout
(PRW-v16.04.20): per-frame `annotations/<frame>.jpg.mat` under each of the three variable names
the release uses, frame lists as cell columns of names without extension, ID_*.mat, and a
query_info.txt with CRLF line ends (plus one LF line and no final line end).

Awkward cases: a frame with a single person, pid -2 (unknown identity), a frame with only
unknown people, boxes starting at negative coordinates or crossing the right / bottom border,
non-integral query coordinates.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from evaluation import person_search
from input_pipeline.datasets import prw, schema

H, W = 48, 96

# frame (without extension) -> (annotation variable, rows [pid, x, y, w, h]).
TRAIN = {
    "c1s1_000001": ("box_new", [(1, 10, 5, 12, 30)]),  # a single person
    "c2s1_000002": ("anno_file", [(2, 30, 4, 12, 30), (-2, 60, 6, 10, 25), (1, -4, 10, 14, 30)]),
}
TEST = {
    "c1s2_000010": ("anno_previous", [(10, 5, 5, 13, 32), (-2, 50, 8, 12, 30)]),
    "c2s2_000011": ("box_new", [(11, 20, 3, 12, 34), (10, 60, 9, 11, 30)]),
    "c3s1_000012": ("box_new", [(11, -3, -2, 15, 30), (10, 70, 12, 30, 40)]),  # crosses right / bottom
    "c3s2_000013": ("anno_file", [(-2, 30, 10, 12, 28)]),  # only an unknown person
}
QUERY_LINES = [  # (pid, x, y, w, h, frame, line end)
    (10, -3.5, 4.25, 20.0, 30.75, "c1s2_000010", "\r\n"),
    (11, 20.0, 3.0, 12.0, 34.0, "c2s2_000011", "\n"),
    (10, 70.0, 12.0, 30.0, 40.0, "c3s1_000012", ""),
]


def _cell(items):
    arr = np.empty((len(items), 1), dtype=object)
    for i, v in enumerate(items):
        arr[i, 0] = v
    return arr


def make_manual_dir(root):
    from PIL import Image
    from scipy.io import savemat

    root = str(root)
    os.makedirs(os.path.join(root, "frames"))
    os.makedirs(os.path.join(root, "annotations"))
    for k, (name, (key, rows)) in enumerate({**TRAIN, **TEST}.items()):
        pixels = np.random.default_rng(k).integers(0, 255, (H, W, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, "frames", name + ".jpg"), quality=90)
        savemat(os.path.join(root, "annotations", name + ".jpg.mat"),
                {key: np.array(rows, np.float64)})
    savemat(os.path.join(root, "frame_train.mat"), {"img_index_train": _cell(list(TRAIN))})
    savemat(os.path.join(root, "frame_test.mat"), {"img_index_test": _cell(list(TEST))})
    savemat(os.path.join(root, "ID_train.mat"), {"ID_train": np.array([[1.0, 2.0]])})
    savemat(os.path.join(root, "ID_test.mat"), {"ID_test2": np.array([[10.0, 11.0]])})
    with open(os.path.join(root, "query_info.txt"), "wb") as f:
        f.writelines(f"{pid} {x:g} {y:g} {w:g} {h:g} {frame}{end}".encode()
                     for pid, x, y, w, h, frame, end in QUERY_LINES)
    return root


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("prw_manual"))


@pytest.fixture(scope="module")
def builder(manual_dir, tmp_path_factory):
    return prw.build(None, str(tmp_path_factory.mktemp("tfds")), manual_dir)


def _examples(builder, split):
    return {ex["image/filename"].decode(): ex
            for ex in builder.as_dataset(split=split).as_numpy_iterator()}


def test_split_counts_and_ids(builder):
    assert builder.info.splits["train"].num_examples == len(TRAIN)
    assert builder.info.splits["test"].num_examples == len(TEST)
    order = list(TRAIN) + list(TEST)
    for split, frames in (("train", TRAIN), ("test", TEST)):
        examples = _examples(builder, split)
        assert sorted(examples) == sorted(f"frames/{n}.jpg" for n in frames)
        for fname, ex in examples.items():
            assert ex["image/id"] == order.index(fname[len("frames/"):-len(".jpg")]) + 1


def test_decoded_features_equal_annotations(builder):
    for split, frames in (("train", TRAIN), ("test", TEST)):
        for fname, ex in _examples(builder, split).items():
            rows = np.array(frames[fname[len("frames/"):-len(".jpg")]][1], np.float64)
            pids, boxes = rows[:, 0], rows[:, 1:]
            n = len(rows)
            assert ex["image"].shape == (H, W, 3)
            np.testing.assert_array_equal(ex["image/original_size"], [H, W])
            obj = ex["objects"]
            x1 = np.clip(boxes[:, 0], 0, W)
            y1 = np.clip(boxes[:, 1], 0, H)
            x2 = np.clip(boxes[:, 0] + boxes[:, 2], 0, W)
            y2 = np.clip(boxes[:, 1] + boxes[:, 3], 0, H)
            np.testing.assert_allclose(obj["bbox"] * [H, W, H, W],
                                       np.stack([y1, x1, y2, x2], axis=1), atol=1e-4)
            np.testing.assert_array_equal(obj["bbox_visible"], obj["bbox"])
            np.testing.assert_array_equal(obj["label"], [schema.PEDESTRIAN] * n)
            np.testing.assert_array_equal(obj["ignore"], [False] * n)
            np.testing.assert_array_equal(obj["vis_ratio"], np.ones(n))
            np.testing.assert_array_equal(obj["height"], boxes[:, 3])
            np.testing.assert_array_equal(obj["instance_id"], ex["image/id"] * 1000 + np.arange(n))
            np.testing.assert_array_equal(obj["person_id"], np.where(pids == -2, -1, pids))


def test_protocol_loaders(manual_dir):
    queries = prw.load_prw_queries(manual_dir)
    assert [(q.pid, q.image, q.cam_id) for q in queries] == [
        (10, "c1s2_000010.jpg", 1), (11, "c2s2_000011.jpg", 2), (10, "c3s1_000012.jpg", 3)]
    for q, (_, x, y, w, h, _, _) in zip(queries, QUERY_LINES):
        np.testing.assert_array_equal(q.box, person_search.prw_query_box(x, y, w, h))
    np.testing.assert_array_equal(queries[0].box, [0, 4, 16, 35])  # converted, then clipped
    frames = prw.load_prw_gallery(manual_dir)
    assert [f.name for f in frames] == [n + ".jpg" for n in TEST]
    for f, (_, rows) in zip(frames, TEST.values()):
        rows = np.array(rows, np.float64)
        np.testing.assert_array_equal(f.boxes, person_search.prw_gallery_boxes(rows[:, 1:]))
        np.testing.assert_array_equal(
            f.pids, np.where(rows[:, 0] == -2, person_search.UNLABELED_PID, rows[:, 0]))
        assert f.cam_id == person_search.cam_id_from_prw_name(f.name)
    np.testing.assert_array_equal(frames[2].boxes[0], [0, 0, 15, 30])  # shifted, not cut
    np.testing.assert_array_equal(prw.read_ids(manual_dir, "train"), [1, 2])
    np.testing.assert_array_equal(prw.read_ids(manual_dir, "test"), [10, 11])


@pytest.mark.parametrize("cross_camera", [False, True])
def test_perfect_search_gives_map_one(builder, manual_dir, cross_camera):
    """Test-split boxes as detections, one-hot features of the identities: mAP 1."""
    index = {10: 0, 11: 1}
    gallery = []
    for fname, ex in _examples(builder, "test").items():
        obj = ex["objects"]
        boxes = obj["bbox"][:, [1, 0, 3, 2]] * [W, H, W, H]
        feats = np.zeros((len(boxes), len(index)), np.float32)
        for k, pid in enumerate(obj["person_id"]):
            if pid >= 0:
                feats[k, index[int(pid)]] = 1.0
        gallery.append(person_search.GalleryDetections(
            fname[len("frames/"):], boxes, np.ones(len(boxes)), feats))
    queries = [person_search.PrwQuery(q.image, q.pid, np.eye(len(index))[index[q.pid]], q.cam_id)
               for q in prw.load_prw_queries(manual_dir)]
    result = person_search.eval_search_prw(prw.load_prw_gallery(manual_dir), gallery, queries,
                                           cross_camera=cross_camera, on_empty_gt="raise")
    assert result["mAP"] == pytest.approx(1.0)
    assert result["top1"] == pytest.approx(1.0)


def test_missing_or_partial_manual_dir(tmp_path, manual_dir):
    with pytest.raises(schema.ManualDirError, match="does not exist"):
        prw.build(None, str(tmp_path / "tfds0"), str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(schema.ManualDirError, match="frame_test.mat"):
        prw.build(None, str(tmp_path / "tfds1"), str(empty))
    partial = tmp_path / "partial"
    shutil.copytree(manual_dir, partial / "PRW-v16.04.20")  # the archive's top folder
    root = partial / "PRW-v16.04.20"
    os.remove(root / "query_info.txt")
    with pytest.raises(schema.ManualDirError, match=r"query_info\.txt.*folder searched"):
        prw.build(None, str(tmp_path / "tfds2"), str(partial))
    shutil.copy(os.path.join(manual_dir, "query_info.txt"), root / "query_info.txt")
    os.remove(root / "annotations" / "c3s1_000012.jpg.mat")
    with pytest.raises(schema.ManualDirError, match=r"annotations.*c3s1_000012\.jpg\.mat"):
        prw.build(None, str(tmp_path / "tfds3"), str(partial))
    shutil.copy(os.path.join(manual_dir, "annotations", "c3s1_000012.jpg.mat"),
                root / "annotations" / "c3s1_000012.jpg.mat")
    os.remove(root / "frames" / "c1s1_000001.jpg")
    with pytest.raises(schema.ManualDirError, match=r"frames.*c1s1_000001\.jpg"):
        prw.build(None, str(tmp_path / "tfds4"), str(partial))


def test_malformed_annotation(tmp_path, manual_dir):
    from scipy.io import savemat

    bad = tmp_path / "bad"
    shutil.copytree(manual_dir, bad)
    path = bad / "annotations" / "c2s2_000011.jpg.mat"
    savemat(str(path), {"boxes": np.array([[10.0, 1, 2, 3, 4]])})
    with pytest.raises(ValueError, match=r"c2s2_000011\.jpg\.mat.*box_new / anno_file / "
                                         r"anno_previous.*'boxes'"):
        prw.read_annotations(str(bad))
    savemat(str(path), {"box_new": np.array([[10.0, 1, 2, 3]])})
    with pytest.raises(ValueError, match=r"c2s2_000011\.jpg\.mat.*'box_new'.*M x 5"):
        prw.read_annotations(str(bad))
    path.write_bytes(b"not a MATLAB file" * 20)
    with pytest.raises(ValueError, match=r"c2s2_000011\.jpg\.mat.*not a readable MATLAB file"):
        prw.read_annotations(str(bad))
    shutil.copy(os.path.join(manual_dir, "annotations", "c2s2_000011.jpg.mat"), path)
    with open(bad / "query_info.txt", "ab") as f:
        f.write(b"\r\n12 1 2 3 c1s2_000010\r\n")
    with pytest.raises(ValueError, match=r"query_info\.txt.*line 4"):
        prw.read_annotations(str(bad))
