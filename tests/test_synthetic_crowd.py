"""Tests of the embedded synthetic_crowd dataset, its CityPersons GT export and statistics CLI.

CPU only. TFDS builds use the `tiny` config (128x256, 32 images) in tmp dirs; the crowd
statistics are checked on quickstart-size scenes rendered directly (no TFDS).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from input_pipeline.datasets import citypersons_format, synthetic_crowd
from input_pipeline.datasets.synthetic_crowd import render
from input_pipeline.datasets.synthetic_crowd import synthetic_crowd_dataset_builder as scb
from tools import dataset_stats

SPLITS = ("train", "val", "test")


def _load(builder, split, decode_images=True):
    """All examples of a split as numpy dicts, sorted by image id."""
    import tensorflow_datasets as tfds

    decoders = None if decode_images else {"image": tfds.decode.SkipDecoding()}
    ds = builder.as_dataset(split=split, decoders=decoders)
    return sorted(tfds.as_numpy(ds), key=lambda ex: int(ex["image/id"]))


@pytest.fixture(scope="module")
def tiny_data_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("tfds_a"))


@pytest.fixture(scope="module")
def tiny_builder(tiny_data_dir):
    return synthetic_crowd.build("tiny", tiny_data_dir, progress=False)


@pytest.fixture(scope="module")
def tiny_examples(tiny_builder):
    return {split: _load(tiny_builder, split) for split in SPLITS}


# ------------------------------------------------------------------------------------------
# TFDS builder.
# ------------------------------------------------------------------------------------------


def test_build_is_deterministic(tiny_builder, tmp_path):
    other = synthetic_crowd.build("tiny", str(tmp_path / "tfds_b"), progress=False)
    for split in SPLITS:
        a, b = _load(tiny_builder, split, False), _load(other, split, False)
        assert len(a) == len(b) == tiny_builder.info.splits[split].num_examples
        for ea, eb in zip(a, b):
            assert ea["image/filename"] == eb["image/filename"]
            assert ea["image"] == eb["image"], "JPEG bytes differ between two builds"
            for key in ea["objects"]:
                np.testing.assert_array_equal(ea["objects"][key], eb["objects"][key])


def test_splits_use_different_seeds(tiny_examples):
    firsts = [tiny_examples[s][0]["image"] for s in SPLITS]
    assert not np.array_equal(firsts[0], firsts[1])
    assert not np.array_equal(firsts[1], firsts[2])


def test_feature_spec_and_annotation_invariants(tiny_builder, tiny_examples):
    cfg = tiny_builder.builder_config
    H, W = cfg.image_height, cfg.image_width
    tiny_height = cfg.render_config().tiny_height
    assert tuple(tiny_builder.info.features["objects"]["label"].names) == (
        "ignore_region",
        "pedestrian",
        "rider",
        "sitting",
        "other",
        "group",
    )
    image_ids, instance_ids, labels_seen, n_tiny = [], [], set(), 0
    for split in SPLITS:
        for index, ex in enumerate(tiny_examples[split]):
            assert ex["image"].dtype == np.uint8 and ex["image"].shape == (H, W, 3)
            assert ex["image/id"].dtype == np.int64
            assert ex["image/filename"].decode() == f"{split}/{index:06d}.jpg"
            image_ids.append(int(ex["image/id"]))
            o = ex["objects"]
            n = len(o["label"])
            for key, dtype in (
                ("bbox", np.float32),
                ("bbox_visible", np.float32),
                ("label", np.int64),
                ("height", np.float32),
                ("vis_ratio", np.float32),
                ("ignore", np.bool_),
                ("instance_id", np.int64),
                ("person_id", np.int64),
            ):
                assert o[key].dtype == dtype, key
                assert o[key].shape[0] == n, key
            full, vis = o["bbox"].astype(np.float64), o["bbox_visible"].astype(np.float64)
            assert np.all((full >= 0) & (full <= 1)) and np.all((vis >= 0) & (vis <= 1))
            assert np.all(full[:, 2:] > full[:, :2]) and np.all(vis[:, 2:] > vis[:, :2])
            eps = 1e-6
            assert np.all(vis[:, :2] >= full[:, :2] - eps) and np.all(
                vis[:, 2:] <= full[:, 2:] + eps
            )
            assert np.all((o["vis_ratio"] > 0) & (o["vis_ratio"] <= 1))
            area = lambda b: (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
            np.testing.assert_allclose(o["vis_ratio"], area(vis) / area(full), rtol=1e-4)
            np.testing.assert_allclose(o["height"], (full[:, 2] - full[:, 0]) * H, atol=1e-3)
            is_ped = o["label"] == 1
            tiny = is_ped & (o["height"] < tiny_height)
            np.testing.assert_array_equal(o["ignore"], ~is_ped | tiny)
            np.testing.assert_array_equal(o["person_id"] >= 0, is_ped)
            # Pedestrian full boxes keep the CityPersons aspect (up to whole-pixel widths).
            w_px = (full[:, 3] - full[:, 1]) * W
            h_px = (full[:, 2] - full[:, 0]) * H
            ped = is_ped & (h_px >= 20)
            np.testing.assert_allclose(w_px[ped], np.round(0.41 * h_px[ped]), atol=1e-3)
            n_tiny += int(tiny.sum())
            labels_seen.update(int(v) for v in o["label"])
            instance_ids.extend(int(v) for v in o["instance_id"])
    assert sorted(image_ids) == list(range(1, len(image_ids) + 1))
    assert len(set(instance_ids)) == len(instance_ids)
    # The tiny build must exercise every annotation rule the tests check.
    assert {0, 1, 5} <= labels_seen and n_tiny > 0


def test_identities_recur_in_dataset(tiny_examples):
    images_per_identity = {}
    for ex in tiny_examples["train"]:
        for pid in {int(p) for p in ex["objects"]["person_id"] if p >= 0}:
            images_per_identity[pid] = images_per_identity.get(pid, 0) + 1
    assert max(images_per_identity.values()) >= 2


def test_pool_generation_matches_serial():
    cfg = render.RenderConfig.for_image_size(64, 128)
    serial = list(scb.iter_examples(cfg, "val", 7, 5, 100, num_workers=1))
    pooled = list(scb.iter_examples(cfg, "val", 7, 5, 100, num_workers=2))
    assert [e["image/id"] for e in pooled] == list(range(100, 105))
    for a, b in zip(serial, pooled):
        assert a["image"] == b["image"]
        for key in a["objects"]:
            np.testing.assert_array_equal(a["objects"][key], b["objects"][key])


def test_build_rejects_unknown_config(tmp_path):
    with pytest.raises(ValueError, match="tiny"):
        synthetic_crowd.build("huge", str(tmp_path))


# ------------------------------------------------------------------------------------------
# Renderer.
# ------------------------------------------------------------------------------------------


def test_visible_box_is_tight_box_of_remaining_pixels():
    cfg = render.RenderConfig.for_image_size(256, 512)
    occluded = 0
    for seed in range(4):
        scene = render.render_scene(cfg, [123, seed])
        imap = scene.instance_map
        ids = [a.inst for a in scene.annotations]
        # Every id left in the map is annotated; fully covered entities are dropped.
        assert set(np.unique(imap)) - {0} == set(ids)
        # Independent recomputation: a plain loop over the whole map, not the renderer's code.
        for a in scene.annotations:
            ys, xs = np.nonzero(imap == a.inst)
            tight = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
            np.testing.assert_array_equal(a.visible_box, tight)
            x1, y1, x2, y2 = a.full_box
            assert 0 <= x1 < x2 <= cfg.image_width and 0 <= y1 < y2 <= cfg.image_height
            assert np.all(tight[:2] >= a.full_box[:2]) and np.all(tight[2:] <= a.full_box[2:])
            expect = (tight[2] - tight[0]) * (tight[3] - tight[1]) / ((x2 - x1) * (y2 - y1))
            assert a.vis_ratio == pytest.approx(expect)
            occluded += a.vis_ratio < 0.5
    assert occluded > 0, "no occlusion at all: the check above would be vacuous"


def test_instance_map_tracks_occlusion_order():
    """A person drawn in front overwrites the one behind in the map (and in the image)."""
    app_back, app_front = render.make_appearance(1), render.make_appearance(2)
    pose = render.Pose("front", 1, 0.0, 0.5, 0.0)
    rgb_b, m_b = render.render_figure(app_back, pose, 100)
    rgb_f, m_f = render.render_figure(app_front, pose, 100)
    canvas = np.zeros((120, 120, 3), np.uint8)
    imap = np.zeros((120, 120), np.int32)
    render._paste(canvas, imap, render._Layer(rgb_b, m_b, 10, 10, inst=1))
    render._paste(canvas, imap, render._Layer(rgb_f, m_f, 25, 15, inst=2))
    front_pixels = np.zeros_like(imap, bool)
    front_pixels[15:115, 25 : 25 + m_f.shape[1]] = m_f
    assert np.all(imap[front_pixels] == 2)
    np.testing.assert_array_equal(canvas[front_pixels], rgb_f[m_f])
    boxes = render.visible_boxes(imap, [1, 2, 3])
    assert boxes[3] is None
    assert boxes[1] is not None and boxes[1][0] == 10 + np.nonzero(m_b.any(0))[0].min()


def test_identities_recur_with_same_appearance():
    cfg = render.RenderConfig.for_image_size(128, 256)
    seen = {}
    recurring = 0
    for seed in range(12):
        scene = render.render_scene(cfg, [5, seed])
        for pid, app in scene.appearances.items():
            assert app == render.make_appearance(pid, cfg.identity_seed)
            if pid in seen:
                assert seen[pid] == app
                recurring += 1
            seen[pid] = app
    assert recurring > 0
    # Appearance is a function of the identity: same identity, same colours whatever the pose.
    rng = np.random.default_rng(0)

    def mean_colour(pid):
        rgb, mask = render.render_figure(render.make_appearance(pid), render.sample_pose(rng), 160)
        return rgb[mask].astype(np.float64).mean(0)

    same = [np.abs(mean_colour(p) - mean_colour(p)).max() for p in range(10)]
    diff = [np.abs(mean_colour(p) - mean_colour(p + 1)).max() for p in range(10)]
    assert max(same) < 15 and np.median(diff) > 15
    assert render.make_appearance(3) != render.make_appearance(4)


def test_crowd_overlap_matches_citypersons_level():
    """CityPersons val: 48.8% / 26.4% of pedestrians overlap another with IoU > 0.1 / 0.3."""
    cfg = render.RenderConfig()  # quickstart size 512x1024
    examples = [
        {"objects": render.scene_objects(render.render_scene(cfg, [99, i]), i + 1)}
        for i in range(60)
    ]
    stats = dataset_stats.compute_statistics(examples)
    assert stats["num_pedestrians_non_ignored"] > 300
    assert stats["overlap"]["iou>0.1"] >= 0.40
    assert stats["overlap"]["iou>0.3"] >= 0.20
    # Many small and medium people, like CityPersons.
    h = dict(zip(stats["height_histogram"]["labels"], stats["height_histogram"]["fractions"]))
    assert h["20-50"] + h["50-75"] + h["75-100"] >= 0.4
    assert stats["subsets"]["reasonable"] > 0 and stats["subsets"]["heavy_occlusion"] > 0


# ------------------------------------------------------------------------------------------
# CityPersons GT export.
# ------------------------------------------------------------------------------------------


def _empty_example(image_id):
    return {
        "image": np.zeros((128, 256, 3), np.uint8),
        "image/id": np.int64(image_id),
        "image/filename": b"val/empty.jpg",
        "objects": {
            "bbox": np.zeros((0, 4), np.float32),
            "bbox_visible": np.zeros((0, 4), np.float32),
            "label": np.zeros(0, np.int64),
            "height": np.zeros(0, np.float32),
            "vis_ratio": np.zeros(0, np.float32),
            "ignore": np.zeros(0, bool),
            "instance_id": np.zeros(0, np.int64),
            "person_id": np.zeros(0, np.int64),
        },
    }


def test_export_citypersons_gt_round_trip(tiny_examples, tmp_path):
    examples = list(tiny_examples["val"]) + [_empty_example(999)]
    path = tmp_path / "gt" / "val_gt.json"
    citypersons_format.export_citypersons_gt(examples, path)
    gt = json.loads(path.read_text())
    assert gt["categories"] == [{"id": 1, "name": "pedestrian"}]
    assert [im["id"] for im in gt["images"]] == [int(e["image/id"]) for e in examples]
    assert gt["images"][-1] == {
        "id": 999,
        "file_name": "val/empty.jpg",
        "height": 128,
        "width": 256,
    }
    anns = gt["annotations"]
    objs = [e["objects"] for e in examples]
    assert len(anns) == sum(len(o["label"]) for o in objs) > 0
    assert [a["id"] for a in anns] == list(range(1, len(anns) + 1))
    flat_ignore = np.concatenate([o["ignore"] for o in objs]).astype(int)
    assert [a["ignore"] for a in anns] == flat_ignore.tolist()
    assert all(a["iscrowd"] == a["ignore"] and a["category_id"] == 1 for a in anns)
    assert any(a["ignore"] == 1 for a in anns) and any(a["ignore"] == 0 for a in anns)
    # First annotation against a hand conversion of its normalised box.
    first = next(e for e in examples if len(e["objects"]["label"]))
    ymin, xmin, ymax, xmax = first["objects"]["bbox"][0].astype(np.float64)
    x, y, w, h = anns[0]["bbox"]
    assert anns[0]["image_id"] == int(first["image/id"])
    np.testing.assert_allclose(
        [x, y, w, h], [xmin * 256, ymin * 128, (xmax - xmin) * 256, (ymax - ymin) * 128], atol=1e-2
    )
    assert anns[0]["area"] == pytest.approx(w * h, rel=1e-6)
    for a in anns:
        vx, vy, vw, vh = a["vis_bbox"]
        bx, by, bw, bh = a["bbox"]
        assert vx >= bx - 1e-3 and vy >= by - 1e-3
        assert vx + vw <= bx + bw + 1e-3 and vy + vh <= by + bh + 1e-3
        assert a["height"] == pytest.approx(bh, abs=1e-2)


def test_export_citypersons_gt_keeps_old_file_on_bad_input(tmp_path):
    path = tmp_path / "val_gt.json"
    path.write_text('{"old": true}')
    bad = _empty_example(1)
    bad["objects"] = dict(
        bad["objects"],
        bbox=np.array([[0.5, 0.5, 1.5, 0.6]], np.float32),
        bbox_visible=np.array([[0.5, 0.5, 0.6, 0.6]], np.float32),
        label=np.ones(1, np.int64),
        height=np.ones(1, np.float32),
        vis_ratio=np.ones(1, np.float32),
        ignore=np.zeros(1, bool),
    )
    with pytest.raises(ValueError, match="val/empty.jpg"):
        citypersons_format.export_citypersons_gt([bad], path)
    assert json.loads(path.read_text()) == {"old": True}
    assert os.listdir(tmp_path) == ["val_gt.json"]


# ------------------------------------------------------------------------------------------
# Statistics.
# ------------------------------------------------------------------------------------------


def test_compute_statistics_golden():
    """Hand-computed: image 1 has peds A, B (IoU 1/3), tiny C and an ignore region."""
    # Normalised yxyx on a 100x100 image: A = x 0..20, B = x 10..30 -> IoU 10*40/(1200) = 1/3.
    img1 = {
        "objects": {
            "bbox": np.array(
                [
                    [0.0, 0.0, 0.4, 0.2],
                    [0.0, 0.1, 0.4, 0.3],
                    [0.5, 0.5, 0.6, 0.55],
                    [0.0, 0.6, 0.5, 0.9],
                ],
                np.float32,
            ),
            "label": np.array([1, 1, 1, 0]),
            "height": np.array([40, 40, 10, 50], np.float32),
            "vis_ratio": np.array([1.0, 0.5, 1.0, 1.0], np.float32),
            "ignore": np.array([False, False, True, True]),
            "person_id": np.array([3, 4, 5, -1]),
        }
    }
    # Image 2: one isolated pedestrian, 120 px tall, visibility 0.1; a group box.
    img2 = {
        "objects": {
            "bbox": np.array([[0.0, 0.0, 0.5, 0.2], [0.6, 0.6, 0.7, 0.9]], np.float32),
            "label": np.array([1, 5]),
            "height": np.array([120, 10], np.float32),
            "vis_ratio": np.array([0.1, 0.8], np.float32),
            "ignore": np.array([False, True]),
            "person_id": np.array([3, -1]),
        }
    }
    s = dataset_stats.compute_statistics([img1, img2])
    assert s["num_images"] == 2 and s["num_boxes"] == 6
    assert s["num_pedestrians"] == 4 and s["num_pedestrians_non_ignored"] == 3
    assert (s["num_tiny"], s["num_ignore_regions"], s["num_groups"]) == (1, 1, 1)
    assert s["num_identities"] == 3
    assert s["overlap"]["iou>0.1"] == pytest.approx(2 / 3)
    assert s["overlap"]["iou>0.3"] == pytest.approx(2 / 3)
    assert s["height_histogram"]["counts"] == [0, 2, 0, 0, 1, 0]
    assert s["visibility_histogram"]["counts"] == [1, 1, 0, 1]
    assert s["boxes_per_image"] == {"mean": 3.0, "min": 2, "max": 4}
    assert s["subsets"] == {"reasonable": 0, "heavy_occlusion": 0, "all": 3}


def test_dataset_stats_cli(tiny_builder, tiny_data_dir, tmp_path, capsys):
    out = tmp_path / "stats"
    stats = dataset_stats.main(
        [
            "--dataset",
            "synthetic_crowd/tiny",
            "--split",
            "val",
            "--data_dir",
            tiny_data_dir,
            "--out",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "overlap iou>0.1" in printed and "Visibility histogram" in printed
    saved = json.loads((out / "stats.json").read_text())
    assert saved["num_images"] == tiny_builder.info.splits["val"].num_examples
    assert saved["overlap"] == stats["overlap"]
    assert (out / "stats.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit) as exit_info:
        dataset_stats.main(["--help"])
    assert exit_info.value.code == 0
    assert "--data_dir" in capsys.readouterr().out
