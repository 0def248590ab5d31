"""Tests of parkit.explain.localization: attention mass inside SynthPAR's body regions vs chance.

The pure pieces are checked on hand-computed cases. End to end, stand-in models whose maps are
known make the right answer known: a model that looks exactly inside each attribute's region
must score share 1, ratio 1 / chance and pointing-game 1; a model with uniform maps must score
ratio 1 and a pointing game at chance; a model that draws one blob for every attribute must
show a pairwise correlation of 1. The stand-ins' targets are rasterised independently of the
code under test (a box drawn into the original image, letterboxed by the model's own
transform, pooled over patches), so a missed letterbox offset or a transposed grid shows up.
"""
import hashlib

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageDraw
from torch import nn

from browser_helpers import StandInOutput, make_tiny_dataset
from parkit.data.synthpar import load_synthpar, make_synthpar, render_person
from parkit.data.transforms import build_transform, letterbox
from parkit.explain import ExplainError, localization, region_summary
from parkit.explain.localization import (box_to_grid, letterbox_geometry, mass_share, mean_pairwise_correlation,
                                         plot_localization, pointing_hit, synthpar_boxes)

INPUT, PATCH = 96, 4  # stand-in models: 96 px input, 24 x 24 grid of 4-px patches


# --- pure functions -----------------------------------------------------------------------------

def test_letterbox_geometry_hand_cases():
    # 64 x 128 portrait into 96: scaled by 0.75 to 48 x 96, centred with 24-px bars left and right.
    assert letterbox_geometry(64, 128, 96) == (0.75, 0.75, 24, 0)
    # 30 x 20 landscape into 10: 10 x round(6.67) = 10 x 7, one bar row on top, two at the bottom.
    sx, sy, ox, oy = letterbox_geometry(30, 20, 10)
    assert (sx, sy, ox, oy) == (pytest.approx(1 / 3), pytest.approx(0.35), 0, 1)


@pytest.mark.parametrize("size,out", [((64, 128), 96), ((50, 128), 96), ((30, 20), 10), ((40, 90), 37)])
def test_letterbox_geometry_agrees_with_letterbox(size, out):
    """Where `letterbox` pastes a white image is exactly where the geometry says."""
    sq = np.asarray(letterbox(Image.new("RGB", size, (255, 255, 255)), out))[..., 0] > 0  # (out, out)
    sx, sy, ox, oy = letterbox_geometry(*size, out)
    ys, xs = np.nonzero(sq)
    assert (xs.min(), ys.min()) == (ox, oy)
    assert (xs.max() + 1, ys.max() + 1) == (round(ox + size[0] * sx), round(oy + size[1] * sy))


def test_box_to_grid_hand_case():
    # 64 x 128 into 96, 12 x 12 grid of 8-px patches. Box x 8..24, y 32..40 maps to x 30..42 and
    # y 24..30: columns 3, 4, 5 covered 2/8, 8/8, 2/8; row 3 covered 6/8.
    mask = box_to_grid((8, 32, 24, 40), (64, 128), 96, (12, 12))
    expected = np.zeros((12, 12))
    expected[3, 3:6] = [0.75 * 0.25, 0.75, 0.75 * 0.25]
    np.testing.assert_allclose(mask, expected)
    # The whole image covers the six middle columns (the bars are columns 0-2 and 9-11).
    whole = box_to_grid((0, 0, 64, 128), (64, 128), 96, (12, 12))
    assert whole[:, 3:9].min() == 1.0 and whole[:, :3].max() == 0.0 and whole[:, 9:].max() == 0.0
    assert whole.mean() == pytest.approx(0.5)
    # A non-square grid: the mask sum is the box's area in patches.
    m = box_to_grid((10, 20, 40, 100), (64, 128), 96, (8, 6))
    assert m.sum() == pytest.approx((30 * 0.75) * (80 * 0.75) / (16 * 12))
    with pytest.raises(ExplainError, match="x1 < x0"):
        box_to_grid((10, 0, 5, 5), (64, 128), 96, (12, 12))


def test_mass_share_hand_case():
    maps = np.array([[2.0, 1.0], [0.0, 1.0]])
    mask = np.array([[1.0, 0.5], [0.0, 0.0]])
    assert mass_share(maps, mask) == pytest.approx((2 + 0.5) / 4)
    both = mass_share(np.stack([maps, np.zeros((2, 2))]), mask)  # an empty map has no share
    assert both[0] == pytest.approx(0.625) and np.isnan(both[1])
    with pytest.raises(ExplainError, match="non-negative"):
        mass_share(-maps, mask)


