"""SynthPAR: a small procedural pedestrian-attribute dataset that ships with parkit.

This module owns the SynthPAR generator (PIL drawing + numpy, deterministic by seed), its on-disk
format and its loader:

- `sample_attributes` draws one person's PA100K attributes from co-occurrence priors;
- `render_person` draws one pedestrian image and `body_regions` gives the boxes of its body parts,
  so tests can check that every attribute is drawn where it lives on the body;
- `make_synthpar` writes a dataset folder, `load_synthpar` reads it back as a `PARDataset`,
  `ensure_synthpar` / `default_synthpar_root` keep one generated copy in a cache folder;
- `load_captions` returns the free-text captions used to pretrain the compact CLIP.

SynthPAR uses PA100K's 26 attributes in PA100K's label order (spec Appendix A), so the paper's
sentences apply unchanged. Every attribute except the view (Front/Side/Back) belongs to an
*identity*: one synthetic person with fixed clothing, colours and carried objects, rendered 2-6
times with a different view, pose jitter, background, lighting and crop. Rare PA100K attributes
(boots 0.6 %, AgeOver60 1.5 %, LowerStripe 0.4 %) are made more frequent (about 10 %) so that a
2 000-image set has enough positives of each to learn and to measure.

Folder layout written by `make_synthpar`:

    images/000000.png ...   RGB, image_size = (width, height), default 64 x 128
    labels.csv              image, identity, view, then one 0/1 column per attribute
    labels_clean.csv        only when label_noise > 0: the labels that were actually drawn
    splits.json             train/val/test/trainval (random 60/10/30 over images) and
                            zs_train/zs_val/zs_test/zs_trainval (identity-disjoint)
    captions.jsonl          {"image": ..., "captions": [...]} per image
    meta.json               generator version, seed, sizes, sha256 of labels.csv; written LAST,
                            so a folder without it is an interrupted generation
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import time
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from parkit.data.base import DatasetError, PARDataset

GENERATOR_VERSION = "1.0"
DEFAULT_IMAGE_SIZE = (64, 128)  # (width, height), like a PA100K crop at reduced resolution

# PA100K's attributes in PA100K's label order (spec Appendix A). These are SynthPAR's CSV columns,
# fixed by the generator version; sentences and regions come from `parkit.attributes` at load time
# (which must name the same attributes).
SYNTHPAR_ATTRIBUTES = (
    "Female", "AgeOver60", "Age18-60", "AgeLess18", "Front", "Side", "Back", "Hat", "Glasses",
    "HandBag", "ShoulderBag", "Backpack", "HoldObjectsInFront", "ShortSleeve", "LongSleeve",
    "UpperStride", "UpperLogo", "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern",
    "LongCoat", "Trousers", "Shorts", "Skirt&Dress", "boots",
)
VIEWS = ("front", "side", "back")
_VIEW_ATTRIBUTE = {"front": "Front", "side": "Side", "back": "Back"}
# Groups with exactly one member set (as in PA100K, where age, view and sleeve length are one-hot
# on all 100 000 rows and trousers/shorts/skirt on all but 33).
EXCLUSIVE_GROUPS = {
    "age": ("AgeOver60", "Age18-60", "AgeLess18"),
    "view": ("Front", "Side", "Back"),
    "sleeve": ("ShortSleeve", "LongSleeve"),
    "lower": ("Trousers", "Shorts", "Skirt&Dress"),
}
_GROUP_DEFAULT = {"age": "Age18-60", "view": "Front", "sleeve": "LongSleeve", "lower": "Trousers"}

_SUPERSAMPLE = 2  # draw at 2x and box-reduce: anti-aliasing that keeps every change local

# Named colours, so captions can say what is drawn. Darker clothes are more common, as in street
# scenes. Public: the pretraining strips these colour words from captions (parkit.backbone.pretrain).
CLOTH_COLOURS = {
    "black": (32, 32, 35), "white": (232, 232, 226), "grey": (128, 128, 130),
    "red": (186, 38, 42), "blue": (45, 85, 180), "navy": (28, 38, 84), "green": (48, 128, 64),
    "yellow": (222, 196, 58), "brown": (116, 78, 46), "pink": (228, 142, 170),
    "purple": (118, 62, 148), "beige": (206, 186, 148), "orange": (226, 122, 36),
}
_CLOTH_NAMES = tuple(CLOTH_COLOURS)
_CLOTH_WEIGHTS = np.array([5, 3, 3, 2, 3, 3, 1.5, 1, 1.5, 1, 1, 1.5, 1], dtype=np.float64)
_CLOTH_WEIGHTS /= _CLOTH_WEIGHTS.sum()
_SKIN = ((250, 220, 192), (238, 192, 158), (222, 170, 128), (196, 134, 96), (158, 104, 72),
         (112, 74, 52))
_HAIR = ((26, 22, 20), (58, 40, 28), (106, 72, 44), (196, 164, 106), (126, 60, 34))
_GREY_HAIR = ((188, 188, 184), (152, 152, 150), (214, 212, 206))


# --------------------------------------------------------------------------------------------
# attributes and their priors
# --------------------------------------------------------------------------------------------

def complete_attributes(attrs: dict, view: Optional[str] = None) -> dict:
    """A full 0/1 dict over `SYNTHPAR_ATTRIBUTES` from a partial one.

    Missing attributes are 0, except that each exclusive group (age, view, sleeve length, lower
    garment) gets its default member (Age18-60, Front, LongSleeve, Trousers) when none is set, so
    that what `render_person` draws always matches the returned labels.

    Args:
        attrs: attribute name -> 0/1 (bools accepted). Unknown names raise.
        view: "front" | "side" | "back"; when given it overrides Front/Side/Back in `attrs`.

    Returns:
        dict over all 26 attributes, values 0 or 1.
    """
    unknown = sorted(set(attrs) - set(SYNTHPAR_ATTRIBUTES))
    if unknown:
        raise ValueError(f"unknown SynthPAR attribute(s) {unknown}; valid names: {list(SYNTHPAR_ATTRIBUTES)}")
    out = {a: int(bool(attrs.get(a, 0))) for a in SYNTHPAR_ATTRIBUTES}
    if view is not None:
        if view not in VIEWS:
            raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
        for v in VIEWS:
            out[_VIEW_ATTRIBUTE[v]] = int(v == view)
    for group, members in EXCLUSIVE_GROUPS.items():
        on = [m for m in members if out[m]]
        if len(on) > 1:
            raise ValueError(f"attributes {on} are exclusive (group {group!r}): set at most one")
        if not on:
            out[_GROUP_DEFAULT[group]] = 1
    return out


def sample_attributes(rng: np.random.Generator) -> dict:
    """Draw one identity's attributes (all but the view) from SynthPAR's co-occurrence priors.

    The priors follow PA100K's structure (measured on its 100 000 labels): exactly one age band,
    one sleeve length and one lower garment; skirts almost only on women (PA100K: 99.8 % of
    skirt/dress rows are Female); shorts with short sleeves (97.6 %); long coats with long sleeves
    (94 %) and more often on women (89 %); boots more often with skirts and long coats. Rare
    attributes are raised to about 10 % so they can be learned from a few thousand images.

    Args:
        rng: numpy Generator; exactly 16 uniforms are consumed, whatever the outcome.

    Returns:
        dict over all 26 attributes with Front=Side=Back=0 (the view is drawn per image).
    """
    u = rng.random(16)
    a = dict.fromkeys(SYNTHPAR_ATTRIBUTES, 0)
    female = u[0] < 0.45
    a["Female"] = int(female)
    age = "AgeOver60" if u[1] < 0.10 else ("AgeLess18" if u[1] < 0.25 else "Age18-60")
    a[age] = 1
    child, old = age == "AgeLess18", age == "AgeOver60"

    coat = u[2] < (0.17 if female else 0.07) * (0.5 if child else 1.0)
    a["LongCoat"] = int(coat)
    p_skirt = 0.36 if female else 0.01
    p_shorts = 0.0 if coat else (0.12 if female else 0.22) * (1.5 if child else 1.0)
    lower = "Skirt&Dress" if u[3] < p_skirt else ("Shorts" if u[3] < p_skirt + p_shorts else "Trousers")
    a[lower] = 1
    p_short_sleeve = 0.03 if coat else 0.93 if lower == "Shorts" else 0.70 if lower == "Skirt&Dress" else 0.45
    a["ShortSleeve" if u[4] < p_short_sleeve else "LongSleeve"] = 1

    # Stride, plaid and splice are drawn as exclusive textures; a logo can sit on any of them.
    if u[5] < 0.13:
        a["UpperStride"] = 1
    elif u[5] < 0.25:
        a["UpperPlaid"] = 1
    elif u[5] < 0.36:
        a["UpperSplice"] = 1
    a["UpperLogo"] = int(u[6] < 0.20)
    if u[7] < 0.10:
        a["LowerStripe"] = 1
    elif u[7] < 0.21:
        a["LowerPattern"] = 1

    p_boots = 0.02 if lower == "Shorts" else 0.30 if (lower == "Skirt&Dress" or coat) else 0.06
    a["boots"] = int(u[8] < p_boots)
    a["Hat"] = int(u[9] < (0.28 if old else 0.15))
    a["Glasses"] = int(u[10] < (0.50 if old else 0.06 if child else 0.18))
    a["HandBag"] = int(u[11] < (0.05 if child else 0.32 if female else 0.08))
    a["ShoulderBag"] = int(u[12] < 0.20)
    a["Backpack"] = int(u[13] < (0.55 if child else 0.15))
    a["HoldObjectsInFront"] = int(u[14] < 0.10)
    return a


def apply_label_noise(attrs: dict, rng: np.random.Generator, p: float) -> dict:
    """Annotator-style label noise: each binary attribute flips with probability `p`; each exclusive
    group is relabelled to another member with probability `p` (so it stays one-hot).

    Consumes a fixed number of random numbers, whatever `p` is.
    """
    out = dict(attrs)
    grouped = {m for g in EXCLUSIVE_GROUPS.values() for m in g}
    u = rng.random(len(SYNTHPAR_ATTRIBUTES) + 2 * len(EXCLUSIVE_GROUPS))
    k = 0
    for name in SYNTHPAR_ATTRIBUTES:
        if name not in grouped and u[k] < p:
            out[name] = 1 - out[name]
        k += 1
    for members in EXCLUSIVE_GROUPS.values():
        if u[k] < p:
            on = [m for m in members if out[m]]
            others = [m for m in members if m not in on]
            new = others[int(u[k + 1] * len(others)) % len(others)]
            for m in members:
                out[m] = int(m == new)
        k += 2
    return out


# --------------------------------------------------------------------------------------------
# appearance (per identity) and scene (per image): raw random draws, independent of attributes
# --------------------------------------------------------------------------------------------
# Both are sampled with a fixed number of draws, *before* attributes are looked at. So toggling
# one attribute with the same seeds changes only the pixels of that attribute's own drawing:
# this is what makes the single-attribute locality tests possible.

def _pick_colour(rng: np.random.Generator, avoid: Optional[str] = None) -> str:
    names = list(_CLOTH_NAMES)
    w = _CLOTH_WEIGHTS.copy()
    if avoid is not None:  # a contrasting colour: far enough from `avoid` to be seen
        ref = np.array(CLOTH_COLOURS[avoid], dtype=np.float64)
        far = np.array([np.linalg.norm(np.array(CLOTH_COLOURS[n]) - ref) > 110 for n in names])
        w = np.where(far, w, 0.0)
        w /= w.sum()
    return names[int(rng.choice(len(names), p=w))]


def _sample_appearance(rng: np.random.Generator) -> dict:
    app = {
        "skin": int(rng.integers(len(_SKIN))),
        "hair": int(rng.integers(len(_HAIR))),
        "grey": int(rng.integers(len(_GREY_HAIR))),
        "u_long_hair": float(rng.random()),
        "u_grey_hair": float(rng.random()),
        "u_height": float(rng.random()),
        "u_heads": float(rng.random()),
        "build": float(rng.uniform(0.9, 1.12)),
        "top": _pick_colour(rng),
        "bottom": _pick_colour(rng),
        "coat": _pick_colour(rng),
        "shoes": _pick_colour(rng),
        "boots": _pick_colour(rng),
        "hat": _pick_colour(rng),
        "handbag": _pick_colour(rng),
        "shoulderbag": _pick_colour(rng),
        "backpack": _pick_colour(rng),
        "object": _pick_colour(rng),
        "hat_style": int(rng.integers(3)),        # cap, beanie, brimmed hat
        "sunglasses": bool(rng.random() < 0.35),
        "splice_style": int(rng.integers(3)),     # yoke, vertical halves, side panels
        "lower_pattern_style": int(rng.integers(2)),  # dots, checks
        "skirt_length": float(rng.random()),
        "bag_side": int(rng.choice([-1, 1])),
        "jitter": rng.integers(-10, 11, size=(8, 3)).tolist(),  # per-identity colour shade
    }
    # Contrasting colours for patterns and logos (drawn from the same stream, after the base ones).
    app["top2"] = _pick_colour(rng, avoid=app["top"])
    app["coat2"] = _pick_colour(rng, avoid=app["coat"])
    app["bottom2"] = _pick_colour(rng, avoid=app["bottom"])
    app["logo"] = _pick_colour(rng, avoid=app["top"])
    app["logo_coat"] = _pick_colour(rng, avoid=app["coat"])
    return app


def _sample_scene(rng: np.random.Generator) -> dict:
    return {
        "dx": float(rng.uniform(-0.06, 0.06)),       # horizontal position jitter (fraction of width)
        "scale": float(rng.uniform(0.94, 1.03)),     # crop tightness
        "u_floor": float(rng.random()),
        "facing": int(rng.choice([-1, 1])),          # side view: walking left or right
        "stride": float(rng.uniform(0.0, 1.0)),
        "swing": float(rng.uniform(-1.0, 1.0)),
        "spread": float(rng.uniform(0.0, 1.0)),
        "bg_seed": int(rng.integers(2**31)),
        "occluded": bool(rng.random() < 0.2),
        "occluder": int(rng.integers(4)),
        "occ_u": rng.random(4).tolist(),
        "occ_colour": rng.integers(30, 200, size=3).tolist(),
        "brightness": float(rng.uniform(0.78, 1.15)),
        "contrast": float(rng.uniform(0.85, 1.1)),
        "cast": rng.uniform(0.95, 1.05, size=3).tolist(),
        "noise": float(rng.uniform(1.0, 4.0)),
        "noise_seed": int(rng.integers(2**31)),
    }


def _rng(seed) -> np.random.Generator:
    """A Generator from an int or a tuple of ints (numpy hashes sequences into one seed)."""
    if isinstance(seed, (tuple, list)):
        return np.random.default_rng([int(s) for s in seed])
    return np.random.default_rng(int(seed))


# --------------------------------------------------------------------------------------------
# body layout
# --------------------------------------------------------------------------------------------

@dataclass
class _Body:
    """Geometry of one rendered person, in supersampled canvas pixels."""

    view: str
    facing: int
    cx: float
    top: float
    head_h: float
    head_w: float
    shoulder_y: float
    hip_y: float
    knee_y: float
    ankle_y: float
    floor_y: float
    sh_hw: float     # shoulder half width (side view: half the chest depth)
    waist_hw: float
    hip_hw: float
    arm_w: float
    leg_w: float
    stride: float
    spread: float
    swing: float

    @property
    def head_bottom(self) -> float:
        return self.top + self.head_h

    @property
    def wrist_y(self) -> float:
        return self.hip_y + 0.12 * (self.ankle_y - self.hip_y)


def _layout(attrs: dict, view: str, app: dict, scene: dict, W: int, H: int) -> _Body:
    female = bool(attrs["Female"])
    if attrs["AgeLess18"]:  # children: smaller in the crop and a larger head (about 5.5 heads tall)
        frac, n_heads = 0.70 + 0.12 * app["u_height"], 5.2 + 0.7 * app["u_heads"]
    elif attrs["AgeOver60"]:
        frac, n_heads = 0.84 + 0.07 * app["u_height"], 6.6 + 0.5 * app["u_heads"]
    else:
        frac, n_heads = 0.86 + 0.09 * app["u_height"], 7.0 + 0.7 * app["u_heads"]
    floor = H * (0.962 + 0.026 * scene["u_floor"])
    frac = min(frac * scene["scale"], floor / H - 0.015)
    P = frac * H
    top = floor - P
    head_h = P / n_heads
    head_w = head_h * (0.86 if view == "side" else 0.78) * (0.96 if female else 1.0)
    shoulder_y = top + head_h * 1.18
    foot_h = 0.30 * head_h
    ankle = floor - foot_h
    torso_frac = 0.47 if attrs["AgeLess18"] else 0.44
    hip_y = shoulder_y + (ankle - shoulder_y) * torso_frac
    knee_y = hip_y + (ankle - hip_y) * 0.5
    b = app["build"] * head_h
    if view == "side":
        sh_hw, waist_hw, hip_hw = 0.52 * b, 0.46 * b, 0.50 * b
    elif attrs["AgeLess18"]:
        sh_hw, waist_hw, hip_hw = 0.82 * b, 0.66 * b, 0.66 * b
    elif female:  # narrower shoulders, waist, wider hips: the body-shape gender cue
        sh_hw, waist_hw, hip_hw = 0.86 * b, 0.62 * b, 0.82 * b
    else:
        sh_hw, waist_hw, hip_hw = 1.04 * b, 0.84 * b, 0.72 * b
    return _Body(
        view=view, facing=scene["facing"], cx=W * (0.5 + scene["dx"]), top=top, head_h=head_h,
        head_w=head_w, shoulder_y=shoulder_y, hip_y=hip_y, knee_y=knee_y, ankle_y=ankle,
        floor_y=floor, sh_hw=sh_hw, waist_hw=waist_hw, hip_hw=hip_hw, arm_w=0.34 * b,
        leg_w=0.42 * b, stride=scene["stride"] * 0.9 * head_h, spread=scene["spread"] * 0.18 * head_h,
        swing=scene["swing"],
    )


def _legs(body: _Body) -> list:
    """[(hip point, ankle point)] for each visible leg, far leg first."""
    if body.view == "side":
        s, f = body.stride / 2, body.facing
        return [((body.cx, body.hip_y), (body.cx - f * s, body.ankle_y)),
                ((body.cx, body.hip_y), (body.cx + f * s, body.ankle_y))]
    off = body.hip_hw * 0.48
    return [((body.cx - off, body.hip_y), (body.cx - off - body.spread, body.ankle_y)),
            ((body.cx + off, body.hip_y), (body.cx + off + body.spread, body.ankle_y))]


def _arms(body: _Body, attrs: dict) -> list:
    """[(shoulder, elbow, wrist)] for each visible arm."""
    sy = body.shoulder_y + 0.18 * body.head_h
    hold = bool(attrs["HoldObjectsInFront"])
    upper_len = (body.wrist_y - sy) * 0.5
    if body.view == "side":
        f = body.facing
        sh = (body.cx, sy)
        if hold:  # elbow down, forearm forward to the object
            el = (body.cx + f * 0.1 * body.head_h, sy + upper_len)
            wr = (body.cx + f * (body.sh_hw + 0.55 * body.head_h), sy + upper_len * 0.95)
        else:  # walking swing
            a = 0.35 * body.swing
            el = (body.cx + f * np.sin(a) * upper_len, sy + np.cos(a) * upper_len)
            a2 = a + 0.15
            wr = (el[0] + f * np.sin(a2) * upper_len, el[1] + np.cos(a2) * upper_len)
        return [(sh, el, wr)]
    arms = []
    for s in (-1, 1):
        sh = (body.cx + s * (body.sh_hw - body.arm_w * 0.45), sy)
        out = max(body.sh_hw - body.arm_w * 0.2, body.hip_hw + body.arm_w * 0.6)
        el = (body.cx + s * (out - 0.02 * body.head_h), sy + upper_len)
        if hold and body.view == "front":
            wr = (body.cx + s * 0.42 * body.head_h, el[1] - 0.05 * body.head_h)
        elif hold:  # back view: forearms hidden in front of the body
            wr = (body.cx + s * (out - 0.15 * body.head_h), el[1] + 0.25 * upper_len)
        else:
            wr = (body.cx + s * out, body.wrist_y)
        arms.append((sh, el, wr))
    return arms


def _hand_r(body: _Body) -> float:
    return body.arm_w * 0.5


def _regions_canvas(body: _Body, attrs: dict) -> dict:
    """Body-part boxes (x0, y0, x1, y1) in canvas pixels; generous enough to hold every drawing of
    the part (hat brim, hair, sleeves, skirt flare, boot shafts, toes)."""
    h = body.head_h
    head_half = body.head_w / 2 + 0.42 * h
    head = (body.cx - head_half, body.top - 0.35 * h, body.cx + head_half, body.head_bottom)
    xs = [body.cx - body.sh_hw - 0.1 * h, body.cx + body.sh_hw + 0.1 * h]
    ys = [body.hip_y + 0.2 * h]
    for sh, el, wr in _arms(body, attrs):
        r = _hand_r(body) * 1.3 + body.arm_w * 0.6
        xs += [p[0] - r for p in (sh, el, wr)] + [p[0] + r for p in (sh, el, wr)]
        ys += [wr[1] + 2.2 * _hand_r(body)]
    torso = (min(xs), body.head_bottom - 0.1 * h, max(xs), max(ys))
    lx = [body.cx - 1.55 * body.hip_hw - 0.3 * h, body.cx + 1.55 * body.hip_hw + 0.3 * h]
    for hip, ank in _legs(body):
        lx += [ank[0] - body.leg_w, ank[0] + body.leg_w]
    legs = (min(lx), body.hip_y - 0.15 * h, max(lx), body.ankle_y + 1)
    fx = []
    for _, ank in _legs(body):
        fx += [ank[0] - body.leg_w - 0.45 * h, ank[0] + body.leg_w + 0.45 * h]
    feet = (min(fx), body.ankle_y - 0.62 * h, max(fx), body.floor_y + 1)
    boxes = {"head": head, "torso": torso, "legs": legs, "feet": feet}
    allb = np.array(list(boxes.values()))
    boxes["body"] = (allb[:, 0].min(), allb[:, 1].min(), allb[:, 2].max(), allb[:, 3].max())
    return boxes


# --------------------------------------------------------------------------------------------
# drawing
# --------------------------------------------------------------------------------------------

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


def _upper_texture(body: _Body, attrs: dict, app: dict, size) -> Optional[Image.Image]:
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


def _lower_texture(body: _Body, attrs: dict, app: dict, size) -> Optional[Image.Image]:
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


def _draw_person(img: Image.Image, body: _Body, attrs: dict, app: dict) -> None:
    pen = _Pen(img)
    h, cx, f, view = body.head_h, body.cx, body.facing, body.view
    skin = _SKIN[app["skin"]]
    old = bool(attrs["AgeOver60"])
    grey = old and app["u_grey_hair"] < 0.85
    hair = _GREY_HAIR[app["grey"]] if grey else _HAIR[app["hair"]]
    # Long hair is the main gender cue besides body shape; not an attribute, so it follows Female.
    long_hair = app["u_long_hair"] < (0.78 if attrs["Female"] else 0.05)
    coat = bool(attrs["LongCoat"])
    upper_col = _colour(app, "coat" if coat else "top", 0)
    upper_col2 = _colour(app, "coat2" if coat else "top2", 1)
    lower_col = _colour(app, "bottom", 2)
    lower_col2 = _colour(app, "bottom2", 3)
    short_sleeve = bool(attrs["ShortSleeve"])
    size = img.size
    sy, hy = body.shoulder_y, body.hip_y

    # 1. things behind the body: backpack (front view: it peeks above and beside the shoulders),
    #    a held object seen from the back, long hair seen from the front or side.
    bp_col = _colour(app, "backpack", 4)
    if attrs["Backpack"] and view == "front":
        pen.polygon([(cx - body.sh_hw * 0.95, sy + 0.6 * h), (cx - body.sh_hw * 0.8, sy - 0.22 * h),
                     (cx + body.sh_hw * 0.8, sy - 0.22 * h), (cx + body.sh_hw * 0.95, sy + 0.6 * h)],
                    bp_col)
    obj_col = _colour(app, "object", 5)
    if attrs["HoldObjectsInFront"] and view == "back":
        ow = body.waist_hw + 0.35 * h
        pen.polygon([(cx - ow, hy - 0.75 * h), (cx + ow, hy - 0.75 * h), (cx + ow, hy - 0.2 * h),
                     (cx - ow, hy - 0.2 * h)], obj_col)
    hx0, hx1 = cx - body.head_w / 2, cx + body.head_w / 2
    hcx = cx + (f * 0.06 * h if view == "side" else 0.0)  # profile: face slightly forward
    if long_hair and view == "front":
        pen.polygon([(hx0 - 0.08 * h, body.top + 0.3 * h), (hx1 + 0.08 * h, body.top + 0.3 * h),
                     (hx1 + 0.14 * h, sy + 0.55 * h), (hx0 - 0.14 * h, sy + 0.55 * h)], hair)
    elif long_hair and view == "side":
        bx = hcx - f * body.head_w * 0.5
        pen.polygon([(hcx, body.top + 0.15 * h), (bx - f * 0.12 * h, body.top + 0.4 * h),
                     (bx - f * 0.1 * h, sy + 0.6 * h), (bx + f * 0.3 * h, sy + 0.6 * h),
                     (hcx, body.top + 0.6 * h)], hair)

    # 2. legs (skin), then the lower garment with its texture.
    legs = _legs(body)
    for k, (hip, ank) in enumerate(legs):
        shade = _darker(skin, 0.85) if (view == "side" and k == 0) else skin
        pen.segment(hip, ank, body.leg_w, body.leg_w * 0.72, shade)
    lower_tex = _lower_texture(body, attrs, app, size)
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
        pen.texture(lower_mask, lower_tex, lower_col2)

    # 3. feet: shoes or boots (boots cover the trouser hems).
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

    # 4. torso garment or long coat, with its texture; arms with sleeves.
    upper_tex = _upper_texture(body, attrs, app, size)
    wy = sy + 0.6 * (hy - sy)
    with pen.record() as upper_mask:
        if view == "side":
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
        arms = _arms(body, attrs)
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
        pen.texture(upper_mask, upper_tex, upper_col2)
    for sh, el, wr in arms:
        r = _hand_r(body)
        pen.ellipse((wr[0] - r, wr[1] - r * 0.6, wr[0] + r, wr[1] + r * 1.4), skin)

    # 5. neck, head, hair, face, glasses, hat.
    neck_hw = 0.17 * h
    pen.polygon([(hcx - neck_hw, body.head_bottom - 0.2 * h), (hcx + neck_hw, body.head_bottom - 0.2 * h),
                 (hcx + neck_hw, sy + 0.02 * h), (hcx - neck_hw, sy + 0.02 * h)], _darker(skin, 0.92))
    head_box = (hcx - body.head_w / 2, body.top, hcx + body.head_w / 2, body.head_bottom)
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
    if long_hair and view == "back":
        pen.polygon([(hx0 - 0.06 * h, body.top + 0.3 * h), (hx1 + 0.06 * h, body.top + 0.3 * h),
                     (hx1 + 0.1 * h, sy + 0.7 * h), (hx0 - 0.1 * h, sy + 0.7 * h)], hair)
    elif long_hair and view == "front":  # strands falling in front of the shoulders
        for s in (-1, 1):
            x = hcx + s * body.head_w * 0.48
            pen.polygon([(x - 0.1 * h, body.top + 0.45 * h), (x + 0.1 * h, body.top + 0.45 * h),
                         (x + 0.1 * h + s * 0.05 * h, sy + 0.5 * h), (x - 0.1 * h + s * 0.05 * h, sy + 0.5 * h)], hair)
    if attrs["Glasses"]:
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
    if attrs["Hat"]:
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

    # 6. logo on the chest (front), on the back, or a smaller one at the chest edge (side view).
    if attrs["UpperLogo"]:
        logo = _colour(app, "logo_coat" if coat else "logo", 1)
        if view == "side":
            lx, ly, r = cx + f * (body.sh_hw - 0.12 * h), sy + 0.55 * h, 0.1 * h
        else:
            lx = cx + (0.28 * body.sh_hw if view == "front" else 0.0)
            ly, r = sy + (0.5 if view == "front" else 0.35) * h, (0.17 if view == "front" else 0.13) * h
        pen.polygon([(lx - r, ly - r), (lx + r, ly - r), (lx + r, ly + r), (lx - r, ly + r)], logo)

    # 7. carried objects.
    if attrs["Backpack"]:
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
    if attrs["ShoulderBag"]:
        sb = _colour(app, "shoulderbag", 4)
        side = app["bag_side"] if view != "side" else -f
        bx = cx + side * (body.hip_hw + 0.05 * h) if view != "side" else cx - f * 0.1 * h
        by = hy - 0.15 * h
        start = (cx - side * body.sh_hw * 0.6, sy) if view != "side" else (cx, sy)
        pen.line([start, (bx, by)], _darker(sb, 0.7), 0.1 * h)
        pen.polygon([(bx - 0.38 * h, by - 0.05 * h), (bx + 0.38 * h, by - 0.05 * h), (bx + 0.38 * h, by + 0.55 * h),
                     (bx - 0.38 * h, by + 0.55 * h)], sb)
    if attrs["HandBag"]:
        hb = _colour(app, "handbag", 5)
        sh, el, wr = arms[0] if (view == "side" or app["bag_side"] < 0) else arms[-1]
        r = _hand_r(body)
        bx, by = wr[0], wr[1] + 0.9 * r
        pen.line([(bx - 0.2 * h, by + 0.2 * h), (bx, wr[1]), (bx + 0.2 * h, by + 0.2 * h)], _darker(hb, 0.7), 0.07 * h)
        pen.polygon([(bx - 0.32 * h, by + 0.18 * h), (bx + 0.32 * h, by + 0.18 * h), (bx + 0.36 * h, by + 0.72 * h),
                     (bx - 0.36 * h, by + 0.72 * h)], hb)
    if attrs["HoldObjectsInFront"] and view != "back":
        if view == "front":
            ox, oy, ow = cx, arms[0][2][1], 0.5 * h
        else:
            ox, oy, ow = arms[0][2][0], arms[0][2][1], 0.3 * h
        pen.polygon([(ox - ow, oy - 0.35 * h), (ox + ow, oy - 0.35 * h), (ox + ow, oy + 0.3 * h),
                     (ox - ow, oy + 0.3 * h)], obj_col)
        for sh, el, wr in arms:
            r = _hand_r(body)
            pen.ellipse((wr[0] - r, wr[1] - r, wr[0] + r, wr[1] + r), skin)


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


def _check_size(image_size) -> tuple:
    try:
        w, h = (int(v) for v in image_size)
    except (TypeError, ValueError):
        raise ValueError(f"image_size must be (width, height), got {image_size!r}") from None
    if w < 16 or h < 32:
        raise ValueError(f"image_size {image_size!r} is too small: use at least (16, 32), e.g. (64, 128)")
    return w, h


def _compose(attrs, view, seed, image_size, appearance_seed):
    w, h = _check_size(image_size)
    full = complete_attributes(attrs, view)
    view = next(v for v in VIEWS if full[_VIEW_ATTRIBUTE[v]])
    base = tuple(seed) if isinstance(seed, (tuple, list)) else (seed,)
    app = _sample_appearance(_rng(appearance_seed if appearance_seed is not None else (*base, 1)))
    scene = _sample_scene(_rng(base if len(base) > 1 else (*base, 2)))
    W, H = w * _SUPERSAMPLE, h * _SUPERSAMPLE
    body = _layout(full, view, app, scene, W, H)
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
    return dict(_sample_appearance(_rng(appearance_seed)))


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
    for name, (x0, y0, x1, y1) in _regions_canvas(body, full).items():
        out[name] = (int(np.clip(np.floor(x0 / _SUPERSAMPLE), 0, w)), int(np.clip(np.floor(y0 / _SUPERSAMPLE), 0, h)),
                     int(np.clip(np.ceil(x1 / _SUPERSAMPLE), 0, w)), int(np.clip(np.ceil(y1 / _SUPERSAMPLE), 0, h)))
    return out


# --------------------------------------------------------------------------------------------
# captions
# --------------------------------------------------------------------------------------------

def make_captions(attrs: dict, view: str, app: dict, rng: np.random.Generator, n: int = 3) -> list:
    """Free-text captions that mention a random subset of what is drawn (for CLIP pretraining).

    Args:
        attrs: complete attribute dict of the image.
        view: "front" | "side" | "back".
        app: the identity's appearance (for colour names and hair).
        rng: numpy Generator.
        n: number of captions.

    Returns:
        `n` lower-case captions, each at most about 45 CLIP tokens (well under 77).
    """
    female, old, child = attrs["Female"], attrs["AgeOver60"], attrs["AgeLess18"]
    if old:
        subjects = ["an elderly woman", "an old woman", "a senior woman", "an elderly person"] if female else \
            ["an elderly man", "an old man", "a senior man", "an elderly person"]
    elif child:
        subjects = ["a girl", "a young girl", "a child", "a kid"] if female else \
            ["a boy", "a young boy", "a child", "a kid"]
    else:
        subjects = ["a woman", "a lady", "a female pedestrian", "a person", "a pedestrian"] if female else \
            ["a man", "a guy", "a male pedestrian", "a person", "a pedestrian"]
    coat = attrs["LongCoat"]
    top, bottom = (app["coat"] if coat else app["top"]), app["bottom"]
    pattern = ("striped " if attrs["UpperStride"] else "plaid " if attrs["UpperPlaid"] else
               "two-tone " if attrs["UpperSplice"] else "")
    logo = " with a logo" if attrs["UpperLogo"] else ""
    lpat = "striped " if attrs["LowerStripe"] else "patterned " if attrs["LowerPattern"] else ""

    def pick(options):
        return options[int(rng.integers(len(options)))]

    wear = []  # (noun phrase options)
    if attrs["Hat"]:
        wear.append(["a hat", "a cap" if app["hat_style"] == 0 else "a beanie" if app["hat_style"] == 1 else "a hat"])
    if attrs["Glasses"]:
        wear.append(["sunglasses", "glasses"] if app["sunglasses"] else ["glasses", "spectacles"])
    if coat:
        wear.append([f"a {pattern}long coat{logo}", f"a {top} {pattern}long coat{logo}",
                     f"a knee-length {top} coat{logo}"])
    elif attrs["ShortSleeve"]:
        wear.append([f"a {pattern}{top} t-shirt{logo}", f"a short-sleeved {pattern}{top} top{logo}",
                     f"a {pattern}short-sleeved shirt{logo}"])
    else:
        wear.append([f"a {pattern}{top} long-sleeved top{logo}", f"a long-sleeved {pattern}{top} shirt{logo}",
                     f"a {pattern}{top} jacket{logo}", f"a {pattern}{top} sweater{logo}"])
    if attrs["Trousers"]:
        wear.append([f"{lpat}{bottom} trousers", f"{lpat}{bottom} pants", f"long {lpat}trousers"])
    elif attrs["Shorts"]:
        wear.append([f"{lpat}{bottom} shorts", f"{lpat}shorts"])
    else:
        wear.append([f"a {lpat}{bottom} skirt", f"a {lpat}{bottom} dress", f"a {lpat}skirt"])
    if attrs["boots"]:
        wear.append(["boots", f"{app['boots']} boots", "high boots"])
    carry = []
    if attrs["HandBag"]:
        carry.append(["carrying a handbag", "with a handbag", "holding a handbag"])
    if attrs["ShoulderBag"]:
        carry.append(["with a shoulder bag", "carrying a bag on the shoulder", "with a bag over the shoulder"])
    if attrs["Backpack"]:
        carry.append(["with a backpack", "carrying a backpack", "wearing a backpack"])
    if attrs["HoldObjectsInFront"]:
        carry.append(["holding something in front", "holding an object in front of the body",
                      "carrying a box in front"])
    views = {"front": ["seen from the front", "facing the camera", "in front view"],
             "side": ["seen from the side", "in side view", "walking sideways"],
             "back": ["seen from the back", "walking away from the camera", "in back view"]}[view]
    long_hair = app["u_long_hair"] < (0.78 if female else 0.05)
    hair = "grey hair" if (old and app["u_grey_hair"] < 0.85) else "long hair" if long_hair else "short hair"

    def join(items):
        return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]

    captions = []
    for _ in range(n):
        u = rng.random(8)
        w_items = [pick(o) for o in wear if rng.random() < 0.5]
        c_items = [pick(o) for o in carry if rng.random() < 0.6]
        if not w_items and not c_items:
            w_items = [pick(wear[int(rng.integers(len(wear)))])]
        w_items, c_items = w_items[:4], c_items[:2]
        rng.shuffle(w_items)
        subject = pick(subjects)
        if u[0] < 0.25:
            subject += f" with {hair}"
        parts = [subject]
        if w_items:
            parts.append(("wearing " if u[1] < 0.7 else "dressed in ") + join(w_items) if not
                         any(x in ("glasses", "sunglasses", "spectacles", "boots", "high boots") for x in w_items)
                         else "wearing " + join(w_items))
        text = " ".join(parts)
        if c_items:
            text += (", " if w_items else " ") + join(c_items)
        v = pick(views)
        if u[2] < 0.35:
            text = f"{text}, {v}"
        elif u[2] < 0.5:
            text = {"front": "front view of ", "side": "side view of ", "back": "back view of "}[view] + text
        if u[3] < 0.3:
            text = "a photo of " + text
        captions.append(text)
    return captions


# --------------------------------------------------------------------------------------------
# dataset files
# --------------------------------------------------------------------------------------------

def _identity_sizes(n_images: int, rng: np.random.Generator) -> list:
    sizes, total = [], 0
    while total < n_images:
        k = int(rng.integers(2, 7))  # 2..6 images per person
        k = min(k, n_images - total)
        sizes.append(k)
        total += k
    return sizes


def _splits(identities: np.ndarray, seed: int) -> dict:
    """Random 60/10/30 image split plus an identity-disjoint ("zs") split of the same shares."""
    n = len(identities)
    perm = np.random.default_rng([seed, 3]).permutation(n)
    n_train, n_val = int(round(0.6 * n)), int(round(0.1 * n))
    train, val, test = perm[:n_train], perm[n_train:n_train + n_val], perm[n_train + n_val:]
    ids = np.unique(identities)
    id_perm = np.random.default_rng([seed, 4]).permutation(ids)
    counts = np.bincount(identities, minlength=int(ids.max()) + 1)
    zs = {"zs_test": [], "zs_val": [], "zs_train": []}
    done = 0
    for i in id_perm:  # whole identities go to test until 30 % of images, then val until 40 %
        key = "zs_test" if done < 0.3 * n else "zs_val" if done < 0.4 * n else "zs_train"
        zs[key].append(i)
        done += counts[i]
    out = {"train": train, "val": val, "test": test, "trainval": np.concatenate([train, val])}
    for key, members in zs.items():
        out[key] = np.flatnonzero(np.isin(identities, members))
    out["zs_trainval"] = np.concatenate([out["zs_train"], out["zs_val"]])
    return {k: sorted(int(i) for i in v) for k, v in out.items()}


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _labels_csv(rows: list) -> str:
    buf = io.StringIO()
    wr = csv.writer(buf, lineterminator="\n")
    wr.writerow(["image", "identity", "view", *SYNTHPAR_ATTRIBUTES])
    for image, identity, view, labels in rows:
        wr.writerow([image, identity, view, *[labels[a] for a in SYNTHPAR_ATTRIBUTES]])
    return buf.getvalue()


def make_synthpar(out_dir: Union[str, Path], n_images: int = 2000, seed: int = 0,
                  image_size: Sequence[int] = DEFAULT_IMAGE_SIZE, label_noise: float = 0.0,
                  progress: bool = True) -> Path:
    """Generate a SynthPAR dataset folder (layout in the module docstring).

    Identities get 2-6 images each; identity `k` looks the same in all of them (appearance seed
    `(seed, 18, k)`), image `i` has its own scene (seed `(seed, 19, i)`), so any image can be
    re-rendered with `render_person(labels, seed=(seed, 19, i), appearance_seed=(seed, 18, k),
    occlusion=None)`. The same arguments give byte-identical files.

    Args:
        out_dir: folder to (re)write; created if needed. A previous meta.json is removed first,
            so an interrupted run leaves a folder that `ensure_synthpar` regenerates.
        n_images: number of images (>= 10).
        seed: generator seed.
        image_size: (width, height) in pixels.
        label_noise: probability of flipping each written label (annotator noise); the drawn
            labels are then also written to labels_clean.csv.
        progress: show a tqdm progress bar.

    Returns:
        `out_dir` as a Path.
    """
    from parkit.progress import tqdm

    w, h = _check_size(image_size)
    if int(n_images) < 10:
        raise ValueError(f"n_images must be at least 10 (got {n_images}) so that every split is non-empty")
    if not 0.0 <= float(label_noise) <= 0.5:
        raise ValueError(f"label_noise is a flip probability in [0, 0.5], got {label_noise}")
    n_images, seed, label_noise = int(n_images), int(seed), float(label_noise)
    out = Path(out_dir)
    img_dir = out / "images"
    img_dir.mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)  # mark as incomplete until the end
    start = time.perf_counter()

    sizes = _identity_sizes(n_images, np.random.default_rng([seed, 0]))
    rows, clean_rows, caps = [], [], []
    identities = np.repeat(np.arange(len(sizes)), sizes)
    bar = tqdm(total=n_images, desc="SynthPAR", unit="img", disable=not progress)
    i = 0
    for k, count in enumerate(sizes):
        id_attrs = sample_attributes(np.random.default_rng([seed, 17, k]))
        app_seed = (seed, 18, k)
        app = _sample_appearance(_rng(app_seed))
        for _ in range(count):
            img_rng = np.random.default_rng([seed, 20, i])
            view = VIEWS[int(img_rng.integers(3))]
            attrs = complete_attributes(id_attrs, view)
            img = render_person(attrs, seed=(seed, 19, i), image_size=(w, h), appearance_seed=app_seed,
                                occlusion=None)
            name = f"{i:06d}.png"
            img.save(img_dir / name, format="PNG")
            observed = apply_label_noise(attrs, np.random.default_rng([seed, 21, i]), label_noise)
            rows.append((name, k, view, observed))
            clean_rows.append((name, k, view, attrs))
            caps.append({"image": name, "captions": make_captions(attrs, view, app, img_rng)})
            i += 1
            bar.update(1)
    bar.close()
    for stale in img_dir.glob("*.png"):  # leftovers from an earlier, larger generation
        if not stale.stem.isdigit() or int(stale.stem) >= n_images:
            stale.unlink()

    labels_text = _labels_csv(rows)
    _write_text(out / "labels.csv", labels_text)
    if label_noise > 0:
        _write_text(out / "labels_clean.csv", _labels_csv(clean_rows))
    else:
        (out / "labels_clean.csv").unlink(missing_ok=True)
    _write_text(out / "splits.json", json.dumps(_splits(identities, seed)))
    _write_text(out / "captions.jsonl", "".join(json.dumps(c) + "\n" for c in caps))
    meta = {
        "generator": "parkit.data.synthpar", "version": GENERATOR_VERSION, "seed": seed,
        "n_images": n_images, "n_identities": len(sizes), "image_size": [w, h],
        "label_noise": label_noise, "attributes": list(SYNTHPAR_ATTRIBUTES),
        "labels_sha256": hashlib.sha256(labels_text.encode("utf-8")).hexdigest(),
    }
    _write_text(out / "meta.json", json.dumps(meta, indent=1))
    if progress:
        print(f"SynthPAR: {n_images} images, {len(sizes)} identities in {time.perf_counter() - start:.1f} s -> {out}")
    return out


def _read_meta(root: Path) -> dict:
    path = root / "meta.json"
    if not path.is_file():
        hint = (" (labels.csv is there: the generation was interrupted)" if (root / "labels.csv").exists() else "")
        raise DatasetError(
            f"{root} holds no SynthPAR dataset: {path} is missing{hint}. Generate it with "
            f"parkit.data.synthpar.make_synthpar({str(root)!r}) or use ensure_synthpar().")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise DatasetError(f"{path} is not valid JSON ({err}); delete the folder and regenerate it") from None
    if meta.get("generator") != "parkit.data.synthpar":
        raise DatasetError(f"{path} was not written by parkit's SynthPAR generator")
    return meta


def _is_complete(root: Path, n_images: int, seed: int, image_size, label_noise: float) -> bool:
    try:
        meta = _read_meta(root)
        labels = (root / "labels.csv").read_bytes()
    except (DatasetError, OSError):
        return False
    want = {"version": GENERATOR_VERSION, "seed": int(seed), "n_images": int(n_images),
            "image_size": list(_check_size(image_size)), "label_noise": float(label_noise)}
    if any(meta.get(k) != v for k, v in want.items()):
        return False
    if hashlib.sha256(labels).hexdigest() != meta.get("labels_sha256"):
        return False
    if not all((root / f).is_file() for f in ("splits.json", "captions.jsonl")):
        return False
    return all((root / "images" / f"{i:06d}.png").is_file() for i in range(int(n_images)))


def cache_root() -> Path:
    """Where generated data sets are kept: `$PARKIT_CACHE`, default ~/.cache/parkit."""
    return Path(os.environ.get("PARKIT_CACHE") or Path.home() / ".cache" / "parkit").expanduser()


def default_synthpar_root(n_images: int = 2000, seed: int = 0,
                          image_size: Sequence[int] = DEFAULT_IMAGE_SIZE) -> Path:
    """Cache folder for a generated SynthPAR: `$PARKIT_CACHE` (default ~/.cache/parkit) /
    `synthpar-<n_images>-<seed>`, with `-<w>x<h>` appended for a non-default image size."""
    base = cache_root()
    w, h = _check_size(image_size)
    suffix = "" if (w, h) == DEFAULT_IMAGE_SIZE else f"-{w}x{h}"
    return base / f"synthpar-{int(n_images)}-{int(seed)}{suffix}"


def ensure_synthpar(root: Optional[Union[str, Path]] = None, n_images: int = 2000, seed: int = 0,
                    image_size: Sequence[int] = DEFAULT_IMAGE_SIZE, label_noise: float = 0.0,
                    progress: bool = True) -> Path:
    """Return a complete SynthPAR folder, generating it when missing, interrupted or made with
    other settings.

    Args:
        root: folder; default `default_synthpar_root(n_images, seed, image_size)`.
        n_images, seed, image_size, label_noise, progress: as for `make_synthpar`.

    Returns:
        the folder as a Path.
    """
    root = Path(root) if root is not None else default_synthpar_root(n_images, seed, image_size)
    if not _is_complete(root, n_images, seed, image_size, label_noise):
        if (root / "meta.json").exists():
            warnings.warn(f"{root} holds a SynthPAR made with other settings or incomplete; regenerating it")
        make_synthpar(root, n_images=n_images, seed=seed, image_size=image_size, label_noise=label_noise,
                      progress=progress)
    return root


def _pa100k_metadata() -> tuple:
    """(sentences, regions) of SynthPAR's attributes, from the PA100K schema (spec Appendix A)."""
    from parkit.attributes import get_schema

    schema = get_schema("PA100K")
    if [str(a) for a in schema.attributes] != list(SYNTHPAR_ATTRIBUTES):
        raise DatasetError(f"parkit.attributes' PA100K names {list(schema.attributes)} differ from SynthPAR's "
                           f"columns {list(SYNTHPAR_ATTRIBUTES)}; the two must stay in PA100K label order")
    return list(schema.sentences), list(schema.regions)


