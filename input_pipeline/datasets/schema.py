"""The feature schema every pedestrian / person-search builder emits, and helpers to fill it.

All builders (the embedded `synthetic_crowd` and the real benchmarks under
`input_pipeline/datasets/<name>/`) produce the same features, so every detector, loss and
evaluator runs on any of them unchanged:

  image                 uint8 [H, W, 3] JPEG (stored at the dataset's own size; the input
                        pipeline resizes to `input.image_size`)
  image/id              int64, unique and 1-based over all splits of a builder config
  image/filename        the file's path relative to the dataset root, e.g.
                        'leftImg8bit/val/frankfurt/frankfurt_000000_000294_leftImg8bit.png'
  image/original_size   int64 [2] (height, width) of the source image file
  objects/bbox          full-body box, TFDS format: normalised [ymin, xmin, ymax, xmax]
  objects/bbox_visible  visible-part box, same format (= bbox where a dataset has none)
  objects/label         `CLASS_NAMES` index: 0 ignore region, 1 pedestrian, 2 rider,
                        3 sitting person, 4 other person, 5 person group (CityPersons' classes)
  objects/height        full-box height in pixels of the source image
  objects/vis_ratio     visible-box area / full-box area (1 where a dataset has no visible box)
  objects/ignore        bool: not a positive for training or evaluation (anything but a
                        pedestrian, or flagged ignore/too small by the benchmark's own rules)
  objects/instance_id   int64, unique within the builder (image_id * 1000 + k)
  objects/person_id     int64 identity; -1 where unknown / unlabeled

Boxes arrive from annotation files as [x, y, w, h] pixels; `objects_from_xywh` converts them once
(clipping to the image, which the TFDS BBoxFeature requires) and computes height / vis_ratio.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import tensorflow_datasets as tfds

CLASS_NAMES = ("ignore_region", "pedestrian", "rider", "sitting", "other", "group")
IGNORE_REGION, PEDESTRIAN, RIDER, SITTING, OTHER, GROUP = range(6)


def features(image_shape: tuple | None = None) -> tfds.features.FeaturesDict:
    """The shared FeaturesDict; `image_shape` (H, W, 3) when a dataset's size is fixed."""
    return tfds.features.FeaturesDict({
        "image": tfds.features.Image(shape=image_shape or (None, None, 3),
                                     encoding_format="jpeg"),
        "image/id": np.int64,
        "image/filename": tfds.features.Text(),
        "image/original_size": tfds.features.Tensor(shape=(2,), dtype=np.int64),
        "objects": tfds.features.Sequence({
            "bbox": tfds.features.BBoxFeature(),
            "bbox_visible": tfds.features.BBoxFeature(),
            "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
            "height": np.float32,
            "vis_ratio": np.float32,
            "ignore": np.bool_,
            "instance_id": np.int64,
            "person_id": np.int64,
        }),
    })


def xywh_to_tfds_bbox(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """[N, 4] [x, y, w, h] pixels -> [N, 4] float32 normalised [ymin, xmin, ymax, xmax], clipped
    to the image (TFDS rejects coordinates outside [0, 1])."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1 = np.clip(b[:, 0], 0, width) / width
    y1 = np.clip(b[:, 1], 0, height) / height
    x2 = np.clip(b[:, 0] + b[:, 2], 0, width) / width
    y2 = np.clip(b[:, 1] + b[:, 3], 0, height) / height
    return np.stack([y1, x1, np.maximum(y2, y1), np.maximum(x2, x1)], axis=1).astype(np.float32)


def objects_from_xywh(
    boxes: np.ndarray,
    labels: Sequence[int],
    ignore: Sequence[bool],
    image_id: int,
    height: int,
    width: int,
    visible_boxes: np.ndarray | None = None,
    person_ids: Sequence[int] | None = None,
) -> dict:
    """The `objects` feature dict of one image from pixel [x, y, w, h] boxes.

    Args:
      boxes: [N, 4] full-body boxes, pixels of the source image (may cross its border).
      labels: [N] `CLASS_NAMES` indices. ignore: [N] bool.
      image_id: the image's id (instance ids are image_id * 1000 + k).
      height, width: source image size.
      visible_boxes: [N, 4] visible boxes, or None (then = full boxes, vis_ratio 1).
      person_ids: [N] identities, or None (all -1).
    """
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    n = b.shape[0]
    v = b if visible_boxes is None else np.asarray(visible_boxes, np.float64).reshape(-1, 4)
    if v.shape[0] != n:
        raise ValueError(f"image {image_id}: {n} full boxes but {v.shape[0]} visible boxes")
    full_area = np.clip(b[:, 2], 0, None) * np.clip(b[:, 3], 0, None)
    vis_area = np.clip(v[:, 2], 0, None) * np.clip(v[:, 3], 0, None)
    vis_ratio = np.where(full_area > 0, np.minimum(vis_area / np.maximum(full_area, 1e-12), 1.0),
                         0.0) if visible_boxes is not None else np.ones(n)
    if n >= 1000:
        raise ValueError(f"image {image_id}: {n} objects; instance ids allow at most 999")
    return {
        "bbox": xywh_to_tfds_bbox(b, height, width),
        "bbox_visible": xywh_to_tfds_bbox(v, height, width),
        "label": np.asarray(labels, np.int64).reshape(n),
        "height": b[:, 3].astype(np.float32),
        "vis_ratio": vis_ratio.astype(np.float32),
        "ignore": np.asarray(ignore, bool).reshape(n),
        "instance_id": image_id * 1000 + np.arange(n, dtype=np.int64),
        "person_id": (np.full(n, -1, np.int64) if person_ids is None
                      else np.asarray(person_ids, np.int64).reshape(n)),
    }


class ManualDirError(FileNotFoundError):
    """A manual-download dataset whose files are missing: names the file and where it looked."""


def require_file(path, what: str, instructions: str) -> None:
    """Raises `ManualDirError` naming `path` (and the download instructions) if it is absent."""
    import os

    if not os.path.exists(path):
        raise ManualDirError(
            f"{what}: expected {path!r}, which does not exist. {instructions.strip()}"
        )


def prepare_manual_builder(builder_cls, name: str, config_name: str | None, data_dir,
                           manual_dir, check=None):
    """The prepared `name/config_name` builder of a manual-download dataset (nothing is
    downloaded). `check(manual_dir)` runs first, so a missing file is reported by name before
    any example is written; a prepared dataset is opened without looking at `manual_dir`."""
    import os

    configs = tuple(c.name for c in builder_cls.BUILDER_CONFIGS or ())
    if configs:
        config_name = config_name or builder_cls.DEFAULT_CONFIG_NAME
        if config_name not in configs:
            raise ValueError(f"Unknown {name} config {config_name!r}; choose one of {configs}.")
        builder = builder_cls(config=config_name, data_dir=os.fspath(data_dir))
    else:  # a builder without configs: "name" or "name/default"
        if config_name not in (None, "", "default"):
            raise ValueError(f"Unknown {name} config {config_name!r}; {name} has only 'default'.")
        builder = builder_cls(data_dir=os.fspath(data_dir))
    if not builder.is_prepared():
        if check is not None:
            check(builder, os.fspath(manual_dir))
        builder.download_and_prepare(
            download_dir=os.path.join(os.fspath(data_dir), "downloads"),
            download_config=tfds.download.DownloadConfig(
                manual_dir=os.fspath(manual_dir), try_download_gcs=False),
        )
    return builder
