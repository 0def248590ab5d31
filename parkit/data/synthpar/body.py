"""Where each part of a SynthPAR person sits: the body geometry the renderer draws from.

`layout_body` turns attributes, appearance and scene draws into a `Body` (canvas pixels);
`leg_segments` and `arm_joints` give the limbs, `region_boxes` the boxes of head, torso, legs and
feet that `body_regions` reports. Pure geometry: no random draws, no drawing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Body:
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


def layout_body(attrs: dict, view: str, app: dict, scene: dict, W: int, H: int) -> Body:
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
    return Body(
        view=view, facing=scene["facing"], cx=W * (0.5 + scene["dx"]), top=top, head_h=head_h,
        head_w=head_w, shoulder_y=shoulder_y, hip_y=hip_y, knee_y=knee_y, ankle_y=ankle,
        floor_y=floor, sh_hw=sh_hw, waist_hw=waist_hw, hip_hw=hip_hw, arm_w=0.34 * b,
        leg_w=0.42 * b, stride=scene["stride"] * 0.9 * head_h, spread=scene["spread"] * 0.18 * head_h,
        swing=scene["swing"],
    )


def leg_segments(body: Body) -> list:
    """[(hip point, ankle point)] for each visible leg, far leg first."""
    if body.view == "side":
        s, f = body.stride / 2, body.facing
        return [((body.cx, body.hip_y), (body.cx - f * s, body.ankle_y)),
                ((body.cx, body.hip_y), (body.cx + f * s, body.ankle_y))]
    off = body.hip_hw * 0.48
    return [((body.cx - off, body.hip_y), (body.cx - off - body.spread, body.ankle_y)),
            ((body.cx + off, body.hip_y), (body.cx + off + body.spread, body.ankle_y))]


def arm_joints(body: Body, attrs: dict) -> list:
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


def hand_radius(body: Body) -> float:
    """Radius of a drawn hand, in canvas pixels."""
    return body.arm_w * 0.5


def region_boxes(body: Body, attrs: dict) -> dict:
    """Body-part boxes (x0, y0, x1, y1) in canvas pixels; generous enough to hold every drawing of
    the part (hat brim, hair, sleeves, skirt flare, boot shafts, toes)."""
    h = body.head_h
    head_half = body.head_w / 2 + 0.42 * h
    head = (body.cx - head_half, body.top - 0.35 * h, body.cx + head_half, body.head_bottom)
    xs = [body.cx - body.sh_hw - 0.1 * h, body.cx + body.sh_hw + 0.1 * h]
    ys = [body.hip_y + 0.2 * h]
    for sh, el, wr in arm_joints(body, attrs):
        r = hand_radius(body) * 1.3 + body.arm_w * 0.6
        xs += [p[0] - r for p in (sh, el, wr)] + [p[0] + r for p in (sh, el, wr)]
        ys += [wr[1] + 2.2 * hand_radius(body)]
    torso = (min(xs), body.head_bottom - 0.1 * h, max(xs), max(ys))
    lx = [body.cx - 1.55 * body.hip_hw - 0.3 * h, body.cx + 1.55 * body.hip_hw + 0.3 * h]
    for hip, ank in leg_segments(body):
        lx += [ank[0] - body.leg_w, ank[0] + body.leg_w]
    legs = (min(lx), body.hip_y - 0.15 * h, max(lx), body.ankle_y + 1)
    fx = []
    for _, ank in leg_segments(body):
        fx += [ank[0] - body.leg_w - 0.45 * h, ank[0] + body.leg_w + 0.45 * h]
    feet = (min(fx), body.ankle_y - 0.62 * h, max(fx), body.floor_y + 1)
    boxes = {"head": head, "torso": torso, "legs": legs, "feet": feet}
    allb = np.array(list(boxes.values()))
    boxes["body"] = (allb[:, 0].min(), allb[:, 1].min(), allb[:, 2].max(), allb[:, 3].max())
    return boxes