def load_synthpar(root: Union[str, Path], split_protocol: str = "random", require_images: bool = True,
                  labels: str = "observed", **ignored) -> PARDataset:
    """Read a SynthPAR folder written by `make_synthpar`.

    Args:
        root: the folder (the one holding meta.json).
        split_protocol: "random" (60/10/30 over images; a person's other images may sit in
            another split, like PA100K's random split) or "identity" (the "zs" split: no identity
            shared between trainval and test, like PETA-ZS / RAP-ZS).
        require_images: check that every image file exists.
        labels: "observed" (labels.csv, with any label noise) or "clean" (what was drawn).
        **ignored: options meant for other loaders (accepted so `load_dataset` can pass them).

    Returns:
        PARDataset named "SynthPAR" (random protocol) or "SynthPAR-ZS" (identity protocol), with
        splits train/val/test/trainval, identities set and `info` holding the generator metadata
        and the captions file.
    """
    root = Path(root).expanduser().resolve()
    if split_protocol not in ("random", "identity"):
        raise ValueError(f"split_protocol must be 'random' or 'identity', got {split_protocol!r}")
    if labels not in ("observed", "clean"):
        raise ValueError(f"labels must be 'observed' or 'clean', got {labels!r}")
    meta = _read_meta(root)
    if meta.get("version") != GENERATOR_VERSION:
        warnings.warn(f"{root} was generated by SynthPAR {meta.get('version')}, this is {GENERATOR_VERSION}; "
                      f"regenerate it for identical results")
    csv_path = root / ("labels_clean.csv" if labels == "clean" and meta.get("label_noise", 0) > 0 else "labels.csv")
    try:
        with open(csv_path, newline="", encoding="utf-8") as fh:
            reader = csv.reader(fh)
            header = next(reader)
            table = list(reader)
    except (OSError, StopIteration) as err:
        raise DatasetError(f"cannot read {csv_path} ({err}); regenerate with ensure_synthpar({str(root)!r})") from None
    attrs = header[3:]
    if header[:3] != ["image", "identity", "view"] or attrs != list(SYNTHPAR_ATTRIBUTES):
        raise DatasetError(f"{csv_path}: unexpected columns {header}; regenerate the dataset")
    if len(table) != meta["n_images"]:
        raise DatasetError(f"{csv_path} has {len(table)} rows but meta.json says {meta['n_images']}; regenerate")
    lab = np.array([[int(v) for v in r[3:]] for r in table], dtype=np.uint8)
    identities = np.array([int(r[1]) for r in table], dtype=np.int64)
    paths = [str(root / "images" / r[0]) for r in table]
    if require_images:
        missing = [p for p in paths if not os.path.isfile(p)]
        if missing:
            raise DatasetError(f"{len(missing)} SynthPAR image(s) missing under {root / 'images'}, first "
                               f"{missing[0]}; regenerate with ensure_synthpar({str(root)!r})")
    raw = json.loads((root / "splits.json").read_text(encoding="utf-8"))
    prefix = "" if split_protocol == "random" else "zs_"
    splits = {k: np.asarray(raw[prefix + k], dtype=np.int64) for k in ("train", "val", "test", "trainval")}
    sentences, regions = _pa100k_metadata()
    source = ("SynthPAR random image split (60/10/30 of images, seeded; a person's images can be in "
              "several splits)" if split_protocol == "random" else
              "SynthPAR identity-disjoint split (no identity shared between trainval and test)")
    info = {k: meta[k] for k in ("version", "seed", "n_images", "n_identities", "image_size", "label_noise")}
    info.update(views=[r[2] for r in table], captions=str(root / "captions.jsonl"), labels=labels)
    return PARDataset(
        name="SynthPAR" if split_protocol == "random" else "SynthPAR-ZS",
        attributes=list(SYNTHPAR_ATTRIBUTES), sentences=sentences, regions=regions, labels=lab,
        image_paths=paths, splits=splits, identities=identities, root=root, split_source=source, info=info)


def load_captions(root: Union[str, Path]) -> dict:
    """Captions of a SynthPAR folder: image file name -> list of caption strings."""
    path = Path(root) / "captions.jsonl"
    if not path.is_file():
        raise DatasetError(f"{path} is missing; generate the dataset with ensure_synthpar({str(root)!r})")
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            out[rec["image"]] = rec["captions"]
    return out
