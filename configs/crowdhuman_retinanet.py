"""RetinaNet ResNet-50-FPN with focal loss on CrowdHuman (full-body boxes).

Targets the full-body RetinaNet row of the CrowdHuman paper's baselines (AP / MR^-2 / JI on
CrowdHuman val, scored by `python -m evaluation.crowdhuman --gt annotation_val.odgt --dets
dump.odgt`), with the focal loss paper's settings (section 4.1: SGD lr 0.01, momentum 0.9, weight
decay 1e-4, batch 16, 90k iterations with lr / 10 at 60k and 80k). Images are resized to 800 x
1333 (CrowdHuman's customary test scale); CrowdHuman's crowds need more padded boxes per image.

On a TPU VM (annotation_*.odgt and Images/ unpacked in $MANUAL):
  python main.py --config configs/crowdhuman_retinanet.py --workdir gs://BUCKET/ch_retinanet \
      --config.input.data_dir=gs://BUCKET/tfds --config.input.manual_dir=$MANUAL
"""

from configs import common


def get_config(arg=None):
    c = common.get_base_config()
    c.input.dataset = "crowdhuman"
    c.input.train_split = "train"
    c.input.eval_split = "val"
    c.input.image_size = (800, 1333)
    c.input.batch_size = 16
    c.input.max_boxes = 512  # CrowdHuman has up to ~400 people in an image
    c.input.max_ignore = 256
    c.inference.max_detections = 300
    c.eval.every_steps = 10_000
    c.checkpoint.every_steps = 5_000
    c = common.apply_variant(c, arg)
    c.lock()
    return c
