"""The dataset registry: every real benchmark is reachable by name and fails clearly without
its files."""

import pytest

from input_pipeline import datasets
from input_pipeline.datasets import schema

REAL = ["citypersons", "caltech", "crowdhuman", "mot17det", "wider_pedestrian", "cuhk_sysu", "prw"]


@pytest.mark.parametrize("name", REAL)
def test_missing_manual_dir_names_what_it_expected(name, tmp_path):
    manual = tmp_path / "manual"
    with pytest.raises(schema.ManualDirError) as e:
        datasets.get_builder(name, str(tmp_path / "tfds"), str(manual))
    assert str(manual) in str(e.value)


def test_default_manual_dir_is_under_data_dir(tmp_path):
    with pytest.raises(schema.ManualDirError) as e:
        datasets.get_builder("crowdhuman", str(tmp_path))
    assert str(tmp_path / "downloads" / "manual" / "crowdhuman") in str(e.value)


def test_unknown_dataset_lists_valid_names():
    with pytest.raises(ValueError, match="citypersons"):
        datasets.get_builder("kitti", "/tmp")
