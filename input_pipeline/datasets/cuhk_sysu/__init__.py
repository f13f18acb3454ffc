"""CUHK-SYSU (person search) as a manual-download TFDS builder, plus its search protocol.

    from input_pipeline.datasets import cuhk_sysu
    builder = cuhk_sysu.build(None, "/tmp/tfds", "/data/cuhk_sysu")
    ds = builder.as_dataset(split="test")            # the 6,978 pool images
    queries = cuhk_sysu.load_cuhk_protocol("/data/cuhk_sysu", 100)   # TestG100.mat
    # -> evaluation.person_search.CuhkQuery(q.image, feature, q.gallery) for each q

See `cuhk_sysu_dataset_builder` for the file formats and the mapping to the shared schema.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from input_pipeline.datasets import schema
from input_pipeline.datasets.cuhk_sysu.cuhk_sysu_dataset_builder import (
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Annotations,
    Builder,
    CuhkProtocolQuery,
    check_manual_dir,
    find_root,
    load_cuhk_protocol,
    pool_names,
    read_annotations,
)

CONFIG_NAMES = ("default",)

__all__ = [
    "CONFIG_NAMES",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "Annotations",
    "Builder",
    "CuhkProtocolQuery",
    "build",
    "check_manual_dir",
    "find_root",
    "load_cuhk_protocol",
    "pool_names",
    "read_annotations",
]


def build(config_name: str | None, data_dir: str, manual_dir: str) -> tfds.core.DatasetBuilder:
    """Returns the prepared `cuhk_sysu` builder, preparing it from `manual_dir` if needed.

    Nothing is downloaded. Before any example is written, a missing manual dir, annotation
    file (Images.mat, pool.mat, Train.mat, TestG50.mat), image folder or image raises
    `schema.ManualDirError` naming it and the folder searched; a malformed .mat file raises
    ValueError naming the file and key.

    Args:
      config_name: None or 'default' (the builder has a single configuration).
      data_dir: TFDS data directory.
      manual_dir: the extracted dataset (see MANUAL_DOWNLOAD_INSTRUCTIONS).
    """
    return schema.prepare_manual_builder(Builder, "cuhk_sysu", config_name, data_dir, manual_dir,
                                         lambda b, d: check_manual_dir(d))
