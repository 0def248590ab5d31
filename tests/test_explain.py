"""Tests of parkit.explain: attention maps, Grad-CAM, stripe geometry, figures.

Stand-in models (tests/browser_helpers.py) make the right answer known: `OracleModel` sends
attribute i's attention to one chosen patch and makes its logit depend on one colour channel of
that patch, so a transposed grid, a wrong token slice or a wrong gradient shows up as a map
whose peak is in the wrong place.
"""
import numpy as np
import pytest
import torch
from matplotlib.figure import Figure

from browser_helpers import NoHookModel, OracleModel, StandInModel
from parkit.explain import (ExplainError, attribute_attention_maps, gradcam, gradcam_from_tokens, normalize_maps,
                            overlay, plot_attention_grid, stripe_bands, stripe_overlay,
                            text_to_patch_attention, to_display_image, upsample_maps)
from parkit.explain.attention import layout_indices
from parkit.explain.plotting import REGION_COLORS, STRIPE_COLORS

ATTRS = ["Female", "Hat", "Jeans"]


def _peak(m):
    """(row, col) of the maximum of a 2-D map."""
    return np.unravel_index(int(np.argmax(m)), m.shape)


# --- stripe geometry (spec §4.1) ----------------------------------------------------------------

def test_stripe_bands_follow_the_model_geometry():
    # Official grid (spec §4.1): rows 0-4, 3-8, 7-12, 11-15 of 14-px rows at 224 px.
    assert stripe_bands(224, 16, 4, 2) == [(0.0, 70.0), (42.0, 126.0), (98.0, 182.0), (154.0, 224.0)]
    # A grid that does not divide evenly: the last band still reaches the bottom of the image.
    bands = stripe_bands(160, 16, 3, 2)
    assert bands[-1][1] == 160.0 and bands[0][0] == 0.0
    with pytest.raises(ExplainError, match="cannot split"):
        stripe_bands(30, 3, div_num=4)


def test_stripe_bands_in_pixels():
    # Explicit inclusive (first, last) rows, e.g. the two halves of a 16-row grid.
    assert stripe_bands(100, rows=[(0, 7), (8, 15)]) == [(0.0, 50.0), (50.0, 100.0)]


# --- pure attention functions -------------------------------------------------------------------

def _layout(a, n, first_text=2):
    # [2 other tokens][A text][N patches]
    return {"class": (0, first_text), "text": (first_text, first_text + a),
            "patches": (first_text + a, first_text + a + n)}


def test_text_to_patch_attention_averages_heads_and_reshapes_row_major():
    a, rows, cols = 2, 3, 2
    n = rows * cols
    length = 2 + a + n
    attn = torch.zeros(1, 2, length, length)
    p0 = 2 + a  # first patch position
    # Head 0: text 0 looks at patch (row 1, col 1) -> flat 3; head 1: at patch (2, 0) -> flat 4.
    attn[0, 0, 2, p0 + 3] = 1.0
    attn[0, 1, 2, p0 + 4] = 1.0
    # Text 1 splits its mass between a patch (0, 1) and a non-patch token (not part of the map).
    attn[0, :, 3, p0 + 1] = 0.25
    attn[0, :, 3, 0] = 0.75
    maps = text_to_patch_attention(attn, _layout(a, n), (rows, cols))
    assert maps.shape == (1, a, rows, cols)
    expected0 = torch.zeros(rows, cols)
    expected0[1, 1] = 0.5
    expected0[2, 0] = 0.5
    assert torch.allclose(maps[0, 0], expected0)
    assert maps[0, 1, 0, 1] == pytest.approx(0.25)
    assert maps[0, 1].sum() == pytest.approx(0.25)  # mass on non-patch tokens is not in the map


