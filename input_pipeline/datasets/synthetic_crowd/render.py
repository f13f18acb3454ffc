"""Synthetic crowded street scenes with exact pedestrian ground truth (numpy + PIL, no TF).

This module owns the scene generator behind the `synthetic_crowd` TFDS builder. It imports no
TensorFlow, so it runs cheaply in worker processes and in tests.

Ground truth is exact by construction. Every annotated entity (pedestrian, fake human on a poster
or in a reflection, group of people) writes its local id into a per-pixel instance map; anything
drawn later (closer to the camera, i.e. with a larger foot y) overwrites it, and the visible box
is the tight box of the pixels that still carry the id at the end. Full boxes follow CityPersons:
head top to feet, width = round(0.41 * height), centred on the body axis.

Box convention inside this module: `[x1, y1, x2, y2]` float pixels, continuous coordinates,
pixel (row i, col j) covers [j, j+1) x [i, i+1). A figure drawn on rows y0..y0+h-1 and columns
x0..x0+w-1 has the full box [x0, y0, x0+w, y0+h]. Full boxes are integer aligned, so the
width/height ratio is 0.41 up to the rounding of the width to whole pixels.

Scale: all sizes are defined for the reference image height of 512 px (CityPersons at half
resolution: pedestrians 16..400 px tall) and scaled with the image height.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import math
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw

# CityPersons class ids (class_label in the official annotations).
LABEL_IGNORE_REGION = 0
LABEL_PEDESTRIAN = 1
LABEL_GROUP = 5

FULL_BOX_ASPECT = 0.41  # CityPersons full boxes: width / height.
REFERENCE_IMAGE_HEIGHT = 512

# Part ids of the figure part map; they select the colour of each pixel.
# Sleeves have the colour of the top but their own id, so the outline separates arm and torso.
_SKIN, _HAIR, _TOP, _BOTTOM, _SHOES, _BAG, _HAT, _FEATURE, _SLEEVE = range(1, 10)
_NUM_PARTS = 10

# --------------------------------------------------------------------------------------------
# Configuration.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class RenderConfig:
    """Everything that fixes how scenes look; the per-image seed fixes the rest.

    Attributes:
      image_height, image_width: stored image size (H x W).
      num_identities: size of the identity pool; `person_id` is in [0, num_identities).
      identity_seed: seed of the identity pool, shared by all splits and image sizes so the same
        `person_id` always looks the same.
      min_height, max_height: pedestrian full-box height range in pixels of the stored image.
      tiny_height: pedestrians with full height below this are flagged ignore (20 px at the
        reference height 512, scaled with the image height).
      min_people, max_people: number of individually annotated people per image.
    """

    image_height: int = 512
    image_width: int = 1024
    num_identities: int = 400
    identity_seed: int = 20240601
    min_height: float = 16.0
    max_height: float = 400.0
    tiny_height: float = 20.0
    min_people: int = 5
    max_people: int = 20

    @property
    def scale(self) -> float:
        """Image height relative to the 512 px reference."""
        return self.image_height / REFERENCE_IMAGE_HEIGHT

    @classmethod
    def for_image_size(cls, image_height: int, image_width: int, **kwargs) -> RenderConfig:
        """Config for another image size, with all pixel sizes scaled proportionally.

        The smallest figure is kept at 4 px (a figure needs a few rows for head, body and legs);
        at 128 px image height that is exactly 16 px scaled, so the tiny config stays a faithful
        miniature, tiny (ignored) pedestrians included.
        """
        s = image_height / REFERENCE_IMAGE_HEIGHT
        return cls(
            image_height=image_height,
            image_width=image_width,
            min_height=max(4.0, 16.0 * s),
            max_height=400.0 * s,
            tiny_height=20.0 * s,
            **kwargs,
        )


# --------------------------------------------------------------------------------------------
# Identities: an identity fixes the appearance of a person.
# --------------------------------------------------------------------------------------------

_CLOTH_COLOURS = (
    (25, 25, 30),
    (45, 45, 50),
    (80, 80, 85),
    (130, 130, 135),
    (200, 200, 200),
    (235, 235, 230),
    (30, 40, 80),
    (40, 60, 120),
    (70, 100, 160),
    (90, 120, 150),
    (150, 30, 35),
    (190, 60, 50),
    (120, 40, 60),
    (200, 170, 120),
    (170, 140, 100),
    (110, 85, 60),
    (70, 50, 35),
    (80, 95, 50),
    (50, 80, 60),
    (220, 190, 60),
    (230, 120, 40),
    (150, 90, 150),
    (60, 130, 140),
    (240, 160, 170),
)
_SKIN_COLOURS = (
    (245, 210, 185),
    (225, 180, 150),
    (200, 150, 115),
    (160, 110, 80),
    (110, 75, 55),
    (80, 55, 40),
)
_HAIR_COLOURS = (
    (20, 15, 12),
    (50, 35, 25),
    (90, 60, 35),
    (150, 110, 60),
    (200, 170, 110),
    (130, 130, 130),
    (120, 50, 25),
)
_TEXTURES = ("plain", "hstripes", "vstripes", "checks")


@dataclasses.dataclass(frozen=True)
class Appearance:
    """Appearance parameters fixed by an identity (colours are RGB uint8 tuples).

    Proportions are fractions of the body height: `head_size` the head diameter,
    `shoulder_width` the shoulder span (front view), `leg_length` the hip height; `girth`
    scales limb thickness; `texture_period` is the stripe/check period.
    """

    person_id: int
    skin: tuple[int, int, int]
    hair: tuple[int, int, int]
    hair_style: str  # 'short' | 'long' | 'bald' | 'hat'
    hat: tuple[int, int, int]
    top: tuple[int, int, int]
    top_alt: tuple[int, int, int]
    top_texture: str  # one of _TEXTURES
    sleeves: str  # 'long' | 'short'
    bottom: tuple[int, int, int]
    bottom_alt: tuple[int, int, int]
    bottom_texture: str
    bottom_style: str  # 'trousers' | 'shorts' | 'skirt'
    shoes: tuple[int, int, int]
    bag: str  # 'none' | 'backpack' | 'handbag'
    bag_colour: tuple[int, int, int]
    texture_period: float
    head_size: float
    shoulder_width: float
    hip_ratio: float
    leg_length: float
    girth: float


def _choice(rng: np.random.Generator, options, p=None):
    """One element of `options` (probabilities `p`); much cheaper than `rng.choice` for lists."""
    if p is None:
        return options[int(rng.integers(len(options)))]
    u = rng.random() * sum(p)
    for option, prob in zip(options, p):
        u -= prob
        if u < 0:
            return option
    return options[-1]


def _jitter_colour(rng: np.random.Generator, palette, sigma: float = 12.0) -> tuple[int, int, int]:
    """A palette colour with a small random shift, so identities rarely share exact colours."""
    base = palette[int(rng.integers(len(palette)))]
    shift = rng.normal(0.0, sigma, 3)
    return tuple(int(min(255.0, max(0.0, b + d))) for b, d in zip(base, shift))


@functools.lru_cache(maxsize=4096)  # pure and called for every figure: cache per process
def make_appearance(person_id: int, identity_seed: int = RenderConfig.identity_seed) -> Appearance:
    """The appearance of identity `person_id`; a pure function of (identity_seed, person_id)."""
    rng = np.random.default_rng([identity_seed, person_id])
    style = _choice(rng, ["trousers", "shorts", "skirt"], [0.7, 0.12, 0.18])
    return Appearance(
        person_id=int(person_id),
        skin=_jitter_colour(rng, _SKIN_COLOURS, 8.0),
        hair=_jitter_colour(rng, _HAIR_COLOURS, 8.0),
        hair_style=_choice(rng, ["short", "long", "bald", "hat"], [0.5, 0.3, 0.07, 0.13]),
        hat=_jitter_colour(rng, _CLOTH_COLOURS),
        top=_jitter_colour(rng, _CLOTH_COLOURS),
        top_alt=_jitter_colour(rng, _CLOTH_COLOURS),
        top_texture=_choice(rng, _TEXTURES, [0.5, 0.25, 0.1, 0.15]),
        sleeves=_choice(rng, ["long", "short"], [0.7, 0.3]),
        bottom=_jitter_colour(rng, _CLOTH_COLOURS),
        bottom_alt=_jitter_colour(rng, _CLOTH_COLOURS),
        bottom_texture=_choice(rng, _TEXTURES, [0.75, 0.05, 0.1, 0.1]),
        bottom_style=style,
        shoes=_jitter_colour(rng, _CLOTH_COLOURS[:8] + _CLOTH_COLOURS[13:17]),
        bag=_choice(rng, ["none", "backpack", "handbag"], [0.55, 0.25, 0.2]),
        bag_colour=_jitter_colour(rng, _CLOTH_COLOURS),
        texture_period=float(rng.uniform(0.025, 0.06)),
        head_size=float(rng.uniform(0.12, 0.145)),
        shoulder_width=float(rng.uniform(0.2, 0.25)),
        hip_ratio=float(rng.uniform(0.75, 0.95)),
        leg_length=float(rng.uniform(0.47, 0.53)),
        girth=float(rng.uniform(0.85, 1.25)),
    )


# --------------------------------------------------------------------------------------------
# Figures.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Pose:
    """Per-appearance pose: view, walking phase and lean (angles in radians)."""

    view: str  # 'front' | 'back' | 'side'
    facing: int  # +1 walks to the right, -1 to the left (side view)
    stride: float  # signed leg swing from vertical
    arm_swing: float  # arm swing amplitude relative to the stride
    lean: float  # body lean around the feet


def sample_pose(rng: np.random.Generator) -> Pose:
    """A random walking or standing pose."""
    return Pose(
        view=_choice(rng, ["front", "back", "side"], [0.35, 0.25, 0.4]),
        facing=_choice(rng, [-1, 1]),
        stride=float(rng.uniform(-0.42, 0.42)),
        arm_swing=float(rng.uniform(0.4, 1.0)),
        lean=float(rng.normal(0.0, 0.03)),
    )


def figure_width(height: int) -> int:
    """Full-box width of a figure of `height` pixels (CityPersons aspect 0.41, whole pixels)."""
    return max(2, round(FULL_BOX_ASPECT * height))


def _skeleton(app: Appearance, pose: Pose) -> dict[str, Any]:
    """Joint positions in body units (about 1 tall, x to the right, y down, feet near y=1).

    Returns named points plus limb widths; the caller maps them to pixels.
    """
    r = app.head_size / 2
    side = pose.view == "side"
    f = pose.facing
    sh_y, hip_y = 2 * r + 0.035, 1.0 - app.leg_length
    sh = app.shoulder_width / 2 * (0.5 if side else 1.0)
    hp = sh * app.hip_ratio
    leg = app.leg_length - 0.03  # minus the shoe
    pts: dict[str, Any] = {"head": (0.0, r), "neck": (0.0, 2 * r), "sh_y": sh_y, "hip_y": hip_y}
    legs, arms = [], []
    a = pose.stride
    if side:
        # Opposite legs swing opposite ways; the trailing shin bends back more (walking gait).
        for s in (1.0, -1.0):
            ang = s * a
            knee = (f * math.sin(ang) * leg / 2, hip_y + math.cos(ang) * leg / 2)
            shin_ang = ang * 0.6 if ang > 0 else ang - 0.25 * abs(a)
            ankle = (
                knee[0] + f * math.sin(shin_ang) * leg / 2,
                knee[1] + math.cos(shin_ang) * leg / 2,
            )
            legs.append(((0.0, hip_y), knee, ankle))
            # The arm on the same side swings against its leg.
            arm_ang = -s * a * pose.arm_swing
            elbow = (f * math.sin(arm_ang) * 0.19, sh_y + math.cos(arm_ang) * 0.19)
            fore = arm_ang + 0.25
            hand = (elbow[0] + f * math.sin(fore) * 0.18, elbow[1] + math.cos(fore) * 0.18)
            arms.append(((0.0, sh_y + 0.01), elbow, hand))
    else:
        # Front/back view: stride shows as one foot lifting, arms as small outward angles.
        for s in (-1.0, 1.0):
            lift = 0.05 * abs(a) if s * a > 0 else 0.0
            hip = (s * hp * 0.55, hip_y)
            out = 0.03 + 0.03 * abs(a)
            knee = (hip[0] + s * math.sin(out) * leg / 2, hip_y + leg / 2 - lift / 2)
            ankle = (knee[0] + s * 0.005, hip_y + leg - lift)
            legs.append((hip, knee, ankle))
            out_arm = 0.06 + 0.12 * abs(a) * pose.arm_swing
            shoulder = (s * (sh - 0.02), sh_y + 0.01)
            elbow = (shoulder[0] + s * math.sin(out_arm) * 0.19, shoulder[1] + 0.19)
            hand = (elbow[0] + s * math.sin(out_arm * 0.6) * 0.18, elbow[1] + 0.18)
            arms.append((shoulder, elbow, hand))
    pts.update(legs=legs, arms=arms, r=r, sh=sh, hp=hp)
    pts.update(thigh_w=0.085 * app.girth, shin_w=0.065 * app.girth, arm_w=0.055 * app.girth)
    return pts


def _lean(points: dict[str, Any], angle: float, facing: int, side: bool) -> dict[str, Any]:
    """Rotates every joint around the ground point (0, 1) by `angle` (towards facing if side)."""
    if side:
        angle *= facing
    c, s = math.cos(angle), math.sin(angle)

    def rot(p):
        x, y = p[0], p[1] - 1.0
        return (x * c - y * s, x * s + y * c + 1.0)

    out = dict(points)
    out["head"], out["neck"] = rot(points["head"]), rot(points["neck"])
    out["legs"] = [tuple(rot(p) for p in limb) for limb in points["legs"]]
    out["arms"] = [tuple(rot(p) for p in limb) for limb in points["arms"]]
    out["lean"] = (c, s)
    return out


def draw_figure_parts(app: Appearance, pose: Pose, height: int) -> np.ndarray:
    """Draws a person as a part-id map of shape [height, figure_width(height)] uint8.

    The skeleton is scaled so that the head top touches row 0 and the lowest foot the last row,
    and centred horizontally on the body axis (mid-point of neck and hips), as CityPersons
    aligns its full boxes. Limbs that stick out of the 0.41 box are cropped by the patch edge.
    """
    w = figure_width(height)
    side = pose.view == "side"
    p = _lean(_skeleton(app, pose), pose.lean, pose.facing, side)
    r = p["r"]
    foot_bottom = max(limb[2][1] for limb in p["legs"]) + 0.03
    top = p["head"][1] - r
    scale = height / (foot_bottom - top)
    cos_l, sin_l = p["lean"]
    hip_c = (-(p["hip_y"] - 1.0) * sin_l, (p["hip_y"] - 1.0) * cos_l + 1.0)
    axis_x = 0.5 * (p["neck"][0] + hip_c[0])

    def px(pt):
        return ((pt[0] - axis_x) * scale + w / 2.0, (pt[1] - top) * scale)

    def rot_off(dx, dy, origin):
        """Point at offset (dx, dy) from `origin` in the leaned body frame, in pixels."""
        return px((origin[0] + dx * cos_l - dy * sin_l, origin[1] + dx * sin_l + dy * cos_l))

    def width(u):
        return max(1, round(u * scale))

    img = Image.new("L", (w, height), 0)
    d = ImageDraw.Draw(img)
    neck = p["neck"]
    sh_dy = p["sh_y"] - neck[1]
    hip_dy = p["hip_y"] - neck[1]
    sh, hp, f = p["sh"], p["hp"], pose.facing
    chest = 0.02 * f if side else 0.0
    torso = [
        rot_off(-sh + chest, sh_dy, neck),
        rot_off(sh + chest, sh_dy, neck),
        rot_off(hp, hip_dy, neck),
        rot_off(-hp, hip_dy, neck),
    ]

    def draw_leg(limb):
        hip, knee, ankle = (px(q) for q in limb)
        thigh_part = _BOTTOM
        shin_part = _SKIN if app.bottom_style in ("shorts", "skirt") else _BOTTOM
        d.line([hip, knee], fill=thigh_part, width=width(p["thigh_w"]), joint="curve")
        d.line([knee, ankle], fill=shin_part, width=width(p["shin_w"]), joint="curve")
        kr = p["shin_w"] * scale / 2
        _ell(d, [knee[0] - kr, knee[1] - kr, knee[0] + kr, knee[1] + kr], fill=shin_part)
        # Shoes: longer in the walking direction in side view.
        sl = (0.07 if side else 0.035) * scale
        sh_h = 0.03 * scale
        cx = ankle[0] + (f * sl * 0.35 if side else 0.0)
        _ell(d, [cx - sl, ankle[1] - sh_h, cx + sl, ankle[1] + sh_h * 1.2], fill=_SHOES)

    def draw_arm(limb):
        shoulder, elbow, hand = (px(q) for q in limb)
        fore_part = _SKIN if app.sleeves == "short" else _SLEEVE
        aw = width(p["arm_w"])
        d.line([shoulder, elbow], fill=_SLEEVE, width=aw, joint="curve")
        d.line([elbow, hand], fill=fore_part, width=max(1, int(aw * 0.9)), joint="curve")
        er = aw / 2
        _ell(
            d,
            [shoulder[0] - er, shoulder[1] - er, shoulder[0] + er, shoulder[1] + er],
            fill=_SLEEVE,
        )
        hr = max(0.7, aw * 0.55)
        _ell(d, [hand[0] - hr, hand[1] - hr, hand[0] + hr, hand[1] + hr], fill=_SKIN)
        return hand

    legs, arms = p["legs"], p["arms"]
    # Side view: the far limbs (index 1) first, the near ones (index 0) after the torso.
    if side:
        draw_arm(arms[1])
        draw_leg(legs[1])
        if app.bag == "backpack":
            d.polygon(
                [
                    rot_off(-f * (sh + 0.07), sh_dy + 0.02, neck),
                    rot_off(-f * sh * 0.6, sh_dy + 0.02, neck),
                    rot_off(-f * sh * 0.6, sh_dy + 0.22, neck),
                    rot_off(-f * (sh + 0.08), sh_dy + 0.2, neck),
                ],
                fill=_BAG,
            )
    else:
        draw_leg(legs[0])
        draw_leg(legs[1])
    d.polygon(torso, fill=_TOP)
    if side:
        draw_leg(legs[0])
    if app.bottom_style == "skirt":
        knee_dy = hip_dy + app.leg_length * 0.45
        flare = hp * (1.35 if not side else 1.8)
        d.polygon(
            [
                rot_off(-hp * 1.02, hip_dy - 0.02, neck),
                rot_off(hp * 1.02, hip_dy - 0.02, neck),
                rot_off(flare, knee_dy, neck),
                rot_off(-flare, knee_dy, neck),
            ],
            fill=_BOTTOM,
        )
    else:
        # Pelvis block joins the legs to the torso.
        d.polygon(
            [
                rot_off(-hp, hip_dy - 0.02, neck),
                rot_off(hp, hip_dy - 0.02, neck),
                rot_off(hp * 0.9, hip_dy + 0.07, neck),
                rot_off(-hp * 0.9, hip_dy + 0.07, neck),
            ],
            fill=_BOTTOM,
        )
    if pose.view == "back" and app.bag == "backpack":
        d.polygon(
            [
                rot_off(-sh * 0.6, sh_dy + 0.03, neck),
                rot_off(sh * 0.6, sh_dy + 0.03, neck),
                rot_off(sh * 0.6, sh_dy + 0.22, neck),
                rot_off(-sh * 0.6, sh_dy + 0.22, neck),
            ],
            fill=_BAG,
        )
    # Neck and head.
    nw = width(0.05)
    d.line([px(neck), px((neck[0], neck[1] + sh_dy + 0.01))], fill=_SKIN, width=nw)
    hx, hy = px(p["head"])
    rr = r * scale
    if app.hair_style == "long" and pose.view != "side":
        _rect(d, [hx - rr * 1.05, hy, hx + rr * 1.05, hy + rr * 1.9], fill=_HAIR)
    elif app.hair_style == "long":
        xa, xb = sorted((hx - f * rr * 1.05, hx - f * rr * 0.1))
        _rect(d, [xa, hy, xb, hy + rr * 1.9], fill=_HAIR)
    if pose.view == "back" and app.hair_style != "bald":
        _ell(d, [hx - rr, hy - rr, hx + rr, hy + rr * 1.05], fill=_HAIR)
    else:
        if app.hair_style in ("short", "long"):
            off = -f * rr * 0.15 if side else 0.0
            _ell(
                d,
                [hx - rr * 1.05 + off, hy - rr * 1.06, hx + rr * 1.05 + off, hy + rr * 0.45],
                fill=_HAIR,
            )
        foff = f * rr * 0.12 if side else 0.0
        _ell(
            d,
            [hx - rr * 0.88 + foff, hy - rr * 0.6, hx + rr * 0.88 + foff, hy + rr * 1.02],
            fill=_SKIN,
        )
        if pose.view == "front" and height >= 50:
            er = max(0.6, rr * 0.11)
            for ex in (-0.35, 0.35):
                _ell(
                    d,
                    [
                        hx + ex * rr - er,
                        hy + 0.05 * rr - er,
                        hx + ex * rr + er,
                        hy + 0.05 * rr + er,
                    ],
                    fill=_FEATURE,
                )
    if app.hair_style == "hat":
        _ell(d, [hx - rr * 1.08, hy - rr * 1.12, hx + rr * 1.08, hy - rr * 0.05], fill=_HAT)
        _rect(d, [hx - rr * 1.25, hy - rr * 0.35, hx + rr * 1.25, hy - rr * 0.12], fill=_HAT)
    hand = draw_arm(arms[0])
    if not side:
        draw_arm(arms[1])
    if app.bag == "handbag" and hand is not None:
        bw, bh = 0.07 * scale, 0.08 * scale
        _rect(d, [hand[0] - bw / 2, hand[1], hand[0] + bw / 2, hand[1] + bh], fill=_BAG)
    return np.asarray(img)


def _ordered(xy) -> list[float]:
    """[x0, y0, x1, y1] with x0 <= x1 and y0 <= y1 (PIL rejects flipped boxes, which tiny
    objects and random sizes can produce)."""
    x0, y0, x1, y1 = (float(v) for v in xy)
    return [min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)]


def _rect(d: ImageDraw.ImageDraw, xy, **kw) -> None:
    d.rectangle(_ordered(xy), **kw)


def _ell(d: ImageDraw.ImageDraw, xy, **kw) -> None:
    d.ellipse(_ordered(xy), **kw)


def _rrect(d: ImageDraw.ImageDraw, xy, **kw) -> None:
    d.rounded_rectangle(_ordered(xy), **kw)


def _texture(kind: str, shape: tuple[int, int], period: float) -> np.ndarray:
    """Bool map [h, w]: True where the clothing shows its second colour."""
    h, w = shape
    if kind == "plain":
        return np.zeros(shape, bool)
    p = max(2.0, period)
    yy = (np.arange(h)[:, None] / p).astype(np.int64)
    xx = (np.arange(w)[None, :] / p).astype(np.int64)
    if kind == "hstripes":
        return np.broadcast_to(yy % 2 == 1, shape)
    if kind == "vstripes":
        return np.broadcast_to(xx % 2 == 1, shape)
    return (yy + xx) % 2 == 1  # checks


def render_figure(
    app: Appearance, pose: Pose, height: int, light: float = 0.0, flat: tuple | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Renders a person figure.

    Args:
      app: identity appearance.
      pose: pose.
      height: full-box height in pixels.
      light: horizontal light direction in [-1, 1] (shading brighter on that side).
      flat: if given, an RGB colour used for every part (poster silhouettes).

    Returns:
      rgb [height, w, 3] uint8 and mask [height, w] bool, w = figure_width(height).
    """
    parts = draw_figure_parts(app, pose, height)
    lut = np.zeros((_NUM_PARTS, 3), np.float32)
    for part, col in (
        (_SKIN, app.skin),
        (_HAIR, app.hair),
        (_TOP, app.top),
        (_SLEEVE, app.top),
        (_BOTTOM, app.bottom),
        (_SHOES, app.shoes),
        (_BAG, app.bag_colour),
        (_HAT, app.hat),
        (_FEATURE, (25, 20, 20)),
    ):
        lut[part] = col if flat is None else flat
    rgb = lut[parts]
    if flat is None:
        period = app.texture_period * height
        for part, kind, alt in (
            (_TOP, app.top_texture, app.top_alt),
            (_BOTTOM, app.bottom_texture, app.bottom_alt),
        ):
            sel = _texture(kind, parts.shape, period) & (
                (parts == part) | ((parts == _SLEEVE) & (part == _TOP))
            )
            rgb[sel] = alt
    mask = parts > 0
    h, w = parts.shape
    # Cylindrical shading plus a side light, so figures read as 3-D bodies, not flat stickers.
    u = (np.arange(w, dtype=np.float32) + 0.5) / w * 2.0 - 1.0
    shade = 1.0 - 0.22 * u**2 + 0.12 * light * u
    rgb *= shade[None, :, None]
    if h >= 24:
        # Dark outlines at the silhouette and between parts, like edges in a real photo.
        edge = np.zeros_like(mask)
        edge[:, 1:] |= parts[:, 1:] != parts[:, :-1]
        edge[1:, :] |= parts[1:, :] != parts[:-1, :]
        rgb[edge & mask] *= 0.72
    return np.clip(rgb, 0, 255).astype(np.uint8), mask


