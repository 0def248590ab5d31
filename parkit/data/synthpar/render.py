"""Drawing SynthPAR people: `render_person`, `body_regions` and `person_appearance`.

A person is drawn at twice the output size on a street-like background (`_background`), back to
front, one body part per step (`_draw_person`), then box-reduced, so that every change stays local:
two renders that differ in one attribute differ only where that attribute is drawn. Where the parts
sit comes from `body` (geometry); colours and every random draw come from `priors`.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from parkit.data.synthpar.body import Body, arm_joints, hand_radius, layout_body, leg_segments, region_boxes
from parkit.data.synthpar.priors import (
    CLOTH_COLOURS, GREY_HAIR_COLOURS, HAIR_COLOURS, SKIN_TONES, VIEW_ATTRIBUTE, VIEWS, complete_attributes,
    sample_appearance, sample_scene, seeded_rng)

DEFAULT_IMAGE_SIZE = (64, 128)  # (width, height), like a PA100K crop at reduced resolution
_SUPERSAMPLE = 2  # draw at 2x and box-reduce: anti-aliasing that keeps every change local

class _Pen:
    """ImageDraw wrapper that can also record shapes into masks (for textures on garments)."""

    def __init__(self, img: Image.Image):
        self.img = img
        self.draw = ImageDraw.Draw(img)
        self._masks: list = []

    @contextmanager
    def record(self):
        mask = Image.new("L", self.img.size, 0)
        d = ImageDraw.Draw(mask)
        self._masks.append(d)
        try:
            yield mask
        finally:
            self._masks.remove(d)

    def polygon(self, pts, fill):
        self.draw.polygon(pts, fill=fill)
        for d in self._masks:
            d.polygon(pts, fill=255)

    def ellipse(self, box, fill):
        x0, y0, x1, y1 = box
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        self.draw.ellipse(box, fill=fill)
        for d in self._masks:
            d.ellipse(box, fill=255)

    def segment(self, p0, p1, w0, w1, fill, round_ends=True):
        """A tapered limb from p0 (width w0) to p1 (width w1)."""
        (x0, y0), (x1, y1) = p0, p1
        dx, dy = x1 - x0, y1 - y0
        n = max(np.hypot(dx, dy), 1e-6)
        nx, ny = -dy / n, dx / n
        pts = [(x0 + nx * w0 / 2, y0 + ny * w0 / 2), (x1 + nx * w1 / 2, y1 + ny * w1 / 2),
               (x1 - nx * w1 / 2, y1 - ny * w1 / 2), (x0 - nx * w0 / 2, y0 - ny * w0 / 2)]
        self.polygon(pts, fill)
        if round_ends:
            self.ellipse((x0 - w0 / 2, y0 - w0 / 2, x0 + w0 / 2, y0 + w0 / 2), fill)
            self.ellipse((x1 - w1 / 2, y1 - w1 / 2, x1 + w1 / 2, y1 + w1 / 2), fill)

    def line(self, pts, fill, width):
        self.draw.line(pts, fill=fill, width=max(1, int(round(width))))
        for d in self._masks:
            d.line(pts, fill=255, width=max(1, int(round(width))))

    def texture(self, mask: Image.Image, pattern: Image.Image, colour):
        """Paint `colour` where both the garment mask and the pattern mask are set."""
        self.img.paste(colour, mask=ImageChops.multiply(mask, pattern))


def _shade(rgb, delta) -> tuple:
    return tuple(int(np.clip(c + d, 0, 255)) for c, d in zip(rgb, delta))


def _colour(app: dict, key: str, slot: int) -> tuple:
    return _shade(CLOTH_COLOURS[app[key]], app["jitter"][slot])


def _darker(rgb, f=0.72) -> tuple:
    return tuple(int(c * f) for c in rgb)


def _background(W: int, H: int, seed: int, plain: bool) -> Image.Image:
    """Street-like background: gradient wall/sky, ground plane, blotchy texture, clutter."""
    if plain:
        return Image.new("RGB", (W, H), (128, 128, 128))
    rng = np.random.default_rng(seed)
    top = rng.uniform(70, 210, 3)
    wall = top * rng.uniform(0.75, 1.1, 3)
    ground = rng.uniform(50, 170, 3)
    horizon = int(H * rng.uniform(0.55, 0.85))
    t = np.linspace(0.0, 1.0, H)[:, None, None]
    arr = np.empty((H, W, 3), dtype=np.float32)
    arr[:] = (1 - t) * top + t * wall
    arr[horizon:] = ground * (0.85 + 0.25 * t[horizon:])
    # blotchy texture, mostly brightness with a little colour (avoids rainbow backgrounds)
    grid = (H // 16 + 2, W // 16 + 2)
    low = rng.normal(0.0, 1.0, (*grid, 1)) + 0.35 * rng.normal(0.0, 1.0, (*grid, 3))
    low = low.astype(np.float32)
    low_img = Image.fromarray(np.clip(low * 40 + 128, 0, 255).astype(np.uint8)).resize(
        (W, H), Image.BILINEAR)
    arr += (np.asarray(low_img, dtype=np.float32) - 128.0) * rng.uniform(0.15, 0.45)
    arr += rng.normal(0.0, rng.uniform(2.0, 7.0), arr.shape).astype(np.float32)
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(2, 9))):
        kind = int(rng.integers(5))
        col = tuple(int(c) for c in rng.integers(20, 230, 3))
        x, y = float(rng.uniform(-0.2, 1.0) * W), float(rng.uniform(0.0, 0.9) * H)
        w, h = float(rng.uniform(0.1, 0.6) * W), float(rng.uniform(0.05, 0.35) * H)
        if kind == 0:  # building block with windows
            d.rectangle((x, y, x + w, y + h), fill=col)
            win = _darker(col, 0.5)
            for k in range(int(rng.integers(1, 5))):
                wx = x + (k + 0.3) * w / 4
                d.rectangle((wx, y + h * 0.2, wx + w / 8, y + h * 0.5), fill=win)
        elif kind == 1:  # pole
            d.rectangle((x, 0, x + W * 0.03, H), fill=col)
        elif kind == 2:  # kerb / road marking
            d.rectangle((0, horizon + h / 4, W, horizon + h / 4 + H * 0.01), fill=col)
        elif kind == 3:  # bush / tree
            d.ellipse((x, y, x + w, y + h), fill=col)
        else:  # parked car / bench near the ground
            gy = horizon + rng.uniform(-0.05, 0.1) * H
            d.rounded_rectangle((x, gy - h / 2, x + w, gy), radius=min(w, h) / 4, fill=col)
    return img


def _texture_stripes(size, start, period, thick, vertical: bool) -> Image.Image:
    pat = Image.new("L", size, 0)
    d = ImageDraw.Draw(pat)
    W, H = size
    if vertical:
        x = start
        while x < W:
            d.rectangle((x, 0, x + thick, H), fill=255)
            x += period
    else:
        y = start
        while y < H:
            d.rectangle((0, y, W, y + thick), fill=255)
            y += period
    return pat


def _upper_texture(body: Body, attrs: dict, app: dict, size) -> Optional[Image.Image]:
    h = body.head_h
    if attrs["UpperStride"]:  # PA100K "stride" = horizontal stripes
        return _texture_stripes(size, body.shoulder_y, 0.34 * h, 0.15 * h, vertical=False)
    if attrs["UpperPlaid"]:
        a = _texture_stripes(size, body.cx % (0.4 * h), 0.4 * h, 0.09 * h, vertical=True)
        b = _texture_stripes(size, body.shoulder_y, 0.4 * h, 0.09 * h, vertical=False)
        return ImageChops.lighter(a, b)
    if attrs["UpperSplice"]:
        pat = Image.new("L", size, 0)
        d = ImageDraw.Draw(pat)
        W, H = size
        style = app["splice_style"]
        if style == 0:  # yoke: shoulders and sleeves in a second colour
            d.rectangle((0, 0, W, body.shoulder_y + 0.45 * (body.hip_y - body.shoulder_y)), fill=255)
        elif style == 1:  # vertical halves
            d.rectangle((0, 0, body.cx, H), fill=255)
        else:  # lower band
            d.rectangle((0, body.shoulder_y + 0.55 * (body.hip_y - body.shoulder_y), W, H), fill=255)
        return pat
    return None


def _lower_texture(body: Body, attrs: dict, app: dict, size) -> Optional[Image.Image]:
    h = body.head_h
    if attrs["LowerStripe"]:
        return _texture_stripes(size, body.cx % (0.3 * h), 0.3 * h, 0.11 * h, vertical=True)
    if attrs["LowerPattern"]:
        pat = Image.new("L", size, 0)
        d = ImageDraw.Draw(pat)
        W, H = size
        step, r = 0.26 * h, 0.07 * h
        y, row = body.hip_y, 0
        while y < H:
            x = (row % 2) * step / 2
            while x < W:
                if app["lower_pattern_style"] == 0:
                    d.ellipse((x - r, y - r, x + r, y + r), fill=255)
                else:
                    d.rectangle((x - r, y - r, x + r, y + r), fill=255)
                x += step
            y += step
            row += 1
        return pat
    return None


@dataclass(frozen=True)
class _Look:
    """What one person's drawing takes from attributes and appearance besides geometry: colours,
    hair and where the head sits. Computed once, so each body part is drawn from the same values."""

    skin: tuple
    hair: tuple
    long_hair: bool
    coat: bool
    upper: tuple
    upper2: tuple
    lower: tuple
    lower2: tuple
    backpack: tuple
    held: tuple
    hcx: float  # head centre x (profile: slightly forward)
    hx0: float  # body-centred head edges (hair behind the body)
    hx1: float


def _look(body: Body, attrs: dict, app: dict) -> _Look:
    old = bool(attrs["AgeOver60"])
    grey = old and app["u_grey_hair"] < 0.85
    coat = bool(attrs["LongCoat"])
    h, cx, f, view = body.head_h, body.cx, body.facing, body.view
    return _Look(
        skin=SKIN_TONES[app["skin"]],
        hair=GREY_HAIR_COLOURS[app["grey"]] if grey else HAIR_COLOURS[app["hair"]],
        # Long hair is the main gender cue besides body shape; not an attribute, so it follows Female.
        long_hair=app["u_long_hair"] < (0.78 if attrs["Female"] else 0.05),
        coat=coat,
        upper=_colour(app, "coat" if coat else "top", 0),
        upper2=_colour(app, "coat2" if coat else "top2", 1),
        lower=_colour(app, "bottom", 2),
        lower2=_colour(app, "bottom2", 3),
        backpack=_colour(app, "backpack", 4),
        held=_colour(app, "object", 5),
        hcx=cx + (f * 0.06 * h if view == "side" else 0.0),
        hx0=cx - body.head_w / 2,
        hx1=cx + body.head_w / 2,
    )


def _draw_person(img: Image.Image, body: Body, attrs: dict, app: dict) -> None:
    """Draw one person onto the canvas, back to front; each step draws one body part."""
    pen = _Pen(img)
    look = _look(body, attrs, app)
    legs = leg_segments(body)
    arms = arm_joints(body, attrs)
    _draw_behind(pen, body, attrs, look)
    _draw_legs_and_lower(pen, body, attrs, app, look, legs)
    _draw_feet(pen, body, attrs, app, legs)
    _draw_upper_and_arms(pen, body, attrs, app, look, arms)
    _draw_head(pen, body, look)
    if attrs["Glasses"]:
        _draw_glasses(pen, body, app, look)
    if attrs["Hat"]:
        _draw_hat(pen, body, app, look)
    if attrs["UpperLogo"]:
        _draw_logo(pen, body, app, look)
    _draw_carried(pen, body, attrs, app, look, arms)


def _draw_behind(pen: _Pen, body: Body, attrs: dict, look: _Look) -> None:
    """1. Things behind the body: backpack (front view: it peeks above and beside the shoulders),
    a held object seen from the back, long hair seen from the front or side."""
    h, cx, f, view = body.head_h, body.cx, body.facing, body.view
    sy, hy = body.shoulder_y, body.hip_y
    if attrs["Backpack"] and view == "front":
        pen.polygon([(cx - body.sh_hw * 0.95, sy + 0.6 * h), (cx - body.sh_hw * 0.8, sy - 0.22 * h),
                     (cx + body.sh_hw * 0.8, sy - 0.22 * h), (cx + body.sh_hw * 0.95, sy + 0.6 * h)],
                    look.backpack)
    if attrs["HoldObjectsInFront"] and view == "back":
        ow = body.waist_hw + 0.35 * h
        pen.polygon([(cx - ow, hy - 0.75 * h), (cx + ow, hy - 0.75 * h), (cx + ow, hy - 0.2 * h),
                     (cx - ow, hy - 0.2 * h)], look.held)
    hx0, hx1, hcx, hair = look.hx0, look.hx1, look.hcx, look.hair
    if look.long_hair and view == "front":
        pen.polygon([(hx0 - 0.08 * h, body.top + 0.3 * h), (hx1 + 0.08 * h, body.top + 0.3 * h),
                     (hx1 + 0.14 * h, sy + 0.55 * h), (hx0 - 0.14 * h, sy + 0.55 * h)], hair)
    elif look.long_hair and view == "side":
        bx = hcx - f * body.head_w * 0.5
        pen.polygon([(hcx, body.top + 0.15 * h), (bx - f * 0.12 * h, body.top + 0.4 * h),
                     (bx - f * 0.1 * h, sy + 0.6 * h), (bx + f * 0.3 * h, sy + 0.6 * h),
                     (hcx, body.top + 0.6 * h)], hair)


def _draw_legs_and_lower(pen: _Pen, body: Body, attrs: dict, app: dict, look: _Look, legs: list) -> None:
    """2. Legs (skin), then the lower garment with its texture."""
    h, cx, view, hy = body.head_h, body.cx, body.view, body.hip_y
    skin, lower_col = look.skin, look.lower
    for k, (hip, ank) in enumerate(legs):
        shade = _darker(skin, 0.85) if (view == "side" and k == 0) else skin
        pen.segment(hip, ank, body.leg_w, body.leg_w * 0.72, shade)
    lower_tex = _lower_texture(body, attrs, app, pen.img.size)
    with pen.record() as lower_mask:
        if attrs["Skirt&Dress"]:
            hem = hy + (0.35 + 0.45 * app["skirt_length"]) * (body.ankle_y - hy)
            if view == "side":
                pen.polygon([(cx - body.hip_hw, hy - 0.1 * h), (cx + body.hip_hw, hy - 0.1 * h),
                             (cx + body.hip_hw * 1.5, hem), (cx - body.hip_hw * 1.5, hem)], lower_col)
            else:
                pen.polygon([(cx - body.hip_hw, hy - 0.1 * h), (cx + body.hip_hw, hy - 0.1 * h),
                             (cx + body.hip_hw * 1.45, hem), (cx - body.hip_hw * 1.45, hem)], lower_col)
        else:
            shorts = bool(attrs["Shorts"])
            for k, (hip, ank) in enumerate(legs):
                end = ank if not shorts else (hip[0] + 0.38 * (ank[0] - hip[0]), hip[1] + 0.38 * (ank[1] - hip[1]))
                w1 = body.leg_w * (0.86 if not shorts else 1.15)
                col = _darker(lower_col, 0.85) if (view == "side" and k == 0) else lower_col
                pen.segment(hip, end, body.leg_w * 1.14, w1, col, round_ends=False)
            pen.polygon([(cx - body.hip_hw, hy - 0.1 * h), (cx + body.hip_hw, hy - 0.1 * h),
                         (cx + body.hip_hw * 0.95, hy + 0.45 * h), (cx - body.hip_hw * 0.95, hy + 0.45 * h)],
                        lower_col)
    if lower_tex is not None:
        pen.texture(lower_mask, lower_tex, look.lower2)


def _draw_feet(pen: _Pen, body: Body, attrs: dict, app: dict, legs: list) -> None:
    """3. Feet: shoes or boots (boots cover the trouser hems)."""
    h, f, view = body.head_h, body.facing, body.view
    shoe_col = _colour(app, "boots" if attrs["boots"] else "shoes", 6)
    for k, (hip, ank) in enumerate(legs):
        ax, ay = ank
        col = _darker(shoe_col, 0.85) if (view == "side" and k == 0) else shoe_col
        top_y = ay - (0.55 * h if attrs["boots"] else 0.02 * h)
        hw = body.leg_w * (0.5 if attrs["boots"] else 0.45)
        if view == "side":
            toe = ax + f * (hw + 0.32 * h)
            pen.polygon([(ax - f * hw, top_y), (ax + f * hw, top_y), (toe, body.floor_y - 0.12 * h),
                         (toe, body.floor_y), (ax - f * hw, body.floor_y)], col)
        else:
            pen.polygon([(ax - hw, top_y), (ax + hw, top_y), (ax + hw * 1.1, body.floor_y),
                         (ax - hw * 1.1, body.floor_y)], col)


def _draw_torso_garment(pen: _Pen, body: Body, attrs: dict, look: _Look) -> None:
    """The torso garment or long coat (no sleeves): a profile outline or a front/back outline."""
    h, cx, f, coat, upper_col = body.head_h, body.cx, body.facing, look.coat, look.upper
    sy, hy = body.shoulder_y, body.hip_y
    wy = sy + 0.6 * (hy - sy)
    if body.view == "side":
        bust = 0.08 * h if attrs["Female"] else 0.0
        front_x, back_x = cx + f * body.sh_hw, cx - f * body.sh_hw
        hem_y = (body.knee_y + 0.15 * (body.ankle_y - body.knee_y)) if coat else hy + 0.12 * h
        hem_front = cx + f * (body.hip_hw * (1.3 if coat else 1.0))
        pen.polygon([(back_x, sy - 0.05 * h), (front_x - f * 0.1 * h, sy - 0.05 * h),
                     (front_x + f * bust, sy + 0.55 * h), (cx + f * body.waist_hw, wy),
                     (hem_front, hem_y), (cx - f * body.hip_hw * 1.05, hem_y)], upper_col)
    else:
        hem_y = (body.knee_y + 0.15 * (body.ankle_y - body.knee_y)) if coat else hy + 0.12 * h
        hem_hw = max(body.hip_hw, body.waist_hw) * (1.25 if coat else 0.98)
        pen.polygon([(cx - body.sh_hw * 0.72, sy - 0.07 * h), (cx + body.sh_hw * 0.72, sy - 0.07 * h),
                     (cx + body.sh_hw, sy + 0.25 * h), (cx + body.waist_hw, wy),
                     (cx + hem_hw, hem_y), (cx - hem_hw, hem_y), (cx - body.waist_hw, wy),
                     (cx - body.sh_hw, sy + 0.25 * h)], upper_col)


def _draw_upper_and_arms(pen: _Pen, body: Body, attrs: dict, app: dict, look: _Look, arms: list) -> None:
    """4. Torso garment or long coat, with its texture; arms with sleeves, bare forearms, hands."""
    short_sleeve, upper_col, skin = bool(attrs["ShortSleeve"]), look.upper, look.skin
    upper_tex = _upper_texture(body, attrs, app, pen.img.size)
    with pen.record() as upper_mask:
        _draw_torso_garment(pen, body, attrs, look)
        for sh, el, wr in arms:
            if short_sleeve:
                mid = (sh[0] + 0.55 * (el[0] - sh[0]), sh[1] + 0.55 * (el[1] - sh[1]))
                pen.segment(sh, mid, body.arm_w * 1.2, body.arm_w * 1.12, upper_col)
            else:
                pen.segment(sh, el, body.arm_w * 1.1, body.arm_w * 1.0, upper_col)
                pen.segment(el, wr, body.arm_w * 1.0, body.arm_w * 0.9, upper_col)
    # bare forearms go on top of the sleeve mask region (drawn outside `record`: no texture)
    for sh, el, wr in arms:
        if short_sleeve:
            mid = (sh[0] + 0.55 * (el[0] - sh[0]), sh[1] + 0.55 * (el[1] - sh[1]))
            pen.segment(mid, el, body.arm_w * 0.8, body.arm_w * 0.78, skin)
            pen.segment(el, wr, body.arm_w * 0.78, body.arm_w * 0.7, skin)
    if upper_tex is not None:
        pen.texture(upper_mask, upper_tex, look.upper2)
    for sh, el, wr in arms:
        r = hand_radius(body)
        pen.ellipse((wr[0] - r, wr[1] - r * 0.6, wr[0] + r, wr[1] + r * 1.4), skin)


def _head_box(body: Body, look: _Look) -> tuple:
    return (look.hcx - body.head_w / 2, body.top, look.hcx + body.head_w / 2, body.head_bottom)


def _draw_head(pen: _Pen, body: Body, look: _Look) -> None:
    """5. Neck, head, hair and face (eyes), then long hair that falls over the body."""
    h, f, view, sy = body.head_h, body.facing, body.view, body.shoulder_y
    hcx, hx0, hx1, skin, hair = look.hcx, look.hx0, look.hx1, look.skin, look.hair
    neck_hw = 0.17 * h
    pen.polygon([(hcx - neck_hw, body.head_bottom - 0.2 * h), (hcx + neck_hw, body.head_bottom - 0.2 * h),
                 (hcx + neck_hw, sy + 0.02 * h), (hcx - neck_hw, sy + 0.02 * h)], _darker(skin, 0.92))
    head_box = _head_box(body, look)
    hair_box = (head_box[0] - 0.04 * h, head_box[1] - 0.04 * h, head_box[2] + 0.04 * h, head_box[3] - 0.25 * h)
    if view == "back":
        pen.ellipse(head_box, skin)
        pen.ellipse((hair_box[0], hair_box[1], hair_box[2], head_box[3] - 0.08 * h), hair)
    else:
        pen.ellipse(hair_box, hair)
        if view == "front":
            face = (head_box[0] + 0.05 * h, head_box[1] + 0.26 * h, head_box[2] - 0.05 * h, head_box[3])
        else:  # profile: face on the facing side, hair at the back
            face = (hcx - body.head_w * 0.3 + f * 0.1 * h, head_box[1] + 0.26 * h,
                    hcx + body.head_w * 0.3 + f * 0.12 * h, head_box[3])
        pen.ellipse(face, skin)
        ey = body.top + 0.52 * h
        er = 0.045 * h
        eye = (40, 30, 28)
        if view == "front":
            for s in (-1, 1):
                ex = hcx + s * 0.2 * body.head_w
                pen.ellipse((ex - er, ey - er, ex + er, ey + er), eye)
        else:
            ex = hcx + f * 0.28 * body.head_w
            pen.ellipse((ex - er, ey - er, ex + er, ey + er), eye)
    if look.long_hair and view == "back":
        pen.polygon([(hx0 - 0.06 * h, body.top + 0.3 * h), (hx1 + 0.06 * h, body.top + 0.3 * h),
                     (hx1 + 0.1 * h, sy + 0.7 * h), (hx0 - 0.1 * h, sy + 0.7 * h)], hair)
    elif look.long_hair and view == "front":  # strands falling in front of the shoulders
        for s in (-1, 1):
            x = hcx + s * body.head_w * 0.48
            pen.polygon([(x - 0.1 * h, body.top + 0.45 * h), (x + 0.1 * h, body.top + 0.45 * h),
                         (x + 0.1 * h + s * 0.05 * h, sy + 0.5 * h), (x - 0.1 * h + s * 0.05 * h, sy + 0.5 * h)], hair)


def _draw_glasses(pen: _Pen, body: Body, app: dict, look: _Look) -> None:
    """Glasses or sunglasses: two lenses (front), one lens and an arm (side), temple arms (back)."""
    h, f, view, hcx = body.head_h, body.facing, body.view, look.hcx
    ey = body.top + 0.52 * h
    frame = (20, 20, 24)
    lr, lw = 0.13 * h, max(1.0, 0.07 * h)
    lens = (25, 25, 30) if app["sunglasses"] else None
    if view == "front":
        for s in (-1, 1):
            ex = hcx + s * 0.21 * body.head_w
            box = (ex - lr, ey - lr * 0.8, ex + lr, ey + lr * 0.8)
            pen.draw.ellipse(box, fill=lens, outline=frame, width=int(round(lw)))
        pen.line([(hcx - 0.21 * body.head_w + lr, ey), (hcx + 0.21 * body.head_w - lr, ey)], frame, lw)
    elif view == "side":
        ex = hcx + f * 0.3 * body.head_w
        box = (ex - lr * 0.7, ey - lr * 0.8, ex + lr * 0.7, ey + lr * 0.8)
        pen.draw.ellipse(box, fill=lens, outline=frame, width=int(round(lw)))
        pen.line([(ex, ey), (hcx - f * 0.15 * body.head_w, ey - 0.03 * h)], frame, lw)
    else:  # back view: only the temple arms over the ears show
        for s in (-1, 1):
            pen.line([(hcx + s * 0.5 * body.head_w, ey), (hcx + s * 0.32 * body.head_w, ey - 0.04 * h)],
                     frame, lw)


def _draw_hat(pen: _Pen, body: Body, app: dict, look: _Look) -> None:
    """A hat in its style: cap (brim to the viewer or the walking direction), beanie, brimmed hat."""
    h, f, view, hcx = body.head_h, body.facing, body.view, look.hcx
    head_box = _head_box(body, look)
    hat = _colour(app, "hat", 7)
    style = app["hat_style"]
    crown = (head_box[0] - 0.05 * h, body.top - 0.12 * h, head_box[2] + 0.05 * h, body.top + 0.5 * h)
    pen.ellipse(crown, hat)
    pen.polygon([(crown[0], body.top + 0.18 * h), (crown[2], body.top + 0.18 * h),
                 (crown[2], body.top + 0.34 * h), (crown[0], body.top + 0.34 * h)], hat)
    if style == 0 and view != "back":  # cap: brim towards the viewer / the walking direction
        if view == "side":
            tip = hcx + f * (body.head_w * 0.5 + 0.35 * h)
            pen.polygon([(hcx, body.top + 0.26 * h), (tip, body.top + 0.3 * h),
                         (tip, body.top + 0.38 * h), (hcx, body.top + 0.36 * h)], _darker(hat, 0.8))
        else:
            pen.ellipse((crown[0] + 0.02 * h, body.top + 0.26 * h, crown[2] - 0.02 * h, body.top + 0.42 * h),
                        _darker(hat, 0.8))
    elif style == 2:  # brimmed hat
        pen.ellipse((crown[0] - 0.28 * h, body.top + 0.24 * h, crown[2] + 0.28 * h, body.top + 0.42 * h),
                    _darker(hat, 0.85))


def _draw_logo(pen: _Pen, body: Body, app: dict, look: _Look) -> None:
    """6. Logo on the chest (front), on the back, or a smaller one at the chest edge (side view)."""
    h, cx, f, view, sy = body.head_h, body.cx, body.facing, body.view, body.shoulder_y
    logo = _colour(app, "logo_coat" if look.coat else "logo", 1)
    if view == "side":
        lx, ly, r = cx + f * (body.sh_hw - 0.12 * h), sy + 0.55 * h, 0.1 * h
    else:
        lx = cx + (0.28 * body.sh_hw if view == "front" else 0.0)
        ly, r = sy + (0.5 if view == "front" else 0.35) * h, (0.17 if view == "front" else 0.13) * h
    pen.polygon([(lx - r, ly - r), (lx + r, ly - r), (lx + r, ly + r), (lx - r, ly + r)], logo)


def _draw_carried(pen: _Pen, body: Body, attrs: dict, app: dict, look: _Look, arms: list) -> None:
    """7. Carried objects, in this order: backpack, shoulder bag, handbag, object held in front."""
    if attrs["Backpack"]:
        _draw_backpack(pen, body, look.backpack)
    if attrs["ShoulderBag"]:
        _draw_shoulder_bag(pen, body, app)
    if attrs["HandBag"]:
        _draw_handbag(pen, body, app, arms)
    if attrs["HoldObjectsInFront"] and body.view != "back":
        _draw_held_object(pen, body, look, arms)


def _draw_backpack(pen: _Pen, body: Body, bp_col: tuple) -> None:
    """The backpack over the body: the pack itself (back, side) or its shoulder straps (front)."""
    h, cx, f, view = body.head_h, body.cx, body.facing, body.view
    sy, hy = body.shoulder_y, body.hip_y
    if view == "back":
        bw = body.sh_hw * 0.8
        pen.polygon([(cx - bw, sy + 0.05 * h), (cx + bw, sy + 0.05 * h), (cx + bw * 1.05, hy - 0.2 * h),
                     (cx - bw * 1.05, hy - 0.2 * h)], bp_col)
        pen.polygon([(cx - bw * 0.7, sy + 0.15 * h), (cx + bw * 0.7, sy + 0.15 * h),
                     (cx + bw * 0.7, sy + 0.55 * h), (cx - bw * 0.7, sy + 0.55 * h)], _darker(bp_col, 0.8))
    elif view == "side":
        bx = cx - f * body.sh_hw
        pen.polygon([(bx, sy + 0.02 * h), (bx - f * 0.6 * h, sy + 0.12 * h), (bx - f * 0.62 * h, hy - 0.25 * h),
                     (bx, hy - 0.2 * h)], bp_col)
        pen.line([(cx + f * 0.1 * h, sy), (cx + f * body.sh_hw * 0.6, sy + 0.9 * h)], _darker(bp_col, 0.7),
                 0.14 * h)
    else:  # front: the two shoulder straps
        for s in (-1, 1):
            x = cx + s * body.sh_hw * 0.5
            pen.line([(x, sy - 0.05 * h), (x + s * 0.05 * h, sy + 1.0 * h)], _darker(bp_col, 0.75), 0.16 * h)


def _draw_shoulder_bag(pen: _Pen, body: Body, app: dict) -> None:
    """A bag at the hip on a strap across the body (side view: behind the hip)."""
    h, cx, f, view = body.head_h, body.cx, body.facing, body.view
    sy, hy = body.shoulder_y, body.hip_y
    sb = _colour(app, "shoulderbag", 4)
    side = app["bag_side"] if view != "side" else -f
    bx = cx + side * (body.hip_hw + 0.05 * h) if view != "side" else cx - f * 0.1 * h
    by = hy - 0.15 * h
    start = (cx - side * body.sh_hw * 0.6, sy) if view != "side" else (cx, sy)
    pen.line([start, (bx, by)], _darker(sb, 0.7), 0.1 * h)
    pen.polygon([(bx - 0.38 * h, by - 0.05 * h), (bx + 0.38 * h, by - 0.05 * h), (bx + 0.38 * h, by + 0.55 * h),
                 (bx - 0.38 * h, by + 0.55 * h)], sb)


def _draw_handbag(pen: _Pen, body: Body, app: dict, arms: list) -> None:
    """A handbag hanging from one hand (the bag side's hand; side view: the one visible arm)."""
    h = body.head_h
    hb = _colour(app, "handbag", 5)
    sh, el, wr = arms[0] if (body.view == "side" or app["bag_side"] < 0) else arms[-1]
    r = hand_radius(body)
    bx, by = wr[0], wr[1] + 0.9 * r
    pen.line([(bx - 0.2 * h, by + 0.2 * h), (bx, wr[1]), (bx + 0.2 * h, by + 0.2 * h)], _darker(hb, 0.7), 0.07 * h)
    pen.polygon([(bx - 0.32 * h, by + 0.18 * h), (bx + 0.32 * h, by + 0.18 * h), (bx + 0.36 * h, by + 0.72 * h),
                 (bx - 0.36 * h, by + 0.72 * h)], hb)


def _draw_held_object(pen: _Pen, body: Body, look: _Look, arms: list) -> None:
    """An object held in front (front and side views; the back view drew it behind the body),
    with the hands drawn again on top of it."""
    h, cx = body.head_h, body.cx
    if body.view == "front":
        ox, oy, ow = cx, arms[0][2][1], 0.5 * h
    else:
        ox, oy, ow = arms[0][2][0], arms[0][2][1], 0.3 * h
    pen.polygon([(ox - ow, oy - 0.35 * h), (ox + ow, oy - 0.35 * h), (ox + ow, oy + 0.3 * h),
                 (ox - ow, oy + 0.3 * h)], look.held)
    for sh, el, wr in arms:
        r = hand_radius(body)
        pen.ellipse((wr[0] - r, wr[1] - r, wr[0] + r, wr[1] + r), look.skin)


def _draw_occluder(img: Image.Image, scene: dict) -> None:
    """Something in front of the person hiding a random part: pole, car/bench, passer-by, sign."""
    W, H = img.size
    d = ImageDraw.Draw(img)
    u = scene["occ_u"]
    col = tuple(int(c) for c in scene["occ_colour"])
    kind = scene["occluder"]
    if kind == 0:  # pole
        x = u[0] * W
        d.rectangle((x, 0, x + (0.08 + 0.12 * u[1]) * W, H), fill=col)
    elif kind == 1:  # car / bench from the bottom
        y = H * (1 - 0.15 - 0.25 * u[0])
        d.rounded_rectangle((-0.1 * W, y, 1.1 * W, H + 5), radius=0.1 * W, fill=col)
    elif kind == 2:  # passer-by at the left or right edge
        w = (0.2 + 0.15 * u[0]) * W
        x0 = -0.05 * W if u[1] < 0.5 else W - w
        d.rounded_rectangle((x0, H * (0.15 + 0.3 * u[2]), x0 + w, H + 5), radius=0.4 * w, fill=col)
    else:  # sign or box at mid height
        x, y = u[0] * 0.7 * W, (0.25 + 0.5 * u[1]) * H
        d.rectangle((x, y, x + (0.25 + 0.2 * u[2]) * W, y + (0.12 + 0.15 * u[3]) * H), fill=col)


def _photometric(img: Image.Image, scene: dict) -> Image.Image:
    """Per-pixel lighting (brightness, contrast, colour cast) and sensor noise. Pointwise, so two
    renders that differ in one attribute still differ only where that attribute is drawn."""
    arr = np.asarray(img, dtype=np.float32)
    arr = (arr - 128.0) * scene["contrast"] + 128.0
    arr = arr * scene["brightness"] * np.asarray(scene["cast"], dtype=np.float32)
    rng = np.random.default_rng(scene["noise_seed"])
    arr = arr + rng.normal(0.0, scene["noise"], arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))