def test_layout_index_forms_agree_and_are_checked():
    forms = [(3, 7), range(3, 7), slice(3, 7), [3, 4, 5, 6], torch.tensor([3, 4, 5, 6])]
    for f in forms:
        assert layout_indices({"text": f}, "text", 10).tolist() == [3, 4, 5, 6]
    with pytest.raises(ExplainError, match="outside"):
        layout_indices({"text": (8, 12)}, "text", 10)
    with pytest.raises(ExplainError, match="no 'patches'"):
        layout_indices({"text": (0, 2)}, "patches", 10)


def test_text_to_patch_attention_rejects_wrong_grid():
    attn = torch.rand(1, 1, 10, 10)
    with pytest.raises(ExplainError, match="patch grid"):
        text_to_patch_attention(attn, _layout(2, 6), (2, 2))


def test_upsample_keeps_patch_location_on_a_non_square_grid():
    grid = torch.zeros(1, 1, 4, 2)
    grid[0, 0, 2, 1] = 1.0  # row 2, col 1 of a 4x2 grid
    up = upsample_maps(grid, (32, 16))[0, 0].numpy()  # 8x8-pixel patches
    r, c = _peak(up)
    assert 16 <= r < 24 and 8 <= c < 16


def test_normalize_maps_range_and_constant_maps():
    m = torch.tensor([[[[1.0, 3.0], [2.0, 5.0]], [[7.0, 7.0], [7.0, 7.0]]]])  # (1, 2, 2, 2)
    n = normalize_maps(m)
    assert torch.allclose(n[0, 0], torch.tensor([[0.0, 0.5], [0.25, 1.0]]))
    assert torch.equal(n[0, 1], torch.zeros(2, 2))


# --- attention maps through a model -------------------------------------------------------------

