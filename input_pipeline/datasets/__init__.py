"""Dataset registry: `name/config` -> a prepared TFDS builder, never touching the network."""

from __future__ import annotations

import os

# Name -> what to do when it is not prepared yet.
DATASETS = {
    "synthetic_crowd": "generated locally on first use (embedded synthetic crowd dataset)",
}


def get_builder(dataset: str, data_dir: str):
    """Returns the prepared builder for `dataset` ('name' or 'name/config') under `data_dir`."""
    name, _, config_name = dataset.partition("/")
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; valid names: {sorted(DATASETS)}")
    data_dir = os.path.expanduser(data_dir)
    if name == "synthetic_crowd":
        from input_pipeline.datasets import synthetic_crowd

        return synthetic_crowd.build(config_name or "quickstart", data_dir)
    raise AssertionError("unreachable")
