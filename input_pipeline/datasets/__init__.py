"""Dataset registry: `name/config` -> a prepared TFDS builder, never touching the network.

`synthetic_crowd` is generated locally on first use. Every real benchmark is a manual-download
builder in `input_pipeline/datasets/<name>/` whose package provides
`build(config_name, data_dir, manual_dir) -> prepared builder`; its files are read from
`manual_dir` (`--config.input.manual_dir`, default `<data_dir>/downloads/manual/<name>`), laid
out exactly as the official site ships them (see each builder's MANUAL_DOWNLOAD_INSTRUCTIONS).
"""

from __future__ import annotations

import importlib
import os

# Name -> (module providing `build`, what happens when it is not prepared yet).
DATASETS = {
    "synthetic_crowd": ("input_pipeline.datasets.synthetic_crowd",
                        "generated locally on first use (embedded synthetic crowd dataset)"),
    "citypersons": ("input_pipeline.datasets.citypersons",
                    "manual download: Cityscapes leftImg8bit + gtBboxCityPersons (or anno_*.mat)"),
    "caltech": ("input_pipeline.datasets.caltech",
                "manual download: Caltech-USA frames + refined annotations (Zhang et al. 2016)"),
    "crowdhuman": ("input_pipeline.datasets.crowdhuman",
                   "manual download: CrowdHuman annotation_{train,val}.odgt + Images/"),
    "mot17det": ("input_pipeline.datasets.mot17det",
                 "manual download: MOT17Det train sequences (val = MOT17-13 by default)"),
    "wider_pedestrian": ("input_pipeline.datasets.wider_pedestrian",
                         "manual download: WIDER Pedestrian annotation text + images"),
    "cuhk_sysu": ("input_pipeline.datasets.cuhk_sysu",
                  "manual download: CUHK-SYSU (Image/SSM, annotation/*.mat)"),
    "prw": ("input_pipeline.datasets.prw",
            "manual download: PRW-v16.04.20 (frames, annotations, frame_*.mat, query_info.txt)"),
}


def register(name: str, module: str, note: str) -> None:
    """Adds a builder package to the registry (each real dataset's package is listed here)."""
    DATASETS[name] = (module, note)


def default_manual_dir(name: str, data_dir: str) -> str:
    return os.path.join(os.path.expanduser(data_dir), "downloads", "manual", name)


def get_builder(dataset: str, data_dir: str, manual_dir: str | None = None):
    """Returns the prepared builder for `dataset` ('name' or 'name/config') under `data_dir`.

    Real datasets are prepared from `manual_dir` on first use; a missing file there raises
    `schema.ManualDirError` naming it.
    """
    name, _, config_name = dataset.partition("/")
    if name not in DATASETS:
        raise ValueError(f"Unknown dataset {dataset!r}; valid names: {sorted(DATASETS)}")
    data_dir = os.path.expanduser(data_dir)
    module = importlib.import_module(DATASETS[name][0])
    if name == "synthetic_crowd":
        return module.build(config_name or "quickstart", data_dir)
    return module.build(config_name or None, data_dir,
                        os.path.expanduser(manual_dir) if manual_dir
                        else default_manual_dir(name, data_dir))
