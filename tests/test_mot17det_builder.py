"""Tests of the `mot17det` TFDS builder on a tiny fixture in the official MOT17Det layout.

Two sequences (MOT17-02, MOT17-13) with the awkward cases of the real gt.txt: rows ordered by
track (frames interleaved), a box crossing the image border, conf = 0 rows, every class that is
kept or dropped, a frame without any row, a trailing blank line.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from input_pipeline.datasets import mot17det, schema

H, W = 48, 96

GT = {
    "MOT17-02": (3, [  # seqLength, rows (frame, id, left, top, w, h, conf, class, visibility)
        (1, 1, 10, 5, 12, 30, 1, 1, 0.9),
        (2, 1, 11, 5, 12, 30, 1, 1, 0.85),
        (1, 2, -5, 10, 15, 40, 1, 1, 0.4),  # crosses the left and bottom borders
        (1, 3, 50, 5, 10, 20, 0, 1, 0.5),  # pedestrian, not considered
        (1, 4, 60, 5, 20, 20, 0, 3, 1),  # car: dropped
        (1, 5, 70, 8, 10, 25, 0, 2, 1),  # person on vehicle
        (2, 6, 30, 10, 8, 20, 0, 7, 1),  # static person
        (2, 7, 40, 10, 8, 20, 0, 8, 0.3),  # distractor
        (2, 8, 80, 0, 10, 30, 0, 12, 1),  # reflection
        (2, 9, 0, 0, 96, 48, 0, 9, 1),  # occluder: dropped
    ]),  # frame 3 has no row at all
    "MOT17-13": (2, [
        (1, 1, 20, 5, 10, 30, 1, 1, 1.0),
        (2, 1, 21, 5, 10, 30, 1, 1, 0.75),
    ]),
}
EXPECTED = {  # class -> (label, ignore)
    1: (schema.PEDESTRIAN, False), 2: (schema.RIDER, True), 7: (schema.OTHER, True),
    8: (schema.OTHER, True), 12: (schema.IGNORE_REGION, True),
}


def _write_jpeg(path, seed):
    from PIL import Image

    os.makedirs(os.path.dirname(path), exist_ok=True)
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (H, W, 3), dtype=np.uint8)).save(path, quality=90)


def make_manual_dir(root):
    root = str(root)
    for name, (length, rows) in GT.items():
        seq = os.path.join(root, "train", name)
        os.makedirs(os.path.join(seq, "gt"), exist_ok=True)
        with open(os.path.join(seq, "seqinfo.ini"), "w") as f:
            f.write(f"[Sequence]\nname={name}\nimDir=img1\nframeRate=30\nseqLength={length}\n"
                    f"imWidth={W}\nimHeight={H}\nimExt=.jpg\n")
        with open(os.path.join(seq, "gt", "gt.txt"), "w") as f:
            f.writelines(",".join(str(v) for v in r) + "\n" for r in rows)
            f.write("\n")
        for frame in range(1, length + 1):
            _write_jpeg(os.path.join(seq, "img1", f"{frame:06d}.jpg"), frame)
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
    manual = make_manual_dir(tmp_path_factory.mktemp("mot_manual"))
    builder = mot17det.build(None, str(tmp_path_factory.mktemp("mot_tfds")), manual)
    return manual, builder, {s: _load(builder, s) for s in ("train", "val")}


def test_splits_ids_and_filenames(built):
    _, builder, examples = built
    assert builder.info.splits["train"].num_examples == 3
    assert builder.info.splits["val"].num_examples == 2
    assert [int(e["image/id"]) for e in examples["train"]] == [1, 2, 3]
    assert [int(e["image/id"]) for e in examples["val"]] == [4, 5]
    assert [e["image/filename"].decode() for e in examples["val"]] == [
        "train/MOT17-13/img1/000001.jpg", "train/MOT17-13/img1/000002.jpg"]
    for e in examples["train"] + examples["val"]:
        assert e["image"].shape == (H, W, 3)
        assert tuple(e["image/original_size"]) == (H, W)


def test_objects_match_gt_rows(built):
    _, _, examples = built
    scale = np.array([H, W, H, W])
    for split, name in (("train", "MOT17-02"), ("val", "MOT17-13")):
        length, rows = GT[name]
        number = int(name[-2:])
        for frame, ex in zip(range(1, length + 1), examples[split]):
            kept = [r for r in rows if r[0] == frame and r[7] in EXPECTED]
            obj = ex["objects"]
            assert len(obj["label"]) == len(kept)
            for k, (_, tid, x, y, w, h, conf, cls, vis) in enumerate(kept):
                np.testing.assert_allclose(obj["bbox"][k] * scale, _clipped_yxyx(x, y, w, h),
                                           atol=1e-4)
                np.testing.assert_array_equal(obj["bbox_visible"][k], obj["bbox"][k])
                label, ignore = EXPECTED[cls]
                assert int(obj["label"][k]) == label
                assert bool(obj["ignore"][k]) == (ignore or conf == 0)
                assert obj["vis_ratio"][k] == pytest.approx(vis)
                assert obj["height"][k] == pytest.approx(h)
                assert int(obj["person_id"][k]) == (-1 if cls == 12 else number * 100000 + tid)
    # Frame 3 of MOT17-02 has no row; positives and identities are unique across sequences.
    assert examples["train"][2]["objects"]["label"].shape == (0,)
    assert [bool(v) for v in examples["train"][0]["objects"]["ignore"]] == [
        False, False, True, True]
    pos = {(split, int(p)) for split in examples for ex in examples[split]
           for p, ign in zip(ex["objects"]["person_id"], ex["objects"]["ignore"]) if not ign}
    assert pos == {("train", 200001), ("train", 200002), ("val", 1300001)}


def test_all_train_config_has_no_val(tmp_path):
    manual = make_manual_dir(tmp_path / "m")
    builder = mot17det.build("all_train", str(tmp_path / "tfds"), manual)
    assert set(builder.info.splits) == {"train"}
    assert builder.info.splits["train"].num_examples == 5


def test_missing_or_partial_manual_dir(tmp_path):
    data_dir = str(tmp_path / "tfds")
    with pytest.raises(schema.ManualDirError, match="does not exist"):
        mot17det.build(None, data_dir, str(tmp_path / "nowhere"))
    os.makedirs(tmp_path / "empty")
    with pytest.raises(schema.ManualDirError, match="no train folder"):
        mot17det.build(None, data_dir, str(tmp_path / "empty"))
    manual = make_manual_dir(tmp_path / "m1")
    os.remove(os.path.join(manual, "train", "MOT17-13", "gt", "gt.txt"))
    with pytest.raises(schema.ManualDirError, match=r"MOT17-13.*gt\.txt"):
        mot17det.build(None, data_dir, manual)
    manual = make_manual_dir(tmp_path / "m2")
    os.remove(os.path.join(manual, "train", "MOT17-02", "img1", "000002.jpg"))
    with pytest.raises(schema.ManualDirError, match=r"'000002\.jpg'.*MOT17-02"):
        mot17det.build(None, data_dir, manual)
    manual = make_manual_dir(tmp_path / "m3")
    shutil.rmtree(os.path.join(manual, "train", "MOT17-13"))
    with pytest.raises(schema.ManualDirError, match="val sequence 'MOT17-13'"):
        mot17det.build(None, data_dir, manual)


def test_malformed_gt_names_file_and_line(tmp_path):
    manual = make_manual_dir(tmp_path / "m")
    path = os.path.join(manual, "train", "MOT17-13", "gt", "gt.txt")
    with open(path, "w") as f:
        f.write("1,1,20,5,10,30,1,1,1\n2,1,21,5,10,30,1,1\n")
    with pytest.raises(ValueError, match=r"gt\.txt', line 2: expected 9 numbers"):
        mot17det.build(None, str(tmp_path / "tfds"), manual)
    with open(path, "w") as f:
        f.write("1,1,20,5,10,30,1,1,1\n9,1,21,5,10,30,1,1,1\n")
    with pytest.raises(ValueError, match=r"line 2: frame '9' is not a frame of MOT17-13"):
        mot17det.build(None, str(tmp_path / "tfds"), manual)


def test_custom_config_frame_stride(tmp_path):
    import tensorflow_datasets as tfds

    manual = make_manual_dir(tmp_path / "m")
    config = mot17det.Mot17DetConfig(name="stride2_val02", val_sequences=("MOT17-02",),
                                     frame_stride=2)
    builder = mot17det.Builder(config=config, data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        manual_dir=manual, try_download_gcs=False))
    train, val = _load(builder, "train"), _load(builder, "val")
    # MOT17-02 keeps frames 1 and 3 (ids 1, 2), MOT17-13 frame 1 (id 3).
    assert [e["image/filename"].decode() for e in val] == [
        "train/MOT17-02/img1/000001.jpg", "train/MOT17-02/img1/000003.jpg"]
    assert [int(e["image/id"]) for e in val] == [1, 2]
    assert [e["image/filename"].decode() for e in train] == ["train/MOT17-13/img1/000001.jpg"]
    assert [int(e["image/id"]) for e in train] == [3]
