"""tf.data input pipelines: TFDS records -> fixed-shape, padded, per-process batches.

Box formats: TFDS stores normalised `[ymin, xmin, ymax, xmax]`; this module converts once to
`[x1, y1, x2, y2]` float32 pixels of the network input (`config.input.image_size`), which is the
format everything downstream uses.

Determinism and scale: every process reads the same globally shuffled stream of *raw* records
(images still encoded) and keeps only its own slice of each global batch before decoding. So the
global batch at step s is a function of (seed, global batch size, s) alone: the same on 1 device,
N devices or N hosts, and a resumed run starts exactly where the interrupted one stopped (the
epoch's shuffle is re-created from its seed and the records before the resume point are skipped
undecoded). Random flips are stateless, seeded by the example's position in the stream.
"""

from __future__ import annotations

from typing import Iterator

import tensorflow as tf
import tensorflow_datasets as tfds

from input_pipeline import datasets as dataset_registry

PEDESTRIAN_LABEL = 1


def images_to_float(image_uint8, mean_rgb, std_rgb):
    """`[..., H, W, 3] uint8` -> normalised float32."""
    x = tf.cast(image_uint8, tf.float32)
    return (x - tf.constant(mean_rgb, tf.float32)) / tf.constant(std_rgb, tf.float32)


def boxes_yxyx_normalized_to_xyxy(boxes, height, width):
    """`[N, 4]` normalised yxyx -> `[N, 4]` float32 xyxy pixels of an image of (height, width)."""
    boxes = tf.cast(boxes, tf.float32)
    h = tf.cast(height, tf.float32)
    w = tf.cast(width, tf.float32)
    return tf.stack([boxes[:, 1] * w, boxes[:, 0] * h, boxes[:, 3] * w, boxes[:, 2] * h], axis=-1)


def clip_and_filter_boxes(boxes, keep, height, width):
    """Clips `[N,4]` xyxy to the image and drops zero-area boxes from `keep` (`[N] bool`).

    Returns (clipped boxes, keep after dropping, number of zero-area boxes dropped).
    """
    w = tf.cast(width, tf.float32)
    h = tf.cast(height, tf.float32)
    clipped = tf.stack(
        [
            tf.clip_by_value(boxes[:, 0], 0.0, w),
            tf.clip_by_value(boxes[:, 1], 0.0, h),
            tf.clip_by_value(boxes[:, 2], 0.0, w),
            tf.clip_by_value(boxes[:, 3], 0.0, h),
        ],
        axis=-1,
    )
    nonzero = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])
    dropped = tf.reduce_sum(tf.cast(keep & ~nonzero, tf.int32))
    return clipped, keep & nonzero, dropped


def pad_boxes(boxes, keep, max_boxes):
    """Gathers the kept rows of `[N,4]` to the front and pads/truncates to `max_boxes`.

    Returns (`[max_boxes, 4]` boxes, `[max_boxes] bool` valid, number of kept boxes lost to the cap).
    """
    kept = tf.boolean_mask(boxes, keep)
    n = tf.shape(kept)[0]
    kept = kept[:max_boxes]
    pad = max_boxes - tf.shape(kept)[0]
    padded = tf.pad(kept, [[0, pad], [0, 0]])
    valid = tf.range(max_boxes) < tf.minimum(n, max_boxes)
    padded.set_shape([max_boxes, 4])
    return padded, valid, tf.maximum(n - max_boxes, 0)


def hflip_boxes(boxes, width):
    """Mirror `[N,4]` xyxy boxes in an image of `width`."""
    w = tf.cast(width, tf.float32)
    return tf.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], axis=-1)


def train_input_size(input_cfg) -> tuple[int, int]:
    """(H, W) of training batches: the crop size if set, else the network input size."""
    crop = input_cfg.get("train_crop_size")
    return tuple(int(s) for s in (crop or input_cfg.image_size))


