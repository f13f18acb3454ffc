"""Builds a detector from the config: the one place that reads `config.model`.

A `Detector` bundles what the training loop needs and nothing else: the Flax module, the constant
anchors for the fixed input size, a loss function and a post-processing function. The train loop
never looks inside, so new detectors (GDFL, person search) only add a branch here.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from detectors import retinanet
from detectors.backbones.resnet import RESNET_SPECS, ResNet
from detectors.heads.retinanet_head import RetinaNetHead
from detectors.necks.fpn import FPN
from detectors.ops import anchors as anchor_ops
from detectors.ops import postprocess

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
DETECTORS = ("retinanet",)


@dataclasses.dataclass(frozen=True)
class Detector:
    """model: Flax module; anchors: `[N,4] float32 xyxy`; level_sizes: anchors per level;
    loss_fn(outputs, batch) -> (loss, aux); postprocess_fn(outputs) -> padded detections dict
    (`boxes [B,D,4] xyxy`, `scores [B,D]`, `classes [B,D]`, `valid [B,D]`)."""

    model: nn.Module
    anchors: np.ndarray
    level_sizes: tuple
    loss_fn: Callable[..., Any]
    postprocess_fn: Callable[..., Any]
    # raw_fn(outputs) -> the pre-NMS candidates in the same padded layout (`[B,R]`), for NMS
    # sweeps on the host; None for detectors without one.
    raw_fn: Callable[..., Any] | None = None


def _dtype(name):
    if name not in DTYPES:
        raise ValueError(f"Unknown model.dtype {name!r}; valid: {sorted(DTYPES)}")
    return DTYPES[name]


def build_detector(config, image_size: tuple[int, int] | None = None) -> Detector:
    """Composes backbone, neck, head, anchors, losses and post-processing from `config`.

    `image_size` (H, W) overrides `config.input.image_size`: the model is fully convolutional, so
    training on crops and evaluating on whole images only changes the anchors (a second Detector
    with the same module).
    """
    m = config.model
    if m.name not in DETECTORS:
        raise ValueError(f"Unknown model.name {m.name!r}; valid: {list(DETECTORS)}")
    if m.backbone not in RESNET_SPECS:
        raise ValueError(f"Unknown model.backbone {m.backbone!r}; valid: {sorted(RESNET_SPECS)}")
    dtype = _dtype(m.dtype)
    image_size = tuple(int(s) for s in (image_size or config.input.image_size))
    aspect_ratios = tuple(m.aspect_ratios)
    num_anchors = anchor_ops.num_anchors_per_location(m.num_scales, aspect_ratios)
    model = retinanet.RetinaNet(
        backbone=ResNet(m.backbone, frozen_bn=m.frozen_bn, dtype=dtype),
        neck=FPN(m.fpn_channels, m.min_level, m.max_level, dtype=dtype),
        head=RetinaNetHead(
            num_classes=m.num_classes, num_anchors=num_anchors, num_channels=m.head_channels,
            num_convs=m.head_convs, prior_prob=m.prior_prob, norm=m.head_norm, dtype=dtype,
        ),
        min_level=m.min_level,
        max_level=m.max_level,
    )
    anchors, level_shapes = anchor_ops.generate_anchors(
        image_size, m.min_level, m.max_level, m.anchor_size, m.num_scales, aspect_ratios
    )
    level_sizes = tuple(int(h * w * num_anchors) for h, w in level_shapes)
    anchors_j = jnp.asarray(anchors)
    terms = retinanet.resolve_loss_terms(config.loss)  # fail at build time, not in the step
    priority = (
        retinanet.rep_box_priority(anchors.shape[0], config.seed) if "rep_box" in terms else None
    )
    loss_fn = functools.partial(
        retinanet.retinanet_losses, anchors=anchors_j, target_cfg=config.targets,
        loss_cfg=config.loss, priority=priority,
    )
    inf = config.inference
    per_image = functools.partial(
        postprocess.generate_detections,
        anchors=anchors_j, level_sizes=list(level_sizes), image_size=image_size,
        score_threshold=inf.score_threshold, pre_nms_topk=inf.pre_nms_topk, nms_iou=inf.nms_iou,
        max_detections=inf.max_detections, box_weights=tuple(config.targets.box_weights),
    )

    raw_per_image = functools.partial(
        postprocess.raw_detections,
        anchors=anchors_j, level_sizes=list(level_sizes), image_size=image_size,
        score_threshold=inf.score_threshold, pre_nms_topk=inf.pre_nms_topk,
        max_detections=int(config.eval.raw_max_detections),
        box_weights=tuple(config.targets.box_weights),
    )

    def postprocess_fn(outputs):
        return jax.vmap(per_image)(outputs["cls_logits"], outputs["box_deltas"])

    def raw_fn(outputs):
        return jax.vmap(raw_per_image)(outputs["cls_logits"], outputs["box_deltas"])

    return Detector(model, anchors, level_sizes, loss_fn, postprocess_fn, raw_fn)
