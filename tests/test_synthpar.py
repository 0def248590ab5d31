"""SynthPAR: determinism, speed, attribute locality, labels vs drawing, priors, splits, captions."""
import hashlib
import json
import time

import numpy as np
import pytest

from parkit.data.base import DatasetError
from parkit.data import synthpar as sp

SEED = 7
N = 30


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """A 30-image SynthPAR and the seconds it took to generate."""
    root = tmp_path_factory.mktemp("synthpar") / "a"
    t = time.perf_counter()
    sp.make_synthpar(root, n_images=N, seed=SEED, progress=False)
    return root, time.perf_counter() - t


def _digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file())
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in files}


def test_same_seed_gives_byte_identical_files_and_other_seed_differs(small, tmp_path):
    root, _ = small
    again = sp.make_synthpar(tmp_path / "b", n_images=N, seed=SEED, progress=False)
    other = sp.make_synthpar(tmp_path / "c", n_images=N, seed=SEED + 1, progress=False)
    a, b, c = _digest(root), _digest(again), _digest(other)
    assert len([k for k in a if k.startswith("images/")]) == N
    assert a == b
    differing = [k for k in a if k.startswith("images/") and a[k] != c[k]]
    assert len(differing) == N  # every image changes with the seed
    assert a["labels.csv"] != c["labels.csv"]


def test_generation_is_fast(small):
    _, seconds = small
    # 2 000 images take about 15 s on 2 shared cores; 30 must stay far below 0.1 s per image.
    assert seconds < 0.1 * N + 1.0, f"{N} images took {seconds:.1f} s"


def test_files_and_meta(small):
    root, _ = small
    meta = json.loads((root / "meta.json").read_text())
    assert meta["n_images"] == N and meta["seed"] == SEED and meta["image_size"] == [64, 128]
    assert meta["labels_sha256"] == hashlib.sha256((root / "labels.csv").read_bytes()).hexdigest()
    header = (root / "labels.csv").read_text().splitlines()[0].split(",")
    assert header == ["image", "identity", "view", *sp.SYNTHPAR_ATTRIBUTES]
    from PIL import Image
    with Image.open(root / "images" / "000000.png") as im:
        assert im.size == (64, 128) and im.mode == "RGB"
        assert not any(k in im.info for k in ("date:create", "Creation Time", "timestamp"))


def test_load_random_and_identity_protocols(small):
    root, _ = small
    d = sp.load_synthpar(root)
    assert d.name == "SynthPAR" and d.labels.shape == (N, 26) and d.identities.shape == (N,)
    assert d.attributes == list(sp.SYNTHPAR_ATTRIBUTES) and len(d.sentences) == 26
    assert d.sentences[7] == "A pedestrian wearing a hat"
    tr, va, te = (set(d.splits[k].tolist()) for k in ("train", "val", "test"))
    assert tr | va | te == set(range(N)) and not (tr & va or tr & te or va & te)
    assert set(d.splits["trainval"].tolist()) == tr | va
    assert (len(tr), len(va), len(te)) == (18, 3, 9)
    z = sp.load_synthpar(root, split_protocol="identity", foo="ignored")
    assert z.name == "SynthPAR-ZS" and "identity-disjoint" in z.split_source
    assert sorted(z.splits) == ["test", "train", "trainval", "val"]
    ids_trainval = set(z.identities[z.splits["trainval"]].tolist())
    ids_test = set(z.identities[z.splits["test"]].tolist())
    assert ids_test and ids_trainval and not (ids_trainval & ids_test)
    assert not set(z.identities[z.splits["train"]].tolist()) & set(z.identities[z.splits["val"]].tolist())
    # identities: 2..6 images each (the last one may be cut short)
    counts = np.bincount(d.identities)
    assert counts[:-1].min() >= 2 and counts.max() <= 6


def test_identity_disjoint_split_at_scale():
    ids = np.repeat(np.arange(300), np.random.default_rng(0).integers(2, 7, 300))
    s = sp.dataset._splits(ids, seed=3)
    assert not set(ids[s["zs_trainval"]]) & set(ids[s["zs_test"]])
    assert abs(len(s["zs_test"]) / len(ids) - 0.3) < 0.02 and abs(len(s["zs_val"]) / len(ids) - 0.1) < 0.02


def test_labels_are_what_was_drawn(small):
    """Re-render each image from its CSV row: the pixels must equal the stored PNG."""
    root, _ = small
    from PIL import Image
    d = sp.load_synthpar(root)
    views = d.info["views"]
    for i in range(0, N, 4):
        attrs = dict(zip(d.attributes, d.labels[i].tolist()))
        img = sp.render_person(attrs, seed=(SEED, 19, i), appearance_seed=(SEED, 18, int(d.identities[i])),
                               occlusion=None)
        with Image.open(d.image_paths[i]) as stored:
            assert np.array_equal(np.asarray(img), np.asarray(stored)), f"row {i}"
        assert attrs[{"front": "Front", "side": "Side", "back": "Back"}[views[i]]] == 1
    # flipping one attribute in the row gives a different image (the check above could fail)
    attrs = dict(zip(d.attributes, d.labels[0].tolist()))
    attrs["Hat"] = 1 - attrs["Hat"]
    img = sp.render_person(attrs, seed=(SEED, 19, 0), appearance_seed=(SEED, 18, int(d.identities[0])),
                           occlusion=None)
    with Image.open(d.image_paths[0]) as stored:
        assert not np.array_equal(np.asarray(img), np.asarray(stored))