def random_crop(image, boxes, crop_hw, seed):
    """Crops `[H, W, 3]` at a stateless random offset; shifts `[N, 4]` xyxy boxes into the crop.

    Boxes are not clipped here (`clip_and_filter_boxes` does that, dropping boxes left outside).
    """
    h = tf.shape(image)[0]
    w = tf.shape(image)[1]
    ch, cw = crop_hw
    u = tf.random.stateless_uniform([2], seed=seed)
    y0 = tf.cast(u[0] * tf.cast(h - ch + 1, tf.float32), tf.int32)
    x0 = tf.cast(u[1] * tf.cast(w - cw + 1, tf.float32), tf.int32)
    image = image[y0 : y0 + ch, x0 : x0 + cw]
    shift = tf.cast(tf.stack([x0, y0, x0, y0]), tf.float32)
    return image, boxes - shift


def random_scale(image, boxes, scale_range, seed):
    """Resizes `[H, W, 3]` float32 by a stateless random factor in `scale_range`; scales boxes.

    Args:
      image: `[H, W, 3]` float32 pixel values (not yet normalised).
      boxes: `[N, 4]` xyxy pixels of `image`.
      scale_range: (lo, hi) of the uniform factor; the same factor on both axes.
      seed: `[2]` int stateless seed.
    Returns:
      (`[round(H*s), round(W*s), 3]` float32, `[N, 4]` xyxy boxes in the resized image's pixels).
    """
    lo, hi = (float(v) for v in scale_range)
    s = lo + (hi - lo) * tf.random.stateless_uniform([], seed=seed)
    h = tf.cast(tf.shape(image)[0], tf.float32)
    w = tf.cast(tf.shape(image)[1], tf.float32)
    new_h = tf.maximum(tf.cast(tf.round(h * s), tf.int32), 1)
    new_w = tf.maximum(tf.cast(tf.round(w * s), tf.int32), 1)
    image = tf.image.resize(image, tf.stack([new_h, new_w]), method="bilinear", antialias=True)
    # Exact per-axis factors (rounding makes them differ slightly from s).
    sx = tf.cast(new_w, tf.float32) / w
    sy = tf.cast(new_h, tf.float32) / h
    return image, boxes * tf.stack([sx, sy, sx, sy])


def pad_to_at_least(image, min_hw, fill_rgb):
    """Pads `[H, W, 3]` at the bottom and right to at least `min_hw` with the colour `fill_rgb`.

    Padding with the normalisation mean makes the padded pixels exactly 0 after normalisation.
    """
    h = tf.shape(image)[0]
    w = tf.shape(image)[1]
    pad_h = tf.maximum(min_hw[0] - h, 0)
    pad_w = tf.maximum(min_hw[1] - w, 0)
    fill = tf.constant(fill_rgb, tf.float32)
    return tf.pad(image - fill, [[0, pad_h], [0, pad_w], [0, 0]]) + fill


