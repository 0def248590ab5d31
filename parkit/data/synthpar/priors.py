"""SynthPAR's attributes and the priors every random draw comes from.

- `SYNTHPAR_ATTRIBUTES`, `VIEWS`, `EXCLUSIVE_GROUPS`: the label columns and their one-hot groups;
- `complete_attributes`, `sample_attributes`, `apply_label_noise`: labels of one person;
- `CLOTH_COLOURS` (named clothing palette), `SKIN_TONES`, `HAIR_COLOURS`, `GREY_HAIR_COLOURS`;
- `sample_appearance` (per identity) and `sample_scene` (per image): raw random draws, taken with a
  fixed number of draws before any attribute is looked at;
- `seeded_rng`: a numpy Generator from an int or a tuple of ints.

Every draw here is part of SynthPAR's generator version: the number and order of random numbers
taken must not change, or generated datasets stop being byte-identical.
"""
from __future__ import annotations

from typing import Optional

import numpy as np

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
VIEW_ATTRIBUTE = {"front": "Front", "side": "Side", "back": "Back"}
# Groups with exactly one member set (as in PA100K, where age, view and sleeve length are one-hot
# on all 100 000 rows and trousers/shorts/skirt on all but 33).
EXCLUSIVE_GROUPS = {
    "age": ("AgeOver60", "Age18-60", "AgeLess18"),
    "view": ("Front", "Side", "Back"),
    "sleeve": ("ShortSleeve", "LongSleeve"),
    "lower": ("Trousers", "Shorts", "Skirt&Dress"),
}
_GROUP_DEFAULT = {"age": "Age18-60", "view": "Front", "sleeve": "LongSleeve", "lower": "Trousers"}

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
SKIN_TONES = ((250, 220, 192), (238, 192, 158), (222, 170, 128), (196, 134, 96), (158, 104, 72),
              (112, 74, 52))
HAIR_COLOURS = ((26, 22, 20), (58, 40, 28), (106, 72, 44), (196, 164, 106), (126, 60, 34))
GREY_HAIR_COLOURS = ((188, 188, 184), (152, 152, 150), (214, 212, 206))


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
            out[VIEW_ATTRIBUTE[v]] = int(v == view)
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


def sample_appearance(rng: np.random.Generator) -> dict:
    app = {
        "skin": int(rng.integers(len(SKIN_TONES))),
        "hair": int(rng.integers(len(HAIR_COLOURS))),
        "grey": int(rng.integers(len(GREY_HAIR_COLOURS))),
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


def sample_scene(rng: np.random.Generator) -> dict:
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


def seeded_rng(seed) -> np.random.Generator:
    """A Generator from an int or a tuple of ints (numpy hashes sequences into one seed)."""
    if isinstance(seed, (tuple, list)):
        return np.random.default_rng([int(s) for s in seed])
    return np.random.default_rng(int(seed))