def test_pointing_hit_hand_cases():
    mask = np.array([[1.0, 0.5], [0.0, 0.0]])
    assert pointing_hit(np.array([[5.0, 1.0], [0.0, 1.0]]), mask) == 1.0  # peak inside
    assert pointing_hit(np.array([[1.0, 5.0], [0.0, 1.0]]), mask) == 0.5  # peak on the box edge
    assert pointing_hit(np.array([[1.0, 1.0], [0.0, 5.0]]), mask) == 0.0  # peak outside
    assert pointing_hit(np.array([[3.0, 0.0], [3.0, 1.0]]), mask) == 0.5  # tie inside/outside
    assert pointing_hit(np.ones((2, 2)), mask) == pytest.approx(mask.mean())  # flat map: chance
    assert np.isnan(pointing_hit(np.zeros((2, 2)), mask))


def test_mean_pairwise_correlation_hand_cases():
    a = np.array([[1.0, 2.0], [3.0, 5.0]])
    assert mean_pairwise_correlation(np.stack([a, 2 * a + 1])) == pytest.approx(1.0)
    assert mean_pairwise_correlation(np.stack([a, -a])) == pytest.approx(-1.0)
    # Pairs (a, a) = 1, (a, -a) = -1, (a, -a) = -1: mean -1/3. A constant map has no correlation.
    assert mean_pairwise_correlation(np.stack([a, a, -a, np.ones((2, 2))])) == pytest.approx(-1 / 3)
    b = np.array([[1.0, 0.0], [0.0, 0.0]])
    c = np.array([[0.0, 1.0], [0.0, 0.0]])
    assert mean_pairwise_correlation(np.stack([b, c])) == pytest.approx(-1 / 3)  # disjoint one-hot
    assert np.isnan(mean_pairwise_correlation(np.stack([a, np.ones((2, 2))])))


def test_region_summary_hand_case():
    df = pd.DataFrame({"attribute": ["Hat", "Glasses", "ShortSleeve", "Trousers", "Skirt&Dress", "boots"],
                       "body_region": ["head", "head", "torso", "legs", "legs", "feet"],
                       "n": [5, 4, 9, 7, 0, 3],
                       "ratio": [0.5, 1.0, 3.0, 1.5, np.nan, 1.6],
                       "hit_rate": [0.2, 0.4, 0.9, 0.5, np.nan, 0.3],
                       "hit_chance": [0.1, 0.1, 0.3, 0.2, np.nan, 0.1]})
    df.attrs.update(method="attention", mean_pairwise_correlation=0.5)
    s = region_summary(df).set_index("body_region")
    assert list(s.index) == ["head", "torso", "legs", "feet"]
    assert s.loc["head", "mean_ratio"] == pytest.approx(0.75) and not s.loc["head", "reaches_1_5x"]
    assert s.loc["legs", "attributes"] == "Trousers"  # an attribute with no image is left out
    assert s.loc["legs", "reaches_1_5x"] and s.loc["feet", "reaches_1_5x"]
    assert s.loc["head", "hit_rate"] == pytest.approx(0.3) and s.loc["head", "min_ratio"] == 0.5
    assert (s["mean_pairwise_correlation"] == 0.5).all() and (s["method"] == "attention").all()
    with pytest.raises(ExplainError, match="lacks"):
        region_summary(pd.DataFrame({"attribute": ["Hat"]}))


def test_plot_localization_draws_one_bar_per_attribute():
    df = pd.DataFrame({"attribute": ["Hat", "Trousers", "boots"], "region": ["head", "lower", "feet"],
                       "ratio": [0.5, 3.0, np.nan], "chance": [0.04, 0.14, 0.04],
                       "body_chance": [0.12, 0.42, 0.13]})
    df.attrs.update(method="attention", mean_pairwise_correlation=0.97)
    fig = plot_localization({"attention": df, "gradcam": df})
    axes = fig.axes
    assert len(axes) == 2 and "0.970" in axes[0].get_title()
    heights = [p.get_height() for p in axes[0].patches]
    assert heights == pytest.approx([0.5, 3.0, 0.0])  # no image measured: no bar
    lines = sorted(line.get_ydata()[0] for line in axes[0].lines)
    assert lines == pytest.approx([1.0, 1.5])


# --- SynthPAR regions ---------------------------------------------------------------------------

@pytest.fixture(scope="module")
def synthpar(tmp_path_factory):
    root = make_synthpar(tmp_path_factory.mktemp("synthpar"), n_images=40, seed=3, progress=False)
    return load_synthpar(root)