def make_decode_fn(input_cfg, image_feature, train: bool, seed: int):
    """Returns `decode(index, raw_example) -> dict` of fixed-shape tensors for one example."""
    out_h, out_w = (int(s) for s in input_cfg.image_size)
    crop_hw = train_input_size(input_cfg) if train else (out_h, out_w)
    if crop_hw[0] > out_h or crop_hw[1] > out_w:
        raise ValueError(f"input.train_crop_size {crop_hw} exceeds input.image_size {(out_h, out_w)}")
    max_boxes, max_ignore = int(input_cfg.max_boxes), int(input_cfg.max_ignore)
    overflow = input_cfg.overflow
    scale_range = tuple(float(v) for v in (input_cfg.get("train_scale_range") or (1.0, 1.0)))
    if len(scale_range) != 2 or not 0 < scale_range[0] <= scale_range[1]:
        raise ValueError(
            f"input.train_scale_range must be (lo, hi) with 0 < lo <= hi, got {scale_range}"
        )
    jitter = train and scale_range != (1.0, 1.0)
    if overflow not in ("error", "truncate"):
        raise ValueError(f"input.overflow must be 'error' or 'truncate', got {overflow!r}")

    def decode(index, ex):
        image = image_feature.decode_example(ex["image"])
        image = tf.ensure_shape(image, [None, None, 3])
        src_h = tf.shape(image)[0]
        src_w = tf.shape(image)[1]
        # Resizing to the size the image already has would still cost a full resampling pass.
        image = tf.cond(
            tf.logical_and(tf.equal(src_h, out_h), tf.equal(src_w, out_w)),
            lambda: tf.cast(image, tf.float32),
            lambda: tf.image.resize(image, (out_h, out_w), method="bilinear", antialias=True),
        )
        objects = ex["objects"]
        boxes = boxes_yxyx_normalized_to_xyxy(objects["bbox"], out_h, out_w)
        is_ignore = tf.cast(objects["ignore"], tf.bool)
        is_ped = tf.equal(tf.cast(objects["label"], tf.int64), PEDESTRIAN_LABEL) & ~is_ignore
        if train and input_cfg.random_flip:
            flip = tf.random.stateless_uniform([], seed=tf.stack([tf.cast(seed, tf.int64), index]))
            flip = flip < 0.5
            image = tf.cond(flip, lambda: image[:, ::-1, :], lambda: image)
            boxes = tf.cond(flip, lambda: hflip_boxes(boxes, out_w), lambda: boxes)
        # Annotation problems (boxes outside the image, zero area) are counted on the whole image.
        boxes, is_ped, zero_ped = clip_and_filter_boxes(boxes, is_ped, out_h, out_w)
        boxes, is_ignore, zero_ign = clip_and_filter_boxes(boxes, is_ignore, out_h, out_w)
        if jitter or (train and crop_hw != (out_h, out_w)):
            if jitter:
                # Scale jitter: large pedestrians that no native-resolution crop holds whole are
                # seen whole at the smaller scales; the image is padded up to the crop if needed.
                scale_seed = tf.stack([tf.cast(seed, tf.int64) + 2, index])
                image, boxes = random_scale(image, boxes, scale_range, scale_seed)
                image = pad_to_at_least(image, crop_hw, input_cfg.mean_rgb)
            crop_seed = tf.stack([tf.cast(seed, tf.int64) + 1, index])
            image, boxes = random_crop(image, boxes, crop_hw, crop_seed)
            image = tf.ensure_shape(image, [crop_hw[0], crop_hw[1], 3])
            full_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            boxes, is_ped, _ = clip_and_filter_boxes(boxes, is_ped, *crop_hw)
            boxes, is_ignore, _ = clip_and_filter_boxes(boxes, is_ignore, *crop_hw)
            # A pedestrian mostly cut away by the crop is no fair target (nor a fair negative):
            # with less than half of its area left it becomes an ignore region.
            kept_area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
            truncated = is_ped & (kept_area < 0.5 * full_area)
            is_ped = is_ped & ~truncated
            is_ignore = is_ignore | truncated
        gt_boxes, gt_valid, gt_lost = pad_boxes(boxes, is_ped, max_boxes)
        ig_boxes, ig_valid, ig_lost = pad_boxes(boxes, is_ignore, max_ignore)
        if overflow == "error":
            # Raised as tf.errors.InvalidArgumentError whose message carries the filename.
            tf.debugging.Assert(
                tf.equal(gt_lost + ig_lost, 0),
                [
                    "Image", ex["image/filename"], "has more boxes than input.max_boxes /",
                    "input.max_ignore allow (boxes over the caps:", gt_lost, ig_lost,
                    "); raise the caps or set input.overflow='truncate'",
                ],
            )
        return {
            "image": images_to_float(image, input_cfg.mean_rgb, input_cfg.std_rgb),
            "gt_boxes": gt_boxes,
            "gt_valid": gt_valid,
            "ignore_boxes": ig_boxes,
            "ignore_valid": ig_valid,
            "image_id": tf.cast(ex["image/id"], tf.int64),
            # Factors back to the stored image's pixels (for evaluation in dataset coordinates).
            "scale_xy": tf.stack(
                [tf.cast(src_w, tf.float32) / out_w, tf.cast(src_h, tf.float32) / out_h]
            ),
            "num_boxes_lost": gt_lost + ig_lost,
            "num_zero_area_dropped": zero_ped + zero_ign,
            "example_valid": tf.constant(True),
        }

    return decode


def _raw_split(builder, split: str) -> tf.data.Dataset:
    return builder.as_dataset(
        split=split, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()}
    )