# --------------------------------------------------------------------------------------------
# Scene layout and drawing helpers.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Ground-plane geometry: a person with feet at row y is k * (y - horizon) px tall."""

    horizon: float
    k: float
    base_y: float  # row where the far facades meet the ground; nothing stands behind it
    vanish_x: float

    def person_height(self, foot_y: float) -> float:
        return self.k * (foot_y - self.horizon)

    def foot_for_height(self, h: float) -> float:
        return self.horizon + h / self.k


@dataclasses.dataclass
class _Layer:
    """A drawable: pixels `rgb`/`mask` at top-left (x0, y0); `inst` > 0 marks an annotated id."""

    rgb: np.ndarray
    mask: np.ndarray
    x0: int
    y0: int
    inst: int = 0
    alpha: float = 1.0


def _paste(canvas: np.ndarray, inst_map: np.ndarray, layer: _Layer) -> None:
    """Composites a layer; its pixels overwrite the instance map (0 for plain objects)."""
    H, W = inst_map.shape
    h, w = layer.mask.shape
    x0, y0 = layer.x0, layer.y0
    cx0, cy0, cx1, cy1 = max(0, x0), max(0, y0), min(W, x0 + w), min(H, y0 + h)
    if cx0 >= cx1 or cy0 >= cy1:
        return
    m = layer.mask[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    src = layer.rgb[cy0 - y0 : cy1 - y0, cx0 - x0 : cx1 - x0]
    dst = canvas[cy0:cy1, cx0:cx1]
    if layer.alpha >= 1.0:
        dst[m] = src[m]
    else:
        mixed = layer.alpha * src[m].astype(np.float32) + (1.0 - layer.alpha) * dst[m]
        dst[m] = mixed.astype(np.uint8)
    inst_map[cy0:cy1, cx0:cx1][m] = layer.inst


class _Patch:
    """An RGBA PIL surface for one object; pixels with alpha > 0 belong to the object."""

    def __init__(self, w: float, h: float):
        self.w, self.h = max(1, math.ceil(w)), max(1, math.ceil(h))
        self.img = Image.new("RGBA", (self.w, self.h), (0, 0, 0, 0))
        self.draw = ImageDraw.Draw(self.img)

    def layer(self, x0: float, y0: float, shade: bool = True, **kw) -> _Layer:
        a = np.asarray(self.img)
        rgb = a[..., :3].astype(np.float32)
        if shade:
            # Cylindrical shading: objects look round/solid rather than cut-outs.
            u = (np.arange(self.w, dtype=np.float32) + 0.5) / self.w * 2.0 - 1.0
            rgb *= (1.0 - 0.25 * u**2)[None, :, None]
        return _Layer(rgb.astype(np.uint8), a[..., 3] > 0, round(x0), round(y0), **kw)


def _c(rgb, a: int = 255) -> tuple[int, int, int, int]:
    return (int(rgb[0]), int(rgb[1]), int(rgb[2]), a)


def _rand_colour(rng, palette) -> tuple[int, int, int]:
    return _jitter_colour(rng, palette, 10.0)


_BUILDING_COLOURS = (
    (200, 185, 160),
    (170, 160, 150),
    (150, 80, 60),
    (120, 110, 105),
    (220, 215, 205),
    (90, 90, 95),
    (185, 140, 100),
    (140, 150, 160),
)
_CAR_COLOURS = (
    (200, 200, 205),
    (30, 30, 35),
    (140, 20, 25),
    (40, 60, 110),
    (120, 120, 125),
    (230, 230, 225),
    (60, 70, 60),
    (180, 150, 60),
)
_METAL = ((70, 75, 80), (40, 45, 50), (110, 115, 120), (60, 90, 70))


# --------------------------------------------------------------------------------------------
# Background: sky, far facades with windows, shops and posters, street with perspective.
# --------------------------------------------------------------------------------------------


def _draw_background(rng, cfg: RenderConfig, lay: _Layout) -> tuple[np.ndarray, list[dict]]:
    """Draws the static background; returns canvas [H, W, 3] uint8 and facade descriptions."""
    H, W = cfg.image_height, cfg.image_width
    img = Image.new("RGB", (W, H))
    d = ImageDraw.Draw(img)
    # Sky: vertical gradient.
    top = np.array(
        _rand_colour(rng, ((120, 160, 210), (170, 180, 190), (200, 200, 205))), np.float32
    )
    low = np.array(
        _rand_colour(rng, ((210, 220, 230), (230, 225, 210), (190, 195, 200))), np.float32
    )
    t = np.linspace(0.0, 1.0, H, dtype=np.float32)[:, None]
    sky = (top * (1 - t) + low * t).astype(np.uint8)[:, None, :]  # one column, stretched
    img.paste(Image.fromarray(sky).resize((W, H), Image.NEAREST))
    # Street: sidewalk everywhere, a road wedge from the vanishing point, lane marks, curbs.
    hz, vx = lay.horizon, lay.vanish_x
    walk = _rand_colour(rng, ((170, 165, 155), (150, 150, 150), (185, 175, 160), (140, 130, 120)))
    _rect(d, [0, hz, W, H], fill=walk)
    # Paving joints: rows spaced by perspective, columns converging to the vanishing point.
    for i in range(1, 40):
        y = hz + (H - hz) * (i / 40.0) ** 2
        d.line([0, y, W, y], fill=tuple(int(c * 0.85) for c in walk), width=1)
    for i in range(-30, 31):
        d.line([vx, hz, vx + i * W * 0.12, H], fill=tuple(int(c * 0.87) for c in walk), width=1)
    road_l, road_r = vx - rng.uniform(0.3, 1.0) * W, vx + rng.uniform(0.3, 1.0) * W
    asphalt = _rand_colour(rng, ((70, 70, 72), (90, 88, 85), (55, 57, 60)))
    d.polygon([(vx - 2, hz), (vx + 2, hz), (road_r, H), (road_l, H)], fill=asphalt)
    curb = (200, 200, 195)
    d.line([vx - 2, hz, road_l, H], fill=curb, width=max(1, int(4 * cfg.scale)))
    d.line([vx + 2, hz, road_r, H], fill=curb, width=max(1, int(4 * cfg.scale)))
    for lane in (0.33, 0.67):
        xb = road_l + (road_r - road_l) * lane
        for j in range(12):  # dashed lane marks, longer near the camera
            t0, t1 = (j / 12.0) ** 2, ((j + 0.5) / 12.0) ** 2
            p0 = (vx + (xb - vx) * t0, hz + (H - hz) * t0)
            p1 = (vx + (xb - vx) * t1, hz + (H - hz) * t1)
            d.line([p0, p1], fill=(225, 225, 215), width=max(1, int(1 + 5 * cfg.scale * t1)))
    if rng.random() < 0.4:  # zebra crossing: stripes along the road, between its edges
        t0 = rng.uniform(0.3, 0.7)
        t1 = t0 * 1.25
        for j in range(1, 16, 2):
            a, b = j / 16.0, (j + 0.6) / 16.0
            quad = []
            for t, u in ((t0, a), (t0, b), (t1, b), (t1, a)):
                xl, xr = vx + (road_l - vx) * t, vx + (road_r - vx) * t
                quad.append((xl + (xr - xl) * u, hz + (H - hz) * t))
            d.polygon(quad, fill=(225, 225, 220))
    facades = _draw_facades(rng, cfg, lay, d)
    canvas = np.array(img)
    _paint_windows(canvas, facades)
    return canvas, facades


def _paint_windows(canvas: np.ndarray, facades: list[dict]) -> None:
    """Window grids of the facades, as row x column masks (thousands of PIL rectangles were
    the slowest part of the background)."""
    H, W = canvas.shape[:2]

    def band(starts, size, n):
        mask = np.zeros(n, bool)
        for a in starts:
            mask[max(0, round(a)) : max(0, min(n, round(a + size)))] = True
        return mask

    for fac in facades:
        g = fac["windows"]
        if not len(g["xs"]) or not len(g["ys"]):
            continue
        if g["frame"] is not None:  # 1 px light frame around each pane
            rows = band([y - 1 for y in g["ys"]], g["h"] + 2, H)
            cols = band([x - 1 for x in g["xs"]], g["w"] + 2, W)
            canvas[np.ix_(rows, cols)] = g["frame"]
        canvas[np.ix_(band(g["ys"], g["h"], H), band(g["xs"], g["w"], W))] = g["glass"]


def _draw_facades(rng, cfg: RenderConfig, lay: _Layout, d: ImageDraw.ImageDraw) -> list[dict]:
    """Far building fronts along the horizon with windows, shops, doors and textures."""
    W = cfg.image_width
    p_far = max(4.0, lay.person_height(lay.base_y + 2))  # person height at the facades
    facades = []
    x = -rng.uniform(0, 50) * cfg.scale
    while x < W:
        fw = rng.uniform(0.12, 0.35) * W
        ftop = rng.uniform(-0.15, 0.75) * lay.horizon
        col = _rand_colour(rng, _BUILDING_COLOURS)
        box = [x, ftop, x + fw, lay.base_y]
        _rect(d, box, fill=col)
        kind = rng.integers(3)
        dark = tuple(int(c * 0.82) for c in col)
        if kind == 0:  # brick courses
            step = max(2, int(p_far * 0.12))
            for y in np.arange(ftop, lay.base_y, step):
                d.line([x, y, x + fw, y], fill=dark, width=1)
        elif kind == 1:  # panels
            step = max(4, int(p_far * 0.9))
            for xx in np.arange(x, x + fw, step):
                d.line([xx, ftop, xx, lay.base_y], fill=dark, width=1)
        floor_h = p_far * rng.uniform(1.6, 2.2)
        ground_top = lay.base_y - floor_h * 1.1
        glass = _rand_colour(rng, ((60, 80, 100), (40, 50, 60), (90, 110, 130), (30, 35, 40)))
        col_w = p_far * rng.uniform(1.0, 1.6)
        win_w, win_h = col_w * rng.uniform(0.4, 0.7), floor_h * rng.uniform(0.4, 0.65)
        # Upper floors: a regular window grid, painted later by `_paint_windows`.
        ys, y = [], ground_top - floor_h
        while y > ftop + floor_h * 0.2:
            ys.append(y + floor_h * 0.2)
            y -= floor_h
        windows = {
            "xs": np.arange(x + col_w * 0.3, x + fw - win_w, col_w).tolist(),
            "ys": ys,
            "w": win_w,
            "h": win_h,
            "glass": glass,
            "frame": (230, 230, 225) if win_h > 6 else None,
        }
        shops = []
        if ground_top > ftop:  # ground floor: shop windows and doors
            sx = x + rng.uniform(0.05, 0.3) * fw
            while sx < x + fw * 0.9:
                sw = p_far * rng.uniform(1.5, 4.0)
                if sx + sw > x + fw:
                    break
                shop = [sx, ground_top + floor_h * 0.15, sx + sw, lay.base_y]
                _rect(d, shop, fill=glass, outline=(50, 50, 50))
                shops.append(shop)
                sx += sw + p_far * rng.uniform(0.5, 2.0)
            _rect(
                d,
                [x, ground_top - 2, x + fw, ground_top + 1],
                fill=_rand_colour(rng, _CLOTH_COLOURS),
            )  # awning / sign band
        facades.append({"box": box, "shops": shops, "colour": col, "windows": windows})
        d.line([x, ftop, x, lay.base_y], fill=(60, 60, 60), width=1)
        x += fw
    return facades


# --------------------------------------------------------------------------------------------
# Objects: distractors (hard negatives) and occluders, sized by the person height at their depth.
# --------------------------------------------------------------------------------------------


def _obj_pole(rng, p: float, x: float, foot: float) -> _Layer:
    """Street lamp or sign post: a tall thin vertical, the classic pedestrian false positive."""
    h, w = p * rng.uniform(2.0, 3.2), max(2.0, p * rng.uniform(0.035, 0.06))
    h = min(h, foot + 2.0)  # what sticks out above the image is never seen; don't draw it
    patch = _Patch(max(w * 8, p * 0.4), h)
    cx = patch.w / 2
    metal = _rand_colour(rng, _METAL)
    _rect(patch.draw, [cx - w / 2, 0, cx + w / 2, h], fill=_c(metal))
    if rng.random() < 0.5:  # sign
        sy, ss = h * rng.uniform(0.2, 0.5), p * rng.uniform(0.2, 0.35)
        sc = _rand_colour(rng, ((200, 30, 30), (30, 80, 180), (230, 200, 40), (240, 240, 240)))
        if rng.random() < 0.5:
            _ell(patch.draw, [cx - ss / 2, sy, cx + ss / 2, sy + ss], fill=_c(sc))
        else:
            _rect(patch.draw, [cx - ss / 2, sy, cx + ss / 2, sy + ss * 0.8], fill=_c(sc))
    else:  # lamp head
        _rect(patch.draw, [cx - w * 3, 0, cx + w * 0.5, w * 1.5], fill=_c(metal))
    return patch.layer(x - cx, foot - h)


def _obj_tree(rng, p: float, x: float, foot: float) -> _Layer:
    trunk_h, crown = p * rng.uniform(1.0, 1.6), p * rng.uniform(0.5, 0.9)
    patch = _Patch(crown * 2, trunk_h + crown * 1.6)
    cx = patch.w / 2
    _rect(
        patch.draw,
        [cx - p * 0.05, crown, cx + p * 0.05, patch.h],
        fill=_c(_rand_colour(rng, ((80, 60, 40), (60, 50, 40)))),
    )
    green = _rand_colour(rng, ((60, 100, 50), (40, 80, 40), (90, 120, 60)))
    for _ in range(6):
        ox, oy, rr = rng.normal(0, crown * 0.3), rng.normal(crown * 0.9, crown * 0.25), crown * 0.6
        shade = tuple(int(c * rng.uniform(0.8, 1.15)) for c in green)
        _ell(patch.draw, [cx + ox - rr, oy - rr, cx + ox + rr, oy + rr], fill=_c(shade))
    return patch.layer(x - cx, foot - patch.h, shade=False)


def _obj_bin(rng, p: float, x: float, foot: float) -> _Layer:
    h, w = p * rng.uniform(0.45, 0.6), p * rng.uniform(0.22, 0.32)
    patch = _Patch(w * 1.1, h)
    col = _rand_colour(rng, ((40, 90, 50), (60, 60, 65), (30, 60, 120), (150, 120, 40)))
    _rect(patch.draw, [w * 0.05, h * 0.12, w * 1.05, h], fill=_c(col))
    _rect(patch.draw, [0, 0, w * 1.1, h * 0.14], fill=_c(tuple(int(c * 0.7) for c in col)))
    return patch.layer(x - w * 0.55, foot - h)


def _obj_bollards(rng, p: float, x: float, foot: float) -> list[_Layer]:
    """A row of bollards: short vertical posts, person-leg-like at low resolution."""
    n, gap = int(rng.integers(2, 6)), p * rng.uniform(0.3, 0.6)
    col = _rand_colour(rng, ((60, 60, 60), (150, 150, 150), (40, 40, 40), (200, 180, 40)))
    layers = []
    for i in range(n):
        h, w = p * 0.45, max(2.0, p * 0.09)
        patch = _Patch(w, h)
        _rect(patch.draw, [0, h * 0.1, w, h], fill=_c(col))
        _ell(patch.draw, [0, 0, w, h * 0.2], fill=_c(col))
        _rect(patch.draw, [0, h * 0.2, w, h * 0.27], fill=(230, 230, 230, 255))
        layers.append(patch.layer(x + i * gap, foot - h))
    return layers


def _obj_pillar(rng, p: float, x: float, foot: float) -> _Layer:
    h, w = p * rng.uniform(2.5, 4.5), p * rng.uniform(0.18, 0.3)
    h = min(h, foot + 2.0)  # clipped at the image top anyway
    patch = _Patch(w, h)
    col = _rand_colour(rng, _BUILDING_COLOURS)
    _rect(patch.draw, [0, 0, w, h], fill=_c(col))
    if rng.random() < 0.5:  # advertising column band
        _rect(patch.draw, [0, h * 0.6, w, h * 0.8], fill=_c(_rand_colour(rng, _CLOTH_COLOURS)))
    return patch.layer(x - w / 2, foot - h)


def _obj_mannequin(rng, p: float, x: float, foot: float) -> _Layer:
    """Dress form on a stand: a human torso silhouette without head, arms or legs."""
    h = p * rng.uniform(0.75, 0.95)
    w = p * 0.24
    patch = _Patch(w, h)
    col = _rand_colour(rng, ((230, 220, 200), (30, 30, 30), (240, 240, 240), (190, 160, 130)))
    cx, d = w / 2, patch.draw
    _ell(d, [cx - w * 0.09, 0, cx + w * 0.09, h * 0.06], fill=_c(col))  # neck knob
    # Shoulders, chest, waist, hips: an hourglass torso over the top 45% of the height.
    body = [
        (-0.2, 0.05),
        (0.2, 0.05),
        (0.46, 0.1),
        (0.44, 0.2),
        (0.3, 0.3),
        (0.42, 0.4),
        (0.38, 0.45),
        (-0.38, 0.45),
        (-0.42, 0.4),
        (-0.3, 0.3),
        (-0.44, 0.2),
        (-0.46, 0.1),
    ]
    d.polygon([(cx + u * w, v * h) for u, v in body], fill=_c(col))
    stand = (50, 50, 50, 255)
    d.line([cx, h * 0.45, cx, h * 0.97], fill=stand, width=max(1, int(w * 0.05)))
    d.polygon([(cx - w * 0.3, h), (cx + w * 0.3, h), (cx, h * 0.93)], fill=stand)
    return patch.layer(x - cx, foot - h)


def _obj_hydrant(rng, p: float, x: float, foot: float) -> _Layer:
    h, w = p * 0.4, p * 0.16
    patch = _Patch(w * 1.6, h)
    cx, d = patch.w / 2, patch.draw
    col = _rand_colour(rng, ((190, 30, 30), (220, 190, 40), (60, 60, 60)))
    _rect(d, [cx - w / 2, h * 0.2, cx + w / 2, h], fill=_c(col))
    _ell(d, [cx - w / 2, 0, cx + w / 2, h * 0.35], fill=_c(col))
    _rect(d, [cx - w * 0.8, h * 0.35, cx + w * 0.8, h * 0.48], fill=_c(col))
    return patch.layer(x - cx, foot - h)


def _obj_car(rng, p: float, x: float, foot: float) -> _Layer:
    """Side view of a parked car: the main object occluding pedestrians in CityPersons."""
    L, h = p * rng.uniform(2.2, 2.7), p * rng.uniform(0.75, 0.9)
    patch = _Patch(L, h)
    d = patch.draw
    col = _rand_colour(rng, _CAR_COLOURS)
    glass = (50, 60, 75, 255)
    wheel_r = h * 0.2
    _rrect(d, [0, h * 0.38, L, h - wheel_r * 0.6], radius=max(1, int(h * 0.1)), fill=_c(col))
    d.polygon(
        [(L * 0.2, h * 0.4), (L * 0.3, h * 0.02), (L * 0.72, h * 0.02), (L * 0.85, h * 0.4)],
        fill=_c(col),
    )
    d.polygon(
        [(L * 0.25, h * 0.38), (L * 0.33, h * 0.08), (L * 0.49, h * 0.08), (L * 0.49, h * 0.38)],
        fill=glass,
    )
    d.polygon(
        [(L * 0.52, h * 0.38), (L * 0.52, h * 0.08), (L * 0.7, h * 0.08), (L * 0.8, h * 0.38)],
        fill=glass,
    )
    for wx in (L * 0.2, L * 0.8):
        _ell(d, [wx - wheel_r, h - 2 * wheel_r, wx + wheel_r, h], fill=(20, 20, 20, 255))
        _ell(
            d,
            [wx - wheel_r * 0.5, h - 1.5 * wheel_r, wx + wheel_r * 0.5, h - 0.5 * wheel_r],
            fill=(150, 150, 155, 255),
        )
    _rect(d, [L * 0.96, h * 0.45, L, h * 0.55], fill=(240, 220, 150, 255))
    return patch.layer(x - L / 2, foot - h, shade=False)


def _obj_railing(rng, p: float, x: float, foot: float) -> _Layer:
    """Railing: thin bars in front of people leave most of them visible (partial occlusion)."""
    L, h = p * rng.uniform(1.5, 4.0), p * rng.uniform(0.45, 0.6)
    patch = _Patch(L, h)
    col = _c(_rand_colour(rng, _METAL))
    bar = max(1, int(p * 0.03))
    for yy in (0.0, 0.45):
        _rect(patch.draw, [0, h * yy, L, h * yy + bar], fill=col)
    step = max(bar * 3, p * rng.uniform(0.08, 0.3))
    for xx in np.arange(0, L, step):
        _rect(patch.draw, [xx, 0, xx + bar, h], fill=col)
    return patch.layer(x - L / 2, foot - h, shade=False)


def _obj_planter(rng, p: float, x: float, foot: float) -> _Layer:
    L, h = p * rng.uniform(0.8, 1.8), p * rng.uniform(0.35, 0.55)
    patch = _Patch(L, h)
    d = patch.draw
    _rect(d, [0, h * 0.45, L, h], fill=_c(_rand_colour(rng, ((120, 110, 100), (90, 70, 50)))))
    green = _rand_colour(rng, ((50, 100, 45), (70, 110, 50)))
    for i in range(int(L / max(1.0, h * 0.3)) + 1):
        rr = h * 0.3
        _ell(d, [i * h * 0.3 - rr * 0.2, 0, i * h * 0.3 + rr * 1.2, h * 0.6], fill=_c(green))
    return patch.layer(x - L / 2, foot - h, shade=False)


_DISTRACTORS = (
    (_obj_pole, 0.25),
    (_obj_tree, 0.12),
    (_obj_bin, 0.12),
    (_obj_bollards, 0.12),
    (_obj_pillar, 0.08),
    (_obj_mannequin, 0.12),
    (_obj_hydrant, 0.09),
    (_obj_planter, 0.1),
)
_OCCLUDERS = (
    (_obj_car, 0.35),
    (_obj_railing, 0.2),
    (_obj_bin, 0.15),
    (_obj_planter, 0.15),
    (_obj_bollards, 0.05),
    (_obj_pole, 0.1),
)


def _pick(rng, table):
    """A function from a (function, weight) table."""
    fns, weights = zip(*table)
    return _choice(rng, fns, weights)


# --------------------------------------------------------------------------------------------
# Scene.
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Annotation:
    """One annotated entity of a rendered scene (boxes: [x1, y1, x2, y2] float pixels)."""

    inst: int  # local id in the instance map, 1-based
    label: int  # CityPersons class id: 0 ignore region, 1 pedestrian, 5 group
    person_id: int  # identity, -1 for ignore regions and groups
    full_box: np.ndarray
    visible_box: np.ndarray
    height: float
    vis_ratio: float
    ignore: bool


@dataclasses.dataclass
class Scene:
    """A rendered scene: image [H, W, 3] uint8, instance map [H, W] int32 (0 = no annotation).

    `annotations` only holds entities with at least one visible pixel, in creation order.
    `appearances` maps each drawn pedestrian's person_id to its Appearance.
    """

    image: np.ndarray
    instance_map: np.ndarray
    annotations: list[Annotation]
    appearances: dict[int, Appearance]


@dataclasses.dataclass
class _Entity:
    """Something standing on the ground, drawn back to front by `foot`."""

    foot: float
    layers: list[_Layer]
    label: int = -1  # -1: not annotated
    person_id: int = -1
    full_box: tuple[float, float, float, float] | None = None


def _sample_height(rng, cfg: RenderConfig) -> float:
    """Anchor height of a group: mostly small/medium people (log-uniform), some close ones."""
    s = cfg.scale
    if rng.random() < 0.88:
        lo, hi = cfg.min_height, 200.0 * s
    else:
        lo, hi = 120.0 * s, cfg.max_height
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def _place_person(cfg: RenderConfig, lay: _Layout, cx: float, foot: float, size_mult: float):
    """Integer full box (x0, y0, h, w) for a person centred at cx with feet at `foot`.

    The height follows the ground-plane perspective times `size_mult` (body size), and the
    box is shifted to lie inside the image.
    """
    H, W = cfg.image_height, cfg.image_width
    foot = min(max(foot, lay.base_y + 1.0), float(H))
    h = lay.person_height(foot) * size_mult
    h = round(min(max(h, cfg.min_height), cfg.max_height, foot))
    w = figure_width(h)
    foot_i = round(foot)
    y0 = min(max(foot_i - h, 0), H - h)
    x0 = round(cx - w / 2.0)
    x0 = min(max(x0, 0), W - w)
    return x0, y0, h, w


# Crowd layout, tuned so that the overlap rates match CityPersons val (48.8% of pedestrians
# overlap another with IoU > 0.1, 26.4% with IoU > 0.3); see tests/test_synthetic_crowd.py.
_GROUP_SIZE_P = (0.55, 0.25, 0.1, 0.06, 0.04, 0.0)  # P(group of 1..6 people)
_SIDE_GAP = (0.4, 1.6)  # centre distance of side-by-side walkers, in box widths
_DEPTH_GAP = (0.03, 0.15)  # foot-row distance of people behind each other, in heights
_BEHIND_SHIFT = 1.2  # horizontal shift of people behind each other, in box widths


def _sample_crowd(rng, cfg: RenderConfig, lay: _Layout, n_target: int) -> list[tuple]:
    """Positions of individually annotated people as (cx, foot, size_mult), in walking groups.

    Group members walk side by side (same depth, shifted by 0.3..0.95 box widths) or behind
    each other (slightly different depth); this is what produces CityPersons-like overlaps.
    The side-by-side gap is in units of 0.41 * height: two equal boxes at gap g have
    IoU (1 - g) / (1 + g), i.e. > 0.3 below g = 0.54 and > 0.1 below g = 0.82.
    """
    people = []
    W = cfg.image_width
    while len(people) < n_target:
        size = _choice(rng, range(1, 1 + len(_GROUP_SIZE_P)), _GROUP_SIZE_P)
        h0 = _sample_height(rng, cfg)
        w0 = FULL_BOX_ASPECT * h0
        members = [(rng.uniform(w0 / 2, W - w0 / 2), lay.foot_for_height(h0))]
        for _ in range(size - 1):
            rcx, rfoot = members[int(rng.integers(len(members)))]
            rh = max(cfg.min_height, lay.person_height(rfoot))
            rw = FULL_BOX_ASPECT * rh
            sign = rng.choice([-1.0, 1.0])
            if rng.random() < 0.6:  # side by side
                foot = rfoot + rng.normal(0.0, 0.015 * rh)
                cx = rcx + sign * rng.uniform(*_SIDE_GAP) * rw
            else:  # behind or in front
                foot = rfoot + sign * rng.uniform(*_DEPTH_GAP) * rh
                cx = rcx + rng.uniform(-_BEHIND_SHIFT, _BEHIND_SHIFT) * rw
            members.append((cx, foot))
        people.extend(members)
    out = []
    for cx, foot in people[:n_target]:
        # Adult height spread, and a few children.
        mult = rng.uniform(0.6, 0.75) if rng.random() < 0.05 else rng.normal(1.0, 0.05)
        out.append((float(cx), float(foot), float(mult)))
    return out


def _person_entity(rng, cfg, lay, inst, app, cx, foot, mult, light) -> _Entity:
    """An annotated pedestrian of identity `app` at (cx, foot) in a random pose."""
    x0, y0, h, w = _place_person(cfg, lay, cx, foot, mult)
    rgb, mask = render_figure(app, sample_pose(rng), h, light)
    return _Entity(
        foot=float(y0 + h),
        layers=[_Layer(rgb, mask, x0, y0, inst)],
        label=LABEL_PEDESTRIAN,
        person_id=app.person_id,
        full_box=(x0, y0, x0 + w, y0 + h),
    )


def _group_entity(rng, cfg, lay, inst, light) -> _Entity:
    """A dense far-away cluster of small people annotated by one 'group' box (ignored)."""
    s = cfg.scale
    h0 = rng.uniform(max(cfg.min_height, 18 * s), 50 * s)
    foot0 = lay.foot_for_height(h0)
    n = int(rng.integers(6, 13))
    cx0 = rng.uniform(0.1, 0.9) * cfg.image_width
    members = []
    for _ in range(n):
        foot = foot0 + rng.normal(0, 0.05 * h0)
        cx = cx0 + rng.normal(0, 0.5 * h0)
        members.append((foot, cx))
    members.sort()
    layers, boxes = [], []
    for foot, cx in members:
        app = make_appearance(int(rng.integers(cfg.num_identities)), cfg.identity_seed)
        x0, y0, h, w = _place_person(cfg, lay, cx, foot, rng.normal(1.0, 0.05))
        rgb, mask = render_figure(app, sample_pose(rng), h, light)
        layers.append(_Layer(rgb, mask, x0, y0, inst))
        boxes.append((x0, y0, x0 + w, y0 + h))
    b = np.asarray(boxes, np.float64)
    box = (b[:, 0].min(), b[:, 1].min(), b[:, 2].max(), b[:, 3].max())
    return _Entity(foot=float(box[3]), layers=layers, label=LABEL_GROUP, full_box=box)


def _ad_panel_entity(rng, cfg, lay, inst, light) -> _Entity:
    """A street advertising panel showing a life-size person: a fake human (ignore region)."""
    H, W = cfg.image_height, cfg.image_width
    ph = _sample_height(rng, cfg) * 1.3
    ph = min(ph, H - 2.0)
    foot = min(float(H), lay.foot_for_height(ph / 1.3))
    pw = ph * rng.uniform(0.5, 0.7)
    x = rng.uniform(0, W - pw)
    patch = _Patch(pw, ph)
    frame = _c(_rand_colour(rng, _METAL))
    bg = _c(_rand_colour(rng, _CLOTH_COLOURS + ((250, 250, 245),) * 4))
    _rect(patch.draw, [0, 0, pw, ph], fill=frame)
    m = max(1.0, pw * 0.06)
    _rect(patch.draw, [m, m, pw - m, ph * 0.9], fill=bg)
    for j in range(3):  # text lines
        _rect(
            patch.draw,
            [m * 2, ph * (0.05 + 0.04 * j), pw * rng.uniform(0.4, 0.9), ph * (0.07 + 0.04 * j)],
            fill=(20, 20, 20, 255),
        )
    y_panel = max(0.0, foot - ph)
    panel = patch.layer(x, y_panel, shade=False)
    # The printed person: 70% of the panel, inside the poster area.
    fh = max(int(cfg.min_height), int(ph * 0.7))
    app = make_appearance(int(rng.integers(cfg.num_identities)), cfg.identity_seed)
    rgb, mask = render_figure(app, sample_pose(rng), fh, light)
    fw = mask.shape[1]
    fx0 = round(x + (pw - fw) / 2)
    fy0 = round(y_panel + ph * 0.88 - fh)
    fy0 = min(max(fy0, 0), H - fh)
    fx0 = min(max(fx0, 0), W - fw)
    return _Entity(
        foot=y_panel + ph,
        layers=[panel, _Layer(rgb, mask, fx0, fy0, inst)],
        label=LABEL_IGNORE_REGION,
        full_box=(fx0, fy0, fx0 + fw, fy0 + fh),
    )


def _glass_entity(rng, cfg, lay, inst, light) -> _Entity:
    """A glass shelter wall with a faint reflected person: a fake human (ignore region)."""
    H, W = cfg.image_height, cfg.image_width
    p = min(_sample_height(rng, cfg), H / 1.35)
    foot = min(float(H), lay.foot_for_height(p))
    gh, gw = p * 1.3, p * rng.uniform(0.8, 1.5)
    x = rng.uniform(0, max(1.0, W - gw))
    y0 = max(0.0, foot - gh)
    patch = _Patch(gw, gh)
    tint = _rand_colour(rng, ((120, 150, 170), (100, 120, 130), (150, 170, 180)))
    _rect(
        patch.draw,
        [0, 0, gw, gh],
        fill=_c(tint),
        outline=(60, 60, 65, 255),
        width=max(1, int(p * 0.03)),
    )
    glass = patch.layer(x, y0, shade=False, alpha=0.8)
    fh = max(int(cfg.min_height), int(p * rng.uniform(0.7, 0.95)))
    fh = min(fh, H)
    app = make_appearance(int(rng.integers(cfg.num_identities)), cfg.identity_seed)
    rgb, mask = render_figure(app, sample_pose(rng), fh, light)
    fw = mask.shape[1]
    fx0 = int(min(max(round(x + rng.uniform(0.1, 0.9) * gw - fw / 2), 0), W - fw))
    fy0 = int(min(max(round(y0 + gh * 0.95 - fh), 0), H - fh))
    refl = _Layer(rgb, mask, fx0, fy0, inst, alpha=0.4)
    return _Entity(
        foot=y0 + gh,
        layers=[glass, refl],
        label=LABEL_IGNORE_REGION,
        full_box=(fx0, fy0, fx0 + fw, fy0 + fh),
    )


def _facade_fake_humans(rng, cfg, lay, facades, next_inst, light) -> list[_Entity]:
    """Posters on far walls and reflections in shop windows (ignore regions)."""
    out = []
    p_far = max(cfg.min_height, lay.person_height(lay.base_y + 2))
    for fac in facades:
        x1, y1, x2, y2 = fac["box"]
        if rng.random() < 0.25:  # poster / billboard on the wall
            ph = p_far * rng.uniform(1.5, 3.5)
            pw = ph * rng.uniform(0.6, 1.2)
            top_min, top_max = max(y1, 0.0) + 2, y2 - p_far * 1.5 - ph
            if top_max > top_min and x2 - x1 > pw + 4 and x1 >= 0 and x2 <= cfg.image_width:
                px0, py0 = rng.uniform(x1 + 2, x2 - pw - 2), rng.uniform(top_min, top_max)
                patch = _Patch(pw, ph)
                _rect(
                    patch.draw,
                    [0, 0, pw, ph],
                    fill=_c(_rand_colour(rng, _CLOTH_COLOURS)),
                    outline=(30, 30, 30, 255),
                )
                layers = [patch.layer(px0, py0, shade=False)]
                fh = int(ph * 0.85)
                if fh >= cfg.min_height:
                    app = make_appearance(int(rng.integers(cfg.num_identities)), cfg.identity_seed)
                    rgb, mask = render_figure(app, sample_pose(rng), fh, light)
                    fx0 = round(px0 + pw * rng.uniform(0.1, 0.5))
                    fx0 = min(fx0, cfg.image_width - mask.shape[1])
                    fy0 = round(py0 + ph * 0.1)
                    layers.append(_Layer(rgb, mask, fx0, fy0, next_inst))
                    out.append(
                        _Entity(
                            foot=-1.0,
                            layers=layers,
                            label=LABEL_IGNORE_REGION,
                            full_box=(fx0, fy0, fx0 + mask.shape[1], fy0 + fh),
                        )
                    )
                    next_inst += 1
                else:
                    out.append(_Entity(foot=-1.0, layers=layers))
        for shop in fac["shops"]:
            if rng.random() < 0.3:  # reflection of a passer-by in the shop window
                fh = int(min(shop[3] - shop[1] - 1, p_far * rng.uniform(0.8, 1.1)))
                if fh < cfg.min_height:
                    continue
                app = make_appearance(int(rng.integers(cfg.num_identities)), cfg.identity_seed)
                rgb, mask = render_figure(app, sample_pose(rng), fh, light)
                fw = mask.shape[1]
                if shop[2] - shop[0] <= fw + 1:
                    continue
                fx0 = round(rng.uniform(shop[0], shop[2] - fw))
                fy0 = round(shop[3] - fh - 1)
                if fx0 < 0 or fx0 + fw > cfg.image_width or fy0 < 0:
                    continue
                out.append(
                    _Entity(
                        foot=-1.0,
                        layers=[_Layer(rgb, mask, fx0, fy0, next_inst, 0.35)],
                        label=LABEL_IGNORE_REGION,
                        full_box=(fx0, fy0, fx0 + fw, fy0 + fh),
                    )
                )
                next_inst += 1
    return out


def _ground_shadows(canvas: np.ndarray, entities: list[_Entity], light: float) -> None:
    """Soft dark ellipses under people's feet, so figures stand on the ground."""
    H, W = canvas.shape[:2]
    for e in entities:
        if e.label != LABEL_PEDESTRIAN:
            continue
        x1, y1, x2, y2 = e.full_box
        h = y2 - y1
        cx = 0.5 * (x1 + x2) - light * 0.15 * h
        rx, ry = 0.3 * h, 0.03 * h + 1
        ya, yb = int(max(0, y2 - ry)), int(min(H, y2 + ry))
        xa, xb = int(max(0, cx - rx)), int(min(W, cx + rx))
        if ya >= yb or xa >= xb:
            continue
        yy, xx = np.mgrid[ya:yb, xa:xb]
        dist = ((xx - cx) / rx) ** 2 + ((yy - y2) / ry) ** 2
        dark = np.where(dist < 1.0, 0.75 + 0.25 * dist, 1.0)[..., None]
        canvas[ya:yb, xa:xb] = (canvas[ya:yb, xa:xb] * dark).astype(np.uint8)


def _apply_lighting(rng, img: np.ndarray, scale: float) -> np.ndarray:
    """Brightness/contrast, colour cast, illumination gradient, blotchy shading, sensor noise.

    Everything after the per-channel lookup table is one additive luminance field (a linear
    gradient plus smooth blotches, upsampled from a coarse grid, plus per-pixel noise), applied
    with a single uint8 PIL add: this was the most expensive step when done in numpy float32.
    """
    H, W = img.shape[:2]
    contrast, bright = float(rng.uniform(0.7, 1.15)), float(rng.uniform(-30, 20))
    cast = rng.uniform(0.88, 1.12, 3)
    v = np.arange(256, dtype=np.float64)
    lut = np.concatenate([(v - 128.0) * contrast * c + 128.0 + bright for c in cast])
    out = Image.fromarray(img).point(np.clip(np.round(lut), 0, 255).astype(np.int64).tolist())
    # Coarse grid: cell centres in [-1, 1]; a linear ramp survives bilinear upsampling exactly.
    cell = max(4, int(24 * scale))
    gh, gw = H // cell + 2, W // cell + 2
    gy = np.linspace(-1.0, 1.0, gh)[:, None]
    gx = np.linspace(-1.0, 1.0, gw)[None, :]
    ang, depth = float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0.0, 45.0))
    ramp = (np.cos(ang) * gx + np.sin(ang) * gy) * 0.5 + 0.5  # 0..1 across the image
    field = 128.0 - depth * ramp + rng.uniform(-14.0, 14.0, (gh, gw))  # shade + blotches
    field_img = Image.fromarray(np.clip(field, 0, 255).astype(np.uint8), mode="L")
    field = np.asarray(field_img.resize((W, H), Image.BILINEAR))
    # Luminance noise, uniform with std sigma (one draw per pixel, not per channel). The field
    # stays within [128 - 59, 128 + 14], so the uint8 sum cannot wrap.
    half = round(float(rng.uniform(1.5, 6.0)) * math.sqrt(3.0))
    noise = rng.integers(0, 2 * half + 1, (H, W), dtype=np.uint8)
    total = Image.fromarray(field + noise, mode="L")  # centred on 128 + half
    out = ImageChops.add(out, Image.merge("RGB", (total,) * 3), scale=1.0, offset=-128 - half)
    return np.asarray(out)


