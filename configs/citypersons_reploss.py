"""RetinaNet + Repulsion Loss (RepGT + RepBox) on CityPersons, the RepLoss paper's settings.

Targets the RepLoss paper's Table 3 rows "+RepGT +RepBox, x1" (Reasonable 13.2, Heavy 56.9,
Partial 16.8, Bare 7.6 on CityPersons val with its two-stage detector) and Table 1/2 (sigma_RepGT
1.0, sigma_RepBox 0.0, alpha = beta = 0.5). The paper's schedule (section 5.1): SGD, base lr
0.016, momentum 0.9, weight decay 1e-4, 4 images per batch, 80k iterations, lr / 10 after 60k.
Here the losses are wired into RetinaNet (this codebase's detector), not the paper's Faster R-CNN.

On a TPU VM (the CityPersons files unpacked in $MANUAL):
  python main.py --config configs/citypersons_reploss.py --workdir gs://BUCKET/cp_reploss \
      --config.input.data_dir=gs://BUCKET/tfds --config.input.manual_dir=$MANUAL
`:x1.3` trains and tests at 1.3x (1331 x 2662), the paper's scale row x1.3.
"""

from configs import citypersons_retinanet, common


def get_config(arg=None):
    if arg not in (None, "", "tiny", "x1.3"):
        raise ValueError(f"Unknown config variant {arg!r}; valid: 'tiny', 'x1.3'")
    scale_13 = arg == "x1.3"
    c = citypersons_retinanet.get_config(None if scale_13 else arg)
    with c.unlocked():
        common.with_loss_variant(c, "rep_gt+rep_box")
        if arg != "tiny":
            c.input.batch_size = 4  # 1 image per GPU on 4 GPUs
            c.optimizer.learning_rate = 0.016
            c.schedule.total_steps = 80_000
            c.schedule.boundaries = (60_000,)
            if scale_13:
                c.input.image_size = (1331, 2662)
    return c
