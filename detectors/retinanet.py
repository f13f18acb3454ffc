"""RetinaNet (Lin et al., "Focal Loss for Dense Object Detection"), composed from parts.

`RetinaNet` is backbone -> neck -> shared heads, each passed in as a module so other detectors can
reuse the pieces. `retinanet_losses` is the training objective. By default it is the paper's:
sigmoid focal loss over all non-ignored anchors plus smooth-L1 on positives, both normalised by the
number of positive anchors of the *global* batch (section 3.3 / 4.1). `config.loss.terms` adds the
repulsion terms (RepGT, RepBox) or swaps in HarmonicDet; their boxes are decoded from the anchors
inside the loss. Target assignment runs on device, vmapped over images.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from detectors.ops import box_coder, matcher
from losses import box_overlap, box_regression, focal, harmonic, repulsion


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


LOSS_TERMS = ("focal", "smooth_l1", "rep_gt", "rep_box", "harmonic")


def resolve_loss_terms(loss_cfg) -> tuple[str, ...]:
    """Validates `loss_cfg.terms` and returns it as a tuple of names.

    Terms: `focal` (classification, all non-ignored anchors), `smooth_l1` (regression of
    positives) -- the paper's RetinaNet; `rep_gt`, `rep_box` (Repulsion Loss eqs. 4 and 6, added
    with weights `rep_gt_weight` = alpha and `rep_box_weight` = beta of its eq. 1); `harmonic`
    (HarmonicDet, Harmonic Loss eqs. 11-13: harmonic CE + smooth-L1 + HIoU + task-contrastive on
    positives, focal on negatives). `harmonic` already contains the focal and smooth-L1 roles, so
    it replaces them; it combines with the repulsion terms.
    """
    terms = tuple(loss_cfg.terms)
    unknown = [t for t in terms if t not in LOSS_TERMS]
    if unknown:
        raise ValueError(
            f"Unknown loss term(s) {unknown} in config.loss.terms; valid: {list(LOSS_TERMS)}"
        )
    if len(set(terms)) != len(terms):
        raise ValueError(f"config.loss.terms lists a term twice: {list(terms)}")
    if "harmonic" in terms and ({"focal", "smooth_l1"} & set(terms)):
        raise ValueError(
            "config.loss.terms: 'harmonic' already contains the focal (negatives) and smooth-L1 "
            f"terms; drop them (got {list(terms)}), e.g. ('harmonic', 'rep_gt')"
        )
    if not ({"focal", "harmonic"} & set(terms)):
        raise ValueError(
            f"config.loss.terms {list(terms)} has no classification term: add 'focal' or 'harmonic'"
        )
    return terms


def rep_box_priority(num_anchors: int, seed: int) -> jnp.ndarray:
    """A fixed random rank of every anchor, `[N] float32` in [0, 1).

    RepBox is O(K^2) in the positives it compares, so each image keeps at most
    `loss.rep_box_max_positives` of them: those with the highest priority. The set of positives
    changes with every image while the priorities stay fixed, so the kept subset is a uniform
    random sample without drawing random numbers inside the step (no RNG key to thread through,
    and the step stays a pure function of its inputs).
    """
    return jnp.asarray(np.random.default_rng(seed).random(num_anchors), jnp.float32)


def _image_loss_sums(cls_logits, box_deltas, anchors, gt_boxes, gt_valid, ignore_boxes,
                     ignore_valid, target_cfg, loss_cfg, terms, priority):
    """Un-normalised loss sums (and their counts) of one image, keyed by term."""
    t = assign_image_targets(anchors, gt_boxes, gt_valid, ignore_boxes, ignore_valid, target_cfg)
    positive = t["labels"] == 1
    negative = t["labels"] == 0
    not_ignored = t["labels"] >= 0
    target_idx = jnp.where(positive, t["matched_gt_idx"], -1)
    cls_logits = cls_logits.astype(jnp.float32)
    box_deltas = box_deltas.astype(jnp.float32)
    num_classes = cls_logits.shape[-1]
    # Every ground truth here is a pedestrian (class 0); the one-hot is kept for K > 1 heads.
    cls_targets = jax.nn.one_hot(jnp.zeros_like(t["labels"]), num_classes) * positive[:, None]
    focal_terms = focal.sigmoid_focal_loss(
        cls_logits, cls_targets, alpha=loss_cfg.focal_alpha, gamma=loss_cfg.focal_gamma
    )
    weights = tuple(target_cfg.box_weights)
    matched = gt_boxes[jnp.maximum(t["matched_gt_idx"], 0)]
    box_targets = box_coder.encode_boxes(matched, anchors, weights=weights)
    reg = box_regression.smooth_l1(box_deltas, box_targets, beta=loss_cfg.smooth_l1_beta)
    reg = jnp.sum(reg, -1)  # [N], summed over the 4 deltas
    # Boxes regressed from the anchors, for every overlap-based term and the AIC.
    pred_boxes = box_coder.decode_boxes(box_deltas, anchors, weights=weights)
    pred_iou = box_overlap.iou(pred_boxes, matched)
    p = jax.nn.sigmoid(cls_logits[:, 0])

    sums = {"num_pos": jnp.sum(positive).astype(jnp.float32)}
    sums["aic"] = jnp.sum(jnp.where(positive, jnp.abs(p - jax.lax.stop_gradient(pred_iou)), 0.0))
    if "focal" in terms:
        sums["focal"] = jnp.sum(focal_terms * not_ignored[:, None])
    if "smooth_l1" in terms:
        sums["box_smooth_l1"] = jnp.sum(jnp.where(positive, reg, 0.0))
    if "harmonic" in terms:
        pos_ce = -jax.nn.log_sigmoid(cls_logits[:, 0])  # the paper's CE of the gt class
        neg_focal = jnp.sum(focal_terms, -1)  # focal of a negative anchor (all targets 0)
        probs = jnp.stack([p, 1.0 - p], -1)
        # normalizer=1: sums here, divided by the global positive count in retinanet_losses.
        _, har = harmonic.harmonic_detection_loss(
            pos_ce, neg_focal, reg, pred_iou, p, probs, positive, negative,
            alpha=loss_cfg.hiou_alpha, gamma=loss_cfg.hiou_gamma, margin=loss_cfg.tc_margin,
            factor_gradient=loss_cfg.harmonic_factor_gradient, normalizer=1.0,
        )
        for k in ("harmonic_cls", "harmonic_loc", "hiou", "task_contrastive", "negative_cls"):
            sums[k] = har[k]
        sums["beta_r_sum"] = har["beta_r"] * jnp.maximum(sums["num_pos"], 1.0)
        sums["beta_c_sum"] = har["beta_c"] * jnp.maximum(sums["num_pos"], 1.0)
    if "rep_gt" in terms:
        rep_idx = repulsion.repulsion_gt_index(anchors, gt_boxes, gt_valid, target_idx)
        sums["rep_gt"], sums["rep_gt_count"] = repulsion.rep_gt_sum_and_count(
            pred_boxes, gt_boxes, rep_idx, positive, sigma=loss_cfg.rep_gt_sigma
        )
    if "rep_box" in terms:
        k = min(int(loss_cfg.rep_box_max_positives), anchors.shape[0])
        _, keep = jax.lax.top_k(jnp.where(positive, priority, -1.0), k)
        sums["rep_box"], sums["rep_box_count"] = repulsion.rep_box_sum_and_count(
            pred_boxes[keep], target_idx[keep], positive[keep], sigma=loss_cfg.rep_box_sigma
        )
    return sums


def retinanet_losses(outputs, batch, anchors, target_cfg, loss_cfg, priority=None):
    """RetinaNet objective over a (global) batch, with the terms `loss_cfg.terms` selects.

    Args:
      outputs: model outputs, `cls_logits [B,N,K]`, `box_deltas [B,N,4]` (float32).
      batch: dict with `gt_boxes [B,M,4]`, `gt_valid [B,M]`, `ignore_boxes [B,R,4]`,
        `ignore_valid [B,R]`; optional `example_valid [B]` (False rows are eval/pad examples that
        must not contribute).
      anchors: `[N, 4] float32 xyxy`.
      priority: `[N]` from `rep_box_priority` (needed only by `rep_box`).
    Returns:
      (total loss scalar, aux dict: each term unweighted and normalised, `num_pos`, and `aic`, the
      Harmonic loss paper's eq. 14 on this batch's positive anchors).

    Normalisation: focal, smooth-L1 and the harmonic terms by the positive anchors of the global
    batch (focal loss paper 3.3; Harmonic eq. 13); RepGT by the global number of positives that
    have a repulsion target; RepBox by the global number of overlapping pairs (eq. 6).
    """
    terms = resolve_loss_terms(loss_cfg)
    if "rep_box" in terms and priority is None:
        priority = rep_box_priority(anchors.shape[0], 0)
    per_image = lambda c, d, g, gv, i, iv: _image_loss_sums(
        c, d, anchors, g, gv, i, iv, target_cfg, loss_cfg, terms, priority
    )
    sums = jax.vmap(per_image)(
        outputs["cls_logits"], outputs["box_deltas"], batch["gt_boxes"], batch["gt_valid"],
        batch["ignore_boxes"], batch["ignore_valid"],
    )
    w = batch.get("example_valid")
    w = jnp.ones_like(sums["num_pos"]) if w is None else w.astype(jnp.float32)
    # Sums over the batch axis of a sharded array are global under jit, so every normaliser is a
    # count over the whole global batch, floored at 1 for batches without pedestrians.
    total_of = {k: jnp.sum(v * w) for k, v in sums.items()}
    num_pos = total_of["num_pos"]
    pos_norm = jnp.maximum(num_pos, 1.0)
    aux = {"num_pos": num_pos, "aic": total_of["aic"] / pos_norm}
    total = jnp.zeros((), jnp.float32)
    if "focal" in terms:
        aux["focal"] = total_of["focal"] / pos_norm
        total += loss_cfg.focal_weight * aux["focal"]
    if "smooth_l1" in terms:
        aux["box_smooth_l1"] = total_of["box_smooth_l1"] / pos_norm
        total += loss_cfg.box_weight * aux["box_smooth_l1"]
    if "harmonic" in terms:
        parts = ("harmonic_cls", "harmonic_loc", "hiou", "task_contrastive", "negative_cls")
        for k in parts:
            aux[k] = total_of[k] / pos_norm
        summed = ("harmonic_cls", "harmonic_loc", "task_contrastive", "negative_cls")  # eq. 13
        har = sum(aux[k] for k in summed)
        aux["harmonic"] = har
        aux["beta_r"] = total_of["beta_r_sum"] / pos_norm
        aux["beta_c"] = total_of["beta_c_sum"] / pos_norm
        total += loss_cfg.harmonic_weight * har
    if "rep_gt" in terms:
        aux["rep_gt"] = total_of["rep_gt"] / jnp.maximum(total_of["rep_gt_count"], 1.0)
        total += loss_cfg.rep_gt_weight * aux["rep_gt"]
    if "rep_box" in terms:
        aux["rep_box"] = total_of["rep_box"] / jnp.maximum(total_of["rep_box_count"], 1.0)
        total += loss_cfg.rep_box_weight * aux["rep_box"]
    return total, aux
