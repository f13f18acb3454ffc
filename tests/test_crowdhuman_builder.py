"""Tests of the `crowdhuman` TFDS builder on a tiny fixture in the official layout and format.

The fixture has the awkward cases of the real files: an image without boxes, full boxes crossing
the image border, 'mask' entries, extra.ignore = 1, a zero-size vbox, an entry without `extra`,
train images under `Images/` and val images under `CrowdHuman_val/Images/`, blank lines.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from evaluation import crowdhuman as ch_eval
from input_pipeline.datasets import crowdhuman, schema

H, W = 48, 96


def _entry(tag, fbox, vbox=None, ignore=None, with_extra=True):
    e = {"tag": tag, "fbox": fbox, "hbox": [fbox[0] + 2, fbox[1], 6, 6],
         "head_attr": {"ignore": 0, "occ": 0, "unsure": 0}}
    if vbox is not None:
        e["vbox"] = vbox
    if with_extra:
        e["extra"] = {"box_id": 0, "occ": 0}
        if ignore is not None:
            e["extra"]["ignore"] = ignore
    return e


TRAIN = [
    {"ID": "273271,1a0d6000b9e1f5b7", "gtboxes": [
        _entry("person", [10, 5, 12, 30], [10, 5, 12, 20]),
        _entry("person", [-4, 10, 14, 44], [0, 10, 10, 30]),  # crosses left and bottom border
    ]},
    {"ID": "284193,faa9000f2678b5e", "gtboxes": [
        _entry("mask", [50, 0, 40, 20], [50, 0, 40, 20]),
        _entry("person", [30, 8, 10, 25], [30, 8, 10, 25], ignore=0),
    ]},
]
VAL = [
    {"ID": "273275,4e9d1000623d0b94", "gtboxes": []},  # no boxes at all
    {"ID": "273278,c9db000d5146c15", "gtboxes": [
        _entry("person", [80, 2, 25, 40], [80, 2, 16, 40]),  # crosses the right border
        _entry("person", [5, 5, 10, 30], [5, 5, 0, 0]),  # zero-size visible box
        _entry("person", [40, 10, 12, 30], [40, 10, 12, 30], ignore=1),
        _entry("mask", [60, 30, 20, 10], [60, 30, 20, 10]),
        _entry("person", [20, 6, 11, 28], None, with_extra=False),  # no vbox, no extra
    ]},
    {"ID": "273279,3d1ea000e1bba8d8", "gtboxes": [
        _entry("person", [2, 1, 20, 45], [2, 1, 20, 40]),
    ]},
]


def _write_jpeg(path, seed):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path, quality=90)


def _write_odgt(path, records):
    with open(path, "w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)
        f.write("\n")  # a trailing blank line


def make_manual_dir(root):
    root = str(root)
    os.makedirs(root, exist_ok=True)
    _write_odgt(os.path.join(root, "annotation_train.odgt"), TRAIN)
    _write_odgt(os.path.join(root, "annotation_val.odgt"), VAL)
    for i, r in enumerate(TRAIN):
        _write_jpeg(os.path.join(root, "Images", r["ID"] + ".jpg"), i)
    for i, r in enumerate(VAL):
        _write_jpeg(os.path.join(root, "CrowdHuman_val", "Images", r["ID"] + ".jpg"), 10 + i)
    return root


def _load(builder, split):
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split=split)
    return sorted(tfds.as_numpy(ds), key=lambda ex: int(ex["image/id"]))


def _clipped_yxyx(b):
    x, y, w, h = np.asarray(b, np.float64)
    return np.array([np.clip(y, 0, H), np.clip(x, 0, W), np.clip(y + h, 0, H),
                     np.clip(x + w, 0, W)])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    manual = make_manual_dir(tmp_path_factory.mktemp("ch_manual"))
    builder = crowdhuman.build(None, str(tmp_path_factory.mktemp("ch_tfds")), manual)
    return manual, builder, {s: _load(builder, s) for s in ("train", "val")}


def test_counts_ids_and_filenames(built):
    _, builder, examples = built
    assert builder.info.splits["train"].num_examples == 2
    assert builder.info.splits["val"].num_examples == 3
    assert [int(e["image/id"]) for e in examples["train"]] == [1, 2]
    assert [int(e["image/id"]) for e in examples["val"]] == [3, 4, 5]
    assert [e["image/filename"].decode() for e in examples["train"]] == [
        "Images/" + r["ID"] + ".jpg" for r in TRAIN]
    assert [e["image/filename"].decode() for e in examples["val"]] == [
        "CrowdHuman_val/Images/" + r["ID"] + ".jpg" for r in VAL]
    for split in ("train", "val"):
        for e in examples[split]:
            assert e["image"].shape == (H, W, 3)
            assert tuple(e["image/original_size"]) == (H, W)
    assert crowdhuman.image_ids(builder, "val") == {3 + i: r["ID"] for i, r in enumerate(VAL)}
    assert crowdhuman.image_ids(builder, "train") == {1 + i: r["ID"] for i, r in enumerate(TRAIN)}


def test_boxes_labels_and_ignore_match_the_odgt(built):
    _, _, examples = built
    scale = np.array([H, W, H, W], np.float64)
    for split, records in (("train", TRAIN), ("val", VAL)):
        for ex, rec in zip(examples[split], records):
            obj = ex["objects"]
            n = len(rec["gtboxes"])
            assert obj["bbox"].shape == (n, 4)
            for k, g in enumerate(rec["gtboxes"]):
                vbox = g.get("vbox", g["fbox"])
                np.testing.assert_allclose(obj["bbox"][k] * scale, _clipped_yxyx(g["fbox"]),
                                           atol=1e-4)
                np.testing.assert_allclose(obj["bbox_visible"][k] * scale, _clipped_yxyx(vbox),
                                           atol=1e-4)
                ignored = g["tag"] != "person" or g.get("extra", {}).get("ignore", 0) == 1
                assert bool(obj["ignore"][k]) == ignored
                assert int(obj["label"][k]) == (schema.IGNORE_REGION if ignored
                                                else schema.PEDESTRIAN)
                assert obj["height"][k] == pytest.approx(g["fbox"][3])
                fa = g["fbox"][2] * g["fbox"][3]
                assert obj["vis_ratio"][k] == pytest.approx(min(vbox[2] * vbox[3] / fa, 1.0))
            assert list(obj["person_id"]) == [-1] * n
            assert list(obj["instance_id"]) == [int(ex["image/id"]) * 1000 + k for k in range(n)]
    # Spot checks of the awkward entries.
    val = examples["val"]
    assert val[0]["objects"]["bbox"].shape == (0, 4)
    assert list(val[1]["objects"]["ignore"]) == [False, False, True, True, False]
    assert val[1]["objects"]["vis_ratio"][1] == 0.0


def test_perfect_detector_has_zero_miss_rate(built):
    """The evaluator on the fixture's own .odgt, detections from the decoded dataset."""
    manual, builder, examples = built
    ids = crowdhuman.image_ids(builder, "val")
    dets = []
    for ex in examples["val"]:
        obj = ex["objects"]
        boxes = []
        for b, ign in zip(obj["bbox"], obj["ignore"]):
            if ign:
                continue
            y1, x1, y2, x2 = (b * np.array([H, W, H, W])).tolist()
            boxes.append({"box": [x1, y1, x2 - x1, y2 - y1], "score": 0.9, "tag": 1})
        h, w = ex["image/original_size"].tolist()
        dets.append({"ID": ids[int(ex["image/id"])], "width": w, "height": h, "dtboxes": boxes})
    gt = ch_eval.load_odgt(os.path.join(manual, "annotation_val.odgt"))
    result = ch_eval.evaluate(gt, dets, metrics=("MR",))
    assert result["MR"] == 0.0


