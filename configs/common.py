"""The base config every experiment is a small diff on, and the `:tiny` variant.

Numbers a paper prints are the defaults here, with the paper named. Sections: input, model,
targets, loss, inference, optimizer, schedule, eval, checkpoint, mesh.
"""

from __future__ import annotations

import os

import ml_collections

VARIANTS = ("", "tiny")

# The crowd-loss variants of the ablation (tools/ablation.py) and of configs/synthetic_*.py:
# name -> config.loss.terms.
LOSS_VARIANTS = {
    "baseline": ("focal", "smooth_l1"),
    "rep_gt": ("focal", "smooth_l1", "rep_gt"),
    "rep_box": ("focal", "smooth_l1", "rep_box"),
    "rep_gt+rep_box": ("focal", "smooth_l1", "rep_gt", "rep_box"),
    "harmonic": ("harmonic",),
}


def default_data_dir() -> str:
    return os.environ.get("TFDS_DATA_DIR", os.path.join(os.path.expanduser("~"), "tensorflow_datasets"))


def get_base_config() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.log_every_steps = 20

    c.input = ml_collections.ConfigDict()
    c.input.dataset = "synthetic_crowd/quickstart"  # TFDS name/config
    c.input.data_dir = default_data_dir()
    # Real benchmarks: the folder holding the files as the official site ships them ("" = TFDS's
    # default <data_dir>/downloads/manual/<name>); see input_pipeline/datasets/<name>/.
    c.input.manual_dir = ""
    # Training on several datasets at once: ((dataset, weight), ...), e.g.
    # (("mot17det", 0.4), ("wider_pedestrian", 0.3), ("cuhk_sysu", 0.15), ("prw", 0.15)); each
    # one's `train_split`, drawn by weight. Empty: train on `dataset` alone.
    c.input.mixture = ()
    c.input.train_split = "train"
    c.input.eval_split = "val"
    c.input.image_size = (512, 1024)  # network input (H, W); images are resized to it
    # Train on random crops of this (H, W) of the resized image (None: whole images). The model is
    # fully convolutional, so evaluation still runs on whole `image_size` images.
    c.input.train_crop_size = ml_collections.config_dict.placeholder(tuple)
    # Training scale jitter: each image is resized by a uniform factor in (lo, hi) before the
    # crop (padded with the mean colour when smaller). (1, 1) = off, as in the paper (4.1).
    c.input.train_scale_range = (1.0, 1.0)
    c.input.batch_size = 16  # global batch; focal loss paper 4.1: 16 images per minibatch
    c.input.eval_batch_size = 8
    c.input.max_boxes = 128  # padded pedestrians per image
    c.input.max_ignore = 64  # padded ignore regions per image
    c.input.overflow = "error"  # more boxes than max_boxes: 'error' or 'truncate' (counted)
    c.input.random_flip = True  # the paper's only augmentation (4.1)
    c.input.shuffle_buffer = 1024
    c.input.mean_rgb = (0.485 * 255, 0.456 * 255, 0.406 * 255)
    c.input.std_rgb = (0.229 * 255, 0.224 * 255, 0.225 * 255)

    c.model = ml_collections.ConfigDict()
    c.model.name = "retinanet"
    c.model.backbone = "resnet50"
    c.model.frozen_bn = False  # True with ImageNet weights; trained (global-batch) BN from scratch
    c.model.fpn_channels = 256  # focal loss paper 4: C = 256
    c.model.head_channels = 256
    c.model.head_convs = 4  # four 3x3 convs per subnet
    c.model.head_norm = ml_collections.config_dict.placeholder(str)  # None (paper) or 'group'
    c.model.num_classes = 1
    c.model.min_level = 3  # P3-P7
    c.model.max_level = 7
    c.model.anchor_size = 4.0  # areas 32^2..512^2 on P3..P7 (stride * 4)
    c.model.num_scales = 3  # {2^0, 2^(1/3), 2^(2/3)}
    c.model.aspect_ratios = (0.41,)  # width / height; CityPersons' pedestrian ratio
    c.model.prior_prob = 0.01  # pi in section 3.3
    c.model.dtype = "float32"  # 'bfloat16' for compute on TPU/GPU; params stay float32

    c.targets = ml_collections.ConfigDict()
    c.targets.positive_iou = 0.5  # section 4: IoU >= 0.5 positive
    c.targets.negative_iou = 0.4  # < 0.4 negative, between ignored
    c.targets.allow_low_quality = True
    c.targets.ignore_ioa = 0.5  # anchors this much inside an ignore region are ignored
    c.targets.box_weights = (1.0, 1.0, 1.0, 1.0)

    c.loss = ml_collections.ConfigDict()
    # Terms of the objective (detectors/retinanet.py: resolve_loss_terms lists them):
    # 'focal', 'smooth_l1', 'rep_gt', 'rep_box', 'harmonic'. The default is the paper's RetinaNet.
    c.loss.terms = ("focal", "smooth_l1")
    c.loss.focal_alpha = 0.25  # Table 1a/1b best: alpha = .25, gamma = 2
    c.loss.focal_gamma = 2.0
    c.loss.smooth_l1_beta = 0.11
    c.loss.focal_weight = 1.0
    c.loss.box_weight = 1.0
    # Repulsion Loss eq. 1: alpha = beta = 0.5 (Table 2); Smooth_ln sigmas of Table 1.
    c.loss.rep_gt_weight = 0.5
    c.loss.rep_box_weight = 0.5
    c.loss.rep_gt_sigma = 1.0
    c.loss.rep_box_sigma = 0.0
    # RepBox compares pairs of positives: at most this many (a fixed random sample) per image.
    c.loss.rep_box_max_positives = 512
    # HarmonicDet (Harmonic Loss eqs. 8-13): alpha = 1.5, gamma = 0.8 (Table 5), margin 0.2.
    c.loss.harmonic_weight = 1.0
    c.loss.hiou_alpha = 1.5
    c.loss.hiou_gamma = 0.8
    c.loss.tc_margin = 0.2
    c.loss.harmonic_factor_gradient = True  # eq. 4/7: the harmonic factors carry gradient

    c.inference = ml_collections.ConfigDict()
    c.inference.score_threshold = 0.05  # section 4.1
    c.inference.pre_nms_topk = 1000  # per level
    c.inference.nms_iou = 0.5
    c.inference.max_detections = 100

    c.optimizer = ml_collections.ConfigDict()
    c.optimizer.name = "sgd"
    c.optimizer.learning_rate = 0.01  # section 4.1
    c.optimizer.momentum = 0.9
    c.optimizer.weight_decay = 1e-4  # masked: not on biases or norm parameters
    c.optimizer.grad_clip_norm = 0.0  # 0 disables
    # Exponential moving average of the weights used for evaluation; 0 = off (the paper has none).
    c.optimizer.ema_decay = 0.0

    c.schedule = ml_collections.ConfigDict()
    c.schedule.kind = "step"  # 'step' or 'cosine'
    c.schedule.total_steps = 90_000
    c.schedule.warmup_steps = 500
    c.schedule.warmup_init_factor = 0.001
    c.schedule.boundaries = (60_000, 80_000)  # lr / 10 at each
    c.schedule.decay_factor = 0.1

    c.eval = ml_collections.ConfigDict()
    c.eval.every_steps = 10_000
    c.eval.max_images = 0  # 0 = whole split
    c.eval.num_images_to_draw = 4
    c.eval.draw_score_threshold = 0.3
    # The full analysis of issue 4 under eval/<step>/ (crowd error analysis, NMS sweep from raw
    # pre-NMS detections, score-vs-IoU histogram, AP table, curves, index.html); False: MR + AP only.
    c.eval.analysis = True
    c.eval.raw_max_detections = 1000  # pre-NMS candidates kept per image for the NMS sweep

    c.checkpoint = ml_collections.ConfigDict()
    c.checkpoint.every_steps = 5_000
    c.checkpoint.max_to_keep = 3

    c.mesh = ml_collections.ConfigDict()
    c.mesh.num_devices = 0  # 0 = every device of every process
    return c