def visible_boxes(instance_map: np.ndarray, ids) -> dict[int, np.ndarray | None]:
    """Tight [x1, y1, x2, y2] box of the pixels equal to each id (None when none show)."""
    out = {}
    for i in ids:
        ys, xs = np.nonzero(instance_map == i)
        out[i] = (
            None
            if ys.size == 0
            else np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float64)
        )
    return out


def _visible_boxes_in(instance_map: np.ndarray, entities: list[_Entity]) -> dict[int, Any]:
    """Like `visible_boxes`, searching only inside each entity's full box (much faster)."""
    out = {}
    for e in entities:
        inst = e.layers[-1].inst
        x1, y1, x2, y2 = (int(v) for v in e.full_box)
        ys, xs = np.nonzero(instance_map[y1:y2, x1:x2] == inst)
        out[inst] = (
            None
            if ys.size == 0
            else np.array(
                [x1 + xs.min(), y1 + ys.min(), x1 + xs.max() + 1, y1 + ys.max() + 1], np.float64
            )
        )
    return out


def render_scene(cfg: RenderConfig, seed) -> Scene:
    """Renders one street scene; a pure function of (cfg, seed).

    Args:
      cfg: render configuration.
      seed: anything `np.random.default_rng` accepts (int or sequence of ints).

    Returns:
      A `Scene` with the image, the final instance map and the annotations.
    """
    rng = np.random.default_rng(seed)
    H, W = cfg.image_height, cfg.image_width
    horizon = H * rng.uniform(0.3, 0.42)
    # Perspective gain so that a person with feet at the bottom row is about max_height tall.
    k = cfg.max_height * rng.uniform(0.85, 1.0) / (H - horizon)
    lay = _Layout(
        horizon=horizon,
        k=k,
        base_y=horizon + rng.uniform(1.0, 8.0) * cfg.scale,
        vanish_x=W * rng.uniform(0.3, 0.7),
    )
    light = float(rng.uniform(-1, 1))
    canvas, facades = _draw_background(rng, cfg, lay)

    entities: list[_Entity] = []
    next_inst = 1
    # Individually annotated pedestrians, identities distinct within the image.
    n_people = int(rng.integers(cfg.min_people, cfg.max_people + 1))
    pids = rng.choice(cfg.num_identities, size=n_people, replace=False)
    appearances = {}
    for pid, (cx, foot, mult) in zip(pids, _sample_crowd(rng, cfg, lay, n_people)):
        app = make_appearance(int(pid), cfg.identity_seed)
        appearances[int(pid)] = app
        entities.append(_person_entity(rng, cfg, lay, next_inst, app, cx, foot, mult, light))
        next_inst += 1
    if rng.random() < 0.35:
        entities.append(_group_entity(rng, cfg, lay, next_inst, light))
        next_inst += 1
    for maker, prob in ((_ad_panel_entity, 0.3), (_glass_entity, 0.2)):
        if rng.random() < prob:
            entities.append(maker(rng, cfg, lay, next_inst, light))
            next_inst += 1
    fakes = _facade_fake_humans(rng, cfg, lay, facades, next_inst, light)
    next_inst += sum(e.label >= 0 for e in fakes)
    # Hard negatives anywhere on the ground.
    for _ in range(int(rng.integers(3, 11))):
        h_here = _sample_height(rng, cfg)
        foot = min(float(H), lay.foot_for_height(h_here))
        p = lay.person_height(foot)
        made = _pick(rng, _DISTRACTORS)(rng, p, rng.uniform(0, W), foot)
        entities.append(_Entity(foot=foot, layers=made if isinstance(made, list) else [made]))
    # Occluders just in front of some people: cars, railings, bins, planters.
    peds = [e for e in entities if e.label == LABEL_PEDESTRIAN]
    for _ in range(int(rng.integers(1, 5))):
        target = peds[int(rng.integers(len(peds)))]
        x1, y1, x2, y2 = target.full_box
        foot = min(float(H), y2 + rng.uniform(0.01, 0.15) * (y2 - y1))
        p = lay.person_height(foot)
        cx = 0.5 * (x1 + x2) + rng.uniform(-0.5, 0.5) * (x2 - x1)
        made = _pick(rng, _OCCLUDERS)(rng, p, cx, foot)
        entities.append(_Entity(foot=foot, layers=made if isinstance(made, list) else [made]))

    _ground_shadows(canvas, entities, light)
    inst_map = np.zeros((H, W), np.int32)
    for e in fakes:  # on the far walls: behind everything standing on the street
        for layer in e.layers:
            _paste(canvas, inst_map, layer)
    # Back to front; stable sort keeps creation order for equal depth.
    for e in sorted(entities, key=lambda e: e.foot):
        for layer in e.layers:
            _paste(canvas, inst_map, layer)
    image = _apply_lighting(rng, canvas, cfg.scale)
    annotations = _annotate(cfg, inst_map, [e for e in entities + fakes if e.label >= 0])
    shown = {a.person_id for a in annotations if a.label == LABEL_PEDESTRIAN}
    appearances = {pid: a for pid, a in appearances.items() if pid in shown}
    return Scene(
        image=image, instance_map=inst_map, annotations=annotations, appearances=appearances
    )


