"""Tests of the `cuhk_sysu` TFDS builder and protocol loader on a tiny fixture in the official
layout: .mat files written by scipy with the official variables, struct fields and nesting
(struct arrays, a cell column of 1 x 1 structs in Train.mat, cell columns of strings, empty
0 x 0 idlocate matrices for gallery images without the person).

Awkward cases: an image with a single person, a box crossing the image border, a zero-width
box (dropped, as the reference loaders do), unlabeled people, a train identity seen in a test
image (unlabeled there), a gallery entry with an empty box, a one-scene identity.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from evaluation import person_search
from input_pipeline.datasets import cuhk_sysu, schema

H, W = 48, 96

# Images.mat, in file order: name -> boxes x, y, w, h.
IMAGES = {
    "s1.jpg": [(10, 5, 12, 30)],  # a single person (train identity 0)
    "s2.jpg": [(5, 2, 10, 30), (40, 4, 12, 28), (70, 10, 10, 20)],  # ids 0, 1, unlabeled
    "s3.jpg": [(80, 20, 30, 40), (30, 0, 0, 20), (50, 6, 11, 33)],  # id 1 crossing; w=0; -1
    "s4.jpg": [(4, 4, 14, 30), (30, 5, 12, 30), (60, 8, 10, 25)],  # q0; q1; train id 2 (-> -1)
    "s5.jpg": [(20, 10, 13, 30), (50, 3, 12, 35)],  # q0 gallery; q1 query
    "s6.jpg": [(-3, 6, 15, 30), (70, 2, 11, 30)],  # q1 gallery (crossing the left border); -1
    "s7.jpg": [(44, 12, 10, 26)],  # only unlabeled; a gallery image without the persons
}
POOL = ["s5.jpg", "s4.jpg", "s6.jpg", "s7.jpg"]
TRAIN = [  # identity -> scenes (image, box)
    ("p1", [("s1.jpg", (10, 5, 12, 30)), ("s2.jpg", (5, 2, 10, 30))]),
    ("p2", [("s2.jpg", (40, 4, 12, 28)), ("s3.jpg", (80, 20, 30, 40))]),
    ("p3", [("s4.jpg", (60, 8, 10, 25))]),  # one scene, in a test image
]
# TestG{N}: query (image, box, idname) and gallery [(image, box or None)].
QUERIES = [
    (("s4.jpg", (4, 4, 14, 30), "p10"), [("s5.jpg", (20, 10, 13, 30)), ("s7.jpg", None)]),
    (("s5.jpg", (50, 3, 12, 35), "p11"), [("s4.jpg", (30, 5, 12, 30)), ("s6.jpg", (-3, 6, 15, 30)),
                                           ("s7.jpg", None)]),
]
EXPECTED_PIDS = {  # image -> person ids of the kept boxes (the zero-width box is dropped)
    "s1.jpg": [0], "s2.jpg": [0, 1, -1], "s3.jpg": [1, -1],
    "s4.jpg": [3, 4, -1], "s5.jpg": [3, 4], "s6.jpg": [4, -1], "s7.jpg": [-1],
}


def _struct(fields, rows):
    """A 1 x N MATLAB struct array (numpy record array of objects) as scipy writes it."""
    arr = np.empty((1, len(rows)), dtype=[(f, object) for f in fields])
    for i, row in enumerate(rows):
        for f, v in zip(fields, row):
            arr[0, i][f] = v
    return arr


def _cell(items):
    arr = np.empty((len(items), 1), dtype=object)
    for i, v in enumerate(items):
        arr[i, 0] = v
    return arr


def _mbox(box):
    return np.zeros((0, 0)) if box is None else np.array([box], dtype=np.float64)


def _protocol(queries, extra=0):
    rows = []
    for (qimg, qbox, idname), gallery in queries:
        gallery = list(gallery) + [("s7.jpg", None)] * extra
        rows.append((
            _struct(("imname", "idlocate", "ishard", "idname"),
                    [(qimg, _mbox(qbox), np.array([[0.0]]), idname)]),
            _struct(("imname", "idlocate", "ishard"),
                    [(g, _mbox(b), np.array([[0.0]])) for g, b in gallery]),
        ))
    return _struct(("Query", "Gallery"), rows)


def make_manual_dir(root):
    from PIL import Image
    from scipy.io import savemat

    root = str(root)
    ann = os.path.join(root, "annotation")
    proto = os.path.join(ann, "test", "train_test")
    os.makedirs(proto)
    os.makedirs(os.path.join(root, "Image", "SSM"))
    for k, name in enumerate(IMAGES):
        pixels = np.random.default_rng(k).integers(0, 255, (H, W, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(os.path.join(root, "Image", "SSM", name), quality=90)
    img_rows = [(name, np.array([[len(b)]], np.float64),
                 _struct(("idlocate", "ishard"), [(_mbox(x), np.array([[0.0]])) for x in b]))
                for name, b in IMAGES.items()]
    savemat(os.path.join(ann, "Images.mat"), {"Img": _struct(("imname", "nAppear", "box"),
                                                              img_rows)})
    savemat(os.path.join(ann, "pool.mat"), {"pool": _cell(POOL)})
    train = _cell([_struct(("idname", "nAppear", "scene"), [(
        idname, np.array([[len(scenes)]], np.float64),
        _struct(("imname", "idlocate", "ishard"),
                [(im, _mbox(b), np.array([[0.0]])) for im, b in scenes]))])
        for idname, scenes in TRAIN])
    savemat(os.path.join(proto, "Train.mat"), {"Train": train})
    persons = _struct(("idname", "nAppear", "scene"), [(
        idname, np.array([[len(scenes)]], np.float64),
        _struct(("imname", "idlocate", "ishard"),
                [(im, _mbox(b), np.array([[0.0]])) for im, b in scenes]))
        for idname, scenes in TRAIN])
    savemat(os.path.join(ann, "Person.mat"), {"Person": persons})
    savemat(os.path.join(proto, "TestG50.mat"), {"TestG50": _protocol(QUERIES)})
    savemat(os.path.join(proto, "TestG100.mat"), {"TestG100": _protocol(QUERIES, extra=1)})
    return root


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
    return make_manual_dir(tmp_path_factory.mktemp("cuhk_manual"))


@pytest.fixture(scope="module")
def builder(manual_dir, tmp_path_factory):
    return cuhk_sysu.build(None, str(tmp_path_factory.mktemp("tfds")), manual_dir)


def _examples(builder, split):
    return {ex["image/filename"].decode(): ex
            for ex in builder.as_dataset(split=split).as_numpy_iterator()}


def test_split_counts_and_ids(builder):
    assert builder.info.splits["train"].num_examples == 3
    assert builder.info.splits["test"].num_examples == 4
    train, test = _examples(builder, "train"), _examples(builder, "test")
    assert sorted(train) == [f"Image/SSM/s{i}.jpg" for i in (1, 2, 3)]
    assert sorted(test) == [f"Image/SSM/s{i}.jpg" for i in (4, 5, 6, 7)]
    names = list(IMAGES)
    for fname, ex in {**train, **test}.items():
        assert ex["image/id"] == names.index(fname.split("/")[-1]) + 1


def test_decoded_features_equal_annotations(builder):
    for split in ("train", "test"):
        for fname, ex in _examples(builder, split).items():
            name = fname.split("/")[-1]
            boxes = np.array([b for b in IMAGES[name] if b[2] > 0 and b[3] > 0], np.float64)
            n = len(boxes)
            assert ex["image"].shape == (H, W, 3)
            np.testing.assert_array_equal(ex["image/original_size"], [H, W])
            obj = ex["objects"]
            x1 = np.clip(boxes[:, 0], 0, W) / W
            y1 = np.clip(boxes[:, 1], 0, H) / H
            x2 = np.clip(boxes[:, 0] + boxes[:, 2], 0, W) / W
            y2 = np.clip(boxes[:, 1] + boxes[:, 3], 0, H) / H
            expected = np.stack([y1, x1, y2, x2], axis=1)
            np.testing.assert_allclose(obj["bbox"], expected, atol=1e-4 / max(H, W))
            np.testing.assert_allclose(obj["bbox"] * [H, W, H, W], expected * [H, W, H, W],
                                       atol=1e-4)
            np.testing.assert_array_equal(obj["bbox_visible"], obj["bbox"])
            np.testing.assert_array_equal(obj["label"], [schema.PEDESTRIAN] * n)
            np.testing.assert_array_equal(obj["ignore"], [False] * n)
            np.testing.assert_array_equal(obj["vis_ratio"], np.ones(n))
            np.testing.assert_array_equal(obj["height"], boxes[:, 3])
            np.testing.assert_array_equal(obj["instance_id"], ex["image/id"] * 1000 + np.arange(n))
            np.testing.assert_array_equal(obj["person_id"], EXPECTED_PIDS[name], err_msg=name)


def test_protocol_loaders(manual_dir):
    assert cuhk_sysu.pool_names(manual_dir) == POOL
    for size, extra in ((50, 0), (100, 1), (-1, 0)):
        queries = cuhk_sysu.load_cuhk_protocol(manual_dir, size)
        assert len(queries) == len(QUERIES)
        for q, ((qimg, qbox, _), gallery) in zip(queries, QUERIES):
            assert q.image == qimg and q.box == qbox
            assert q.gallery == tuple(gallery) + (("s7.jpg", None),) * extra
            person_search.CuhkQuery(q.image, np.zeros(2), q.gallery)  # accepted as is
    with pytest.raises(schema.ManualDirError, match="TestG500.mat"):
        cuhk_sysu.load_cuhk_protocol(manual_dir, 500)
    with pytest.raises(ValueError, match="gallery size"):
        cuhk_sysu.load_cuhk_protocol(manual_dir, 7)


def test_perfect_search_gives_map_one(builder, manual_dir):
    """Ground-truth boxes as detections, one-hot features of the test identities: mAP 1."""
    num_train = len(TRAIN)
    dim = len(QUERIES) + 1
    gallery = []
    for fname, ex in _examples(builder, "test").items():
        obj = ex["objects"]
        boxes = obj["bbox"][:, [1, 0, 3, 2]] * [W, H, W, H]
        feats = np.zeros((len(boxes), dim), np.float32)
        for k, pid in enumerate(obj["person_id"]):
            if pid >= 0:
                feats[k, pid - num_train] = 1.0
        gallery.append(person_search.GalleryDetections(
            fname.split("/")[-1], boxes, np.ones(len(boxes)), feats))
    for size, full in ((50, False), (100, False), (-1, True)):
        queries = [person_search.CuhkQuery(q.image, np.eye(dim)[i], q.gallery)
                   for i, q in enumerate(cuhk_sysu.load_cuhk_protocol(manual_dir, size))]
        result = person_search.eval_search_cuhk(gallery, queries, full_gallery=full)
        assert result["mAP"] == pytest.approx(1.0)
        assert result["top1"] == pytest.approx(1.0)


def test_missing_or_partial_manual_dir(tmp_path, manual_dir):
    with pytest.raises(schema.ManualDirError, match="does not exist"):
        cuhk_sysu.build(None, str(tmp_path / "tfds0"), str(tmp_path / "nowhere"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(schema.ManualDirError, match="Images.mat"):
        cuhk_sysu.build(None, str(tmp_path / "tfds1"), str(empty))
    # Nested one level (as the archive's top folder) is found; then a missing protocol file
    # and a missing image are each named.
    partial = tmp_path / "partial"
    shutil.copytree(manual_dir, partial / "cuhk_sysu")
    os.remove(partial / "cuhk_sysu" / "annotation" / "test" / "train_test" / "TestG50.mat")
    with pytest.raises(schema.ManualDirError, match=r"TestG50\.mat.*folder searched"):
        cuhk_sysu.build(None, str(tmp_path / "tfds2"), str(partial))
    shutil.copy(os.path.join(manual_dir, "annotation", "test", "train_test", "TestG50.mat"),
                partial / "cuhk_sysu" / "annotation" / "test" / "train_test" / "TestG50.mat")
    os.remove(partial / "cuhk_sysu" / "Image" / "SSM" / "s3.jpg")
    with pytest.raises(schema.ManualDirError, match=r"s3\.jpg"):
        cuhk_sysu.build(None, str(tmp_path / "tfds3"), str(partial))


def test_malformed_annotation(tmp_path, manual_dir):
    from scipy.io import savemat

    bad = tmp_path / "bad"
    shutil.copytree(manual_dir, bad)
    savemat(str(bad / "annotation" / "pool.mat"), {"test_pool": _cell(POOL)})
    with pytest.raises(ValueError, match=r"pool\.mat.*'pool'.*variable not found"):
        cuhk_sysu.read_annotations(str(bad))
    shutil.copy(os.path.join(manual_dir, "annotation", "pool.mat"), bad / "annotation" / "pool.mat")
    rows = [(name, np.array([[1.0]]), _struct(("idlocate", "ishard"),
                                             [(np.array([[1.0, 2.0, 3.0]]), np.array([[0.0]]))]))
            for name in IMAGES]
    savemat(str(bad / "annotation" / "Images.mat"),
            {"Img": _struct(("imname", "nAppear", "box"), rows)})
    with pytest.raises(ValueError, match=r"Images\.mat.*Img\(1\)\.box\(1\).*1 x 4"):
        cuhk_sysu.read_annotations(str(bad))
