"""RetinaNet (Lin et al., "Focal Loss for Dense Object Detection"), composed from parts.

`RetinaNet` is backbone -> neck -> shared heads, each passed in as a module so other detectors can
reuse the pieces. `retinanet_losses` is the paper's training objective: sigmoid focal loss over all
non-ignored anchors plus smooth-L1 on positives, both normalised by the number of positive anchors
of the *global* batch (section 3.3 / 4.1). Target assignment runs on device, vmapped over images.
"""

from __future__ import annotations


import flax.linen as nn
import jax
import jax.numpy as jnp

from detectors.ops import box_coder, matcher
from losses import box_regression, focal


class RetinaNet(nn.Module):
    """`__call__(images [B,H,W,3] float32, train) -> {'cls_logits' [B,N,K], 'box_deltas' [B,N,4]}`."""

    backbone: nn.Module
    neck: nn.Module
    head: nn.Module
    min_level: int = 3
    max_level: int = 7

    def __call__(self, images, train: bool = False):
        features = self.backbone(images, train=train)
        pyramid = self.neck(features)
        return self.head([pyramid[f"P{l}"] for l in range(self.min_level, self.max_level + 1)])


def assign_image_targets(anchors, gt_boxes, gt_valid, ignore_boxes, ignore_valid, target_cfg):
    """Targets for one image.

    Args:
      anchors: `[N, 4] float32 xyxy`.
      gt_boxes: `[M, 4] float32 xyxy`, gt_valid `[M] bool` (False rows are padding).
      ignore_boxes: `[R, 4] float32 xyxy`, ignore_valid `[R] bool`.
    Returns: the matcher's dict (`labels [N]` 1/0/-1, `matched_gt_idx [N]`, `max_iou [N]`).
    """
    return matcher.assign_targets(
        anchors, gt_boxes, gt_valid, ignore_boxes, ignore_valid,
        positive_iou=target_cfg.positive_iou,
        negative_iou=target_cfg.negative_iou,
        allow_low_quality=target_cfg.allow_low_quality,
        ignore_ioa=target_cfg.ignore_ioa,
    )


def _image_loss_sums(cls_logits, box_deltas, anchors, gt_boxes, gt_valid, ignore_boxes,
                     ignore_valid, target_cfg, loss_cfg):
    """Un-normalised focal and smooth-L1 sums and the positive count of one image."""
    t = assign_image_targets(anchors, gt_boxes, gt_valid, ignore_boxes, ignore_valid, target_cfg)
    positive = t["labels"] == 1
    not_ignored = t["labels"] >= 0
    num_classes = cls_logits.shape[-1]
    # Every ground truth here is a pedestrian (class 0); the one-hot is kept for K > 1 heads.
    cls_targets = jax.nn.one_hot(jnp.zeros_like(t["labels"]), num_classes) * positive[:, None]
    focal_terms = focal.sigmoid_focal_loss(
        cls_logits, cls_targets, alpha=loss_cfg.focal_alpha, gamma=loss_cfg.focal_gamma
    )
    focal_sum = jnp.sum(focal_terms * not_ignored[:, None])
    matched = gt_boxes[jnp.maximum(t["matched_gt_idx"], 0)]
    box_targets = box_coder.encode_boxes(matched, anchors, weights=tuple(target_cfg.box_weights))
    reg = box_regression.smooth_l1(box_deltas, box_targets, beta=loss_cfg.smooth_l1_beta)
    box_sum = jnp.sum(jnp.where(positive[:, None], reg, 0.0))
    return focal_sum, box_sum, jnp.sum(positive).astype(jnp.float32)


def retinanet_losses(outputs, batch, anchors, target_cfg, loss_cfg):
    """RetinaNet objective over a (global) batch.

    Args:
      outputs: model outputs, `cls_logits [B,N,K]`, `box_deltas [B,N,4]` (float32).
      batch: dict with `gt_boxes [B,M,4]`, `gt_valid [B,M]`, `ignore_boxes [B,R,4]`,
        `ignore_valid [B,R]`; optional `example_valid [B]` (False rows are eval/pad examples that
        must not contribute).
      anchors: `[N, 4] float32 xyxy`.
    Returns:
      (total loss scalar, aux dict of unweighted terms and `num_pos`).
    """
    per_image = lambda c, d, g, gv, i, iv: _image_loss_sums(  # noqa: E731
        c, d, anchors, g, gv, i, iv, target_cfg, loss_cfg
    )
    focal_sum, box_sum, num_pos = jax.vmap(per_image)(
        outputs["cls_logits"], outputs["box_deltas"], batch["gt_boxes"], batch["gt_valid"],
        batch["ignore_boxes"], batch["ignore_valid"],
    )
    w = batch.get("example_valid")
    w = jnp.ones_like(num_pos) if w is None else w.astype(jnp.float32)
    # Sums over the batch axis of a sharded array are global under jit, so the normaliser is the
    # positive count of the whole global batch, floored at 1 for batches without pedestrians.
    normaliser = jnp.maximum(jnp.sum(num_pos * w), 1.0)
    focal_loss = jnp.sum(focal_sum * w) / normaliser
    box_loss = jnp.sum(box_sum * w) / normaliser
    total = loss_cfg.focal_weight * focal_loss + loss_cfg.box_weight * box_loss
    return total, {"focal": focal_loss, "box_smooth_l1": box_loss, "num_pos": jnp.sum(num_pos * w)}