def _annotate(cfg: RenderConfig, inst_map: np.ndarray, entities: list[_Entity]) -> list[Annotation]:
    """Annotations of entities with a visible pixel, sorted by local instance id."""
    vis = _visible_boxes_in(inst_map, entities)
    out = []
    for e in sorted(entities, key=lambda e: e.layers[-1].inst):
        inst = e.layers[-1].inst
        vbox = vis[inst]
        if vbox is None:
            continue  # fully occluded: CityPersons cannot annotate what is not seen
        full = np.asarray(e.full_box, np.float64)
        height = float(full[3] - full[1])
        full_area = (full[2] - full[0]) * height
        vis_area = (vbox[2] - vbox[0]) * (vbox[3] - vbox[1])
        tiny = e.label == LABEL_PEDESTRIAN and height < cfg.tiny_height
        out.append(
            Annotation(
                inst=inst,
                label=e.label,
                person_id=e.person_id,
                full_box=full,
                visible_box=vbox,
                height=height,
                vis_ratio=float(min(1.0, vis_area / full_area)),
                ignore=bool(e.label != LABEL_PEDESTRIAN or tiny),
            )
        )
    return out


# --------------------------------------------------------------------------------------------
# Examples for the TFDS builder (plain numpy; the builder only wraps them).
# --------------------------------------------------------------------------------------------


