"""RepGT (Repulsion Loss eq. 4) added to RetinaNet's focal + smooth-L1, weight alpha = 0.5, sigma = 1 (its Tables 1-2).

Everything else is configs/quickstart.py (model, data, schedule), so the run compares with the
quick start's baseline one to one:
  python main.py --config configs/synthetic_repgt.py --workdir runs/synthetic_repgt
The controlled comparison over seeds (and the NMS sweep) is tools/ablation.py; its table and
command are in the README ("Crowd-loss ablation").
"""

from configs import common, quickstart


def get_config(arg=None):
    return common.with_loss_variant(quickstart.get_config(arg), "rep_gt")
