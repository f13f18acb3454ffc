"""MOT17Det (training sequences) as a manual-download TFDS builder.

    from input_pipeline.datasets import mot17det
    builder = mot17det.build("default", "/tmp/tfds", "/data/mot17det")  # val = MOT17-13
    ds = builder.as_dataset(split="train")

Configs: 'default' (MOT17-13 held out as val), 'all_train' (no val split). Other hold-outs or a
frame stride: `mot17det.Builder(config=mot17det.Mot17DetConfig(name=..., val_sequences=(...),
frame_stride=...), data_dir=...)`, then `download_and_prepare` with the manual dir.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from input_pipeline.datasets import schema
from input_pipeline.datasets.mot17det.mot17det_dataset_builder import (
    CLASS_MAP,
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    PERSON_ID_STRIDE,
    TRAIN_SEQUENCES,
    Builder,
    Mot17DetConfig,
    find_train_dir,
    read_gt,
    read_seqinfo,
)

CONFIG_NAMES = tuple(c.name for c in Builder.BUILDER_CONFIGS)

__all__ = [
    "CLASS_MAP",
    "CONFIG_NAMES",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "PERSON_ID_STRIDE",
    "TRAIN_SEQUENCES",
    "Builder",
    "Mot17DetConfig",
    "build",
    "read_gt",
    "read_seqinfo",
]


def build(config_name: str | None, data_dir: str, manual_dir: str) -> tfds.core.DatasetBuilder:
    """Returns the prepared `mot17det/<config_name>` builder, preparing it from `manual_dir`.

    Nothing is downloaded. Before any example is written, a missing manual dir, train folder,
    seqinfo.ini, gt.txt or frame image raises `schema.ManualDirError` naming it and the folder
    searched; a malformed gt.txt row raises ValueError naming the file and line.

    Args:
      config_name: None (= 'default'), 'default' or 'all_train'.
      data_dir: TFDS data directory.
      manual_dir: folder holding the extracted MOT17Det.zip (see MANUAL_DOWNLOAD_INSTRUCTIONS).
    """
    return schema.prepare_manual_builder(Builder, "mot17det", config_name, data_dir, manual_dir,
                                         lambda b, d: find_train_dir(d))