def test_attention_maps_peak_where_each_attribute_looks():
    # 32x16 image, 8-px patches -> a 4x2 grid; targets as flat row-major patch indices.
    targets = [1, 4, 6]  # (0, 1), (2, 0), (3, 0)
    model = OracleModel(ATTRS, targets)
    images = torch.randn(2, 3, 32, 16)
    maps, probs = attribute_attention_maps(model, images, return_probs=True)
    assert maps.shape == (2, 3, 32, 16) and maps.dtype == np.float32
    assert maps.min() >= 0.0 and maps.max() == pytest.approx(1.0)
    for i, t in enumerate(targets):
        r, c = _peak(maps[0, i])
        assert (r // 8, c // 8) == divmod(t, 2), f"attribute {i}"
    with torch.no_grad():
        expected = torch.sigmoid(model(images).logits).numpy()
    np.testing.assert_allclose(probs, expected, rtol=1e-6)


def test_attention_maps_equal_head_average_of_a_real_attention_block():
    torch.manual_seed(0)
    model = StandInModel(ATTRS, image_size=(32, 16), patch=8)
    model.train()
    images = torch.randn(3, 3, 32, 16)
    maps = attribute_attention_maps(model, images, size=(4, 2), normalize=False)
    assert model.training, "the model's train/eval mode must be restored"
    model.eval()
    with torch.no_grad():
        attn = model(images, return_attention=True).extras["mm_attention"].mean(1)  # (B, L, L)
    expected = attn[:, :3, 4:].reshape(3, 3, 4, 2).numpy()  # text rows 0..2, patches after the class token
    np.testing.assert_allclose(maps, expected, rtol=1e-5, atol=1e-7)
    assert (maps.sum(axis=(2, 3)) <= 1.0 + 1e-5).all()


def test_attention_maps_need_the_explain_hook():
    with pytest.raises(ExplainError, match="return_attention"):
        attribute_attention_maps(NoHookModel(ATTRS), torch.randn(1, 3, 32, 16))
    with pytest.raises(ExplainError, match=r"\(B, 3, H, W\)"):
        attribute_attention_maps(OracleModel(ATTRS, [0, 1, 2]), torch.randn(3, 32, 16))


# --- Grad-CAM -----------------------------------------------------------------------------------

def test_gradcam_from_tokens_by_hand():
    tokens = torch.tensor([[[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]]])  # (1, 3, 2)
    grads = torch.tensor([[[3.0, 0.0], [0.0, -3.0], [0.0, 0.0]]])  # mean over tokens -> w = (1, -1)
    cam = gradcam_from_tokens(tokens, grads)
    assert torch.allclose(cam, torch.tensor([[1.0, 0.0, 0.0]]))  # relu(1), relu(-2), relu(0)


def test_gradcam_lights_up_the_patch_and_colour_each_logit_uses():
    # Red square in patch (1, 0) = flat 2, green square in patch (3, 1) = flat 7 of the 4x2 grid.
    img = -torch.ones(1, 3, 32, 16)  # black in "official" normalisation
    img[0, 0, 8:16, 0:8] = 1.0
    img[0, 1, 24:32, 8:16] = 1.0
    model = OracleModel(["red thing", "green thing"], targets=[2, 7], channels=[0, 1])
    for p in model.parameters():
        p.requires_grad_(False)  # a frozen model must still be explainable
    cam_red = gradcam(model, img, "red thing")
    cam_green = gradcam(model, img, 1)
    assert cam_red.shape == (1, 32, 16)
    r, c = _peak(cam_red[0])
    assert (r // 8, c // 8) == (1, 0)
    r, c = _peak(cam_green[0])
    assert (r // 8, c // 8) == (3, 1)
    assert cam_red[0, 24:32, 8:16].max() < 0.5  # the green square does not drive the red logit
    both = gradcam(model, img, ["red thing", 1])  # one forward pass, one map per attribute
    assert both.shape == (1, 2, 32, 16)
    np.testing.assert_allclose(both[:, 0], cam_red, atol=1e-6)
    np.testing.assert_allclose(both[:, 1], cam_green, atol=1e-6)


def test_gradcam_on_attention_model_and_errors():
    model = StandInModel(ATTRS)
    cam = gradcam(model, torch.randn(2, 3, 32, 16), 0, size=(64, 32))
    assert cam.shape == (2, 64, 32) and np.isfinite(cam).all() and cam.max() <= 1.0
    with pytest.raises(ExplainError, match="unknown attribute"):
        gradcam(model, torch.randn(1, 3, 32, 16), "Beard")
    with pytest.raises(ExplainError, match="outside"):
        gradcam(model, torch.randn(1, 3, 32, 16), 7)


# --- figures ------------------------------------------------------------------------------------

def test_to_display_image_inverts_the_official_normalisation():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(6, 4, 3), dtype=np.uint8)
    x = (torch.from_numpy(img).permute(2, 0, 1).float() / 255.0 - 0.5) / 0.5
    back = to_display_image(x, "official")
    assert np.abs(back.astype(int) - img.astype(int)).max() <= 1
    clip_x = (torch.from_numpy(img).permute(2, 0, 1).float() / 255.0
              - torch.tensor([0.48145466, 0.4578275, 0.40821073])[:, None, None]) \
        / torch.tensor([0.26862954, 0.26130258, 0.27577711])[:, None, None]
    assert np.abs(to_display_image(clip_x, "clip").astype(int) - img.astype(int)).max() <= 1
    with pytest.raises(ExplainError, match="unknown normalization"):
        to_display_image(x, "imagenet")


def test_overlay_blends_the_jet_colour():
    img = np.full((4, 4, 3), 200, dtype=np.uint8)
    heat = np.zeros((4, 4), dtype=np.float32)
    heat[0, 0] = 1.0
    assert np.array_equal(overlay(img, heat, alpha=0.0), img)
    full = overlay(img, heat, alpha=1.0)
    assert tuple(full[1, 1]) == (0, 0, 128)  # jet(0): dark blue
    assert tuple(full[0, 0]) == (128, 0, 0)  # jet(1): dark red
    with pytest.raises(ExplainError, match="does not match"):
        overlay(img, np.zeros((2, 2)))


def test_plot_attention_grid_layout_and_region_colours():
    images = torch.zeros(2, 3, 32, 16)
    maps = np.random.default_rng(0).random((2, 3, 32, 16)).astype(np.float32)
    fig = plot_attention_grid(images, maps, ATTRS, regions=["whole", "head", "lower"],
                              probs=np.full((2, 3), 0.7), gt=np.ones((2, 3)), title="test")
    assert isinstance(fig, Figure)
    axes = fig.axes
    assert len(axes) == 2 * 4
    titles = [ax.get_title() for ax in axes[:4]]
    assert titles == ["Image", "Female", "Hat", "Jeans"]
    assert axes[2].title.get_color() == REGION_COLORS["head"]
    assert axes[3].title.get_color() == REGION_COLORS["lower"]
    with pytest.raises(ExplainError, match="attribute names"):
        plot_attention_grid(images, maps, ATTRS[:2])


def test_stripe_overlay_draws_each_part_band():
    fig = stripe_overlay(torch.zeros(3, 224, 224))
    ax = fig.axes[0]
    outlines = [p for p in ax.patches if p.get_facecolor()[3] == 0]  # unfilled rectangles
    assert len(outlines) == 4
    # Official geometry at 224 px: patch rows 0-4, 3-8, 7-12, 11-15 of 14-px rows.
    assert [(round(r.get_y() + 0.5), round(r.get_y() + 0.5 + r.get_height())) for r in outlines] == [
        (0, 70), (42, 126), (98, 182), (154, 224)]
    assert [r.get_edgecolor()[:3] for r in outlines] == [
        tuple(int(c[i:i + 2], 16) / 255 for i in (1, 3, 5)) for c in STRIPE_COLORS]
    assert [t.get_text() for t in ax.get_legend().get_texts()][1] == "part 2: patch rows 3-8"


# --- parkit's own PromptPAR (micro preset, random weights) --------------------------------------

@pytest.fixture(scope="module")
def micro_model():
    from parkit.model import create_model

    torch.manual_seed(0)
    return create_model("promptpar-micro", attributes=ATTRS, sentences=[f"a person, {a}" for a in ATTRS],
                        pretrained=False, device="cpu")


def test_promptpar_attention_maps_read_the_fusion_attention(micro_model):
    m = micro_model
    lay = m.layout
    x = torch.randn(2, 3, m.image_size, m.image_size)
    maps, probs = attribute_attention_maps(m, x, size=(lay.grid_rows, lay.grid_cols), normalize=False,
                                           return_probs=True)
    with torch.no_grad():
        out = m(x, return_attention=True)
    a = len(ATTRS)
    # Fused sequence = [A text tokens, visual tokens]; patches start at layout.patch_start of the visual part.
    fused = out.extras["fusion_attention"]  # (B, A + L, A + L)
    expected = fused[:, :a, a + lay.patch_start:a + lay.length].reshape(2, a, lay.grid_rows, lay.grid_cols)
    np.testing.assert_allclose(maps, expected.numpy(), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(probs, torch.sigmoid(out.logits).numpy(), rtol=1e-5)


def test_promptpar_gradcam_and_stripes(micro_model):
    m = micro_model
    x = torch.randn(1, 3, m.image_size, m.image_size)
    cams = gradcam(m, x, list(range(len(ATTRS))))
    assert cams.shape == (1, len(ATTRS), m.image_size, m.image_size)
    assert np.isfinite(cams).all() and cams.max() == pytest.approx(1.0)
    assert not np.allclose(cams[0, 0], cams[0, 1])  # each attribute's logit has its own gradient
    # The drawn stripes are the ones the model's mask uses.
    bands = stripe_bands(m.image_size, m.layout.grid_rows, rows=m.stripes)
    step = m.image_size / m.layout.grid_rows
    assert [(round(y0 / step), round(y1 / step) - 1) for y0, y1 in bands] == [tuple(r) for r in m.stripes]
    fig = stripe_overlay(m, x[0])
    outlines = [p for p in fig.axes[0].patches if p.get_facecolor()[3] == 0]
    assert [(round(r.get_y() + 0.5), round(r.get_y() + 0.5 + r.get_height())) for r in outlines] == [
        (round(y0), round(y1)) for y0, y1 in bands]
