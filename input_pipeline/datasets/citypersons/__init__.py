"""CityPersons as a manual-download TFDS builder (`citypersons/json`, `citypersons/mat`).

    from input_pipeline.datasets import citypersons
    builder = citypersons.build(None, "/tmp/tfds", "/data/cityscapes")  # see MANUAL_DOWNLOAD_...
    ds = builder.as_dataset(split="val")
    citypersons.export_val_gt(builder, "/tmp/val_gt.json")  # for evaluation.miss_rate

Configs: `json` (default; gtBboxCityPersons/*.json from the Cityscapes site) and `mat`
(anno_train.mat / anno_val.mat of the original release); both read the leftImg8bit PNGs.
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from input_pipeline.datasets import citypersons_format, schema
from input_pipeline.datasets.citypersons.citypersons_dataset_builder import (
    LABEL_IDS,
    MANUAL_DOWNLOAD_INSTRUCTIONS,
    SPLITS,
    Builder,
    CityPersonsConfig,
    check_manual_dir,
    read_json_annotation,
    read_mat_annotations,
)

CONFIG_NAMES = tuple(c.name for c in Builder.BUILDER_CONFIGS)

__all__ = [
    "CONFIG_NAMES",
    "LABEL_IDS",
    "MANUAL_DOWNLOAD_INSTRUCTIONS",
    "SPLITS",
    "Builder",
    "CityPersonsConfig",
    "build",
    "export_val_gt",
    "read_json_annotation",
    "read_mat_annotations",
]


def build(config_name: str | None, data_dir: str, manual_dir: str) -> tfds.core.DatasetBuilder:
    """Returns the prepared `citypersons/<config_name>` builder, preparing it from `manual_dir`.

    Nothing is downloaded. Before any work, a missing manual dir, annotation folder / .mat file
    or image raises `schema.ManualDirError` naming it and the folder searched; a malformed
    annotation raises ValueError naming the file and the key (or .mat entry).

    Args:
      config_name: None (= 'json'), 'json' or 'mat'.
      data_dir: TFDS data directory.
      manual_dir: folder with the official files (see MANUAL_DOWNLOAD_INSTRUCTIONS).
    """
    return schema.prepare_manual_builder(Builder, "citypersons", config_name, data_dir, manual_dir,
                                         lambda b, d: check_manual_dir(d, b.builder_config.annotation_format))


def export_val_gt(builder: tfds.core.DatasetBuilder, path: str | os.PathLike,
                  split: str = "val") -> dict:
    """Writes the split's ground truth as the CityPersons evaluation JSON (`val_gt.json` form).

    The file is what `evaluation.miss_rate` reads: images (id = image/id, file_name =
    image/filename, height/width of the stored image), category 1 only, one annotation per
    object with `bbox`/`vis_bbox` [x, y, w, h] pixels, `height`, `vis_ratio` and
    `ignore = iscrowd` (1 for everything but pedestrians). Images are listed in image/id order.
    Boxes crossing the image border appear clipped to it (the TFDS schema stores clipped boxes;
    `height` and `vis_ratio`, which select the evaluation setups, are the unclipped values).

    Returns the written dict.
    """
    ds = builder.as_dataset(split=split, shuffle_files=False,
                            decoders={"image": tfds.decode.SkipDecoding()})
    examples = sorted(tfds.as_numpy(ds), key=lambda ex: int(ex["image/id"]))
    return citypersons_format.export_citypersons_gt(examples, path)
