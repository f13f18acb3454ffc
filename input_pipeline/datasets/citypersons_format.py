"""Ground truth in the official CityPersons evaluation format (COCO-like `val_gt.json`).

`export_citypersons_gt` turns decoded TFDS examples (normalised `[ymin, xmin, ymax, xmax]`
boxes) into the JSON the CityPersons miss-rate evaluator reads, with `[x, y, w, h]` boxes in
absolute pixels of the stored image. Like the official file, every annotation has category 1;
ignore regions and groups are told apart only by `ignore = iscrowd = 1`, which is how the
evaluator uses them as ignore regions.
"""

from __future__ import annotations

import io
import os
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from evaluation.io import atomic_write_json

PEDESTRIAN_CATEGORY = {"id": 1, "name": "pedestrian"}


def boxes_yxyx_normalised_to_xywh_pixels(boxes: np.ndarray, height: int, width: int) -> np.ndarray:
    """[N, 4] normalised [ymin, xmin, ymax, xmax] -> [N, 4] float64 [x, y, w, h] in pixels."""
    b = np.asarray(boxes, np.float64).reshape(-1, 4)
    x1, y1 = b[:, 1] * width, b[:, 0] * height
    x2, y2 = b[:, 3] * width, b[:, 2] * height
    return np.stack([x1, y1, x2 - x1, y2 - y1], axis=1)


def _text(value: Any) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _image_size(example: Mapping[str, Any], image_size: tuple[int, int] | None) -> tuple[int, int]:
    """(height, width) from the decoded image, the JPEG header, or the explicit size."""
    if image_size is not None:
        return int(image_size[0]), int(image_size[1])
    image = example.get("image")
    if isinstance(image, np.ndarray) and image.ndim == 3:
        return int(image.shape[0]), int(image.shape[1])
    if isinstance(image, (bytes, np.bytes_)):
        from PIL import Image  # only needed for undecoded images

        with Image.open(io.BytesIO(bytes(image))) as im:
            return im.height, im.width
    raise ValueError(
        f"Example {_text(example.get('image/filename', '?'))}: no image to read the size from; "
        "pass image_size=(height, width)."
    )


def citypersons_gt(
    examples: Iterable[Mapping[str, Any]], image_size: tuple[int, int] | None = None
) -> dict:
    """Builds the CityPersons GT dict (see `export_citypersons_gt`) without writing it."""
    images, annotations = [], []
    for ex in examples:
        image_id = int(ex["image/id"])
        name = _text(ex["image/filename"])
        height, width = _image_size(ex, image_size)
        images.append({"id": image_id, "file_name": name, "height": height, "width": width})
        obj = ex["objects"]
        boxes = np.asarray(obj["bbox"], np.float64).reshape(-1, 4)
        vis = np.asarray(obj["bbox_visible"], np.float64).reshape(-1, 4)
        for what, b in (("bbox", boxes), ("bbox_visible", vis)):
            if b.size and (b.min() < -1e-6 or b.max() > 1 + 1e-6 or np.any(b[:, 2:] < b[:, :2])):
                raise ValueError(
                    f"Example {name}: objects/{what} is not a valid normalised "
                    "[ymin, xmin, ymax, xmax] box inside the image."
                )
        full_xywh = boxes_yxyx_normalised_to_xywh_pixels(boxes, height, width)
        vis_xywh = boxes_yxyx_normalised_to_xywh_pixels(vis, height, width)
        ignore = np.asarray(obj["ignore"]).astype(bool).reshape(-1)
        for i in range(len(boxes)):
            # Boxes are whole pixels in the renderer; rounding drops float32 noise (511.99997).
            bbox = [round(float(v), 3) for v in full_xywh[i]]
            ign = int(ignore[i])
            annotations.append(
                {
                    "id": len(annotations) + 1,
                    "image_id": image_id,
                    "category_id": PEDESTRIAN_CATEGORY["id"],
                    "bbox": bbox,
                    "vis_bbox": [round(float(v), 3) for v in vis_xywh[i]],
                    "height": float(obj["height"][i]),
                    "vis_ratio": float(obj["vis_ratio"][i]),
                    "ignore": ign,
                    "iscrowd": ign,
                    "area": round(bbox[2] * bbox[3], 3),
                }
            )
    return {"images": images, "categories": [dict(PEDESTRIAN_CATEGORY)], "annotations": annotations}


def export_citypersons_gt(
    examples: Iterable[Mapping[str, Any]],
    path: str | os.PathLike,
    image_size: tuple[int, int] | None = None,
) -> dict:
    """Writes a split's ground truth as CityPersons evaluation JSON, atomically.

    Args:
      examples: numpy example dicts, e.g. `tfds.as_numpy(builder.as_dataset(split='val'))`
        (images decoded, or left as JPEG bytes with `tfds.decode.SkipDecoding()`).
      path: output file; written to a temporary file in the same directory, then renamed, so
        an existing file is never left half-written.
      image_size: (height, width) for all images; by default read from each example.

    Returns:
      The written dict: `images` (every image, also those without annotations),
      `categories` ([{id 1, pedestrian}]) and `annotations` (1-based ids, `bbox`/`vis_bbox` as
      [x, y, w, h] pixels, `height`, `vis_ratio`, `ignore`, `iscrowd` = ignore, `area` = w*h).
    """
    gt = citypersons_gt(examples, image_size)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(gt, path, indent=None)
    return gt
