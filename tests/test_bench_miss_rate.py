"""Smoke tests of tools/bench_miss_rate.py (tiny sizes, well under a second).

The comparison with the official CityPersons code runs only where a local copy of its
`evaluation/eval_script` folder is named by $CITYPERSONS_EVAL_SCRIPT (it is never vendored).
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tools import bench_miss_rate as bench


def test_ours_alone(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--images", "6", "--dets", "300", "--repeats", "1", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "timing ours alone" in text
    report = json.loads(out.read_text())
    assert report["official"] is None
    assert report["detections"] == 300
    assert list(report["miss_rate"]) == list(bench.miss_rate.SETUPS)
    assert json.loads(text.strip().splitlines()[-1]) == report


def test_help_and_bad_official_dir(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        bench.main(["--help"])
    assert e.value.code == 0
    assert "--official DIR" in capsys.readouterr().out
    with pytest.raises(SystemExit) as e:
        bench.main(["--official", str(tmp_path)])
    assert e.value.code == 2
    assert "eval_MR_multisetup.py" in capsys.readouterr().err


def test_numpy_compat_is_temporary():
    had = hasattr(np, "float")
    with bench._numpy_compat():
        assert np.float is float or had
    assert hasattr(np, "float") == had


@pytest.mark.skipif(
    not os.environ.get("CITYPERSONS_EVAL_SCRIPT"),
    reason="set CITYPERSONS_EVAL_SCRIPT to a local official evaluation/eval_script folder",
)
def test_against_official(tmp_path):
    out = tmp_path / "bench.json"
    argv = ["--images", "10", "--dets", "600", "--repeats", "1", "--out", str(out)]
    assert bench.main([*argv, "--official", os.environ["CITYPERSONS_EVAL_SCRIPT"]]) == 0
    report = json.loads(out.read_text())
    assert report["official"]["max_abs_difference"] <= 1e-9
    assert report["official"]["miss_rate"].keys() == report["miss_rate"].keys()