def test_exclusive_groups_and_identity_constancy(small):
    root, _ = small
    d = sp.load_synthpar(root)
    A = d.attributes
    for members in sp.EXCLUSIVE_GROUPS.values():
        cols = [A.index(m) for m in members]
        assert (d.labels[:, cols].sum(1) == 1).all()
    non_view = [k for k, a in enumerate(A) if a not in ("Front", "Side", "Back")]
    for ident in np.unique(d.identities):
        rows = d.labels[d.identities == ident][:, non_view]
        assert (rows == rows[0]).all()


# (attributes off, attributes on, region that may change)
LOCAL_CASES = [
    ({}, {"Hat": 1}, "head"),
    ({}, {"Glasses": 1}, "head"),
    ({}, {"boots": 1}, "feet"),
    ({"Trousers": 1}, {"Skirt&Dress": 1}, "legs"),
    ({"Trousers": 1}, {"Shorts": 1}, "legs"),
    ({}, {"LowerStripe": 1}, "legs"),
    ({}, {"LowerPattern": 1}, "legs"),
    ({}, {"UpperStride": 1}, "torso"),
    ({}, {"UpperPlaid": 1}, "torso"),
    ({}, {"UpperSplice": 1}, "torso"),
    ({}, {"UpperLogo": 1}, "torso"),
    ({"LongSleeve": 1}, {"ShortSleeve": 1}, "torso"),
]


@pytest.mark.parametrize("off,on,region", LOCAL_CASES, ids=[f"{list(c[1])[0]}" for c in LOCAL_CASES])
@pytest.mark.parametrize("view", sp.VIEWS)
def test_single_attribute_changes_only_its_region(off, on, region, view):
    for seed in (1, 2):
        a = sp.render_person(off, view=view, seed=seed)
        b = sp.render_person(on, view=view, seed=seed)
        box = sp.body_regions(off, view=view, seed=seed)[region]
        assert box == sp.body_regions(on, view=view, seed=seed)[region]
        diff = np.abs(np.asarray(a, dtype=int) - np.asarray(b, dtype=int)).sum(-1) > 0  # (H, W)
        ys, xs = np.nonzero(diff)
        assert len(ys) > 0, f"{on} draws nothing in {view} view"
        x0, y0, x1, y1 = box
        top = 0 if region == "head" else y0  # a hat may also reach above the head box
        outside = (xs < x0) | (xs >= x1) | (ys < top) | (ys >= y1)
        assert not outside.any(), f"{on} changed {outside.sum()} pixels outside the {region} box {box}"


def test_small_cues_are_small():
    """Glasses and logos cover well under 1 % of the image (a hat ~1.6 %, stripes ~12 %), so a model
    has to look at the right place to see them."""
    for view in ("front", "side"):
        base = np.asarray(sp.render_person({}, view=view, seed=4), dtype=int)

        def changed(name):
            on = np.asarray(sp.render_person({name: 1}, view=view, seed=4), dtype=int)
            return int((np.abs(base - on).sum(-1) > 0).sum())

        hat = changed("Hat")
        for name in ("Glasses", "UpperLogo"):
            n = changed(name)
            assert 0 < n <= 60 and n < 0.5 * hat, f"{name} ({view}) changed {n} pixels (hat: {hat})"


def test_regions_are_ordered_top_to_bottom():
    r = sp.body_regions({}, view="front", seed=0)
    assert r["head"][1] < r["torso"][1] < r["legs"][1] < r["feet"][1]
    assert r["head"][3] <= r["torso"][3] and r["legs"][3] <= r["feet"][3] <= 128
    area = lambda b: (b[2] - b[0]) * (b[3] - b[1])  # noqa: E731
    assert area(r["head"]) < 0.15 * 64 * 128 and area(r["feet"]) < 0.15 * 64 * 128
    # children are drawn smaller than adults
    child = sp.body_regions({"AgeLess18": 1}, view="front", seed=0)["body"]
    assert (child[3] - child[1]) < (r["body"][3] - r["body"][1])


