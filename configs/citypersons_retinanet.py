"""RetinaNet ResNet-50-FPN with focal loss on CityPersons (the foundation detector on real data).

Targets the RepLoss paper's Table 3 baseline row (Reasonable MR^-2 on CityPersons val; the paper's
two-stage baseline reaches 14.6 at scale x1) with the focal loss paper's RetinaNet settings
(section 4.1: SGD, lr 0.01, momentum 0.9, weight decay 1e-4, batch 16, 90k iterations, lr / 10 at
60k and 80k) at CityPersons' native 1024 x 2048 resolution, horizontal flip only.

On a TPU VM (v4-32 or larger; the files of the CityPersons site unpacked in $MANUAL):
  python main.py --config configs/citypersons_retinanet.py --workdir gs://BUCKET/cp_retinanet \
      --config.input.data_dir=gs://BUCKET/tfds --config.input.manual_dir=$MANUAL
Without ImageNet weights (none can be fetched here) BatchNorm is trained, synchronised over the
global batch; with converted weights set model.frozen_bn=True as the paper does.
"""

from configs import common


def get_config(arg=None):
    c = common.get_base_config()
    c.input.dataset = "citypersons/json"
    c.input.train_split = "train"
    c.input.eval_split = "val"
    c.input.image_size = (1024, 2048)  # scale x1 (RepLoss Table 3)
    c.input.batch_size = 16  # focal loss paper 4.1
    c.input.eval_batch_size = 8
    c.input.max_boxes = 128
    c.input.max_ignore = 64
    c.eval.every_steps = 10_000
    c.checkpoint.every_steps = 5_000
    c = common.apply_variant(c, arg)
    c.lock()
    return c
