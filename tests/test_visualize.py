"""Tests of evaluation.visualize: colours land where the boxes are, inputs stay untouched, PNGs."""

from __future__ import annotations

import os

import numpy as np
import pytest
from PIL import Image

from evaluation.visualize import DET_COLOR, GT_COLOR, IGNORE_COLOR, draw_detections, save_grid


def _blank(h=64, w=128):
    return np.full((h, w, 3), 40, dtype=np.uint8)


def _has(img, region, color):
    y0, y1, x0, x1 = region
    patch = img[y0:y1, x0:x1].reshape(-1, 3)
    return bool((patch == np.array(color, np.uint8)).all(axis=1).any())


def _has_text(img, region):
    """Label text: light pixels (anti-aliased white) on the red label background."""
    y0, y1, x0, x1 = region
    patch = img[y0:y1, x0:x1].reshape(-1, 3).astype(int)
    return bool(((patch[:, 0] == 255) & (patch[:, 1] >= 150) & (patch[:, 2] >= 150)).any())


def test_gt_green_detection_red_below_threshold_not_drawn():
    img = _blank()
    out = draw_detections(
        img,
        gt_boxes=[[10, 20, 30, 60]],
        gt_ignore=[False],
        det_boxes=[[70, 20, 100, 60], [105, 5, 125, 30]],
        det_scores=[0.9, 0.2],
        score_threshold=0.3,
    )
    assert out.shape == img.shape and out.dtype == np.uint8
    assert _has(out, (20, 61, 10, 12), GT_COLOR)  # left edge of the gt box
    assert not _has(out, (0, 64, 0, 64), DET_COLOR)  # no red on the gt half
    assert _has(out, (20, 61, 70, 72), DET_COLOR)  # left edge of the kept detection
    # The detection scored 0.2 is not drawn: its right edge column stays background.
    assert (out[10:25, 124] == 40).all()
    # The score label is drawn (white text pixels next to the kept box).
    assert _has_text(out, (0, 64, 60, 105))
    assert (img == 40).all()  # the input is untouched


def test_ignored_gt_is_yellow_and_dashed():
    out = draw_detections(_blank(), gt_boxes=[[10, 10, 110, 50]], gt_ignore=[True])
    top = out[10, 10:111]
    yellow = (top == np.array(IGNORE_COLOR, np.uint8)).all(axis=1)
    assert yellow.any() and not yellow.all()  # dashed: gaps along the edge
    assert not _has(out, (0, 64, 0, 128), GT_COLOR)


def test_empty_inputs_and_label_clamped_inside_the_image():
    img = _blank()
    assert (draw_detections(img) == img).all()
    out = draw_detections(img, det_boxes=np.zeros((0, 4)), det_scores=np.zeros(0))
    assert (out == img).all()
    # A box touching the top-left corner: its label goes below the top edge, inside the image.
    out = draw_detections(img, det_boxes=[[0, 0, 20, 40]], det_scores=[0.5])
    assert _has_text(out, (0, 64, 0, 40))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"image": np.zeros((8, 8), np.uint8)}, "image must be"),
        ({"image": np.zeros((8, 8, 3), np.float32)}, "image must be"),
        ({"gt_boxes": [[0, 0, 1]]}, "gt_boxes must have shape"),
        ({"gt_boxes": [[0, 0, 1, 1]], "gt_ignore": [True, False]}, "gt_ignore"),
        ({"det_boxes": [[0, 0, 1, 1]], "det_scores": [0.1, 0.2]}, "det_scores"),
        ({"det_boxes": [[0, 0, np.nan, 1]], "det_scores": [0.5]}, "non-finite"),
    ],
)
def test_bad_arguments(kwargs, message):
    kwargs.setdefault("image", _blank())
    with pytest.raises(ValueError, match=message):
        draw_detections(**kwargs)


def test_save_grid_layout_and_atomic_write(tmp_path):
    a = np.full((10, 20, 3), 200, np.uint8)
    b = np.full((16, 12, 3), 100, np.uint8)
    c = np.full((4, 4, 3), 50, np.uint8)
    path = tmp_path / "grid.png"
    save_grid([a, b, c], str(path), ncols=2)
    grid = np.asarray(Image.open(path).convert("RGB"))
    assert grid.shape == (32, 40, 3)  # 2 rows x 2 cols of 16 x 20 cells
    assert (grid[:10, :20] == 200).all() and (grid[:16, 20:32] == 100).all()
    assert (grid[16:20, :4] == 50).all() and (grid[20:, :] == 0).all()
    assert sorted(os.listdir(tmp_path)) == ["grid.png"]  # no temporary file left behind
    # A failing write keeps the previous file intact.
    with pytest.raises(ValueError):
        save_grid([np.zeros((4, 4), np.uint8)], str(path))
    assert np.asarray(Image.open(path).convert("RGB")).shape == (32, 40, 3)
    with pytest.raises(ValueError, match="at least one"):
        save_grid([], str(path))
    with pytest.raises(ValueError, match="does not exist"):
        save_grid([a], str(tmp_path / "missing_dir" / "g.png"))
