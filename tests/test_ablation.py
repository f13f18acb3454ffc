"""tools/ablation.py end to end on the tiny config: two variants, a resumable summary, the plot."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from configs import common, quickstart
from tools import ablation

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_variant_config_sets_terms_seed_and_schedule():
    base = quickstart.get_config()
    c = ablation.variant_config(base, "rep_gt+rep_box", seed=3, steps=90)
    assert c.loss.terms == common.LOSS_VARIANTS["rep_gt+rep_box"]
    assert c.seed == 3 and c.schedule.total_steps == 90 and c.eval.every_steps == 90
    assert c.schedule.warmup_steps <= 90 // 8
    assert base.loss.terms == common.LOSS_VARIANTS["harmonic"] and base.seed == 0  # untouched
    with pytest.raises(ValueError, match="valid"):
        ablation.variant_config(base, "repulsion", seed=0)


def test_summary_table_mean_and_range():
    runs = {"baseline": {"0": {"Reasonable": 0.4, "Heavy": 0.8, "Reasonable_crowd": 0.5,
                               "aic": 0.2, "mr_vs_nms": {"0.5": 0.4}},
                         "1": {"Reasonable": 0.5, "Heavy": 0.7, "Reasonable_crowd": 0.6,
                               "aic": 0.3, "mr_vs_nms": {"0.5": 0.5}}}}
    table = ablation.summarise(runs, [0.5])
    assert "| baseline | 2 | 45.0 (40.0-50.0) | 75.0 (70.0-80.0) | 55.0 (50.0-60.0) |" in table
    assert "0.250 (0.200-0.300)" in table


def test_ablation_cli_trains_analyses_and_reuses(tmp_path, tiny_data_dir):
    wd = tmp_path / "abl"
    cmd = [sys.executable, "-m", "tools.ablation", "--config", "configs/quickstart.py:tiny",
           f"--config.input.data_dir={tiny_data_dir}", "--variants", "baseline,rep_gt+rep_box",
           "--seeds", "0", "--nms", "0.4,0.6", "--workdir", str(wd)]
    first = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert first.returncode == 0, first.stderr[-3000:]
    summary = json.loads((wd / "ablation.json").read_text())
    for variant in ("baseline", "rep_gt+rep_box"):
        r = summary["runs"][variant]["0"]
        assert r["step"] == 4
        assert set(r["mr_vs_nms"]) == {"0.4", "0.6"}
        assert 0.0 <= r["aic"] <= 1.0 and r["val_positives"] > 0
        for k in ("Reasonable", "Heavy", "Reasonable_crowd"):
            assert -1.0 <= r[k] <= 1.0
    assert summary["runs"]["rep_gt+rep_box"]["0"]["terms"][-2:] == ["rep_gt", "rep_box"]
    assert (wd / "ablation_nms.png").stat().st_size > 1000
    assert "| rep_gt+rep_box | 1 |" in (wd / "ablation.md").read_text()
    # A second invocation reuses the finished runs instead of training again.
    again = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=600, check=False)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("done before, reused") == 2
    # ... but not with a different base config, which would mix two experiments in one table.
    changed = cmd + ["--config.input.train_scale_range=(0.7,1.0)"]
    mixed = subprocess.run(changed, cwd=REPO, capture_output=True, text=True, timeout=600,
                           check=False)
    assert mixed.returncode != 0 and "input.train_scale_range" in mixed.stderr
