"""Drawing ground truth and detections on images (host-side, PIL), and saving image grids.

Boxes here are `[x1, y1, x2, y2]` absolute pixels (the codebase convention), float or int.
Colours: ground truth green, ignored ground truth (ignore regions, out-of-setup people) yellow
dashed, detections at or above `score_threshold` red with the score written above the box.
Nothing here mutates its inputs; `save_grid` writes the PNG atomically (evaluation.io).
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from evaluation.io import atomic_write_bytes

__all__ = ["DET_COLOR", "GT_COLOR", "IGNORE_COLOR", "draw_detections", "save_grid"]

GT_COLOR = (0, 255, 0)
IGNORE_COLOR = (255, 255, 0)
DET_COLOR = (255, 0, 0)
# Error pictures (the RepLoss paper's Figure 9: false positives blue, misses red).
TP_COLOR = (0, 220, 0)
FP_COLOR = (30, 110, 255)
MISS_COLOR = (255, 30, 30)
_DASH = 6  # pixels drawn, then pixels skipped, along an ignored box's edges


def _as_boxes(boxes, name: str) -> np.ndarray:
    arr = np.asarray(boxes if boxes is not None else np.zeros((0, 4)), dtype=np.float64)
    if arr.size == 0:
        return np.zeros((0, 4))
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ValueError(f"{name} must have shape [N, 4] (xyxy pixels), got {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains non-finite coordinates")
    return arr


def _dashed_line(draw: ImageDraw.ImageDraw, p0, p1, color, width: int) -> None:
    (x0, y0), (x1, y1) = p0, p1
    length = math.hypot(x1 - x0, y1 - y0)
    if length == 0:
        return
    step = _DASH / length
    t = 0.0
    while t < 1.0:
        t_end = min(t + step, 1.0)
        draw.line(
            [
                (x0 + (x1 - x0) * t, y0 + (y1 - y0) * t),
                (x0 + (x1 - x0) * t_end, y0 + (y1 - y0) * t_end),
            ],
            fill=color,
            width=width,
        )
        t += 2 * step


def _dashed_rectangle(draw: ImageDraw.ImageDraw, box, color, width: int = 1) -> None:
    x1, y1, x2, y2 = box
    corners = [(x1, y1), (x2, y1), (x2, y2), (x1, y2)]
    for k in range(4):
        _dashed_line(draw, corners[k], corners[(k + 1) % 4], color, width)


def draw_detections(
    image: np.ndarray,
    gt_boxes=None,
    gt_ignore=None,
    det_boxes=None,
    det_scores=None,
    score_threshold: float = 0.3,
) -> np.ndarray:
    """Draws ground truth and detections on a copy of `image`.

    Args:
      image: [H, W, 3] uint8 RGB.
      gt_boxes: [G, 4] xyxy pixels (or None).
      gt_ignore: [G] bool, True for ignored ground truth (or None: none ignored).
      det_boxes: [D, 4] xyxy pixels (or None).
      det_scores: [D] scores; detections below `score_threshold` are not drawn.
      score_threshold: minimum score drawn.

    Returns:
      [H, W, 3] uint8, a new array.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be [H, W, 3] uint8 RGB, got shape {image.shape} dtype {image.dtype}"
        )
    gt = _as_boxes(gt_boxes, "gt_boxes")
    ignore = (
        np.zeros(len(gt), dtype=bool)
        if gt_ignore is None
        else np.asarray(gt_ignore, dtype=bool).reshape(-1)
    )
    if ignore.shape != (len(gt),):
        raise ValueError(f"gt_ignore must have shape [{len(gt)}], got {ignore.shape}")
    dets = _as_boxes(det_boxes, "det_boxes")
    scores = (
        np.ones(len(dets)) if det_scores is None else np.asarray(det_scores, np.float64).reshape(-1)
    )
    if scores.shape != (len(dets),):
        raise ValueError(f"det_scores must have shape [{len(dets)}], got {scores.shape}")

    canvas = Image.fromarray(np.array(image, dtype=np.uint8, copy=True, order="C"))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    # Ignored first, so real ground truth and detections stay visible on top.
    for box in gt[ignore]:
        _dashed_rectangle(draw, box.tolist(), IGNORE_COLOR, width=1)
    for box in gt[~ignore]:
        draw.rectangle(box.tolist(), outline=GT_COLOR, width=2)
    keep = scores >= score_threshold
    h, w = image.shape[:2]
    for box, score in zip(dets[keep], scores[keep]):
        x1, y1, x2, y2 = box.tolist()
        draw.rectangle([x1, y1, x2, y2], outline=DET_COLOR, width=2)
        text = f"{score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left, bottom - top
        tx = min(max(x1, 0), max(w - tw - 2, 0))
        ty = y1 - th - 3 if y1 - th - 3 >= 0 else min(y2 + 1, max(h - th - 2, 0))
        draw.rectangle([tx, ty, tx + tw + 2, ty + th + 2], fill=DET_COLOR)
        draw.text((tx + 1 - left, ty + 1 - top), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas, dtype=np.uint8).copy()


