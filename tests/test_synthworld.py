"""SynthWorld: the compact CLIP's pretraining scenes and their alt-text captions."""
from __future__ import annotations

import json

import numpy as np
import pytest

from parkit.data.base import DatasetError
from parkit.data.synthpar import SYNTHPAR_ATTRIBUTES
from parkit.data.synthworld import (
    alt_text, ensure_synthworld, load_world, make_synthworld, mention_table, render_scene)

# Attributes the alt-text grammar never names (MENTION_RATES["never"]).
NEVER = ("Age18-60", "Glasses", "HandBag", "ShoulderBag", "HoldObjectsInFront", "ShortSleeve", "LongSleeve",
         "UpperStride", "UpperLogo", "UpperPlaid", "UpperSplice", "LowerStripe", "LowerPattern", "boots")
# Words a caption would need to name them.
FORBIDDEN_WORDS = ("glasses", "sunglasses", "handbag", "shoulder", "stripe", "striped", "plaid", "logo",
                   "boots", "sleeve", "short-sleeved", "long-sleeved", "t-shirt", "pattern", "holding")


def test_render_scene_is_deterministic_and_square():
    a, sa = render_scene((3, 5), 64)
    b, sb = render_scene((3, 5), 64)
    c, _ = render_scene((3, 6), 64)
    assert a.size == (64, 64)
    assert np.array_equal(np.asarray(a), np.asarray(b)) and sa == sb
    assert not np.array_equal(np.asarray(a), np.asarray(c))


def test_scenes_vary_in_people_framing_and_place():
    scenes = [render_scene((0, i), 48)[1] for i in range(120)]
    counts = {len(s["people"]) for s in scenes}
    assert counts == {0, 1, 2, 3}
    assert {p["framing"] for s in scenes for p in s["people"]} == {"close", "full", "far"}
    assert {s["kind"] for s in scenes} == {"street", "park", "indoor", "studio"}
    assert {s["light"] for s in scenes} == {"day", "dusk", "night"}


def test_people_are_pasted_without_their_grey_box():
    # A single full-figure person on a studio backdrop: the pasted person changes pixels, and the
    # rest of the canvas does not carry render_person's plain grey (128, 128, 128) rectangle.
    for i in range(200):
        img, scene = render_scene((1, i), 64)
        if len(scene["people"]) == 1 and scene["people"][0]["framing"] == "full":
            break
    arr = np.asarray(img).astype(int)
    exact_grey = (np.abs(arr - 128).max(-1) <= 1).mean()
    assert exact_grey < 0.2


def test_alt_text_never_names_fine_local_attributes():
    rng = np.random.default_rng(0)
    seen_mentions = set()
    for i in range(150):
        _, scene = render_scene((2, i), 48)
        for _ in range(3):
            text, mentions = alt_text(scene, rng)
            words = text.replace(",", " ").split()
            assert not any(w in FORBIDDEN_WORDS for w in words), text
            assert not set(mentions) & set(NEVER), (text, mentions)
            assert set(mentions) <= set(SYNTHPAR_ATTRIBUTES)
            seen_mentions.update(mentions)
    # ... while the salient, web-caption things are named.
    assert {"Female", "LongCoat", "Skirt&Dress"} <= seen_mentions


def test_alt_text_names_what_is_drawn():
    # A caption that names a garment or a gender names the scene's person correctly.
    rng = np.random.default_rng(1)
    checked = 0
    for i in range(200):
        _, scene = render_scene((4, i), 48)
        if len(scene["people"]) != 1:
            continue
        attrs = scene["people"][0]["attributes"]
        text, mentions = alt_text(scene, rng)
        if "Female" in mentions and " woman" in f" {text}":
            assert attrs["Female"] == 1
            checked += 1
        if " man " in f" {text} " or " guy " in f" {text} ":
            assert attrs["Female"] == 0
        if "LongCoat" in mentions:
            assert attrs["LongCoat"] == 1 and "coat" in text
    assert checked > 5


def test_folder_round_trip_and_measured_mentions(tmp_path):
    root = make_synthworld(tmp_path / "w", n_images=40, seed=3, size=48, progress=False)
    paths, captions = load_world(root)
    assert len(paths) == len(captions) == 40 and all(len(c) == 3 for c in captions)
    meta = json.loads((root / "meta.json").read_text())
    assert meta["generator"] == "parkit.data.synthworld" and meta["n_images"] == 40
    assert ensure_synthworld(root, n_images=40, seed=3, size=48, progress=False) == root
    table = {r["attribute"]: r for r in mention_table(root)}
    assert set(table) == set(SYNTHPAR_ATTRIBUTES)
    for a in NEVER:
        assert table[a]["named_in"] == 0.0


def test_load_world_names_the_folder_when_incomplete(tmp_path):
    with pytest.raises(DatasetError, match="ensure_synthworld"):
        load_world(tmp_path)
