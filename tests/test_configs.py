"""Every config loads (default and :tiny), and the paper configs carry the papers' numbers."""

import importlib
import pathlib

import pytest

CONFIGS = sorted(p.stem for p in pathlib.Path(__file__).parent.parent.joinpath("configs").glob(
    "*.py") if p.stem not in ("__init__", "common"))


@pytest.mark.parametrize("name", CONFIGS)
def test_config_and_its_tiny_variant_load(name):
    m = importlib.import_module(f"configs.{name}")
    c = m.get_config()
    t = m.get_config("tiny")
    assert t.input.dataset == "synthetic_crowd/tiny" and t.schedule.total_steps <= 10
    assert c.input.dataset and c.schedule.total_steps > 0
    with pytest.raises(ValueError, match="variant"):
        m.get_config("no_such_variant")


def test_paper_configs_carry_the_papers_settings():
    from configs import caltech_reploss, citypersons_reploss, citypersons_retinanet
    from configs import crowdhuman_retinanet

    r = citypersons_retinanet.get_config()
    assert (r.optimizer.learning_rate, r.input.batch_size, r.schedule.total_steps,
            tuple(r.schedule.boundaries)) == (0.01, 16, 90_000, (60_000, 80_000))
    rep = citypersons_reploss.get_config()
    assert rep.loss.terms[-2:] == ("rep_gt", "rep_box")
    assert (rep.loss.rep_gt_weight, rep.loss.rep_box_weight, rep.loss.rep_gt_sigma,
            rep.loss.rep_box_sigma) == (0.5, 0.5, 1.0, 0.0)
    assert (rep.optimizer.learning_rate, rep.input.batch_size, rep.schedule.total_steps,
            tuple(rep.schedule.boundaries)) == (0.016, 4, 80_000, (60_000,))
    assert citypersons_reploss.get_config("x1.3").input.image_size == (1331, 2662)
    cal = caltech_reploss.get_config()
    assert (cal.input.dataset, cal.schedule.total_steps, tuple(cal.schedule.boundaries)) == (
        "caltech/train10x", 160_000, (120_000,))
    assert crowdhuman_retinanet.get_config().input.dataset == "crowdhuman"
