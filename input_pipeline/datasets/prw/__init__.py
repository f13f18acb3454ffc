"""PRW (person search) as a manual-download TFDS builder, plus its search protocol.

    from input_pipeline.datasets import prw
    builder = prw.build(None, "/tmp/tfds", "/data/PRW-v16.04.20")
    ds = builder.as_dataset(split="train")
    queries = prw.load_prw_queries("/data/PRW-v16.04.20")   # query_info.txt
    frames = prw.load_prw_gallery("/data/PRW-v16.04.20")    # test frames, reference boxes
    # -> evaluation.person_search.eval_search_prw(frames, detections,
    #        [PrwQuery(q.image, q.pid, feature, q.cam_id) for q in queries])

See `prw_dataset_builder` for the file formats, the mapping to the shared schema, and how the
stored boxes differ from the evaluation's.
"""

from __future__ import annotations

import tensorflow_datasets as tfds

from input_pipeline.datasets import schema
from input_pipeline.datasets.prw.prw_dataset_builder import (
    BOX_KEYS,
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    Annotations,
    Builder,
    PrwQueryRecord,
    check_manual_dir,
    find_root,
    load_prw_gallery,
    load_prw_queries,
    read_annotation,
    read_annotations,
    read_ids,
)

CONFIG_NAMES = ("default",)

__all__ = [
    "BOX_KEYS",
    "CONFIG_NAMES",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "Annotations",
    "Builder",
    "PrwQueryRecord",
    "build",
    "check_manual_dir",
    "find_root",
    "load_prw_gallery",
    "load_prw_queries",
    "read_annotation",
    "read_annotations",
    "read_ids",
]


def build(config_name: str | None, data_dir: str, manual_dir: str) -> tfds.core.DatasetBuilder:
    """Returns the prepared `prw` builder, preparing it from `manual_dir` if needed.

    Nothing is downloaded. Before any example is written, a missing manual dir, frame_train.mat,
    frame_test.mat, query_info.txt, frame or annotation file raises `schema.ManualDirError`
    naming it and the folder searched; a malformed annotation raises ValueError naming the file
    and variable (or line).

    Args:
      config_name: None or 'default' (the builder has a single configuration).
      data_dir: TFDS data directory.
      manual_dir: the extracted PRW-v16.04.20 (see MANUAL_DOWNLOAD_INSTRUCTIONS).
    """
    return schema.prepare_manual_builder(Builder, "prw", config_name, data_dir, manual_dir,
                                         lambda b, d: check_manual_dir(d))
