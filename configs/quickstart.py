"""Quick start: a small RetinaNet trained from scratch on the embedded synthetic crowd dataset.

Command (a fresh 2-core CPU machine, builds the dataset first):
  python main.py --config configs/quickstart.py --workdir runs/quickstart
Variant `configs/quickstart.py:tiny` runs a handful of steps on tiny images (what the tests use).
Hardware, wall-clock and the miss rate it reaches are in the README ("Quick start" table).
"""

from configs import common


def get_config(arg=None):
    c = common.get_base_config()
    c.input.dataset = "synthetic_crowd/quickstart"
    c.input.image_size = (256, 512)  # the 512x1024 synthetic images at half resolution
    c.input.batch_size = 8
    c.input.eval_batch_size = 8
    c.input.max_boxes = 96
    c.input.max_ignore = 32
    c.model.backbone = "small"
    c.model.fpn_channels = 64
    c.model.head_channels = 64
    c.model.head_convs = 2
    c.model.num_scales = 2
    c.model.anchor_size = 3.0  # smaller anchors: half-resolution pedestrians from 8 px tall
    c.model.max_level = 6
    c.optimizer.learning_rate = 0.02
    c.schedule.kind = "cosine"
    c.schedule.total_steps = 1500
    c.schedule.warmup_steps = 100
    c.eval.every_steps = 1500
    c.checkpoint.every_steps = 500
    c.log_every_steps = 50
    c = common.apply_variant(c, arg)
    c.lock()
    return c
