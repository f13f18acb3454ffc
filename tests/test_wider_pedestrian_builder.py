"""Tests of the `wider_pedestrian` TFDS builder on a tiny fixture in the challenge's text format.

Awkward cases: an image line without boxes, boxes crossing the border, cyclists, an ignore file
for val only (train has none), an ignore line for an image not in the annotations, CRLF line
ends, a trailing blank line, an image listed on two lines.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

from input_pipeline.datasets import schema, wider_pedestrian

H, W = 48, 96

TRAIN = [  # (image, [(class, x, y, w, h)])
    ("img00001.jpg", [(1, 10, 5, 12, 30), (1, 85, 20, 20, 35), (2, 40, 10, 15, 25)]),
    ("img00002.jpg", []),
    ("img00003.jpg", [(1, -3, 0, 10, 25)]),
]
VAL = [
    ("img00004.jpg", [(1, 30, 8, 10, 25), (2, 60, 5, 12, 30)]),
    ("img00005.jpg", [(1, 5, 5, 10, 28)]),
]
VAL_IGNORE = {"img00004.jpg": [(0, 0, 20, 10), (70, 30, 30, 20)],
              "img09999.jpg": [(1, 1, 2, 2)]}


def _write_jpeg(path, seed):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path, quality=90)


def _line(name, groups):
    return " ".join([name] + [str(v) for g in groups for v in g])


def make_manual_dir(root):
    root = str(root)
    os.makedirs(root, exist_ok=True)
    with open(os.path.join(root, "train_annotations.txt"), "w", newline="") as f:
        f.write("\r\n".join(_line(n, b) for n, b in TRAIN) + "\r\n")
    with open(os.path.join(root, "val_annotations.txt"), "w") as f:
        # img00004 split over two lines: its boxes are merged.
        f.write(_line(VAL[0][0], VAL[0][1][:1]) + "\n" + _line(VAL[1][0], VAL[1][1]) + "\n"
                + _line(VAL[0][0], VAL[0][1][1:]) + "\n\n")
    with open(os.path.join(root, "pedestrian_ignore_part_val.txt"), "w") as f:
        f.writelines(_line(n, r) + "\n" for n, r in VAL_IGNORE.items())
    for i, (name, _) in enumerate(TRAIN):
        _write_jpeg(os.path.join(root, "train", name), i)
    for i, (name, _) in enumerate(VAL):
        _write_jpeg(os.path.join(root, "val", name), 10 + i)
    return root


def _load(builder, split):
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split=split)
    return sorted(tfds.as_numpy(ds), key=lambda ex: int(ex["image/id"]))


def _clipped_yxyx(x, y, w, h):
    return np.array([np.clip(y, 0, H), np.clip(x, 0, W), np.clip(y + h, 0, H),
                     np.clip(x + w, 0, W)])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    manual = make_manual_dir(tmp_path_factory.mktemp("wp_manual"))
    builder = wider_pedestrian.build(None, str(tmp_path_factory.mktemp("wp_tfds")), manual)
    return builder, {s: _load(builder, s) for s in ("train", "val")}


def test_counts_ids_and_filenames(built):
    builder, examples = built
    assert builder.info.splits["train"].num_examples == 3
    assert builder.info.splits["val"].num_examples == 2
    assert [int(e["image/id"]) for e in examples["train"] + examples["val"]] == [1, 2, 3, 4, 5]
    assert [e["image/filename"].decode() for e in examples["train"] + examples["val"]] == [
        "train/img00001.jpg", "train/img00002.jpg", "train/img00003.jpg", "val/img00004.jpg",
        "val/img00005.jpg"]
    for e in examples["train"] + examples["val"]:
        assert e["image"].shape == (H, W, 3)
        assert tuple(e["image/original_size"]) == (H, W)


def test_objects_match_annotations(built):
    _, examples = built
    scale = np.array([H, W, H, W])
    for split, items, ignore_file in (("train", TRAIN, {}), ("val", VAL, VAL_IGNORE)):
        for ex, (name, boxes) in zip(examples[split], items):
            regions = ignore_file.get(name, [])
            obj = ex["objects"]
            expected = [(c, (x, y, w, h)) for c, x, y, w, h in boxes] + [
                (0, r) for r in regions]
            assert len(obj["label"]) == len(expected)
            for k, (cls, xywh) in enumerate(expected):
                np.testing.assert_allclose(obj["bbox"][k] * scale, _clipped_yxyx(*xywh),
                                           atol=1e-4)
                np.testing.assert_array_equal(obj["bbox_visible"][k], obj["bbox"][k])
                label = {1: schema.PEDESTRIAN, 2: schema.RIDER, 0: schema.IGNORE_REGION}[cls]
                assert int(obj["label"][k]) == label
                assert bool(obj["ignore"][k]) == (cls != 1)
                assert obj["height"][k] == pytest.approx(xywh[3])
            np.testing.assert_array_equal(obj["vis_ratio"], 1.0)
            np.testing.assert_array_equal(obj["person_id"], -1)
    assert examples["train"][1]["objects"]["label"].shape == (0,)
    assert list(examples["val"][0]["objects"]["label"]) == [1, 2, 0, 0]


def test_missing_or_partial_manual_dir(tmp_path):
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(schema.ManualDirError, match="does not exist"):
        wider_pedestrian.build(None, data_dir, str(tmp_path / "nowhere"))
    manual = make_manual_dir(tmp_path / "m1")
    os.remove(os.path.join(manual, "val_annotations.txt"))
    with pytest.raises(schema.ManualDirError, match="'val_annotations.txt'"):
        wider_pedestrian.build(None, data_dir, manual)
    manual = make_manual_dir(tmp_path / "m2")
    os.remove(os.path.join(manual, "val", "img00005.jpg"))
    with pytest.raises(schema.ManualDirError) as err:
        wider_pedestrian.build(None, data_dir, manual)
    assert "'img00005.jpg'" in str(err.value)
    assert repr(os.path.join(manual, "val")) in str(err.value)


def test_malformed_annotation_names_file_and_line(tmp_path):
    manual = make_manual_dir(tmp_path / "m")
    path = os.path.join(manual, "val_annotations.txt")
    with open(path, "w") as f:
        f.write("img00004.jpg 1 30 8 10 25\nimg00005.jpg 1 5 5 10\n")
    with pytest.raises(ValueError, match=r"val_annotations\.txt', line 2: 4 numbers"):
        wider_pedestrian.build(None, str(tmp_path / "tfds"), manual)
    with open(path, "w") as f:
        f.write("img00004.jpg 3 30 8 10 25\n")
    with pytest.raises(ValueError, match=r"line 1: class 3 of image 'img00004.jpg'"):
        wider_pedestrian.read_annotations(path)
