"""RetinaNet + Repulsion Loss on Caltech-USA (10x training set, refined annotations).

Targets the RepLoss paper's Table 4 (Caltech test, new annotations, Reasonable MR^-2 at IoU 0.5
and 0.75: +RepGT & RepBox 5.0 / 26.3 without CityPersons pre-training), evaluated with
`evaluation.caltech` (`python -m evaluation.caltech --gt ... --dets ...` on the exported test
ground truth, `input_pipeline.datasets.caltech.export_caltech_gt`). Paper schedule (section 5.1):
SGD, base lr 0.016, momentum 0.9, weight decay 1e-4, 4 images per batch, 160k iterations, lr / 10
after 120k; no multi-scale. Images are 480 x 640 frames, upscaled 1.5x here as is common for
Caltech (set input.image_size=(480, 640) for native size).

On a TPU VM (frames and the refined annotations unpacked in $MANUAL):
  python main.py --config configs/caltech_reploss.py --workdir gs://BUCKET/caltech_reploss \
      --config.input.data_dir=gs://BUCKET/tfds --config.input.manual_dir=$MANUAL
"""

from configs import common


def get_config(arg=None):
    c = common.get_base_config()
    c.input.dataset = "caltech/train10x"
    c.input.train_split = "train"
    c.input.eval_split = "test"
    c.input.image_size = (720, 960)
    c.input.batch_size = 4
    c.input.max_boxes = 64
    c.input.max_ignore = 64
    common.with_loss_variant(c, "rep_gt+rep_box")
    c.optimizer.learning_rate = 0.016
    c.schedule.total_steps = 160_000
    c.schedule.boundaries = (120_000,)
    c.eval.every_steps = 20_000
    c.checkpoint.every_steps = 5_000
    c = common.apply_variant(c, arg)
    c.lock()
    return c
