"""Free-text captions of SynthPAR images, for pretraining the compact CLIP.

`make_captions` names a random subset of what is drawn: the person (gender and age words), worn
items with their colour names (from the identity's appearance), carried objects and the view.
The random draws (their number and order) are part of SynthPAR's generator version.
"""
from __future__ import annotations

import numpy as np

_VIEW_PHRASES = {"front": ["seen from the front", "facing the camera", "in front view"],
                 "side": ["seen from the side", "in side view", "walking sideways"],
                 "back": ["seen from the back", "walking away from the camera", "in back view"]}
_VIEW_PREFIX = {"front": "front view of ", "side": "side view of ", "back": "back view of "}
# Worn items that read "wearing ...", never "dressed in ...".
_WORN_NOT_DRESSED = ("glasses", "sunglasses", "spectacles", "boots", "high boots")


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
    subjects = _subjects(attrs)
    wear, carry = _wear_options(attrs, app), _carry_options(attrs)
    views = _VIEW_PHRASES[view]
    hair = _hair_phrase(attrs, app)
    return [_one_caption(rng, subjects, wear, carry, views, hair, view) for _ in range(n)]


def _subjects(attrs: dict) -> list:
    """Ways to name the person: by age band and gender."""
    female, old, child = attrs["Female"], attrs["AgeOver60"], attrs["AgeLess18"]
    if old:
        return ["an elderly woman", "an old woman", "a senior woman", "an elderly person"] if female else \
            ["an elderly man", "an old man", "a senior man", "an elderly person"]
    if child:
        return ["a girl", "a young girl", "a child", "a kid"] if female else \
            ["a boy", "a young boy", "a child", "a kid"]
    return ["a woman", "a lady", "a female pedestrian", "a person", "a pedestrian"] if female else \
        ["a man", "a guy", "a male pedestrian", "a person", "a pedestrian"]


def _wear_options(attrs: dict, app: dict) -> list:
    """One list of noun-phrase options per worn item, head to feet."""
    coat = attrs["LongCoat"]
    top, bottom = (app["coat"] if coat else app["top"]), app["bottom"]
    pattern = ("striped " if attrs["UpperStride"] else "plaid " if attrs["UpperPlaid"] else
               "two-tone " if attrs["UpperSplice"] else "")
    logo = " with a logo" if attrs["UpperLogo"] else ""
    lpat = "striped " if attrs["LowerStripe"] else "patterned " if attrs["LowerPattern"] else ""
    wear = []
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
    return wear


def _carry_options(attrs: dict) -> list:
    """One list of phrase options per carried object."""
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
    return carry


def _hair_phrase(attrs: dict, app: dict) -> str:
    """The hair as drawn (same rule as the renderer: long hair follows Female, grey hair age)."""
    long_hair = app["u_long_hair"] < (0.78 if attrs["Female"] else 0.05)
    old = attrs["AgeOver60"]
    return "grey hair" if (old and app["u_grey_hair"] < 0.85) else "long hair" if long_hair else "short hair"


def _pick(rng: np.random.Generator, options: list):
    return options[int(rng.integers(len(options)))]


def _join(items: list) -> str:
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def _one_caption(rng: np.random.Generator, subjects: list, wear: list, carry: list, views: list, hair: str,
                 view: str) -> str:
    """One caption. Its random draws, in order: 8 uniforms, one uniform per worn item (and a pick
    when kept), the same per carried item, a fallback item when none was kept, the shuffle of the
    worn items, the subject, the view phrase (always drawn, used or not)."""
    u = rng.random(8)
    w_items = [_pick(rng, o) for o in wear if rng.random() < 0.5]
    c_items = [_pick(rng, o) for o in carry if rng.random() < 0.6]
    if not w_items and not c_items:
        w_items = [_pick(rng, wear[int(rng.integers(len(wear)))])]
    w_items, c_items = w_items[:4], c_items[:2]
    rng.shuffle(w_items)
    subject = _pick(rng, subjects)
    if u[0] < 0.25:
        subject += f" with {hair}"
    parts = [subject]
    if w_items:
        parts.append(("wearing " if u[1] < 0.7 else "dressed in ") + _join(w_items) if not
                     any(x in _WORN_NOT_DRESSED for x in w_items)
                     else "wearing " + _join(w_items))
    text = " ".join(parts)
    if c_items:
        text += (", " if w_items else " ") + _join(c_items)
    v = _pick(rng, views)
    if u[2] < 0.35:
        text = f"{text}, {v}"
    elif u[2] < 0.5:
        text = _VIEW_PREFIX[view] + text
    if u[3] < 0.3:
        text = "a photo of " + text
    return text
