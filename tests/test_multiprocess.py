"""Two processes on this machine (`jax.distributed.initialize` on 127.0.0.1, one CPU device each)
train the tiny config and log the same losses as one process with the same global batch."""

import json
import os
import socket
import subprocess
import sys

import pytest

import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(workdir):
    with open(os.path.join(workdir, "train_metrics.jsonl")) as f:
        return {r["step"]: r["loss"] for r in map(json.loads, f)}


def test_two_processes_match_one(tiny_config, tiny_data_dir, tmp_path):
    single = str(tmp_path / "single")
    with tiny_config.unlocked():
        tiny_config.mesh.num_devices = 1
    train.train_and_evaluate(tiny_config, single)

    multi = str(tmp_path / "multi")
    port = _free_port()
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=1",
               JAX_PLATFORMS="cpu", TFDS_DATA_DIR=tiny_data_dir)
    procs = [
        subprocess.Popen(
            [sys.executable, "main.py", "--config", "configs/quickstart.py:tiny",
             "--workdir", multi, f"--coordinator_address=127.0.0.1:{port}",
             "--num_processes=2", f"--process_id={i}"],
            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    for p, out in zip(procs, outs):
        assert p.returncode == 0, out[-3000:]
    assert "Reasonable" in outs[0]  # process 0 prints the miss-rate table
    one, two = _losses(single), _losses(multi)
    assert sorted(two) == [1, 2, 3, 4]
    for step in two:
        assert two[step] == pytest.approx(one[step], rel=1e-4), step
    assert sorted(os.listdir(os.path.join(multi, "checkpoints"))) == ["2", "4"]
    with open(os.path.join(multi, "eval", "4", "metrics.json")) as f:
        assert json.load(f)["num_images"] == 8
