"""Input pipeline ops, eagerly and inside tf.data: box conversion, clipping, padding, flips,
overflow handling and per-process slicing."""

import io

import ml_collections
import numpy as np
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds
from PIL import Image

from input_pipeline import pipeline


def _input_cfg(**kw):
    c = ml_collections.ConfigDict(dict(
        image_size=(32, 64), max_boxes=3, max_ignore=2, overflow="truncate", random_flip=False,
        mean_rgb=(0.0, 0.0, 0.0), std_rgb=(1.0, 1.0, 1.0),
    ))
    c.update(kw)
    return c


def _example(boxes_yxyx, labels, ignore, size=(64, 128)):
    img = np.zeros(size + (3,), np.uint8)
    img[:, : size[1] // 2] = 255  # left half white: lets tests see flips
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    n = len(labels)
    return {
        "image": tf.constant(buf.getvalue()),
        "image/id": tf.constant(7, tf.int64),
        "image/filename": tf.constant("val/000007.jpg"),
        "objects": {
            "bbox": tf.constant(np.asarray(boxes_yxyx, np.float32).reshape(n, 4)),
            "label": tf.constant(np.asarray(labels, np.int64)),
            "ignore": tf.constant(np.asarray(ignore, bool)),
        },
    }


FEATURE = tfds.features.Image(encoding_format="jpeg")


def test_yxyx_normalized_to_xyxy_pixels():
    out = pipeline.boxes_yxyx_normalized_to_xyxy(tf.constant([[0.1, 0.2, 0.5, 0.6]]), 100, 200)
    np.testing.assert_allclose(out.numpy(), [[40.0, 10.0, 120.0, 50.0]], rtol=1e-6)


def test_clip_and_zero_area_counted():
    boxes = tf.constant([[-5.0, 2.0, 10.0, 8.0], [70.0, 1.0, 90.0, 5.0], [3.0, 3.0, 3.0, 9.0]])
    keep = tf.constant([True, True, False])
    clipped, keep2, dropped = pipeline.clip_and_filter_boxes(boxes, keep, 32, 64)
    np.testing.assert_allclose(clipped.numpy()[0], [0.0, 2.0, 10.0, 8.0])
    # The second box lies entirely right of the 64-px image: zero area after clipping.
    assert keep2.numpy().tolist() == [True, False, False]
    assert int(dropped) == 1  # the third was not kept to begin with, so only one is counted


def test_pad_boxes_gathers_kept_rows_and_counts_overflow():
    boxes = tf.constant(np.arange(20, dtype=np.float32).reshape(5, 4))
    keep = tf.constant([False, True, True, True, True])
    padded, valid, lost = pipeline.pad_boxes(boxes, keep, 3)
    np.testing.assert_array_equal(padded.numpy(), boxes.numpy()[1:4])
    assert valid.numpy().all() and int(lost) == 1
    padded, valid, lost = pipeline.pad_boxes(boxes, tf.constant([True] + [False] * 4), 3)
    assert valid.numpy().tolist() == [True, False, False] and int(lost) == 0
    np.testing.assert_array_equal(padded.numpy()[1:], 0.0)


def _decode(cfg, ex, train=False, index=0):
    fn = pipeline.make_decode_fn(cfg, FEATURE, train=train, seed=0)
    eager = fn(tf.constant(index, tf.int64), ex)
    ds = tf.data.Dataset.from_tensors((tf.constant(index, tf.int64), ex)).map(fn)
    graph = next(iter(ds))
    for k in eager:
        np.testing.assert_allclose(np.asarray(eager[k]), np.asarray(graph[k]), atol=1e-4, err_msg=k)
    return {k: np.asarray(v) for k, v in eager.items()}


def test_decode_splits_pedestrians_and_ignore_regions_eagerly_and_in_tf_data():
    ex = _example(
        [[0.0, 0.0, 0.5, 0.25], [0.5, 0.5, 1.0, 0.75], [0.2, 0.2, 0.4, 0.4]],
        labels=[1, 1, 0], ignore=[False, True, True],
    )
    out = _decode(_input_cfg(), ex)
    assert out["image"].shape == (32, 64, 3)
    assert out["gt_valid"].tolist() == [True, False, False]
    np.testing.assert_allclose(out["gt_boxes"][0], [0.0, 0.0, 16.0, 16.0], atol=1e-4)
    assert out["ignore_valid"].tolist() == [True, True]
    np.testing.assert_allclose(out["ignore_boxes"][0], [32.0, 16.0, 48.0, 32.0], atol=1e-4)
    np.testing.assert_allclose(out["scale_xy"], [2.0, 2.0])
    assert int(out["image_id"]) == 7 and bool(out["example_valid"])


def test_image_without_pedestrians_is_fine():
    out = _decode(_input_cfg(), _example(np.zeros((0, 4)), labels=[], ignore=[]))
    assert not out["gt_valid"].any() and not out["ignore_valid"].any()
    assert int(out["num_boxes_lost"]) == 0


def test_overflow_truncate_counts_and_error_names_the_file():
    boxes = [[0.1 * i, 0.1, 0.1 * i + 0.1, 0.2] for i in range(5)]
    ex = _example(boxes, labels=[1] * 5, ignore=[False] * 5)
    out = _decode(_input_cfg(overflow="truncate"), ex)
    assert int(out["num_boxes_lost"]) == 2 and out["gt_valid"].all()
    fn = pipeline.make_decode_fn(_input_cfg(overflow="error"), FEATURE, train=False, seed=0)
    with pytest.raises(tf.errors.InvalidArgumentError, match="val/000007.jpg"):
        fn(tf.constant(0, tf.int64), ex)
    ds = tf.data.Dataset.from_tensors((tf.constant(0, tf.int64), ex)).map(fn)
    with pytest.raises(tf.errors.InvalidArgumentError, match="val/000007.jpg"):
        next(iter(ds))


def test_flip_moves_boxes_and_pixels_together():
    ex = _example([[0.0, 0.0, 0.5, 0.25]], labels=[1], ignore=[False])
    cfg = _input_cfg(random_flip=True)
    flipped = None
    for index in range(16):  # stateless per-index coin: some indices flip, some do not
        out = _decode(cfg, ex, train=True, index=index)
        if out["gt_boxes"][0, 0] > 0:
            flipped = out
        else:
            assert out["image"][:, :8].mean() > 200  # unflipped: white on the left
    assert flipped is not None, "no index in 0..15 flipped"
    np.testing.assert_allclose(flipped["gt_boxes"][0], [48.0, 0.0, 64.0, 16.0], atol=1e-4)
    assert flipped["image"][:, :8].mean() < 50 and flipped["image"][:, -8:].mean() > 200


def test_process_slices_partition_every_global_batch():
    ds = tf.data.Dataset.zip(tf.data.Dataset.range(24), tf.data.Dataset.range(100, 124))
    parts = [
        [int(x) for _, x in pipeline._keep_process_slice(ds, 8, p, 2)] for p in range(2)
    ]
    assert parts[0][:4] == [100, 101, 102, 103] and parts[1][:4] == [104, 105, 106, 107]
    assert sorted(parts[0] + parts[1]) == list(range(100, 124))


def test_batch_size_must_divide_devices():
    with pytest.raises(ValueError, match="divisible by the number of devices"):
        pipeline.check_batch_size(6, 1, 4)


def test_training_crop_shifts_boxes_and_ignores_mostly_cut_pedestrians():
    # Image 32x64 after resizing; crop 16x32. One small pedestrian, one much larger than the crop.
    ex = _example(
        [[0.25, 0.25, 0.5, 0.375], [0.0, 0.0, 1.0, 1.0]], labels=[1, 1], ignore=[False, False]
    )
    cfg = _input_cfg(train_crop_size=(16, 32))
    seen_inside = False
    for index in range(12):
        out = _decode(cfg, ex, train=True, index=index)
        assert out["image"].shape == (16, 32, 3)
        # The 32x64 box keeps at most a quarter of its area in any crop: always an ignore region.
        assert out["ignore_valid"][0]
        if out["gt_valid"][0]:
            assert not out["ignore_valid"][1]  # the small one is whole, so the only target
            np.testing.assert_allclose(out["ignore_boxes"][0], [0, 0, 32, 16], atol=1e-4)
            b = out["gt_boxes"][0]
            assert b[0] >= 0 and b[1] >= 0 and b[2] <= 32 and b[3] <= 16
            np.testing.assert_allclose([b[2] - b[0], b[3] - b[1]], [8.0, 8.0], atol=1e-4)
            seen_inside = True
    assert seen_inside, "the small pedestrian was never fully inside a crop"


def test_scale_jitter_at_half_scale_shows_the_whole_image_with_scaled_boxes():
    # 32x64 image, crop 16x32, jitter fixed at 0.5: every crop is the whole downscaled image, so
    # the pedestrian too large for any native crop is now a whole target.
    ex = _example(
        [[0.25, 0.25, 0.5, 0.375], [0.0, 0.0, 1.0, 1.0]], labels=[1, 1], ignore=[False, False]
    )
    cfg = _input_cfg(train_crop_size=(16, 32), train_scale_range=(0.5, 0.5))
    for index in range(3):
        out = _decode(cfg, ex, train=True, index=index)
        assert out["image"].shape == (16, 32, 3)
        assert out["gt_valid"].tolist() == [True, True, False]
        assert not out["ignore_valid"].any()
        np.testing.assert_allclose(out["gt_boxes"][0], [8, 4, 12, 8], atol=1e-4)
        np.testing.assert_allclose(out["gt_boxes"][1], [0, 0, 32, 16], atol=1e-4)
        # Left half white, right half black: the downscale keeps that layout.
        assert out["image"][:, :12].min() > 200 and out["image"][:, 20:].max() < 60


def test_scale_jitter_pads_small_scales_with_the_mean_colour_and_checks_its_range():
    ex = _example([[0.25, 0.25, 0.5, 0.375]], labels=[1], ignore=[False])
    mean = (10.0, 20.0, 30.0)
    cfg = _input_cfg(train_crop_size=(16, 32), train_scale_range=(0.25, 0.25), mean_rgb=mean)
    out = _decode(cfg, ex, train=True, index=0)
    # 32x64 * 0.25 = 8x16 placed at the top left of a 16x32 crop; the rest is the mean colour,
    # i.e. 0 after normalisation.
    np.testing.assert_allclose(out["image"][8:], 0.0, atol=1e-5)
    np.testing.assert_allclose(out["image"][:, 16:], 0.0, atol=1e-5)
    np.testing.assert_allclose(out["gt_boxes"][0], [4, 2, 6, 4], atol=1e-4)
    # Evaluation never jitters.
    ev = _decode(cfg, ex, train=False, index=0)
    assert ev["image"].shape == (32, 64, 3)
    np.testing.assert_allclose(ev["gt_boxes"][0], [16, 8, 24, 16], atol=1e-4)
    with pytest.raises(ValueError, match="train_scale_range"):
        _decode(_input_cfg(train_scale_range=(1.0, 0.5)), ex, train=True, index=0)


def test_undecodable_images_are_named():
    good = _example(np.zeros((0, 4)), labels=[], ignore=[])
    raw = tf.data.Dataset.from_tensor_slices({
        "image": [good["image"], tf.constant(b"\xff\xd8 not really a jpeg")],
        "image/filename": ["train/000001.jpg", "train/000002.jpg"],
    })
    bad = pipeline.find_undecodable_images(raw, FEATURE)
    assert len(bad) == 1 and bad[0].startswith("train/000002.jpg")


def test_mixture_interleaves_datasets_by_weight_deterministically_and_resumes(
        tiny_config, tiny_data_dir, tmp_path):
    from input_pipeline import datasets
    from tests.test_mot17det_builder import H, W, make_manual_dir

    # A second dataset next to the synthetic one: the MOT17Det fixture (W x H frames), prepared
    # from its default manual dir under the same data_dir.
    manual = datasets.default_manual_dir("mot17det", tiny_data_dir)
    make_manual_dir(manual)
    with tiny_config.unlocked():
        tiny_config.input.mixture = (("synthetic_crowd/tiny", 1.0), ("mot17det/all_train", 3.0))
        tiny_config.input.batch_size = 8
    builder = pipeline.get_builder("synthetic_crowd/tiny", tiny_data_dir)
    ds = pipeline.train_dataset(builder, tiny_config.input, seed=3)
    batches = [b for _, b in zip(range(6), pipeline.as_numpy_iterator(ds))]
    out_h, out_w = tiny_config.input.image_size
    # scale_xy (stored width / input width) tells the sources apart: synthetic tiny is 256 wide.
    from_mot = np.concatenate([np.isclose(b["scale_xy"][:, 0], W / out_w) for b in batches])
    from_syn = np.concatenate([np.isclose(b["scale_xy"][:, 0], 256 / out_w) for b in batches])
    assert (from_mot | from_syn).all() and from_syn.any()
    assert 0.55 < from_mot.mean() < 0.95  # weight 3 of 4, 48 draws
    assert all(b["image"].shape == (8, out_h, out_w, 3) for b in batches)
    # Same seed, same stream; a resumed stream continues exactly where the step left off.
    again = next(pipeline.as_numpy_iterator(pipeline.train_dataset(builder, tiny_config.input, 3)))
    np.testing.assert_array_equal(again["image"], batches[0]["image"])
    resumed = next(pipeline.as_numpy_iterator(
        pipeline.train_dataset(builder, tiny_config.input, 3, start_step=4)))
    np.testing.assert_array_equal(resumed["gt_boxes"], batches[4]["gt_boxes"])
    np.testing.assert_array_equal(resumed["image"], batches[4]["image"])
    with tiny_config.unlocked():
        tiny_config.input.mixture = (("synthetic_crowd/tiny", 0.0),)
    with pytest.raises(ValueError, match="must be > 0"):
        pipeline.train_dataset(builder, tiny_config.input, 3)
