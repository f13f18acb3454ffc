"""Tests of the `citypersons` TFDS builder on a tiny fixture in the official layout and formats.

The fixture is written twice, as gtBboxCityPersons JSON files (config `json`) and as
anno_train.mat / anno_val.mat (config `mat`, the MATLAB struct layout of the original release,
written with scipy.io.savemat), next to real PNG images under leftImg8bit/. It has the awkward
cases of the real files: images without any object, boxes crossing the left/right border, a
pedestrian with a zero visible box, and every non-pedestrian class ('ignore', 'rider',
'sitting person', 'person (other)', 'person group'). Images are 256 x 128 instead of
2048 x 1024 for speed; imgWidth / imgHeight say so, as the builder checks them.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from evaluation import miss_rate
from input_pipeline.datasets import citypersons, schema

H, W = 128, 256


def _obj(label, bbox, vis=None, inst=0):
    return {"label": label, "instanceId": inst, "bbox": bbox, "bboxVis": vis or bbox}


# split -> [(city, "<city>_<seq>_<frame>", objects)]
FIXTURE = {
    "train": [
        ("aachen", "aachen_000000_000019", [
            _obj("pedestrian", [10, 20, 41, 100], inst=24000),
            _obj("rider", [100, 30, 30, 80], [100, 40, 30, 70], inst=25000),
            _obj("ignore", [150, 10, 20, 40]),
        ]),
        ("aachen", "aachen_000001_000019", [
            _obj("pedestrian", [230, 10, 41, 100], [230, 10, 26, 60], inst=24001),  # right border
            _obj("person group", [60, 40, 80, 50]),
        ]),
        ("bochum", "bochum_000000_000313", []),  # no objects
    ],
    "val": [
        ("frankfurt", "frankfurt_000000_000294", [
            _obj("pedestrian", [20.5, 10.25, 41, 100], [20.5, 10.25, 41, 70], inst=24000),
            _obj("pedestrian", [-6, 30, 24, 60], [0, 30, 18, 60], inst=24001),  # left border
            _obj("sitting person", [120, 60, 40, 50], inst=26000),
            _obj("person (other)", [180, 20, 30, 70], inst=27000),
        ]),
        ("frankfurt", "frankfurt_000000_000576", [
            _obj("pedestrian", [70, 5, 50, 120], [0, 0, 0, 0], inst=24000),  # zero visible box
            _obj("person group", [150, 40, 90, 60]),
            _obj("ignore", [5, 5, 10, 20]),
        ]),
        ("lindau", "lindau_000000_000019", []),  # no objects
    ],
}


def _write_png(path, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path, format="PNG")


def _write_images(root):
    seed = 0
    for split, items in FIXTURE.items():
        for city, stem, _ in items:
            _write_png(os.path.join(root, "leftImg8bit", split, city, f"{stem}_leftImg8bit.png"),
                       seed)
            seed += 1


def _write_json(root):
    for split, items in FIXTURE.items():
        for city, stem, objects in items:
            folder = os.path.join(root, "gtBboxCityPersons", split, city)
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, f"{stem}_gtBboxCityPersons.json"), "w") as f:
                json.dump({"imgHeight": H, "imgWidth": W, "objects": objects}, f, indent=4)


def _bbs(objects):
    rows = [[citypersons.LABEL_IDS[o["label"]], *o["bbox"], o["instanceId"], *o["bboxVis"]]
            for o in objects]
    return np.array(rows, np.float64).reshape(-1, 10)


def _write_mat(root, subdir="annotations"):
    from scipy import io as sio

    folder = os.path.join(root, subdir)
    os.makedirs(folder, exist_ok=True)
    for split, items in FIXTURE.items():
        cells = np.empty((1, len(items)), dtype=object)
        for i, (city, stem, objects) in enumerate(items):
            cells[0, i] = {"cityname": city, "im_name": f"{stem}_leftImg8bit.png",
                           "bbs": _bbs(objects)}
        sio.savemat(os.path.join(folder, f"anno_{split}.mat"),
                    {f"anno_{split}_aligned": cells})


@pytest.fixture(scope="module")
def manual_dir(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("citypersons_manual"))
    _write_images(root)
    _write_json(root)
    _write_mat(root)
    return root


@pytest.fixture(scope="module")
def json_builder(manual_dir, tmp_path_factory):
    return citypersons.build(None, str(tmp_path_factory.mktemp("tfds_json")), manual_dir)


@pytest.fixture(scope="module")
def mat_builder(manual_dir, tmp_path_factory):
    return citypersons.build("mat", str(tmp_path_factory.mktemp("tfds_mat")), manual_dir)


def _examples(builder, split):
    import tensorflow_datasets as tfds

    exs = list(tfds.as_numpy(builder.as_dataset(split=split, shuffle_files=False)))
    return {ex["image/filename"].decode(): ex for ex in exs}


def _clipped_yxyx(b):
    x1, y1 = min(max(b[0], 0), W), min(max(b[1], 0), H)
    x2, y2 = min(max(b[0] + b[2], 0), W), min(max(b[1] + b[3], 0), H)
    return np.array([y1 / H, x1 / W, y2 / H, x2 / W])


def _check_split(builder, split):
    exs = _examples(builder, split)
    assert len(exs) == len(FIXTURE[split])
    for city, stem, objects in FIXTURE[split]:
        name = f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png"
        ex = exs[name]
        assert ex["image"].shape == (H, W, 3) and ex["image"].dtype == np.uint8
        np.testing.assert_array_equal(ex["image/original_size"], [H, W])
        o = ex["objects"]
        n = len(objects)
        assert o["bbox"].shape == (n, 4)
        labels = [citypersons.LABEL_IDS[x["label"]] for x in objects]
        np.testing.assert_array_equal(o["label"], labels)
        np.testing.assert_array_equal(o["ignore"], [x["label"] != "pedestrian" for x in objects])
        np.testing.assert_array_equal(o["person_id"], -np.ones(n))
        np.testing.assert_array_equal(
            o["instance_id"], int(ex["image/id"]) * 1000 + np.arange(n))
        for k, x in enumerate(objects):
            # Boxes back to pixels: the (clipped) fixture box within 1e-4 px.
            got = o["bbox"][k] * [H, W, H, W]
            np.testing.assert_allclose(got, _clipped_yxyx(x["bbox"]) * [H, W, H, W], atol=1e-4)
            got_v = o["bbox_visible"][k] * [H, W, H, W]
            np.testing.assert_allclose(got_v, _clipped_yxyx(x["bboxVis"]) * [H, W, H, W],
                                       atol=1e-4)
            assert o["height"][k] == pytest.approx(x["bbox"][3])
            full = x["bbox"][2] * x["bbox"][3]
            vis = x["bboxVis"][2] * x["bboxVis"][3]
            assert o["vis_ratio"][k] == pytest.approx(vis / full, abs=1e-6)
    return exs


def test_json_config_counts_and_values(json_builder):
    assert json_builder.info.splits["train"].num_examples == 3
    assert json_builder.info.splits["val"].num_examples == 3
    train = _check_split(json_builder, "train")
    val = _check_split(json_builder, "val")
    ids = sorted(int(ex["image/id"]) for ex in [*train.values(), *val.values()])
    assert ids == list(range(1, 7))
    # Path order: train ids 1..3 (aachen, aachen, bochum), val ids 4..6 (frankfurt.., lindau).
    assert int(train["leftImg8bit/train/bochum/bochum_000000_000313_leftImg8bit.png"]
               ["image/id"]) == 3
    assert int(val["leftImg8bit/val/lindau/lindau_000000_000019_leftImg8bit.png"]
               ["image/id"]) == 6
    # The zero visible box gives vis_ratio 0; the pedestrian stays a positive.
    ex = val["leftImg8bit/val/frankfurt/frankfurt_000000_000576_leftImg8bit.png"]
    assert ex["objects"]["vis_ratio"][0] == 0 and not ex["objects"]["ignore"][0]


def test_mat_config_equals_fixture(mat_builder):
    _check_split(mat_builder, "train")
    _check_split(mat_builder, "val")


def test_export_val_gt_and_perfect_detector(json_builder, tmp_path):
    path = tmp_path / "val_gt.json"
    gt = citypersons.export_val_gt(json_builder, path)
    assert json.loads(path.read_text()) == gt
    assert gt["categories"] == [{"id": 1, "name": "pedestrian"}]
    assert [im["file_name"] for im in gt["images"]] == [
        f"leftImg8bit/val/{c}/{s}_leftImg8bit.png" for c, s, _ in FIXTURE["val"]]
    assert all((im["height"], im["width"]) == (H, W) for im in gt["images"])
    ids = [im["id"] for im in gt["images"]]
    anns = gt["annotations"]
    objects = [(ids[i], o) for i, (_, _, objs) in enumerate(FIXTURE["val"]) for o in objs]
    assert len(anns) == len(objects)
    for a, (image_id, o) in zip(anns, objects):
        assert a["image_id"] == image_id and a["category_id"] == 1
        y1, x1, y2, x2 = _clipped_yxyx(o["bbox"]) * [H, W, H, W]
        np.testing.assert_allclose(a["bbox"], [x1, y1, x2 - x1, y2 - y1], atol=1e-4)
        assert a["height"] == pytest.approx(o["bbox"][3])
        ign = int(o["label"] != "pedestrian")
        assert a["ignore"] == ign and a["iscrowd"] == ign

    # A perfect detector (every annotated box, score 1) has MR 0 in every setup with positives.
    dets = [{"image_id": a["image_id"], "category_id": 1, "bbox": a["bbox"], "score": 1.0}
            for a in anns]
    mr = miss_rate.evaluate_miss_rate(gt, dets)
    assert mr["Reasonable"] == 0.0 and mr["All"] == 0.0
    assert all(v in (0.0, -1.0) for v in mr.values()), mr
    # Missing the Reasonable pedestrian is noticed (the check is not vacuous).
    first = anns[0]
    assert first["height"] == 100 and first["vis_ratio"] == pytest.approx(0.7)
    # Reasonable positives: it and the left-border pedestrian (h 60, visibility 0.75).
    mr = miss_rate.evaluate_miss_rate(gt, dets[1:], ["Reasonable"])
    assert mr["Reasonable"] == pytest.approx(0.5)


def test_missing_manual_dir(tmp_path):
    missing = str(tmp_path / "nowhere")
    with pytest.raises(schema.ManualDirError, match="nowhere"):
        citypersons.build(None, str(tmp_path / "tfds"), missing)


def test_partial_manual_dir_json(tmp_path):
    root = tmp_path / "manual"
    _write_images(str(root))
    _write_json(str(root))
    os.rename(root / "gtBboxCityPersons" / "val", root / "gtBboxCityPersons" / "val_moved")
    with pytest.raises(schema.ManualDirError, match=r"gtBboxCityPersons/val") as e:
        citypersons.build("json", str(tmp_path / "tfds"), str(root))
    assert str(root) in str(e.value)
    # A missing image is named, with the folder searched, before anything is written.
    os.rename(root / "gtBboxCityPersons" / "val_moved", root / "gtBboxCityPersons" / "val")
    os.remove(root / "leftImg8bit" / "val" / "lindau" / "lindau_000000_000019_leftImg8bit.png")
    with pytest.raises(schema.ManualDirError, match="lindau_000000_000019_leftImg8bit.png"):
        citypersons.build("json", str(tmp_path / "tfds2"), str(root))


def test_partial_manual_dir_mat(tmp_path):
    root = tmp_path / "manual"
    _write_images(str(root))
    _write_mat(str(root), subdir=".")  # the manual dir itself is searched too
    os.remove(root / "anno_val.mat")
    with pytest.raises(schema.ManualDirError, match="anno_val.mat") as e:
        citypersons.build("mat", str(tmp_path / "tfds"), str(root))
    assert "annotations" in str(e.value)  # names the folders searched


def test_malformed_annotations(tmp_path):
    path = tmp_path / "x_gtBboxCityPersons.json"
    path.write_text(json.dumps({"imgHeight": H, "imgWidth": W,
                                "objects": [_obj("pedestrian", [1, 2, 3, 4]),
                                            {"label": "pedestrian", "bbox": [1, 2, 3, 4]}]}))
    with pytest.raises(ValueError, match=r"x_gtBboxCityPersons.json.*objects\[1\].*'bboxVis'"):
        citypersons.read_json_annotation(str(path))
    path.write_text(json.dumps({"imgHeight": H, "imgWidth": W,
                                "objects": [_obj("cyclist", [1, 2, 3, 4])]}))
    with pytest.raises(ValueError, match=r"objects\[0\].*'cyclist'"):
        citypersons.read_json_annotation(str(path))
    path.write_text(json.dumps({"imgWidth": W, "objects": []}))
    with pytest.raises(ValueError, match="'imgHeight'"):
        citypersons.read_json_annotation(str(path))

    from scipy import io as sio

    cells = np.empty((1, 2), dtype=object)
    cells[0, 0] = {"cityname": "aachen", "im_name": "a.png", "bbs": np.zeros((0, 10))}
    cells[0, 1] = {"cityname": "aachen", "im_name": "b.png", "bbs": np.zeros((2, 5))}
    mat = tmp_path / "anno_val.mat"
    sio.savemat(str(mat), {"anno_val_aligned": cells})
    with pytest.raises(ValueError, match=r"anno_val.mat.*anno_val_aligned\{2\}.*'bbs'"):
        citypersons.read_mat_annotations(str(mat), "val")
