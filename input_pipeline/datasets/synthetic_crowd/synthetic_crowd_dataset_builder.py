"""TFDS builder `synthetic_crowd`: crowded street scenes with CityPersons-style annotations.

Generated locally (nothing is downloaded) by `render.py`. Every image is a pure function of
(config, split seed, image index), rendered in a pool of worker processes and written in order,
so the same config always gives byte-identical examples.

Configs (image size H x W; train / val / test images):
  tiny        128 x 256;   16 / 8 / 8        unit tests, builds in seconds
  quickstart  512 x 1024;  1000 / 200 / 200  notebooks and smoke runs, ~2 min on 2 free cores
  full        512 x 1024;  10000 / 1000 / 1000

Features (boxes in TFDS format: normalised [ymin, xmin, ymax, xmax] of the stored image):
  image           uint8 [H, W, 3], JPEG
  image/id        int64, unique and 1-based across the splits of a config
  image/filename  e.g. 'val/000012.jpg'
  objects/bbox          full box (head top to feet, width 0.41 * height, CityPersons-aligned)
  objects/bbox_visible  tight box of the pixels of the instance still visible in the image
  objects/label         CityPersons class: 0 ignore region (fake human), 1 pedestrian, 5 group
  objects/height        full-box height in pixels
  objects/vis_ratio     visible-box area / full-box area
  objects/ignore        label != 1, or a pedestrian shorter than 20 px (at 512 px image height)
  objects/instance_id   unique within the dataset (image_id * 1000 + k)
  objects/person_id     identity from a fixed pool of 400; -1 for ignore regions and groups
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import sys
import time
from collections.abc import Iterator

import numpy as np
import tensorflow_datasets as tfds

from input_pipeline.datasets.synthetic_crowd import render

CLASS_NAMES = ("ignore_region", "pedestrian", "rider", "sitting", "other", "group")
_SPLITS = ("train", "val", "test")


@dataclasses.dataclass(eq=False)
class SyntheticCrowdConfig(tfds.core.BuilderConfig):
    """Image size, split sizes and seeds of one `synthetic_crowd` variant.

    Attributes:
      image_height, image_width: stored image size.
      split_sizes: number of images of (train, val, test).
      seed: base seed; split i uses seed * 10 + i, so splits never share scenes.
      num_workers: rendering processes (1 renders in the calling process).
      jpeg_quality: JPEG quality of the stored images.
    """

    image_height: int = 512
    image_width: int = 1024
    split_sizes: tuple[int, int, int] = (1000, 200, 200)
    seed: int = 0
    num_workers: int = 2
    jpeg_quality: int = 90

    def split_seed(self, split: str) -> int:
        return self.seed * 10 + _SPLITS.index(split)

    def first_image_id(self, split: str) -> int:
        """Image ids are 1-based and consecutive over train, val, test."""
        return 1 + sum(self.split_sizes[: _SPLITS.index(split)])

    def render_config(self) -> render.RenderConfig:
        return render.RenderConfig.for_image_size(self.image_height, self.image_width)


def iter_examples(
    render_cfg: render.RenderConfig,
    split: str,
    split_seed: int,
    num_images: int,
    first_image_id: int,
    num_workers: int = 1,
    jpeg_quality: int = 90,
    progress_name: str | None = None,
) -> Iterator[dict]:
    """Renders the images of one split, in index order, as builder feature dicts.

    Workers are spawned (not forked): the parent may hold TensorFlow threads, and a forked copy
    of those can deadlock. Output is identical for any `num_workers` since every image has its
    own seed and `imap` keeps the order.

    Args:
      render_cfg: scene configuration.
      split: split name, used in file names.
      split_seed: seed of the split.
      num_images: number of images.
      first_image_id: image id of index 0.
      num_workers: processes; <= 1 renders in this process.
      jpeg_quality: JPEG quality.
      progress_name: if set, log a progress line (rate, ETA) to stderr about 10 times.
    """
    tasks = [
        (render_cfg, split, split_seed, i, first_image_id + i, jpeg_quality)
        for i in range(num_images)
    ]
    every = max(10, num_images // 10)
    start = time.perf_counter()

    def report(done: int) -> None:
        if progress_name and (done % every == 0 or done == num_images):
            elapsed = time.perf_counter() - start
            rate = done / max(elapsed, 1e-9)
            eta = (num_images - done) / max(rate, 1e-9)
            print(
                f"[{progress_name}] {split}: {done}/{num_images} images, {rate:.1f} img/s, "
                f"elapsed {elapsed:.0f} s, ETA {eta:.0f} s",
                file=sys.stderr,
                flush=True,
            )

    if num_workers <= 1 or num_images < 2 * num_workers:
        for done, task in enumerate(tasks, 1):
            yield render.render_example(task)
            report(done)
        return
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(num_workers) as pool:
        for done, example in enumerate(pool.imap(render.render_example, tasks, chunksize=4), 1):
            yield example
            report(done)


class Builder(tfds.core.GeneratorBasedBuilder):
    """Synthetic crowded pedestrians with CityPersons-style full/visible boxes and identities."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {  # noqa: RUF012 (TFDS reads these class attributes)
        "1.0.0": "Initial release: PIL-rendered walking people from 400 identities in groups, "
        "street backgrounds with hard negatives, occluding cars/railings/bins, posters "
        "and reflections as ignore regions, dense groups, exact visible boxes.",
    }
    BUILDER_CONFIGS = [  # noqa: RUF012
        SyntheticCrowdConfig(
            name="tiny",
            description="128x256 images, 16/8/8 images; for unit tests.",
            image_height=128,
            image_width=256,
            split_sizes=(16, 8, 8),
            seed=1,
            num_workers=1,
        ),
        SyntheticCrowdConfig(
            name="quickstart",
            description="512x1024 images, 1000/200/200; built in 44 s on 2 idle cores (README).",
            image_height=512,
            image_width=1024,
            split_sizes=(1000, 200, 200),
            seed=2,
        ),
        SyntheticCrowdConfig(
            name="full",
            description="512x1024 images, 10000/1000/1000.",
            image_height=512,
            image_width=1024,
            split_sizes=(10000, 1000, 1000),
            seed=3,
        ),
    ]
    DEFAULT_CONFIG_NAME = "quickstart"

    def _info(self) -> tfds.core.DatasetInfo:
        cfg = self.builder_config
        return self.dataset_info_from_configs(
            description=__doc__,
            features=tfds.features.FeaturesDict(
                {
                    # numpy dtypes (same specs as tf.int64 etc.) keep TensorFlow out of the worker
                    # processes, which import this module.
                    "image": tfds.features.Image(
                        shape=(cfg.image_height, cfg.image_width, 3), encoding_format="jpeg"
                    ),
                    "image/id": np.int64,
                    "image/filename": tfds.features.Text(),
                    "objects": tfds.features.Sequence(
                        {
                            "bbox": tfds.features.BBoxFeature(),
                            "bbox_visible": tfds.features.BBoxFeature(),
                            "label": tfds.features.ClassLabel(names=list(CLASS_NAMES)),
                            "height": np.float32,
                            "vis_ratio": np.float32,
                            "ignore": np.bool_,
                            "instance_id": np.int64,
                            "person_id": np.int64,
                        }
                    ),
                }
            ),
            supervised_keys=None,
            homepage="https://www.cityscapes-dataset.com/ (format of CityPersons; data is synthetic)",
        )

    def _split_generators(self, dl_manager):
        """One generator per split; `dl_manager` is unused: nothing is downloaded."""
        del dl_manager
        return {split: self._generate_examples(split) for split in _SPLITS}

    def _generate_examples(self, split: str):
        cfg = self.builder_config
        n = cfg.split_sizes[_SPLITS.index(split)]
        examples = iter_examples(
            cfg.render_config(),
            split,
            cfg.split_seed(split),
            n,
            cfg.first_image_id(split),
            num_workers=cfg.num_workers,
            jpeg_quality=cfg.jpeg_quality,
            progress_name=getattr(self, "progress_name", None),
        )
        for example in examples:
            yield example["image/filename"], example
