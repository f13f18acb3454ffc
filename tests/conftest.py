"""Test-wide set-up: 4 simulated CPU devices, so the sharded code paths really run.

XLA reads the flag once, at backend start-up, so it is set before anything imports jax.
"""

import os
import tempfile

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# Identical tiny models are compiled by several tests (and by subprocesses): share the XLA cache.
os.environ.setdefault(
    "JAX_COMPILATION_CACHE_DIR", os.path.join(tempfile.gettempdir(), "crowdped_test_jax_cache")
)
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.5")

import pytest  # noqa: E402


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """The embedded synthetic dataset's `tiny` config, built once per test session."""
    from input_pipeline import datasets

    data_dir = str(tmp_path_factory.mktemp("tfds"))
    datasets.get_builder("synthetic_crowd/tiny", data_dir)
    return data_dir


@pytest.fixture()
def tiny_config(tiny_data_dir):
    """`configs/quickstart.py:tiny` reading the session's tiny dataset."""
    from configs import quickstart

    c = quickstart.get_config("tiny")
    with c.unlocked():
        c.input.data_dir = tiny_data_dir
    return c
