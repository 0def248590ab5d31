"""SynthWorld: the broader synthetic "web" that the compact CLIP is pretrained on, with alt-text captions.

Why it exists. OpenAI's CLIP was pretrained on web images and their alt-text, not on pedestrian
attribute labels: web captions say "a woman in a red coat walking down a street at night", and
almost never "glasses", "leather shoes" or "plaid lower body" about a surveillance crop. So the
CLIP embedding is not linearly sufficient for PAR, and PromptPAR's prompts and patch-level fusion
are what reach the local evidence (issue: the compact default must keep that relation). SynthWorld
rebuilds that relation at small scale:

- **Images** are scenes, not PAR crops: square canvases with a street, park, indoor or studio
  background, day / dusk / night lighting, and zero to three SynthPAR people at three framings
  (close-up of the upper body, full figure, far away), in any view, pasted where they stand.
  The people are drawn by SynthPAR's renderer (`parkit.data.synthpar.render_person`) from seeds
  that no evaluation set uses (every seed here is a tuple starting with `WORLD_TAG`).
- **Captions** come from a fixed, versioned alt-text grammar (`alt_text`, `ALT_TEXT_VERSION`),
  written before any downstream number was looked at: how many people, a gender noun for some
  adults, the overall colour or one or two salient garments, the walking direction, the scene
  and the light, sometimes "a photo of". Fine local attributes are named rarely or never; the
  table `MENTION_RATES` is the grammar's own statement and `mention_table` measures it on a
  generated folder (parkit/assets/README.md quotes the measurement).

The PAR dataset the notebooks use (SynthPAR) is unchanged: one pedestrian crop, the labels.

Folder layout written by `make_synthworld`:

    images/000000.png ...   RGB, size x size
    captions.jsonl          {"image", "captions": [...], "mentions": [[attribute, ...] per caption],
                             "people": [{"attributes": {...}, "view", "framing"}, ...]}
    meta.json               generator, versions, seed, n_images, size; written LAST
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from parkit.data.base import DatasetError
from parkit.data.synthpar import (
    SYNTHPAR_ATTRIBUTES, VIEWS, cache_root, complete_attributes, person_appearance, render_person,
    sample_attributes)
from parkit.progress import tqdm

WORLD_VERSION = "1.0"
ALT_TEXT_VERSION = "1.0"
# First element of every seed tuple drawn here: SynthPAR datasets seed their people with tuples
# (seed, 17..21, i), so no world person can coincide with an evaluation person.
WORLD_TAG = 7919

SCENES = ("street", "park", "indoor", "studio")
_SCENE_P = (0.45, 0.2, 0.2, 0.15)
_LIGHT_P = {"day": 0.7, "dusk": 0.15, "night": 0.15}
_COUNT_P = (0.12, 0.55, 0.2, 0.13)  # zero, one, two, three people
_FRAMINGS = ("close", "full", "far")
_FRAMING_P_ONE = (0.25, 0.5, 0.25)
_FRAMING_P_MANY = (0.0, 0.6, 0.4)
_PLAIN = (128, 128, 128)  # render_person's plain background: the paste mask is "not this grey"

# How often the grammar names each PAR attribute of a described person when the attribute is
# present (single-person scenes; multi-person captions name even less). Attributes absent here
# are never named. This is the design, fixed in ALT_TEXT_VERSION 1.0; `mention_table` measures it.
MENTION_RATES = {
    "Female": "gender noun for 60% of adults (woman / man), else 'a person' / 'someone'",
    "AgeOver60": "'an old man / woman' 10%",
    "AgeLess18": "'a child / kid / boy / girl' 15%",
    "Front / Side / Back": "walking direction 35% ('towards the camera', 'past', 'away')",
    "LongCoat": "the salient upper garment is named 35% ('a red coat')",
    "Skirt&Dress": "second garment 45% ('a dress', 'a skirt')",
    "Shorts": "second garment 20%",
    "Trousers": "second garment 10% ('jeans', 'trousers')",
    "Hat": "5% ('wearing a hat')",
    "Backpack": "5% ('with a backpack')",
    "never": "Age18-60, Glasses, HandBag, ShoulderBag, HoldObjectsInFront, ShortSleeve, LongSleeve, "
             "UpperStride, UpperLogo, UpperPlaid, UpperSplice, LowerStripe, LowerPattern, boots",
}


# --------------------------------------------------------------------------------------------
# scenes
# --------------------------------------------------------------------------------------------

def _rgb(rng, lo, hi) -> np.ndarray:
    return rng.uniform(lo, hi, 3)


def _scene_background(kind: str, size: int, rng: np.random.Generator) -> tuple:
    """(image, ground_y): a square background of `kind` and the row where people stand."""
    S = size
    t = np.linspace(0.0, 1.0, S, dtype=np.float32)[:, None, None]
    arr = np.empty((S, S, 3), dtype=np.float32)
    if kind == "studio":
        a, b = _rgb(rng, 60, 220), _rgb(rng, 60, 220)
        arr[:] = (1 - t) * a + t * b
        ground = int(S * rng.uniform(0.85, 0.97))
    else:
        sky = {"street": _rgb(rng, 120, 230), "park": np.array([120, 170, 220]) * rng.uniform(0.7, 1.1),
               "indoor": _rgb(rng, 90, 210)}[kind]
        floor = {"street": _rgb(rng, 60, 140), "park": np.array([60, 130, 50]) * rng.uniform(0.6, 1.2),
                 "indoor": _rgb(rng, 80, 200)}[kind]
        ground = int(S * rng.uniform(0.55, 0.8))
        arr[:] = sky
        arr[ground:] = floor * (0.8 + 0.3 * t[ground:])
    img = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    d = ImageDraw.Draw(img)
    for _ in range(int(rng.integers(1, 7))):
        col = tuple(int(c) for c in rng.integers(20, 230, 3))
        x, w = float(rng.uniform(-0.2, 1.0) * S), float(rng.uniform(0.08, 0.5) * S)
        if kind == "street":  # buildings with windows, cars at the kerb, poles
            k = int(rng.integers(3))
            if k == 0:
                top = float(rng.uniform(0.0, 0.5) * ground)
                d.rectangle((x, top, x + w, ground), fill=col)
                for j in range(int(rng.integers(1, 4))):
                    wy = top + (j + 0.3) * (ground - top) / 4
                    d.rectangle((x + w * 0.2, wy, x + w * 0.5, wy + S * 0.04), fill=tuple(c // 2 for c in col))
            elif k == 1:
                h = float(rng.uniform(0.06, 0.14) * S)
                d.rounded_rectangle((x, ground - h, x + w, ground + h * 0.3), radius=h / 3, fill=col)
            else:
                d.rectangle((x, 0, x + S * 0.025, ground), fill=col)
        elif kind == "park":  # trees and bushes
            h = float(rng.uniform(0.15, 0.5) * S)
            green = (int(rng.integers(20, 90)), int(rng.integers(90, 180)), int(rng.integers(20, 90)))
            d.rectangle((x + w * 0.45, ground - h * 0.5, x + w * 0.55, ground), fill=(90, 60, 30))
            d.ellipse((x, ground - h, x + w, ground - h * 0.35), fill=green)
        elif kind == "indoor":  # doors, shelves, posters
            h = float(rng.uniform(0.2, 0.6) * S)
            d.rectangle((x, ground - h, x + w * 0.6, ground), fill=col)
    arr = np.asarray(img, dtype=np.float32)
    arr += rng.normal(0.0, rng.uniform(1.0, 5.0), arr.shape).astype(np.float32)
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8)), ground


def _paste_person(canvas: Image.Image, person: Image.Image, x: int, y: int) -> None:
    arr = np.asarray(person, dtype=np.int16)
    mask = (np.abs(arr - np.array(_PLAIN, dtype=np.int16)).max(-1) > 0).astype(np.uint8) * 255
    canvas.paste(person, (x, y), Image.fromarray(mask, "L"))


def _place(framing: str, size: int, ground: int, rng: np.random.Generator) -> tuple:
    """(person height in pixels, top-left x, top-left y) of one person for a framing."""
    S = size
    if framing == "close":  # upper body fills the frame; legs leave it at the bottom
        h = int(S * rng.uniform(1.4, 2.0))
        return h, int(S / 2 - h / 4 + rng.uniform(-0.1, 0.1) * S), int(-rng.uniform(0.0, 0.08) * h)
    frac = rng.uniform(0.6, 0.95) if framing == "full" else rng.uniform(0.22, 0.45)
    h = int(S * frac)
    foot = ground if framing == "far" else int(min(S, ground + rng.uniform(0.05, 0.3) * S))
    return h, int(rng.uniform(-0.15, 0.85) * S), int(foot - h)


def render_scene(seed, size: int = 96) -> tuple:
    """Draw one SynthWorld scene.

    Args:
        seed: int or tuple of ints; the scene, its people and their looks all derive from it.
        size: side of the square image.

    Returns:
        (RGB PIL image, scene dict with "kind", "light", "people": [{"attributes", "view",
        "framing", "appearance_seed"}]).
    """
    base = (WORLD_TAG, *(seed if isinstance(seed, (tuple, list)) else (seed,)))
    rng = np.random.default_rng([int(s) for s in base])
    kind = SCENES[int(rng.choice(len(SCENES), p=_SCENE_P))]
    light = str(rng.choice(list(_LIGHT_P), p=list(_LIGHT_P.values())))
    if kind == "studio":
        light = "day"
    count = int(rng.choice(4, p=_COUNT_P))
    img, ground = _scene_background(kind, size, rng)
    people = []
    framings = _FRAMING_P_ONE if count == 1 else _FRAMING_P_MANY
    for j in range(count):
        framing = _FRAMINGS[int(rng.choice(3, p=framings))]
        attrs = complete_attributes(sample_attributes(np.random.default_rng([*base, 1, j])),
                                    VIEWS[int(rng.integers(3))])
        view = next(v for v in VIEWS if attrs[v.capitalize()])
        app_seed = (*base, 2, j)
        h, x, y = _place(framing, size, ground, rng)
        person = render_person(attrs, seed=(*base, 3, j), image_size=(max(16, h // 2), max(32, h)),
                               appearance_seed=app_seed, occlusion=False, background=False,
                               photometric=False)
        if rng.random() < 0.5:
            person = person.transpose(Image.FLIP_LEFT_RIGHT)
        _paste_person(img, person, x, y)
        people.append({"attributes": attrs, "view": view, "framing": framing, "appearance_seed": list(app_seed)})
    # Light: night darkens and blues, dusk warms; then a little blur or sensor noise.
    arr = np.asarray(img, dtype=np.float32)
    gain = {"day": rng.uniform(0.9, 1.15, 1) * rng.uniform(0.95, 1.05, 3),
            "dusk": rng.uniform(0.7, 0.9) * np.array([1.1, 0.9, 0.75]),
            "night": rng.uniform(0.3, 0.5) * np.array([0.8, 0.9, 1.2])}[light]
    arr = arr * gain + rng.normal(0.0, rng.uniform(1.0, 6.0), arr.shape)
    img = Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8))
    if rng.random() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 1.0))))
    return img, {"kind": kind, "light": light, "people": people}


# --------------------------------------------------------------------------------------------
# alt-text captions
# --------------------------------------------------------------------------------------------

_SCENE_WORDS = {
    "street": ["on a street", "on the sidewalk", "in the city", "on a city street"],
    "park": ["in a park", "on a path in the park", "near some trees"],
    "indoor": ["indoors", "in a hallway", "in a shopping mall", "inside a building"],
    "studio": ["against a plain background", "in a studio"],
}
_EMPTY = {"street": ["an empty street", "a street with buildings", "a city street"],
          "park": ["an empty park", "trees in a park", "a park"],
          "indoor": ["an empty hallway", "an empty room", "the inside of a building"],
          "studio": ["a plain backdrop", "an empty studio"]}
_DIRECTION = {"front": ["walking towards the camera", "facing the camera"],
              "side": ["walking past", "crossing the frame"],
              "back": ["walking away", "walking away from the camera"]}


def _noun(attrs: dict, rng: np.random.Generator, mentions: set) -> str:
    female = attrs["Female"]
    if attrs["AgeLess18"] and rng.random() < 0.15:
        mentions.add("AgeLess18")
        if rng.random() < 0.5:
            return str(rng.choice(["a child", "a kid"]))
        mentions.add("Female")
        return "a girl" if female else "a boy"
    if attrs["AgeOver60"] and rng.random() < 0.10:
        mentions.update({"AgeOver60", "Female"})
        return "an old woman" if female else "an old man"
    if not attrs["AgeLess18"] and rng.random() < 0.6:
        mentions.add("Female")
        return str(rng.choice(["a woman", "a lady"] if female else ["a man", "a guy"]))
    return str(rng.choice(["a person", "someone", "a pedestrian"]))


def _garments(attrs: dict, app: dict, rng: np.random.Generator, mentions: set) -> str:
    """'in red', 'in a blue coat', 'in a black jacket and a skirt' or ''."""
    coat = attrs["LongCoat"]
    top_colour = app["coat"] if coat else app["top"]
    u = rng.random()
    if coat and u < 0.35:
        mentions.add("LongCoat")
        first = f"a {top_colour} coat"
    elif u < 0.6:
        first = top_colour  # "in red": the overall colour, no garment named
    elif u < 0.85:
        first = f"a {top_colour} {rng.choice(['top', 'jacket', 'shirt'])}"
    else:
        first = ""
    second = ""
    if attrs["Skirt&Dress"] and rng.random() < 0.45:
        mentions.add("Skirt&Dress")
        second = f"a {rng.choice(['dress', 'skirt', app['bottom'] + ' skirt'])}"
    elif attrs["Shorts"] and rng.random() < 0.2:
        mentions.add("Shorts")
        second = "shorts"
    elif attrs["Trousers"] and rng.random() < 0.10:
        mentions.add("Trousers")
        second = "jeans" if app["bottom"] in ("blue", "navy") else f"{app['bottom']} trousers"
    items = [x for x in (first, second) if x]
    return "in " + " and ".join(items) if items else ""


def _describe_one(person: dict, rng: np.random.Generator, mentions: set) -> str:
    attrs = person["attributes"]
    app = person_appearance(tuple(person["appearance_seed"]))
    parts = [_noun(attrs, rng, mentions)]
    wear = _garments(attrs, app, rng, mentions)
    if wear:
        parts.append(wear)
    if attrs["Hat"] and rng.random() < 0.05:
        mentions.add("Hat")
        parts.append("wearing a hat")
    if attrs["Backpack"] and rng.random() < 0.05:
        mentions.add("Backpack")
        parts.append("with a backpack")
    if rng.random() < 0.35:
        mentions.add(person["view"].capitalize())
        parts.append(str(rng.choice(_DIRECTION[person["view"]])))
    elif rng.random() < 0.4:
        parts.append(str(rng.choice(["walking", "standing"])))
    return " ".join(parts)


def alt_text(scene: dict, rng: np.random.Generator) -> tuple:
    """One alt-text caption of a scene, and the PAR attributes it names.

    Args:
        scene: the dict `render_scene` returns.
        rng: numpy Generator (captions of one image differ by draw).

    Returns:
        (caption, sorted list of attribute names the caption states about a person).
    """
    mentions: set = set()
    people, kind = scene["people"], scene["kind"]
    if not people:
        text = str(rng.choice(_EMPTY[kind]))
    elif len(people) == 1:
        p = people[0]
        text = _describe_one(p, rng, mentions)
        if p["framing"] == "close" and rng.random() < 0.5:
            text = str(rng.choice(["a close-up of ", "a portrait of "])) + text
        elif p["framing"] == "far" and rng.random() < 0.3:
            text += " in the distance"
    else:
        n = len(people)
        adults = [q for q in people if q["attributes"]["Age18-60"]]
        if len(adults) == n == 2 and rng.random() < 0.4:
            mentions.add("Female")
            genders = sorted(q["attributes"]["Female"] for q in people)
            text = {(0, 0): "two men", (1, 1): "two women", (0, 1): "a man and a woman"}[tuple(genders)]
        else:
            text = str(rng.choice([f"{'two' if n == 2 else 'three'} people", "a group of people",
                                   "pedestrians", f"{'two' if n == 2 else 'three'} pedestrians"]))
        if rng.random() < 0.3:  # one of them singled out, as a web caption might
            wear = _garments(people[0]["attributes"], person_appearance(tuple(people[0]["appearance_seed"])),
                             rng, mentions)
            if wear:
                text += ", one " + wear
        if rng.random() < 0.3:
            text += " walking"
    if rng.random() < 0.6 and people:
        text += " " + str(rng.choice(_SCENE_WORDS[kind]))
    if scene["light"] == "night" and rng.random() < 0.7:
        text += " at night"
    elif scene["light"] == "dusk" and rng.random() < 0.4:
        text += " in the evening"
    u = rng.random()
    if u < 0.25:
        text = "a photo of " + text
    elif u < 0.35:
        text = "a picture of " + text
    elif u < 0.4:
        text = "security camera footage of " + text
    return text, sorted(mentions)


# --------------------------------------------------------------------------------------------
# dataset folder
# --------------------------------------------------------------------------------------------

def make_synthworld(out_dir: Union[str, Path], n_images: int = 12000, seed: int = 1, size: int = 96,
                    n_captions: int = 3, progress: bool = True) -> Path:
    """Generate a SynthWorld folder (layout in the module docstring).

    Args:
        out_dir: folder to (re)write.
        n_images: number of scenes.
        seed: generator seed (image `i` is `render_scene((seed, i))`).
        size: square image side in pixels.
        n_captions: alt-text captions per image.
        progress: show a tqdm progress bar.

    Returns:
        `out_dir` as a Path.
    """
    if int(n_images) < 1 or int(size) < 32:
        raise ValueError(f"n_images must be >= 1 and size >= 32, got {n_images}, {size}")
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "meta.json").unlink(missing_ok=True)
    t0 = time.perf_counter()
    records = []
    for i in tqdm(range(int(n_images)), desc="SynthWorld", unit="img", disable=not progress):
        img, scene = render_scene((int(seed), i), int(size))
        name = f"{i:06d}.png"
        img.save(out / "images" / name, format="PNG")
        rng = np.random.default_rng([WORLD_TAG, int(seed), i, 9])
        caps = [alt_text(scene, rng) for _ in range(int(n_captions))]
        records.append({"image": name, "captions": [c for c, _ in caps], "mentions": [m for _, m in caps],
                        "people": [{"attributes": p["attributes"], "view": p["view"], "framing": p["framing"]}
                                   for p in scene["people"]]})
    (out / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    meta = {"generator": "parkit.data.synthworld", "version": WORLD_VERSION, "alt_text_version": ALT_TEXT_VERSION,
            "seed": int(seed), "n_images": int(n_images), "size": int(size), "n_captions": int(n_captions),
            "seconds": round(time.perf_counter() - t0, 1)}
    (out / "meta.json").write_text(json.dumps(meta, indent=1), encoding="utf-8")
    return out


def default_synthworld_root(n_images: int = 12000, seed: int = 1, size: int = 96) -> Path:
    """Cache folder of a generated SynthWorld: `$PARKIT_CACHE` (default ~/.cache/parkit) / synthworld-..."""
    return cache_root() / f"synthworld-{int(n_images)}-{int(seed)}-{int(size)}"


def is_synthworld(root: Union[str, Path]) -> bool:
    """True when `root` holds a complete SynthWorld folder."""
    meta = Path(root) / "meta.json"
    return meta.is_file() and json.loads(meta.read_text()).get("generator") == "parkit.data.synthworld"


def ensure_synthworld(root: Optional[Union[str, Path]] = None, n_images: int = 12000, seed: int = 1,
                      size: int = 96, progress: bool = True) -> Path:
    """`root` (default `default_synthworld_root`) holding this SynthWorld, generated when absent or different."""
    root = Path(root) if root is not None else default_synthworld_root(n_images, seed, size)
    if is_synthworld(root):
        meta = json.loads((root / "meta.json").read_text())
        if (meta["n_images"], meta["seed"], meta["size"], meta["version"], meta["alt_text_version"]) == \
                (int(n_images), int(seed), int(size), WORLD_VERSION, ALT_TEXT_VERSION):
            return root
    return make_synthworld(root, n_images=n_images, seed=seed, size=size, progress=progress)


def load_world(root: Union[str, Path]) -> tuple:
    """(image paths, captions per image) of a SynthWorld folder."""
    root = Path(root)
    if not is_synthworld(root):
        raise DatasetError(f"{root} is not a complete SynthWorld folder (meta.json missing or other generator); "
                           f"generate it with parkit.data.synthworld.ensure_synthworld({str(root)!r})")
    paths, captions = [], []
    with open(root / "captions.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            paths.append(str(root / "images" / rec["image"]))
            captions.append(rec["captions"])
    return paths, captions


def mention_table(root: Union[str, Path]) -> list:
    """Measured caption coverage of each PAR attribute in a SynthWorld folder.

    For every attribute: how many described people have it (people in all scenes), and the share
    of captions of single-person scenes whose person has it that name it.

    Returns:
        list of {"attribute", "people_with_it", "single_person_captions", "named_in"} (percent).
    """
    counts = {a: [0, 0, 0] for a in SYNTHPAR_ATTRIBUTES}
    with open(Path(root) / "captions.jsonl", encoding="utf-8") as fh:
        for line in fh:
            rec = json.loads(line)
            for p in rec["people"]:
                for a in SYNTHPAR_ATTRIBUTES:
                    counts[a][0] += p["attributes"][a]
            if len(rec["people"]) == 1:
                attrs = rec["people"][0]["attributes"]
                for named in rec["mentions"]:
                    for a in SYNTHPAR_ATTRIBUTES:
                        if attrs[a]:
                            counts[a][1] += 1
                            counts[a][2] += a in named
    return [{"attribute": a, "people_with_it": c[0], "single_person_captions": c[1],
             "named_in": round(100.0 * c[2] / c[1], 1) if c[1] else 0.0} for a, c in counts.items()]
