"""Caltech-USA (refined annotations) as a manual-download TFDS builder (`caltech/train10x`,
`caltech/test`), and the ground-truth export for `evaluation.caltech`.

    from input_pipeline.datasets import caltech
    builder = caltech.build("train10x", "/tmp/tfds", "/data/caltech")  # see MANUAL_DOWNLOAD_...
    ds = builder.as_dataset(split="train")
    caltech.export_caltech_gt(builder, "test", "/tmp/caltech_test_gt.json")
    # python -m evaluation.caltech --gt /tmp/caltech_test_gt.json --dets dets.json
"""

from __future__ import annotations

import os

import numpy as np
import tensorflow_datasets as tfds

from evaluation.io import atomic_write_json
from input_pipeline.datasets import citypersons_format, schema
from input_pipeline.datasets.caltech.caltech_dataset_builder import (
    ANNOTATION_DIRS,
    EXPECTED_FRAMES,
    LABELS,
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    SPLIT_SETS,
    Builder,
    CaltechConfig,
    check_manual_dir,
    parse_bbgt,
    visibility,
)

CONFIG_NAMES = tuple(c.name for c in Builder.BUILDER_CONFIGS)

__all__ = [
    "ANNOTATION_DIRS",
    "CONFIG_NAMES",
    "EXPECTED_FRAMES",
    "LABELS",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "SPLIT_SETS",
    "Builder",
    "CaltechConfig",
    "build",
    "caltech_gt",
    "export_caltech_gt",
    "parse_bbgt",
    "visibility",
]


def build(config_name: str | None, data_dir: str, manual_dir: str) -> tfds.core.DatasetBuilder:
    """Returns the prepared `caltech/<config_name>` builder, preparing it from `manual_dir`.

    Nothing is downloaded. Before any work, a missing manual dir, annotation folder or frame
    raises `schema.ManualDirError` naming it and the folders searched; a malformed annotation
    file raises ValueError naming the file and line.

    Args:
      config_name: None (= 'train10x'), 'train10x' or 'test'.
      data_dir: TFDS data directory.
      manual_dir: folder with the frames and annotation folders (MANUAL_DOWNLOAD_INSTRUCTIONS).
    """
    return schema.prepare_manual_builder(Builder, "caltech", config_name, data_dir, manual_dir,
                                         lambda b, d: check_manual_dir(d, b.builder_config.name))


def _text(value) -> str:
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def caltech_gt(examples) -> dict:
    """The ground-truth dict of `export_caltech_gt` from decoded examples (not written)."""
    images, annotations = [], []
    for ex in examples:
        image_id = int(ex["image/id"])
        height, width = (int(v) for v in ex["image/original_size"])
        images.append({"id": image_id, "file_name": _text(ex["image/filename"]),
                       "height": height, "width": width})
        obj = ex["objects"]
        full = citypersons_format.boxes_yxyx_normalised_to_xywh_pixels(obj["bbox"], height, width)
        vis = citypersons_format.boxes_yxyx_normalised_to_xywh_pixels(
            obj["bbox_visible"], height, width)
        labels = [_text(v) for v in np.asarray(obj["source_label"]).reshape(-1)]
        file_ign = np.asarray(obj["source_ignore"]).astype(bool).reshape(-1)
        for i in range(len(labels)):
            # Annotations are whole pixels; rounding drops the float32 noise of the normalised box.
            bbox = [round(float(v), 3) for v in full[i]]
            annotations.append({
                "id": len(annotations) + 1,
                "image_id": image_id,
                "category_id": 1,
                "label": labels[i],
                "bbox": bbox,
                "vis_bbox": [round(float(v), 3) for v in vis[i]],
                "height": float(obj["height"][i]),
                "vis_ratio": float(obj["vis_ratio"][i]),
                "ignore": int(file_ign[i]),
                "area": round(bbox[2] * bbox[3], 3),
            })
    return {"images": images, "categories": [{"id": 1, "name": "person"}],
            "annotations": annotations}


def export_caltech_gt(builder: tfds.core.DatasetBuilder, split: str,
                      path: str | os.PathLike) -> dict:
    """Writes a split's ground truth as the JSON `evaluation.caltech` reads, atomically.

    Every image of the split is listed (id = image/id, file_name = image/filename, height and
    width of the frame), in image/id order (= frame-name order, the order dbEval reads them).
    Every annotated object is one annotation of category 1 with `label` = the bbGt label
    string ('person', 'people', 'person?', 'ignore', ...: the evaluator keeps and ignores by
    label itself), `ignore` = the file's ign flag (NOT the schema's training ignore), `bbox`
    [x, y, w, h] pixels, `vis_ratio` by bbLoad's rule, `height`, `vis_bbox`, `area`.
    Boxes crossing the frame border appear clipped to it (the schema stores clipped boxes); as
    any such box also crosses dbEval's bounds [5 5 635 475], it is ignored by the evaluator
    either way, and its overlap (IoA) with a detection inside the frame is unchanged.

    Returns the written dict.
    """
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders={"image": tfds.decode.SkipDecoding()})
    examples = sorted(tfds.as_numpy(ds), key=lambda ex: int(ex["image/id"]))
    gt = caltech_gt(examples)
    path = os.fspath(path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(gt, path, indent=None)
    return gt