def test_synthpar_boxes_use_the_generator_seeds(synthpar):
    """The seeds `synthpar_boxes` re-derives re-render the very image on disk."""
    row = int(synthpar.split_indices("test")[2])
    i, k = int(synthpar.image_paths[row][-10:-4]), int(synthpar.identities[row])
    attrs = dict(zip(synthpar.attributes, synthpar.labels[row].tolist()))
    again = render_person(attrs, seed=(3, 19, i), appearance_seed=(3, 18, k), occlusion=None)
    assert np.array_equal(np.asarray(again), np.asarray(Image.open(synthpar.image_paths[row]).convert("RGB")))
    boxes = synthpar_boxes(synthpar, [row])[0]
    assert set(boxes) >= {"head", "torso", "legs", "feet"}
    assert boxes["head"][1] < boxes["torso"][1] < boxes["legs"][1] < boxes["feet"][1]


def test_localization_refuses_a_dataset_without_regions(tmp_path):
    ds = make_tiny_dataset(tmp_path, n=8)
    with pytest.raises(ExplainError, match="SynthPAR"):
        localization(MapModel(ds.attributes, {}), ds)


# --- end to end with stand-in models -------------------------------------------------------------

def _key(image: torch.Tensor) -> str:
    return hashlib.sha1(image.detach().cpu().contiguous().numpy().tobytes()).hexdigest()


