"""WIDER Pedestrian (detection track) as a manual-download TFDS builder.

    from input_pipeline.datasets import wider_pedestrian
    builder = wider_pedestrian.build(None, "/tmp/tfds", "/data/wider_pedestrian")
    ds = builder.as_dataset(split="val")

The annotation format is the 2018 track's, assumed for 2019: read the caveat at the top of
`wider_pedestrian_dataset_builder.py`.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from input_pipeline.datasets import schema
from input_pipeline.datasets.wider_pedestrian.wider_pedestrian_dataset_builder import (
    ANNOTATION_FILES,
    CLASS_MAP,
    IGNORE_FILES,
    IMAGE_DIRS,
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    SPLITS,
    Builder,
    WiderPedestrianConfig,
    check_manual_dir,
    read_annotations,
    read_ignore_regions,
)

CONFIG_NAMES = tuple(c.name for c in Builder.BUILDER_CONFIGS)

__all__ = [
    "ANNOTATION_FILES",
    "CLASS_MAP",
    "CONFIG_NAMES",
    "IGNORE_FILES",
    "IMAGE_DIRS",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "SPLITS",
    "Builder",
    "WiderPedestrianConfig",
    "build",
    "read_annotations",
    "read_ignore_regions",
]


def build(config_name: str | None, data_dir: str, manual_dir: str) -> tfds.core.DatasetBuilder:
    """Returns the prepared `wider_pedestrian/<config_name>` builder, prepared from `manual_dir`.

    Nothing is downloaded. Before any example is written, a missing manual dir, annotation file
    or image raises `schema.ManualDirError` naming it and the folders searched; a malformed
    annotation line raises ValueError naming the file and line.

    Args:
      config_name: None or 'default'.
      data_dir: TFDS data directory.
      manual_dir: folder with the challenge files (see MANUAL_DOWNLOAD_INSTRUCTIONS).
    """
    return schema.prepare_manual_builder(Builder, "wider_pedestrian", config_name, data_dir, manual_dir,
                                         lambda b, d: check_manual_dir(d))
