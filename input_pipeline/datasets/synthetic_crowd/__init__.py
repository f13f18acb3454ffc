"""The embedded `synthetic_crowd` dataset: builder registration and `build()`.

Importing this package registers the TFDS builder, so `tfds.builder('synthetic_crowd/tiny',
data_dir=...)` works afterwards. `build()` is the one call to get a ready dataset:

    from input_pipeline.datasets import synthetic_crowd
    builder = synthetic_crowd.build("quickstart", "/tmp/tfds")
    ds = builder.as_dataset(split="val")
"""

from __future__ import annotations

import os

import tensorflow_datasets as tfds

from input_pipeline.datasets.synthetic_crowd.synthetic_crowd_dataset_builder import (
    CLASS_NAMES,
    Builder,
    SyntheticCrowdConfig,
)

CONFIG_NAMES = tuple(c.name for c in Builder.BUILDER_CONFIGS)

__all__ = ["CLASS_NAMES", "CONFIG_NAMES", "Builder", "SyntheticCrowdConfig", "build"]


def build(config_name: str, data_dir: str, progress: bool = True) -> tfds.core.DatasetBuilder:
    """Returns the `synthetic_crowd/<config_name>` builder, generating the data if missing.

    Generation is local only (no GCS lookup, nothing downloaded) and logs a progress line with
    rate and ETA to stderr about ten times per split when `progress` is set.

    Args:
      config_name: one of CONFIG_NAMES ('tiny', 'quickstart', 'full').
      data_dir: TFDS data directory (explicit: never the default ~/tensorflow_datasets).

    Raises:
      ValueError: for an unknown config name.
    """
    if config_name not in CONFIG_NAMES:
        raise ValueError(
            f"Unknown synthetic_crowd config {config_name!r}; choose one of {CONFIG_NAMES}."
        )
    builder = Builder(config=config_name, data_dir=os.fspath(data_dir))
    if not builder.is_prepared():
        if progress:
            builder.progress_name = f"synthetic_crowd/{config_name}"
        builder.download_and_prepare(
            download_dir=os.path.join(os.fspath(data_dir), "downloads"),
            download_config=tfds.download.DownloadConfig(try_download_gcs=False),
        )
    return builder