class MapModel(nn.Module):
    """A model whose attribute maps are given: `table[image key]` is (A, rows, cols).

    mm_attention: text token i spreads its attention over the patches in proportion to map i.
    Grad-CAM: patch token features are the maps themselves (channel i = map i) and logit i sums
    channel i, so dZ_i/dX is 1 on channel i only and the Grad-CAM of attribute i is map i.
    """

    def __init__(self, attributes, table, grid=(INPUT // PATCH, INPUT // PATCH)):
        super().__init__()
        self.attributes = list(attributes)
        self.table = table
        self.grid = grid
        self.image_size = INPUT
        self.normalization = "official"
        self.anchor = nn.Parameter(torch.zeros(()))

    def forward(self, images, return_attention=False):
        b, a = images.shape[0], len(self.attributes)
        rows, cols = self.grid
        n = rows * cols
        maps = torch.stack([torch.as_tensor(self.table[_key(x)], dtype=torch.float32) for x in images])
        # (B, N, A) patch features, tied to the input so Grad-CAM's gradients flow.
        feats = maps.flatten(2).transpose(1, 2) * (1 + 0 * images.sum(dim=(1, 2, 3))[:, None, None])
        seq = torch.cat([torch.zeros(b, a, a), feats], dim=1)  # (B, A + N, A): [text, patches]
        logits = seq[:, a:].sum(dim=1) + self.anchor  # (B, A), from the sequence Grad-CAM reads
        extras = {}
        if return_attention:
            attn = torch.full((b, a + n, a + n), 1.0 / (a + n))
            attn[:, :a, a:] = maps.flatten(2) / maps.flatten(2).sum(-1, keepdim=True).clamp_min(1e-12)
            attn[:, :a, :a] = 0.0
            extras = {"mm_attention": attn, "patch_grid": (rows, cols), "mm_input": seq,
                      "token_layout": {"text": (0, a), "patches": (a, a + n)}}
        return StandInOutput(logits, None, extras)


def _raster_share(box, image_size):
    """A box's coverage of each patch, rasterised the way the model sees it: drawn into the
    original image, letterboxed by the model's transform, averaged over each patch."""
    canvas = Image.new("L", image_size, 0)
    ImageDraw.Draw(canvas).rectangle([box[0], box[1], box[2] - 1, box[3] - 1], fill=255)
    sq = np.asarray(letterbox(canvas.convert("RGB"), INPUT))[..., 0].astype(np.float64) / 255.0
    g = INPUT // PATCH
    return sq.reshape(g, PATCH, g, PATCH).mean(axis=(1, 3))  # (rows, cols)


def _tables(ds, rows):
    """Per test image: maps exactly inside each attribute's region, uniform maps, and one blob."""
    tf = build_transform(train=False, image_size=INPUT, normalization="official")
    inside, uniform, blob, chance = {}, {}, {}, []
    regions = {"head": "head", "upper": "torso", "lower": "legs", "feet": "feet"}
    size = tuple(ds.info["image_size"])
    for row, boxes in zip(rows, synthpar_boxes(ds, rows)):
        key = _key(tf(Image.open(ds.image_paths[row]).convert("RGB")))
        cover = {name: _raster_share(boxes[name], size) for name in ("head", "torso", "legs", "feet", "body")}
        maps = []
        for region in ds.regions:
            name = regions.get(region, "body")
            full = (cover[name] > 0.999).astype(np.float64)  # patches wholly inside the box
            assert full.sum() > 0, f"no patch wholly inside the {name} box {boxes[name]}"
            maps.append(full)
        inside[key] = np.stack(maps)
        uniform[key] = np.ones_like(inside[key])
        blob[key] = np.repeat(cover["body"][None], len(ds.regions), axis=0)
        chance.append({name: c.mean() for name, c in cover.items()})
    return inside, uniform, blob, chance


@pytest.mark.parametrize("method", ["attention", "gradcam"])
def test_localization_of_known_maps(synthpar, method):
    rows = synthpar.split_indices("test")[:10]
    inside, uniform, blob, chance = _tables(synthpar, rows)
    measured = [a for a, r in zip(synthpar.attributes, synthpar.regions) if r in ("head", "upper", "lower", "feet")]

    df = localization(MapModel(synthpar.attributes, inside), synthpar, method=method, limit=10,
                      positives_only=False)
    assert list(df["attribute"]) == measured and (df["n"] == 10).all()
    assert set(df["body_region"]) == {"head", "torso", "legs", "feet"}
    assert df.loc[df.attribute == "Trousers", "region"].item() == "lower"
    assert df.loc[df.attribute == "Trousers", "body_region"].item() == "legs"
    np.testing.assert_allclose(df["share"], 1.0)
    np.testing.assert_allclose(df["hit_rate"], 1.0)
    np.testing.assert_allclose(df["ratio"], 1.0 / df["chance"])
    # The chance level is the region's area share as the model sees it (independent rasterisation;
    # bilinear resizing blurs edges, so allow a little).
    for _, r in df.iterrows():
        assert r["chance"] == pytest.approx(np.mean([c[r["body_region"]] for c in chance]), rel=0.03)
    assert (df["ratio"] > 3).all()  # every region is under a third of the grid
    assert df.attrs["method"] == method and df.attrs["n_images"] == 10

    flat = localization(MapModel(synthpar.attributes, uniform), synthpar, method=method, limit=10,
                        positives_only=False)
    np.testing.assert_allclose(flat["ratio"], 1.0)
    np.testing.assert_allclose(flat["hit_rate"], flat["chance"])
    np.testing.assert_allclose(flat["chance"], df["chance"])

    np.testing.assert_allclose(df["ratio_body"], 1.0 / df["body_chance"])
    assert (df["body_chance"] > df["chance"]).all()

    same = localization(MapModel(synthpar.attributes, blob), synthpar, method=method, limit=10,
                        positives_only=False)
    assert same.attrs["mean_pairwise_correlation"] == pytest.approx(1.0)
    # One blob over the whole person: well above grid chance everywhere, but about 1 against the
    # body (not exactly: the blob is soft where the body box cuts a patch).
    assert (same["ratio"] > 1.5).all()
    np.testing.assert_allclose(same["ratio_body"], 1.0, rtol=0.1)
    assert df.attrs["mean_pairwise_correlation"] < 0.5  # maps of different regions barely overlap

    s = region_summary(df)
    assert list(s["body_region"]) == ["head", "torso", "legs", "feet"] and s["reaches_1_5x"].all()
    np.testing.assert_allclose(s["mean_ratio_body"], df.groupby("body_region")["ratio_body"].mean()[s["body_region"]])
    assert not region_summary(flat)["reaches_1_5x"].any()


def test_positives_only_counts_the_images_that_show_the_attribute(synthpar):
    rows = synthpar.split_indices("test")[:10]
    inside = _tables(synthpar, rows)[0]
    df = localization(MapModel(synthpar.attributes, inside), synthpar, limit=10).set_index("attribute")
    for name in ("Hat", "Trousers", "ShortSleeve", "boots"):
        j = synthpar.attributes.index(name)
        assert df.loc[name, "n"] == int(synthpar.labels[rows, j].sum())
    shown = df[df["n"] > 0]
    np.testing.assert_allclose(shown["share"], 1.0)
    assert df[df["n"] == 0]["share"].isna().all()


def test_localization_on_a_promptpar_model(synthpar):
    """The real model's explain hook plugs in: both methods give shares in [0, 1] and the same chance."""
    from parkit.model import create_model

    torch.manual_seed(0)
    model = create_model("promptpar-micro", attributes=list(synthpar.attributes),
                         sentences=list(synthpar.sentences))
    att = localization(model, synthpar, method="attention", limit=6, positives_only=False, batch_size=4)
    cam = localization(model, synthpar, method="gradcam", limit=6, positives_only=False, batch_size=4)
    assert len(att) == 15 and (att["n"] == 6).all()
    assert att["share"].between(0, 1).all() and att["hit_rate"].between(0, 1).all()
    np.testing.assert_allclose(att["chance"], cam["chance"])
    assert -1 <= att.attrs["mean_pairwise_correlation"] <= 1
    with pytest.raises(ExplainError, match="method"):
        localization(model, synthpar, method="saliency")


def test_localization_names_what_a_model_without_the_input_contract_lacks(synthpar):
    with pytest.raises(ExplainError, match="has no 'image_size'"):
        localization(nn.Linear(2, 2), synthpar)
