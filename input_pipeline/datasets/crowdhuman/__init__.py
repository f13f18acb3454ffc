"""CrowdHuman as a manual-download TFDS builder (`crowdhuman/default`), and ID lookup.

    from input_pipeline.datasets import crowdhuman
    builder = crowdhuman.build(None, "/tmp/tfds", "/data/crowdhuman")  # see MANUAL_DOWNLOAD_...
    ds = builder.as_dataset(split="val")
    ids = crowdhuman.image_ids(builder, "val")  # image/id -> CrowdHuman "ID"

The official evaluator (`evaluation/crowdhuman.py`) reads the original annotation_val.odgt;
detections are written with `"ID": ids[image_id]` and the image/original_size as width/height.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from input_pipeline.datasets import schema
from input_pipeline.datasets.crowdhuman.crowdhuman_dataset_builder import (
    ANNOTATION_FILES,
    IMAGE_DIRS,
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    SPLITS,
    Builder,
    CrowdHumanConfig,
    check_manual_dir,
    read_odgt,
)

CONFIG_NAMES = tuple(c.name for c in Builder.BUILDER_CONFIGS)

__all__ = [
    "ANNOTATION_FILES",
    "CONFIG_NAMES",
    "IMAGE_DIRS",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "SPLITS",
    "Builder",
    "CrowdHumanConfig",
    "build",
    "image_ids",
    "read_odgt",
]


def build(config_name: str | None, data_dir: str, manual_dir: str) -> tfds.core.DatasetBuilder:
    """Returns the prepared `crowdhuman/<config_name>` builder, preparing it from `manual_dir`.

    Nothing is downloaded. Before any work, a missing manual dir, .odgt file or image raises
    `schema.ManualDirError` naming it and the folder searched; a malformed .odgt line raises
    ValueError naming the file and line.

    Args:
      config_name: None or 'default'.
      data_dir: TFDS data directory.
      manual_dir: folder with the official files (see MANUAL_DOWNLOAD_INSTRUCTIONS).
    """
    return schema.prepare_manual_builder(Builder, "crowdhuman", config_name, data_dir, manual_dir,
                                         lambda b, d: check_manual_dir(d))


def image_ids(builder: tfds.core.DatasetBuilder, split: str) -> dict[int, str]:
    """{image/id: CrowdHuman ID} of a split (the stem of image/filename); images not decoded."""
    ds = builder.as_dataset(split=split, decoders={"image": tfds.decode.SkipDecoding()})
    ds = ds.map(lambda ex: (ex["image/id"], ex["image/filename"]))
    out = {}
    for image_id, filename in tfds.as_numpy(ds):
        name = os.path.basename(filename.decode("utf-8"))
        out[int(image_id)] = name.removesuffix(".jpg")
    return out