def image_seed(split_seed: int, index: int) -> list[int]:
    """Per-image seed: independent of worker scheduling, so builds are reproducible."""
    return [int(split_seed), int(index)]


def scene_objects(scene: Scene, image_id: int) -> dict[str, np.ndarray]:
    """The builder's `objects` dict of a scene (boxes normalised [ymin, xmin, ymax, xmax]).

    Instance ids are `image_id * 1000 + rank` (1-based rank), unique across the dataset.
    """
    H, W = scene.instance_map.shape
    anns = scene.annotations
    n = len(anns)
    assert n < 1000, "instance ids reserve 3 digits per image"
    scale = np.array([W, H, W, H], np.float64)

    def norm(boxes):
        b = np.asarray(boxes, np.float64).reshape(n, 4) / scale  # xyxy / size
        return b[:, [1, 0, 3, 2]].astype(np.float32)

    return {
        "bbox": norm([a.full_box for a in anns]),
        "bbox_visible": norm([a.visible_box for a in anns]),
        "label": np.array([a.label for a in anns], np.int64),
        "height": np.array([a.height for a in anns], np.float32),
        "vis_ratio": np.array([a.vis_ratio for a in anns], np.float32),
        "ignore": np.array([a.ignore for a in anns], bool),
        "instance_id": np.array([image_id * 1000 + i + 1 for i in range(n)], np.int64),
        "person_id": np.array([a.person_id for a in anns], np.int64),
    }


def scene_to_example(scene: Scene, image_id: int, filename: str, jpeg_quality: int = 90) -> dict:
    """The builder's feature dict of a scene: JPEG bytes, ids, file name and objects."""
    buf = io.BytesIO()
    Image.fromarray(scene.image).save(buf, format="JPEG", quality=jpeg_quality)
    return {
        "image": buf.getvalue(),
        "image/id": int(image_id),
        "image/filename": filename,
        "objects": scene_objects(scene, image_id),
    }


def render_example(task: tuple) -> dict:
    """Worker entry point: task = (cfg, split, split_seed, index, image_id, jpeg_quality)."""
    cfg, split, split_seed, index, image_id, quality = task
    scene = render_scene(cfg, image_seed(split_seed, index))
    return scene_to_example(scene, image_id, f"{split}/{index:06d}.jpg", quality)