def check_image_size(image_size) -> tuple:
    """`image_size` as (width, height) ints; ValueError when it is not a pair or under (16, 32)."""
    try:
        w, h = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (width, height), got {image_size!r}") from None
    if w < 16 or h < 32:
        raise ValueError(f"image_size {image_size!r} is too small: use at least (16, 32), e.g. (64, 128)")
    return w, h


def _compose(attrs, view, seed, image_size, appearance_seed):
    w, h = check_image_size(image_size)
    full = complete_attributes(attrs, view)
    view = next(v for v in VIEWS if full[VIEW_ATTRIBUTE[v]])
    base = tuple(seed) if isinstance(seed, (tuple, list)) else (seed,)
    app = sample_appearance(seeded_rng(appearance_seed if appearance_seed is not None else (*base, 1)))
    scene = sample_scene(seeded_rng(base if len(base) > 1 else (*base, 2)))
    W, H = w * _SUPERSAMPLE, h * _SUPERSAMPLE
    body = layout_body(full, view, app, scene, W, H)
    return full, view, app, scene, body, (W, H)


def render_person(attrs: dict, view: Optional[str] = None, seed=0,
                  image_size: Sequence[int] = DEFAULT_IMAGE_SIZE, appearance_seed=None,
                  occlusion: Optional[bool] = False, background: bool = True,
                  photometric: bool = True) -> Image.Image:
    """Draw one synthetic pedestrian.

    The person's appearance (skin, hair, clothing colours, body build, hat style ...) comes from
    `appearance_seed` (default: derived from `seed`); the scene (background, position and scale
    jitter, walking pose, lighting, occluder) from `seed`. Both are drawn before the attributes
    are looked at, so two calls that differ in one attribute differ only in that attribute's
    pixels (see `body_regions`).

    Args:
        attrs: attribute name -> 0/1 over `SYNTHPAR_ATTRIBUTES`; missing names are 0 and each
            exclusive group falls back to its default (see `complete_attributes`).
        view: "front" | "side" | "back"; overrides Front/Side/Back in `attrs`.
        seed: int or tuple of ints for the scene (an int `s` is used as `(s, 2)`).
        image_size: (width, height) of the output.
        appearance_seed: int or tuple of ints for the person's look; default `(*seed, 1)`.
        occlusion: False (none), True (always) or None (as drawn by the scene: 20 % of images).
        background: False draws a plain grey background.
        photometric: False skips lighting jitter and sensor noise.

    Returns:
        RGB PIL image of size `image_size`.
    """
    full, view, app, scene, body, (W, H) = _compose(attrs, view, seed, image_size, appearance_seed)
    img = _background(W, H, scene["bg_seed"], plain=not background)
    _draw_person(img, body, full, app)
    if occlusion or (occlusion is None and scene["occluded"]):
        _draw_occluder(img, scene)
    # Box filter: each output pixel is the mean of its own 2x2 block, so changes stay local.
    img = img.reduce(_SUPERSAMPLE)
    return _photometric(img, scene) if photometric else img


