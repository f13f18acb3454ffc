"""Smoke test of tools/bench_input.py: fixture trees prepare with the real builders and the
training pipeline yields batches at the paper input size (tiny image count, Caltech only)."""

from __future__ import annotations

import json

import pytest

from tools import bench_input


def test_help(capsys):
    with pytest.raises(SystemExit) as e:
        bench_input.main(["--help"])
    assert e.value.code == 0
    assert "--batch_size" in capsys.readouterr().out


def test_unknown_dataset():
    with pytest.raises(SystemExit):
        bench_input.main(["--datasets", "nope"])


def test_runs_and_writes_json(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench_input.main(["--datasets", "caltech", "--images", "4", "--batches",
                             "1", "--repeats", "1", "--batch_size", "2", "--out",
                             str(out)]) == 0
    report = json.loads(out.read_text())
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1]) == report
    r = report["datasets"]["caltech"]
    assert r["train_images"] == 4
    assert r["batch_shape"] == [2, 720, 960, 3]
    assert r["images_per_s"] > 0