def apply_variant(c: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """`:tiny`: tiny model, tiny images, a handful of steps (what the tests run)."""
    arg = arg or ""
    if arg not in VARIANTS:
        raise ValueError(f"Unknown config variant {arg!r}; valid: {[v for v in VARIANTS if v]}")
    if arg == "tiny":
        c.input.dataset = "synthetic_crowd/tiny"
        c.input.image_size = (64, 128)
        c.input.train_crop_size = None
        c.input.batch_size = 4
        c.input.eval_batch_size = 4
        c.input.max_boxes = 32
        c.input.max_ignore = 16
        c.input.overflow = "truncate"
        c.input.shuffle_buffer = 16
        c.model.backbone = "tiny"
        c.model.fpn_channels = 16
        c.model.head_channels = 16
        c.model.head_convs = 1
        c.model.num_scales = 1
        c.model.max_level = 5
        c.model.anchor_size = 3.0
        c.inference.pre_nms_topk = 100
        c.inference.max_detections = 20
        c.optimizer.learning_rate = 0.01
        c.schedule.total_steps = 4
        c.schedule.warmup_steps = 1
        c.schedule.boundaries = (3,)
        c.eval.every_steps = 4
        c.eval.num_images_to_draw = 2
        c.checkpoint.every_steps = 2
        c.log_every_steps = 1
    return c


def with_loss_variant(c: ml_collections.ConfigDict, name: str) -> ml_collections.ConfigDict:
    """Sets `c.loss.terms` to the `LOSS_VARIANTS` entry `name` (in place; returns `c`)."""
    if name not in LOSS_VARIANTS:
        raise ValueError(f"Unknown loss variant {name!r}; valid: {list(LOSS_VARIANTS)}")
    c.loss.terms = LOSS_VARIANTS[name]
    return c
