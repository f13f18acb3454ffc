"""HarmonicDet (Harmonic Loss eqs. 11-13): harmonic CE + smooth-L1 + HIoU (alpha 1.5, gamma 0.8) + task-contrastive (margin 0.2) on positives, focal on negatives.

Everything else is configs/quickstart.py (model, data, schedule); since the quick start adopted
this objective, the two configs are the same (this file stays for the ablation's naming):
  python main.py --config configs/synthetic_harmonic.py --workdir runs/synthetic_harmonic
The controlled comparison over seeds (and the NMS sweep) is tools/ablation.py; its table and
command are in the README ("Crowd-loss ablation").
"""

from configs import common, quickstart


def get_config(arg=None):
    return common.with_loss_variant(quickstart.get_config(arg), "harmonic")
