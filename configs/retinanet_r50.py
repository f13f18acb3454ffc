"""RetinaNet ResNet-50-FPN with the focal loss paper's settings (section 4.1) on synthetic_crowd/full.

  python main.py --config configs/retinanet_r50.py --workdir runs/r50
Paper defaults: P3-P7, 256-channel FPN and heads with four convs, 3 scales x the pedestrian aspect
ratio 0.41 (width/height), focal loss alpha=0.25 gamma=2, SGD lr 0.01 momentum 0.9, weight decay
1e-4, batch 16, 90k iterations with lr / 10 at 60k and 80k. Meant for accelerators (8 GPUs or a TPU
slice); trained from scratch here, so BatchNorm is trained (synchronised over the global batch).
This is also the model `tools/benchmark.py` times at 512x1024, batch 2.
"""

from configs import common


def get_config(arg=None):
    c = common.get_base_config()
    c.input.dataset = "synthetic_crowd/full"
    c.input.image_size = (512, 1024)
    c = common.apply_variant(c, arg)
    c.lock()
    return c
