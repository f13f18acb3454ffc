"""The full Repulsion Loss (eq. 1): focal + smooth-L1 (attraction) + 0.5 RepGT + 0.5 RepBox, the paper's best setting (Table 2).

Everything else is configs/quickstart.py (model, data, schedule), so the run compares with the
quick start's baseline one to one:
  python main.py --config configs/synthetic_reploss.py --workdir runs/synthetic_reploss
The controlled comparison over seeds (and the NMS sweep) is tools/ablation.py; its table and
command are in the README ("Crowd-loss ablation").
"""

from configs import common, quickstart


def get_config(arg=None):
    return common.with_loss_variant(quickstart.get_config(arg), "rep_gt+rep_box")