def _keep_process_slice(ds, global_batch, process_index, process_count):
    """Keeps the examples of this process's slice of every global batch (on `(index, ex)`)."""
    local = global_batch // process_count
    return ds.filter(lambda i, ex: (i % global_batch) // local == process_index)


def _options(ds):
    opts = tf.data.Options()
    opts.deterministic = True
    opts.experimental_optimization.map_parallelization = True
    return ds.with_options(opts)


def check_batch_size(global_batch, process_count, device_count):
    if global_batch % device_count:
        raise ValueError(
            f"input.batch_size={global_batch} must be divisible by the number of devices "
            f"({device_count}); change --config.input.batch_size"
        )
    if global_batch % process_count:
        raise ValueError(f"batch size {global_batch} not divisible by {process_count} processes")


# What the decoder reads; every builder (input_pipeline/datasets/schema.py) has these fields, so
# records of different datasets can be interleaved before decoding.
_MIX_OBJECT_KEYS = ("bbox", "label", "ignore")
_ANY_SIZE_JPEG = tfds.features.Image(shape=(None, None, 3), encoding_format="jpeg")


def parse_mixture(mixture) -> list[tuple[str, float]]:
    """`input.mixture` -> [(dataset, weight)] with weights summing to 1; () -> []."""
    out = []
    for entry in mixture or ():
        try:
            name, weight = entry
            weight = float(weight)
        except (TypeError, ValueError):
            raise ValueError(f"input.mixture entries must be (dataset, weight), got {entry!r}") from None
        if not weight > 0:
            raise ValueError(f"input.mixture weight of {name!r} must be > 0, got {weight}")
        out.append((str(name), weight))
    total = sum(w for _, w in out)
    return [(name, w / total) for name, w in out]


def _mixed_train_records(input_cfg, seed: int, global_batch: int):
    """Interleaved raw records of the `input.mixture` datasets' train splits, each source an
    infinite stream of seeded shuffled epochs; `sample_from_datasets` draws the source of every
    record from the (normalised) weights with a fixed seed, so the stream depends only on the
    seed and is skippable for resumption."""
    streams, weights = [], []
    for k, (name, weight) in enumerate(parse_mixture(input_cfg.mixture)):
        # Each dataset's files are read from its default manual dir
        # (<data_dir>/downloads/manual/<name>) unless it was prepared before.
        b = get_builder(name, input_cfg.data_dir)
        split = input_cfg.train_split
        if split not in b.info.splits or b.info.splits[split].num_examples == 0:
            raise ValueError(f"input.mixture: {name} has no (or an empty) split {split!r}; "
                             f"its splits: {list(b.info.splits)}")
        n = b.info.splits[split].num_examples
        raw = _raw_split(b, split).map(lambda ex: {
            "image": ex["image"], "image/id": ex["image/id"],
            "image/filename": ex["image/filename"],
            "objects": {key: ex["objects"][key] for key in _MIX_OBJECT_KEYS}})
        buffer = int(min(input_cfg.shuffle_buffer, n))
        source_seed = seed * 100_003 + 7_919 * (k + 1)

        def one_epoch(epoch, raw=raw, buffer=buffer, source_seed=source_seed):
            return raw.shuffle(buffer, seed=source_seed + epoch, reshuffle_each_iteration=False)

        streams.append(tf.data.Dataset.range(1 << 40).flat_map(one_epoch))
        weights.append(weight)
    del global_batch
    return tf.data.Dataset.sample_from_datasets(streams, weights=weights, seed=seed)


def train_dataset(builder, input_cfg, seed: int, start_step: int = 0, process_index: int = 0,
                  process_count: int = 1) -> tf.data.Dataset:
    """Infinite training batches of this process: dict of `[B_local, ...]` tensors.

    With `input.mixture` set ([(dataset, weight), ...]) the batches interleave those datasets'
    train splits by weight (the person-search paper trains its detector on MOT17Det + WIDER +
    CUHK-SYSU + PRW); `builder` then only serves evaluation."""
    global_batch = int(input_cfg.batch_size)
    if input_cfg.get("mixture"):
        start = int(start_step) * global_batch
        ds = _mixed_train_records(input_cfg, seed, global_batch).skip(start)
        ds = tf.data.Dataset.zip(tf.data.Dataset.range(start, 1 << 62), ds)
        ds = _keep_process_slice(ds, global_batch, process_index, process_count)
        decode = make_decode_fn(input_cfg, _ANY_SIZE_JPEG, train=True, seed=seed)
        ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
        ds = ds.batch(global_batch // process_count, drop_remainder=True)
        return _options(ds.prefetch(2))
    split = input_cfg.train_split
    n = builder.info.splits[split].num_examples
    if n == 0:
        raise ValueError(f"Split {split!r} of {builder.info.full_name} is empty")
    raw = _raw_split(builder, split)
    buffer = int(min(input_cfg.shuffle_buffer, n))
    start = int(start_step) * global_batch
    epoch0, offset = divmod(start, n)

    def one_epoch(epoch):
        return raw.shuffle(buffer, seed=seed * 100_003 + epoch, reshuffle_each_iteration=False)

    ds = tf.data.Dataset.range(epoch0, 1 << 40).flat_map(one_epoch)
    ds = ds.skip(offset)
    ds = tf.data.Dataset.zip(tf.data.Dataset.range(start, 1 << 62), ds)
    ds = _keep_process_slice(ds, global_batch, process_index, process_count)
    decode = make_decode_fn(input_cfg, builder.info.features["image"], train=True, seed=seed)
    ds = ds.map(decode, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(global_batch // process_count, drop_remainder=True)
    return _options(ds.prefetch(2))


def eval_dataset(builder, input_cfg, split: str, max_images: int = 0, process_index: int = 0,
                 process_count: int = 1) -> tuple[tf.data.Dataset, int]:
    """One pass over `split`, padded with `example_valid=False` copies to whole global batches.

    Returns (dataset of local batches, number of real images).
    """
    global_batch = int(input_cfg.eval_batch_size)
    n = builder.info.splits[split].num_examples
    if max_images:
        n = min(n, int(max_images))
    if n == 0:
        raise ValueError(f"Split {split!r} of {builder.info.full_name} is empty")
    decode = make_decode_fn(input_cfg, builder.info.features["image"], train=False, seed=0)
    raw = _raw_split(builder, split).take(n)
    ds = tf.data.Dataset.zip(tf.data.Dataset.range(n), raw)
    num_pad = (-n) % global_batch
    if num_pad:
        pad = tf.data.Dataset.zip(tf.data.Dataset.range(n, n + num_pad), raw.take(1).repeat(num_pad))
        ds = ds.concatenate(pad)
    ds = _keep_process_slice(ds, global_batch, process_index, process_count)

    def decode_and_mark(i, ex):
        out = decode(i, ex)
        out["example_valid"] = i < n
        return out

    ds = ds.map(decode_and_mark, num_parallel_calls=tf.data.AUTOTUNE)
    ds = ds.batch(global_batch // process_count, drop_remainder=True)
    return _options(ds.prefetch(2)), n


def as_numpy_iterator(ds: tf.data.Dataset) -> Iterator[dict]:
    return iter(tfds.as_numpy(ds))


def get_builder(dataset: str, data_dir: str, manual_dir: str | None = None):
    """The prepared TFDS builder for `name/config`; builds the embedded synthetic data, or a real
    benchmark from its manually downloaded files in `manual_dir`, if needed."""
    return dataset_registry.get_builder(dataset, data_dir, manual_dir)


def find_undecodable_images(raw: tf.data.Dataset, image_feature, limit: int = 5) -> list[str]:
    """Decodes `raw` records' images one by one (eagerly) and names those that fail.

    Used only after tf.data reported a decode error, whose message does not say which record it
    was: this turns it into "file X is corrupt".
    """
    bad = []
    for ex in raw:
        try:
            image_feature.decode_example(ex["image"])
        except (tf.errors.InvalidArgumentError, tf.errors.UnknownError) as e:
            bad.append(f"{ex['image/filename'].numpy().decode()} ({e.message.splitlines()[0]})")
            if len(bad) >= limit:
                break
    return bad


def explain_decode_error(builder, split: str, error: Exception) -> ValueError:
    """A ValueError naming the corrupt record(s) of `split` behind a tf.data decode `error`."""
    bad = find_undecodable_images(_raw_split(builder, split), builder.info.features["image"])
    where = "; ".join(bad) if bad else "no image failed to decode on its own"
    return ValueError(
        f"Bad example in split {split!r} of {builder.info.full_name} ({builder.data_dir}): "
        f"{where}. tf.data said: {getattr(error, 'message', error)}. Rebuild the dataset or remove "
        "the record."
    )