def test_cooccurrence_priors():
    rows = [sp.sample_attributes(np.random.default_rng([5, k])) for k in range(800)]
    L = {a: np.array([r[a] for r in rows]) for a in sp.SYNTHPAR_ATTRIBUTES}
    for group, members in sp.EXCLUSIVE_GROUPS.items():
        if group != "view":
            assert (sum(L[m] for m in members) == 1).all(), group
    assert (L["Front"] + L["Side"] + L["Back"] == 0).all()  # the view is drawn per image
    skirt, shorts, coat = L["Skirt&Dress"] == 1, L["Shorts"] == 1, L["LongCoat"] == 1
    assert L["Female"][skirt].mean() > 0.9
    assert L["Female"][~skirt].mean() < 0.45
    assert L["ShortSleeve"][shorts].mean() > 0.85 and L["ShortSleeve"][~shorts].mean() < 0.65
    assert L["LongSleeve"][coat].mean() > 0.9
    assert not (coat & shorts).any()
    plain = ~skirt & ~coat
    assert L["boots"][skirt | coat].mean() > 2.5 * L["boots"][plain].mean()
    assert L["Backpack"][L["AgeLess18"] == 1].mean() > 2 * L["Backpack"][L["AgeLess18"] == 0].mean()
    # every attribute (but the view) is present and none is almost always on
    for a in sp.SYNTHPAR_ATTRIBUTES:
        if a not in ("Front", "Side", "Back"):
            assert 0.05 < L[a].mean() < 0.8, (a, L[a].mean())


def test_label_noise_flips_labels_but_keeps_groups_one_hot(tmp_path):
    root = sp.make_synthpar(tmp_path / "n", n_images=40, seed=1, label_noise=0.2, progress=False)
    noisy = sp.load_synthpar(root)
    clean = sp.load_synthpar(root, labels="clean")
    frac = (noisy.labels != clean.labels).mean()
    assert 0.05 < frac < 0.35
    for members in sp.EXCLUSIVE_GROUPS.values():
        cols = [noisy.attributes.index(m) for m in members]
        assert (noisy.labels[:, cols].sum(1) == 1).all()
    # the pixels do not depend on the noise: same images as a noise-free run
    plain = sp.make_synthpar(tmp_path / "p", n_images=40, seed=1, progress=False)
    assert (root / "images" / "000005.png").read_bytes() == (plain / "images" / "000005.png").read_bytes()
    assert np.array_equal(sp.load_synthpar(plain).labels, clean.labels)


def test_interrupted_generation_is_detected_and_redone(small, tmp_path, monkeypatch):
    monkeypatch.setenv("PARKIT_CACHE", str(tmp_path / "cache"))
    root = sp.default_synthpar_root(n_images=12, seed=3)
    assert root == tmp_path / "cache" / "synthpar-12-3"
    assert sp.ensure_synthpar(n_images=12, seed=3, progress=False) == root
    png = root / "images" / "000004.png"
    stamp = png.stat().st_mtime_ns
    sp.ensure_synthpar(n_images=12, seed=3, progress=False)  # complete: nothing rewritten
    assert png.stat().st_mtime_ns == stamp
    (root / "meta.json").unlink()  # as if the run had been killed before the end
    with pytest.raises(DatasetError, match="interrupted"):
        sp.load_synthpar(root)
    png.unlink()
    sp.ensure_synthpar(n_images=12, seed=3, progress=False)
    assert png.is_file() and sp.load_synthpar(root).labels.shape == (12, 26)


def test_clear_errors(tmp_path):
    with pytest.raises(DatasetError, match="make_synthpar"):
        sp.load_synthpar(tmp_path)
    with pytest.raises(ValueError, match="split_protocol"):
        sp.load_synthpar(tmp_path, split_protocol="zs")
    with pytest.raises(ValueError, match="unknown SynthPAR attribute"):
        sp.render_person({"hat": 1})
    with pytest.raises(ValueError, match="exclusive"):
        sp.render_person({"Trousers": 1, "Shorts": 1})
    with pytest.raises(ValueError, match="image_size"):
        sp.make_synthpar(tmp_path / "x", n_images=10, image_size=(8, 8), progress=False)


def test_missing_image_is_reported(small, tmp_path):
    import shutil
    root = tmp_path / "copy"
    shutil.copytree(small[0], root)
    (root / "images" / "000003.png").unlink()
    with pytest.raises(DatasetError, match="000003.png"):
        sp.load_synthpar(root)
    assert len(sp.load_synthpar(root, require_images=False)) == N


def test_captions_are_true_and_fit_clip(small):
    import clip

    root, _ = small
    d = sp.load_synthpar(root)
    caps = sp.load_captions(root)
    assert len(caps) == N
    words = {  # a caption word implies the label
        "backpack": "Backpack", "handbag": "HandBag", "shoulder": "ShoulderBag", "skirt": "Skirt&Dress",
        "dress ": "Skirt&Dress", "shorts": "Shorts", "boots": "boots", "glasses": "Glasses", "coat": "LongCoat",
        "striped t": "UpperStride", "plaid": "UpperPlaid", "logo": "UpperLogo", "hat": "Hat",
        "from the back": "Back", "from the side": "Side", "woman": "Female", "elderly": "AgeOver60",
    }
    texts = []
    for i, name in enumerate(d.image_paths):
        lab = dict(zip(d.attributes, d.labels[i].tolist()))
        c = caps[name.rsplit("/", 1)[-1]]
        assert len(c) == 3 and len(set(c)) >= 2
        for text in c:
            for w, attr in words.items():
                if w in text + " ":
                    assert lab[attr] == 1, (text, attr)
            if " man" in text or "boy" in text:
                assert lab["Female"] == 0, text
        texts += c
    clip.tokenize(texts)  # raises if any caption exceeds 77 tokens