def draw_errors(image: np.ndarray, tp_boxes=None, fp_boxes=None, missed_boxes=None,
                ignore_boxes=None, fp_scores=None) -> np.ndarray:
    """Error picture on a copy of `image`: true positives green, false positives blue (with
    their score when given), missed pedestrians red, ignored ground truth yellow dashed.

    Args:
      image: [H, W, 3] uint8 RGB. Boxes: [K, 4] xyxy pixels (or None). fp_scores: [F].
    Returns:
      [H, W, 3] uint8, a new array.
    """
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(
            f"image must be [H, W, 3] uint8 RGB, got shape {image.shape} dtype {image.dtype}"
        )
    canvas = Image.fromarray(np.array(image, dtype=np.uint8, copy=True, order="C"))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    for box in _as_boxes(ignore_boxes, "ignore_boxes"):
        _dashed_rectangle(draw, box.tolist(), IGNORE_COLOR, width=1)
    for box in _as_boxes(tp_boxes, "tp_boxes"):
        draw.rectangle(box.tolist(), outline=TP_COLOR, width=2)
    for box in _as_boxes(missed_boxes, "missed_boxes"):
        draw.rectangle(box.tolist(), outline=MISS_COLOR, width=3)
    fps = _as_boxes(fp_boxes, "fp_boxes")
    scores = None if fp_scores is None else np.asarray(fp_scores, np.float64).reshape(-1)
    for k, box in enumerate(fps):
        draw.rectangle(box.tolist(), outline=FP_COLOR, width=2)
        if scores is not None:
            x1, y1 = box[0], box[1]
            draw.text((x1 + 2, y1 + 1), f"{scores[k]:.2f}", fill=FP_COLOR, font=font)
    return np.asarray(canvas, dtype=np.uint8).copy()


def save_grid(images: Sequence[np.ndarray], path: str | os.PathLike, ncols: int = 2) -> None:
    """Tiles [H, W, 3] uint8 images (row-major, black padding) and writes a PNG atomically.

    Images of different sizes are placed top-left in cells of the largest height and width.
    """
    if len(images) == 0:
        raise ValueError("save_grid needs at least one image")
    if ncols < 1:
        raise ValueError(f"ncols must be >= 1, got {ncols}")
    arrays = []
    for k, im in enumerate(images):
        im = np.asarray(im)
        if im.ndim != 3 or im.shape[2] != 3 or im.dtype != np.uint8:
            raise ValueError(
                f"images[{k}] must be [H, W, 3] uint8, got shape {im.shape} dtype {im.dtype}"
            )
        arrays.append(im)
    cell_h = max(a.shape[0] for a in arrays)
    cell_w = max(a.shape[1] for a in arrays)
    ncols = min(ncols, len(arrays))
    nrows = -(-len(arrays) // ncols)
    grid = np.zeros((nrows * cell_h, ncols * cell_w, 3), dtype=np.uint8)
    for k, a in enumerate(arrays):
        r, c = divmod(k, ncols)
        grid[r * cell_h : r * cell_h + a.shape[0], c * cell_w : c * cell_w + a.shape[1]] = a
    buf = io.BytesIO()
    Image.fromarray(grid).save(buf, format="PNG")
    atomic_write_bytes(buf.getvalue(), path)