def test_missing_or_partial_manual_dir(tmp_path):
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(schema.ManualDirError, match="does not exist"):
        crowdhuman.build(None, data_dir, str(tmp_path / "nowhere"))
    manual = make_manual_dir(tmp_path / "m1")
    os.remove(os.path.join(manual, "annotation_val.odgt"))
    with pytest.raises(schema.ManualDirError, match="annotation_val.odgt"):
        crowdhuman.build(None, data_dir, manual)
    manual = make_manual_dir(tmp_path / "m2")
    os.remove(os.path.join(manual, "CrowdHuman_val", "Images", VAL[2]["ID"] + ".jpg"))
    with pytest.raises(schema.ManualDirError) as err:
        crowdhuman.build(None, data_dir, manual)
    assert VAL[2]["ID"] + ".jpg" in str(err.value)
    assert os.path.join(manual, "CrowdHuman_val/Images") in str(err.value)


def test_malformed_annotation_names_file_and_line(tmp_path):
    manual = make_manual_dir(tmp_path / "m")
    path = os.path.join(manual, "annotation_val.odgt")
    with open(path) as f:
        lines = f.read().split("\n")
    bad = json.loads(lines[1])
    bad["gtboxes"][0]["fbox"] = [1, 2, 3]
    lines[1] = json.dumps(bad)
    with open(path, "w") as f:
        f.write("\n".join(lines))
    with pytest.raises(ValueError, match=r"annotation_val\.odgt', line 2: gtboxes\[0\]: 'fbox'"):
        crowdhuman.build(None, str(tmp_path / "tfds"), manual)
    with open(path, "w") as f:
        f.write(json.dumps(VAL[0]) + "\n{not json\n")
    with pytest.raises(ValueError, match=r"line 2: not valid JSON"):
        crowdhuman.read_odgt(path)
