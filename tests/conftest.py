"""Test-wide set-up: 4 simulated CPU devices, so the sharded code paths really run.

XLA reads the flag once, at backend start-up, so it is set before anything imports jax.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=4")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