def person_appearance(appearance_seed) -> dict:
    """The look `render_person(..., appearance_seed=appearance_seed)` draws: colour names of each
    garment ("top", "bottom", "coat", "hat", "backpack", ...), hat style, sunglasses, hair.

    Captions use it to name what is drawn (`parkit.data.synthworld`).
    """
    return dict(sample_appearance(seeded_rng(appearance_seed)))


def body_regions(attrs: dict, view: Optional[str] = None, seed=0,
                 image_size: Sequence[int] = DEFAULT_IMAGE_SIZE, appearance_seed=None) -> dict:
    """Boxes of the body parts of the person `render_person` draws with the same arguments.

    Args:
        attrs, view, seed, image_size, appearance_seed: as for `render_person`.

    Returns:
        {"head", "torso", "legs", "feet", "body"} -> (x0, y0, x1, y1) integer pixel boxes in the
        output image, x1/y1 exclusive, clipped to the image. "head" includes the space above the
        head that a hat takes; "torso" includes the arms and hands (sleeves are upper wear);
        "legs" spans hip to ankle including a skirt's flare; "feet" spans the boot shafts to the
        ground; "body" is their union. Boxes overlap where parts do (e.g. boots over the shins).
    """
    full, view, app, scene, body, (W, H) = _compose(attrs, view, seed, image_size, appearance_seed)
    w, h = W // _SUPERSAMPLE, H // _SUPERSAMPLE
    out = {}
    for name, (x0, y0, x1, y1) in region_boxes(body, full).items():
        out[name] = (int(np.clip(np.floor(x0 / _SUPERSAMPLE), 0, w)), int(np.clip(np.floor(y0 / _SUPERSAMPLE), 0, h)),
                     int(np.clip(np.ceil(x1 / _SUPERSAMPLE), 0, w)), int(np.clip(np.ceil(y1 / _SUPERSAMPLE), 0, h)))
    return out
